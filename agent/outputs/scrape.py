"""What the metrics read at scrape time: each camera's counters and the service's connection states, as the
stages keep them (`SourceStats`, `TokenMemory`, the MQTT publisher, the outbox), exported as they are, never
re-counted; and the rule every label value obeys.

Declares only metric families built on each scrape; `metrics.Metrics` registers the collector.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# A camera counts as up in the streamer's words (`streamer.State.UP`) and in the API's
# (`CameraState` "online").
UP_STATES: Final = frozenset({"up", "online"})
# Frame drop reasons: the streamer's (queue full, decoder rejected a packet) and the watcher's
# (NaN/inf tokens).
DROP_REASONS: Final = ("consumer_behind", "decode_error", "bad_tokens")
MAX_LABEL_CHARS: Final = 64


class MetricLabelError(ValueError):
    """A label value that would make a series unbounded or leak data: a URL, free text, an unknown outcome."""

    def __init__(self, label: str, value: str, reason: str) -> None:
        super().__init__(f"metric label {label}={value[:80]!r} refused: {reason}")
        self.label = label
        self.value = value
        self.reason = reason


def checked_label(label: str, value: str) -> str:
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
    # What is configured: `memory` state has no Redis to connect to; without a broker nothing is published.
    state_backend: str = "redis"
    mqtt_enabled: bool = True
    outbox_length: int = 0
    mqtt_sent: int = 0
    mqtt_failed: int = 0
    mqtt_dropped: int = 0
    mqtt_reconnects: int = 0


ScrapeSource = Callable[[], ServiceScrape]


class ScrapeCollector(Collector):
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


# Per-camera families: (name, gauge or counter, help, the CameraScrape field it exports).
_CAMERA_FAMILIES: Final = (
    ("scissor_stream_up", "gauge", "1 when the camera's stream is up (decoding), else 0.", "up"),
    ("scissor_frames_decoded", "counter", "Frames decoded from the camera.", "frames_decoded"),
    ("scissor_frames_sampled", "counter", "Frames the fps sampler kept for encoding.", "frames_sampled"),
    ("scissor_frames_dropped", "counter", "Frames dropped, by reason.", "drops"),
    ("scissor_stream_reconnects", "counter", "Reconnects of the camera's stream.", "reconnects"),
    ("scissor_stream_connect_failures", "counter", "Failed attempts to open the stream.", "connect_failures"),
    ("scissor_stream_input_fps", "gauge", "Measured input frame rate of the stream (frames/s).", "input_fps"),
    ("scissor_decode_seconds", "counter", "Wall seconds spent decoding the stream.", "decode_seconds"),
    (
        "scissor_stream_last_frame_timestamp_seconds",
        "gauge",
        "Unix time of the last decoded frame.",
        "last_frame_wall_time",
    ),
    ("scissor_memory_entries", "gauge", "Live memory entries (= visual tokens kept).", "memory_entries"),
    ("scissor_tokens_in", "counter", "Raw visual tokens that entered the memory.", "memory_tokens_in"),
    (
        "scissor_memory_evicted_tokens",
        "counter",
        "Raw tokens whose entries were evicted.",
        "memory_tokens_evicted",
    ),
    (
        "scissor_memory_evicted_entries",
        "counter",
        "Memory entries evicted by the time window.",
        "memory_evicted",
    ),
    ("scissor_memory_consolidations", "counter", "Capacity merges of two entries.", "memory_consolidations"),
)


def _camera_families(cameras: Sequence[CameraScrape]) -> Iterator[Metric]:
    """Per-camera families read from SourceStats and TokenMemory counters."""
    for name, kind, doc, field_name in _CAMERA_FAMILIES:
        by_reason = field_name == "drops"
        family = (_gauge if kind == "gauge" else _counter)(
            name, doc, ["camera", "reason"] if by_reason else ["camera"]
        )
        for cam in cameras:
            c, value = [checked_label("camera", cam.camera)], getattr(cam, field_name)
            if by_reason:
                # Known reasons are exported at 0 too: a healthy camera's drop panel shows 0, not "no data".
                for reason, count in sorted({**dict.fromkeys(DROP_REASONS, 0), **value}.items()):
                    family.add_metric([*c, checked_label("reason", reason)], count)
            elif value is not None:  # no frame yet: no last-frame timestamp
                family.add_metric(c, float(value))
        yield family


def _service_families(snap: ServiceScrape) -> Iterator[Metric]:
    """Connection states, the alert outbox and the MQTT publisher's own counters."""
    yield GaugeMetricFamily("scissor_cameras", "Cameras the service is watching.", value=len(snap.cameras))
    yield GaugeMetricFamily(
        "scissor_mqtt_connected", "1 when the MQTT publisher is connected.", value=float(snap.mqtt_connected)
    )
    with_redis = snap.state_backend == "redis"
    yield GaugeMetricFamily(
        "scissor_redis_connected",
        "1 when the Redis state store answers; 0 while it does not, and always 0 without a Redis "
        "(SCISSOR_REDIS_URL=memory://, see scissor_outputs_info).",
        value=float(with_redis and snap.redis_connected),
    )
    configured = _gauge(
        "scissor_outputs_info",
        "What the service is configured to use: state_backend redis|memory, mqtt broker|none.",
        ["state_backend", "mqtt"],
    )
    configured.add_metric(
        [checked_label("state_backend", snap.state_backend), "broker" if snap.mqtt_enabled else "none"], 1.0
    )
    yield configured
    yield GaugeMetricFamily(
        "scissor_alert_outbox_messages",
        "Alerts waiting in the outbox for a PUBACK.",
        value=snap.outbox_length,
    )
    published = _counter(
        "scissor_mqtt_messages",
        "MQTT publishes to the broker by outcome; all 0 without one (SCISSOR_MQTT_URL=none: alerts go to "
        "/events only and count in scissor_alerts_total).",
        ["outcome"],
    )
    counts = (snap.mqtt_sent, snap.mqtt_failed, snap.mqtt_dropped) if snap.mqtt_enabled else (0, 0, 0)
    for outcome, count in zip(("sent", "failed", "dropped"), counts, strict=True):
        published.add_metric([outcome], count)
    yield published
    yield CounterMetricFamily("scissor_mqtt_reconnects", "MQTT reconnects.", value=snap.mqtt_reconnects)
