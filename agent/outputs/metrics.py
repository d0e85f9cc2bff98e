"""Every scissor_* Prometheus metric, declared once; never takes a URL, a question or a frame id as a label.

Two ways in, so nothing is counted twice:
- *events* the service pushes as they happen (`encoded`, `memory_updated`, `answered`, `alert`,
  `set_backend`): histograms and the counters only those events know;
- *state* read at scrape time from a callable the service registers (`set_scrape_source`), returning a
  `ServiceScrape` built from counters other stages already keep (`SourceStats`, `TokenMemory`, the MQTT
  publisher, the outbox). Those counters are exported as they are, never re-counted here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Buckets fitted to measured ranges (the 2-core test box; figures and command in ops/README.md, "Buckets"):
# encoder per frame: EfficientNet-Lite0 at 448 px measured 1.9-4.8 s per frame on the loaded 2-core test box
# (tens of ms on an idle desktop core); LLaVA-OV 0.5B takes seconds per frame on CPU and ~20 ms on a GPU.
ENCODE_BUCKETS_S: Final = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
# Spatial SCC per frame (196 tokens): 1.6 ms idle, ~0.2 s under 6x CPU contention at D = 896-1280.
SCC_BUCKETS_S: Final = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5)
# Whole TokenMemory.add_frame (SCC + match against M entries + final merge + eviction): 0.08-1.8 s loaded.
MEMORY_UPDATE_BUCKETS_S: Final = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Answers: the tiny backend answers in ~10 ms, LLaVA-OV on CPU in tens of seconds.
ANSWER_BUCKETS_S: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
NOVELTY_BUCKETS: Final = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
TOKEN_BUCKETS: Final = tuple(float(2**k) for k in range(4, 16))  # 16 ... 32768 tokens

# A camera counts as up in the streamer's words (`streamer.State.UP`) and in the API's
# (`CameraState` "online").
UP_STATES: Final = frozenset({"up", "online"})
ALERT_OUTCOMES: Final = ("sent", "queued", "failed", "dropped")
# Frame drop reasons: the streamer's (queue full, decoder rejected a packet) and the watcher's
# (NaN/inf tokens).
DROP_REASONS: Final = ("consumer_behind", "decode_error", "bad_tokens")
ANSWER_OUTCOMES: Final = ("ok", "error")
MAX_LABEL_CHARS: Final = 64


class MetricLabelError(ValueError):
    """A label value that would make a series unbounded or leak data: a URL, free text, an unknown outcome."""

    def __init__(self, label: str, value: str, reason: str) -> None:
        super().__init__(f"metric label {label}={value[:80]!r} refused: {reason}")
        self.label = label
        self.value = value
        self.reason = reason


def _checked(label: str, value: str) -> str:
    """Return `value` if it is a short identifier fit for a label, else raise MetricLabelError."""
    if not value or len(value) > MAX_LABEL_CHARS:
        raise MetricLabelError(label, value, f"must be 1-{MAX_LABEL_CHARS} characters")
    if "://" in value or "@" in value or any(c.isspace() for c in value):
        raise MetricLabelError(label, value, "looks like a URL or free text, not an id")
    return value


class SourceStatsLike(Protocol):
    """The counters `streamer.SourceStats` keeps (read, never written, by metrics)."""

    @property
    def frames_decoded(self) -> int: ...
    @property
    def frames_sampled(self) -> int: ...
    @property
    def drops(self) -> Mapping[str, int]: ...
    @property
    def reconnects(self) -> int: ...
    @property
    def connect_failures(self) -> int: ...
    @property
    def input_fps(self) -> float: ...
    @property
    def decode_seconds(self) -> float: ...
    @property
    def last_frame_wall_time(self) -> float | None: ...


class TokenMemoryLike(Protocol):
    """The counters `compress.TokenMemory` keeps (`len()` is its live entries)."""

    @property
    def tokens_in_total(self) -> int: ...
    @property
    def tokens_evicted_total(self) -> int: ...
    @property
    def evicted_total(self) -> int: ...
    @property
    def consolidations_total(self) -> int: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True, slots=True)
class CameraScrape:
    """One camera's counters and levels at scrape time. Counters are cumulative since the camera started."""

    camera: str
    up: bool
    frames_decoded: int = 0
    frames_sampled: int = 0
    drops: Mapping[str, int] = field(default_factory=dict)
    reconnects: int = 0
    connect_failures: int = 0
    input_fps: float = 0.0
    decode_seconds: float = 0.0
    last_frame_wall_time: float | None = None
    memory_entries: int = 0
    memory_tokens_in: int = 0
    memory_tokens_evicted: int = 0
    memory_evicted: int = 0
    memory_consolidations: int = 0

    @classmethod
    def from_parts(
        cls, camera: str, state: str, stats: SourceStatsLike, memory: TokenMemoryLike
    ) -> CameraScrape:
        """A camera's scrape from its source's `SourceStats`, its `status.state` and its `TokenMemory`.

        Args:
            camera: the camera id (the label value; never its URL).
            state: `source.status.state` or the API's camera state; "up" and "online" count as up.
            stats: the source's counters.
            memory: the camera's token memory.
        """
        return cls(
            camera=camera,
            up=str(state) in UP_STATES,
            frames_decoded=stats.frames_decoded,
            frames_sampled=stats.frames_sampled,
            drops=dict(stats.drops),
            reconnects=stats.reconnects,
            connect_failures=stats.connect_failures,
            input_fps=stats.input_fps,
            decode_seconds=stats.decode_seconds,
            last_frame_wall_time=stats.last_frame_wall_time,
            memory_entries=len(memory),
            memory_tokens_in=memory.tokens_in_total,
            memory_tokens_evicted=memory.tokens_evicted_total,
            memory_evicted=memory.evicted_total,
            memory_consolidations=memory.consolidations_total,
        )


