"""The service's Prometheus metrics, declared once (the scrape-time families in `scrape.py`); never takes a
URL, a question or a frame id as a label.

Two ways in, so nothing is counted twice:
- *events* the service pushes as they happen (`encoded`, `memory_updated`, `answered`, `alert`,
  `set_backend`): histograms and the counters only those events know;
- *state* read at scrape time from a callable the service registers (`set_scrape_source`), returning a
  `scrape.ServiceScrape` built from counters other stages already keep; `scrape.py` turns it into families.
"""

from __future__ import annotations

import math
from typing import Final

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

from agent.outputs.scrape import MetricLabelError, ScrapeCollector, ScrapeSource, checked_label

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

ALERT_OUTCOMES: Final = ("sent", "queued", "failed", "dropped")
ANSWER_OUTCOMES: Final = ("ok", "error")
PROMPT_DROP_REASONS: Final = ("busy", "in_flight")


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
        self._frame_metrics(registry)
        self._answer_metrics(registry)
        self.alerts = Counter(
            "scissor_alerts",
            "Alerts by rule and outcome (sent|queued|failed|dropped).",
            ["camera", "rule", "outcome"],
            registry=registry,
        )
        self.backend = Info(
            "scissor_model_backend", "The model backend serving encode and answer.", registry=registry
        )
        self._collector = ScrapeCollector()
        registry.register(self._collector)

    def _frame_metrics(self, r: CollectorRegistry) -> None:
        """What every frame's encode and memory update records."""
        cam = ["camera"]
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

    def _answer_metrics(self, r: CollectorRegistry) -> None:
        """What every answered question records."""
        cam = ["camera"]
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
        self.rule_prompts_dropped = Counter(
            "scissor_rule_prompts_dropped",
            "Prompt-rule questions not asked: no answer slot free for rules (busy) or the rule's previous "
            "question still unanswered (in_flight).",
            ["camera", "rule", "reason"],
            registry=r,
        )

    def set_scrape_source(self, source: ScrapeSource | None) -> None:
        """Register the callable read on every scrape (None unregisters); it must be fast and not block."""
        self._collector.source = source

    def watch_camera(self, camera: str) -> None:
        """Create a camera's event series at 0, so dashboards show 0 rather than no data before any event."""
        c = checked_label("camera", camera)
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
            self.alerts.labels(checked_label("camera", camera), checked_label("rule", rule), outcome)

    def forget_rule(self, camera: str, rule: str) -> None:
        """Remove every series of a deleted rule (alerts by outcome, prompts dropped by reason), so rules
        created and deleted leave none behind."""
        for metric in (self.alerts, self.rule_prompts_dropped):
            for labels in [k for k in metric._metrics if k[:2] == (camera, rule)]:  # see forget_camera
                metric.remove(*labels)

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
            self.rule_prompts_dropped,
        ):
            # prometheus_client has no public listing of a metric's label sets; _metrics is stable since 0.4.
            for labels in [k for k in metric._metrics if k[0] == camera]:
                metric.remove(*labels)

    def encoded(self, camera: str, frames: int, seconds: float) -> None:
        """Record one encoder batch: `frames` frames in `seconds` wall seconds (observed per frame)."""
        if frames <= 0:
            return
        c = checked_label("camera", camera)
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
        c = checked_label("camera", camera)
        if not (0.0 <= novelty <= 1.0) or math.isnan(novelty):
            raise ValueError(f"novelty must be in [0, 1], got {novelty}")
        self.novelty.labels(c).observe(novelty)
        self.tokens_kept.labels(c).inc(tokens_kept)
        if scc_seconds is not None:
            self.scc_seconds.labels(c).observe(scc_seconds)
        self.memory_update_seconds.labels(c).observe(update_seconds)

    def rule_prompt_dropped(self, camera: str, rule: str, reason: str) -> None:
        """Count a prompt rule's question that was not asked, and why (`PROMPT_DROP_REASONS`)."""
        if reason not in PROMPT_DROP_REASONS:
            raise ValueError(f"reason must be one of {', '.join(PROMPT_DROP_REASONS)}, got {reason!r}")
        self.rule_prompts_dropped.labels(
            checked_label("camera", camera), checked_label("rule", rule), reason
        ).inc()

    def answered(
        self, camera: str, latency_s: float, prefill_tokens: int, tokens_used: int, ok: bool
    ) -> None:
        """Record one question: latency, prompt tokens read, memory tokens fed, and whether it succeeded."""
        c = checked_label("camera", camera)
        self.answers.labels(c, "ok" if ok else "error").inc()
        self.answer_seconds.labels(c).observe(latency_s)
        if ok:
            self.answer_prefill_tokens.labels(c).observe(prefill_tokens)
            self.answer_memory_tokens.labels(c).observe(tokens_used)

    def alert(self, camera: str, rule: str, outcome: str) -> None:
        """Count one alert outcome: sent (PUBACK), queued (outbox), failed (publish error), dropped."""
        if outcome not in ALERT_OUTCOMES:
            raise MetricLabelError("outcome", outcome, f"must be one of {', '.join(ALERT_OUTCOMES)}")
        self.alerts.labels(checked_label("camera", camera), checked_label("rule", rule), outcome).inc()

    def set_backend(self, name: str, device: str, token_dim: int) -> None:
        """Publish which model backend runs, on which device, and its token width D."""
        self.backend.info(
            {
                "backend": checked_label("backend", name),
                "device": checked_label("device", device),
                "token_dim": str(token_dim),
            }
        )

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type, for the /metrics route."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