@dataclass(frozen=True, slots=True)
class ServiceScrape:
    """Everything read at scrape time: per-camera scrapes plus connection states and publisher counters."""

    cameras: Sequence[CameraScrape] = ()
    mqtt_connected: bool = False
    redis_connected: bool = False
    outbox_length: int = 0
    mqtt_sent: int = 0
    mqtt_failed: int = 0
    mqtt_dropped: int = 0
    mqtt_reconnects: int = 0


ScrapeSource = Callable[[], ServiceScrape]


class _ScrapeCollector(Collector):
    """Turns the registered scrape source into metric families on every scrape."""

    def __init__(self) -> None:
        self.source: ScrapeSource | None = None
        self.failures = 0

    def collect(self) -> Iterator[Metric]:
        failures = CounterMetricFamily(
            "scissor_metrics_snapshot_failures", "Scrapes whose scrape source raised (see the log)."
        )
        snap = ServiceScrape()
        if self.source is not None:
            try:
                snap = self.source()
            except Exception:  # crash guard of the scrape: one bad read must not blank all of /metrics
                self.failures += 1
                log.exception("metrics scrape source failed")
        failures.add_metric([], self.failures)
        yield failures
        yield from _camera_families(snap.cameras)
        yield from _service_families(snap)


def _gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _counter(name: str, doc: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def _camera_families(cameras: Sequence[CameraScrape]) -> Iterator[Metric]:
    """Per-camera families read from SourceStats and TokenMemory counters."""
    up = _gauge("scissor_stream_up", "1 when the camera's stream is up (decoding), else 0.", ["camera"])
    decoded = _counter("scissor_frames_decoded", "Frames decoded from the camera.", ["camera"])
    sampled = _counter("scissor_frames_sampled", "Frames the fps sampler kept for encoding.", ["camera"])
    dropped = _counter("scissor_frames_dropped", "Frames dropped, by reason.", ["camera", "reason"])
    reconnects = _counter("scissor_stream_reconnects", "Reconnects of the camera's stream.", ["camera"])
    failures = _counter("scissor_stream_connect_failures", "Failed attempts to open the stream.", ["camera"])
    fps = _gauge(
        "scissor_stream_input_fps", "Measured input frame rate of the stream (frames/s).", ["camera"]
    )
    decode = _counter("scissor_decode_seconds", "Wall seconds spent decoding the stream.", ["camera"])
    last = _gauge(
        "scissor_stream_last_frame_timestamp_seconds", "Unix time of the last decoded frame.", ["camera"]
    )
    entries = _gauge("scissor_memory_entries", "Live memory entries (= visual tokens kept).", ["camera"])
    tokens_in = _counter("scissor_tokens_in", "Raw visual tokens that entered the memory.", ["camera"])
    tokens_out = _counter(
        "scissor_memory_evicted_tokens", "Raw tokens whose entries were evicted.", ["camera"]
    )
    evicted = _counter(
        "scissor_memory_evicted_entries", "Memory entries evicted by the time window.", ["camera"]
    )
    consolidated = _counter("scissor_memory_consolidations", "Capacity merges of two entries.", ["camera"])
    for cam in cameras:
        c = [_checked("camera", cam.camera)]
        up.add_metric(c, 1.0 if cam.up else 0.0)
        decoded.add_metric(c, cam.frames_decoded)
        sampled.add_metric(c, cam.frames_sampled)
        # Known reasons are exported at 0 too, so a healthy camera's drop panel shows 0 rather than "no data".
        for reason, count in sorted({**dict.fromkeys(DROP_REASONS, 0), **cam.drops}.items()):
            dropped.add_metric([*c, _checked("reason", reason)], count)
        reconnects.add_metric(c, cam.reconnects)
        failures.add_metric(c, cam.connect_failures)
        fps.add_metric(c, cam.input_fps)
        decode.add_metric(c, cam.decode_seconds)
        if cam.last_frame_wall_time is not None:
            last.add_metric(c, cam.last_frame_wall_time)
        entries.add_metric(c, cam.memory_entries)
        tokens_in.add_metric(c, cam.memory_tokens_in)
        tokens_out.add_metric(c, cam.memory_tokens_evicted)
        evicted.add_metric(c, cam.memory_evicted)
        consolidated.add_metric(c, cam.memory_consolidations)
    yield from (
        up,
        decoded,
        sampled,
        dropped,
        reconnects,
        failures,
        fps,
        decode,
        last,
        entries,
        tokens_in,
        tokens_out,
        evicted,
        consolidated,
    )


def _service_families(snap: ServiceScrape) -> Iterator[Metric]:
    """Connection states, the alert outbox and the MQTT publisher's own counters."""
    yield GaugeMetricFamily("scissor_cameras", "Cameras the service is watching.", value=len(snap.cameras))
    yield GaugeMetricFamily(
        "scissor_mqtt_connected", "1 when the MQTT publisher is connected.", value=float(snap.mqtt_connected)
    )
    yield GaugeMetricFamily(
        "scissor_redis_connected", "1 when the state store answers.", value=float(snap.redis_connected)
    )
    yield GaugeMetricFamily(
        "scissor_alert_outbox_messages",
        "Alerts waiting in the outbox for a PUBACK.",
        value=snap.outbox_length,
    )
    published = _counter("scissor_mqtt_messages", "MQTT publishes by outcome.", ["outcome"])
    published.add_metric(["sent"], snap.mqtt_sent)
    published.add_metric(["failed"], snap.mqtt_failed)
    published.add_metric(["dropped"], snap.mqtt_dropped)
    yield published
    yield CounterMetricFamily("scissor_mqtt_reconnects", "MQTT reconnects.", value=snap.mqtt_reconnects)


class Metrics:
    """The service's metrics: event methods it calls, a scrape source it registers, `render()` for /metrics.

    Args:
        registry: where to register; a fresh `CollectorRegistry` with process, platform and GC collectors when
            omitted (tests pass their own, so two `Metrics` never collide).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        self.registry = registry
        r, cam = registry, ["camera"]
        self.frames_encoded = Counter(
            "scissor_frames_encoded", "Frames turned into visual tokens.", cam, registry=r
        )
        self.encode_seconds = Histogram(
            "scissor_encode_seconds",
            "Encoder seconds per frame (batch time / frames).",
            cam,
            buckets=ENCODE_BUCKETS_S,
            registry=r,
        )
        self.scc_seconds = Histogram(
            "scissor_scc_seconds",
            "Spatial SCC alone (semantic_components of one frame's tokens) seconds, timed on sampled frames.",
            cam,
            buckets=SCC_BUCKETS_S,
            registry=r,
        )
        self.memory_update_seconds = Histogram(
            "scissor_memory_update_seconds",
            "TokenMemory.add_frame seconds per frame (SCC, match, merge, evict).",
            cam,
            buckets=MEMORY_UPDATE_BUCKETS_S,
            registry=r,
        )
        self.novelty = Histogram(
            "scissor_novelty_ratio",
            "Share of a frame's tokens that matched no memory entry.",
            cam,
            buckets=NOVELTY_BUCKETS,
            registry=r,
        )
        # Raw tokens in are TokenMemory.tokens_in_total, read at scrape time; kept is only known per update.
        self.tokens_kept = Counter(
            "scissor_tokens_kept", "Visual tokens kept: memory entries frames created.", cam, registry=r
        )
        self.answers = Counter(
            "scissor_answers", "Questions answered, by outcome (ok|error).", ["camera", "outcome"], registry=r
        )
        self.answer_seconds = Histogram(
            "scissor_answer_seconds", "Question to answer latency.", cam, buckets=ANSWER_BUCKETS_S, registry=r
        )
        self.answer_prefill_tokens = Histogram(
            "scissor_answer_prefill_tokens",
            "Prompt tokens the answerer read.",
            cam,
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.answer_memory_tokens = Histogram(
            "scissor_answer_memory_tokens",
            "Memory tokens fed to an answer.",
            cam,
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.alerts = Counter(
            "scissor_alerts",
            "Alerts by rule and outcome (sent|queued|failed|dropped).",
            ["camera", "rule", "outcome"],
            registry=r,
        )
        self.backend = Info(
            "scissor_model_backend", "The model backend serving encode and answer.", registry=r
        )
        self._collector = _ScrapeCollector()
        registry.register(self._collector)

    def set_scrape_source(self, source: ScrapeSource | None) -> None:
        """Register the callable read on every scrape (None unregisters); it must be fast and not block."""
        self._collector.source = source

    def watch_camera(self, camera: str) -> None:
        """Create a camera's event series at 0, so dashboards show 0 rather than no data before any event."""
        c = _checked("camera", camera)
        for metric in (
            self.frames_encoded,
            self.encode_seconds,
            self.scc_seconds,
            self.memory_update_seconds,
            self.novelty,
            self.tokens_kept,
            self.answer_seconds,
            self.answer_prefill_tokens,
            self.answer_memory_tokens,
        ):
            metric.labels(c)
        for outcome in ANSWER_OUTCOMES:
            self.answers.labels(c, outcome)

    def watch_rule(self, camera: str, rule: str) -> None:
        """Create a rule's alert series at zero for every outcome."""
        for outcome in ALERT_OUTCOMES:
            self.alerts.labels(_checked("camera", camera), _checked("rule", rule), outcome)

    def forget_camera(self, camera: str) -> None:
        """Remove every event series of a deleted camera (its scraped series vanish by themselves)."""
        for metric in (
            self.frames_encoded,
            self.encode_seconds,
            self.scc_seconds,
            self.memory_update_seconds,
            self.novelty,
            self.tokens_kept,
            self.answer_seconds,
            self.answer_prefill_tokens,
            self.answer_memory_tokens,
            self.answers,
            self.alerts,
        ):
            # prometheus_client has no public listing of a metric's label sets; _metrics is stable since 0.4.
            for labels in [k for k in metric._metrics if k[0] == camera]:
                metric.remove(*labels)

    def encoded(self, camera: str, frames: int, seconds: float) -> None:
        """Record one encoder batch: `frames` frames in `seconds` wall seconds (observed per frame)."""
        if frames <= 0:
            return
        c = _checked("camera", camera)
        self.frames_encoded.labels(c).inc(frames)
        per_frame, hist = seconds / frames, self.encode_seconds.labels(c)
        for _ in range(frames):
            hist.observe(per_frame)

    def memory_updated(
        self,
        camera: str,
        *,
        novelty: float,
        tokens_kept: int,
        update_seconds: float,
        scc_seconds: float | None = None,
    ) -> None:
        """Record one `TokenMemory.add_frame`.

        Args:
            camera: camera id.
            novelty: `MemoryUpdate.novelty`, in [0, 1].
            tokens_kept: entries the frame created (new entries of the `MemoryUpdate`). Raw tokens in are not
                passed: they are `TokenMemory.tokens_in_total`, read at scrape time, so never counted twice.
            update_seconds: the whole update.
            scc_seconds: the spatial SCC alone on this frame's tokens, when this frame was one the camera
                times it on (None otherwise: the histogram counts timed frames only).
        """
        c = _checked("camera", camera)
        if not (0.0 <= novelty <= 1.0) or math.isnan(novelty):
            raise ValueError(f"novelty must be in [0, 1], got {novelty}")
        self.novelty.labels(c).observe(novelty)
        self.tokens_kept.labels(c).inc(tokens_kept)
        if scc_seconds is not None:
            self.scc_seconds.labels(c).observe(scc_seconds)
        self.memory_update_seconds.labels(c).observe(update_seconds)

    def answered(
        self, camera: str, latency_s: float, prefill_tokens: int, tokens_used: int, ok: bool
    ) -> None:
        """Record one question: latency, prompt tokens read, memory tokens fed, and whether it succeeded."""
        c = _checked("camera", camera)
        self.answers.labels(c, "ok" if ok else "error").inc()
        self.answer_seconds.labels(c).observe(latency_s)
        if ok:
            self.answer_prefill_tokens.labels(c).observe(prefill_tokens)
            self.answer_memory_tokens.labels(c).observe(tokens_used)

    def alert(self, camera: str, rule: str, outcome: str) -> None:
        """Count one alert outcome: sent (PUBACK), queued (outbox), failed (publish error), dropped."""
        if outcome not in ALERT_OUTCOMES:
            raise MetricLabelError("outcome", outcome, f"must be one of {', '.join(ALERT_OUTCOMES)}")
        self.alerts.labels(_checked("camera", camera), _checked("rule", rule), outcome).inc()

    def set_backend(self, name: str, device: str, token_dim: int) -> None:
        """Publish which model backend runs, on which device, and its token width D."""
        self.backend.info(
            {
                "backend": _checked("backend", name),
                "device": _checked("device", device),
                "token_dim": str(token_dim),
            }
        )

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type, for the /metrics route."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
