"""agent.outputs.metrics and .scrape: what each event records, what a scrape exports, which labels are
refused, lint."""

from __future__ import annotations

import subprocess

import pytest
import torch
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from agent.outputs.metrics import Metrics
from agent.outputs.scrape import CameraScrape, MetricLabelError, ServiceScrape
from compress.memory import TokenMemory
from streamer.status import SourceStats


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_two_metrics_objects_on_their_own_registries_do_not_collide() -> None:
    a, b = Metrics(), Metrics(CollectorRegistry())
    a.encoded("cam", 1, 0.1)
    assert value(a, "scissor_frames_encoded_total", camera="cam") == 1.0
    assert value(b, "scissor_frames_encoded_total", camera="cam") is None


def test_default_registry_also_exports_process_metrics() -> None:
    body, _ = Metrics().render()
    assert b"process_cpu_seconds_total" in body and b"python_info" in body


def test_encoder_batch_is_observed_once_per_frame_at_its_per_frame_time(metrics: Metrics) -> None:
    metrics.encoded("lobby", 4, 0.4)
    assert value(metrics, "scissor_frames_encoded_total", camera="lobby") == 4.0
    assert value(metrics, "scissor_encode_seconds_count", camera="lobby") == 4.0
    assert value(metrics, "scissor_encode_seconds_sum", camera="lobby") == pytest.approx(0.4)
    assert value(metrics, "scissor_encode_seconds_bucket", camera="lobby", le="0.1") == 4.0
    assert value(metrics, "scissor_encode_seconds_bucket", camera="lobby", le="0.05") == 0.0


def test_memory_update_records_novelty_costs_and_kept_tokens(metrics: Metrics) -> None:
    metrics.memory_updated("lobby", novelty=0.25, tokens_kept=7, scc_seconds=0.0008, update_seconds=0.003)
    metrics.memory_updated("lobby", novelty=0.0, tokens_kept=0, scc_seconds=0.0004, update_seconds=0.001)
    assert value(metrics, "scissor_tokens_kept_total", camera="lobby") == 7.0
    assert value(metrics, "scissor_novelty_ratio_bucket", camera="lobby", le="0.0") == 1.0
    assert value(metrics, "scissor_novelty_ratio_bucket", camera="lobby", le="0.3") == 2.0
    assert value(metrics, "scissor_scc_seconds_bucket", camera="lobby", le="0.0005") == 1.0
    assert value(metrics, "scissor_memory_update_seconds_sum", camera="lobby") == pytest.approx(0.004)


def test_novelty_outside_zero_to_one_is_refused(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="novelty"):
        metrics.memory_updated("lobby", novelty=1.5, tokens_kept=0, scc_seconds=0.0, update_seconds=0.0)


def test_failed_answers_count_as_errors_and_do_not_observe_tokens(metrics: Metrics) -> None:
    metrics.answered("lobby", 1.5, prefill_tokens=600, tokens_used=300, ok=True)
    metrics.answered("lobby", 60.0, prefill_tokens=0, tokens_used=0, ok=False)
    assert value(metrics, "scissor_answers_total", camera="lobby", outcome="ok") == 1.0
    assert value(metrics, "scissor_answers_total", camera="lobby", outcome="error") == 1.0
    assert value(metrics, "scissor_answer_seconds_count", camera="lobby") == 2.0
    assert value(metrics, "scissor_answer_prefill_tokens_count", camera="lobby") == 1.0
    assert value(metrics, "scissor_answer_memory_tokens_bucket", camera="lobby", le="256.0") == 0.0
    assert value(metrics, "scissor_answer_memory_tokens_bucket", camera="lobby", le="512.0") == 1.0


def test_alerts_are_counted_by_rule_and_outcome_and_unknown_outcomes_refused(metrics: Metrics) -> None:
    metrics.alert("lobby", "novelty", "queued")
    metrics.alert("lobby", "novelty", "sent")
    metrics.alert("lobby", "novelty", "sent")
    assert value(metrics, "scissor_alerts_total", camera="lobby", rule="novelty", outcome="sent") == 2.0
    assert value(metrics, "scissor_alerts_total", camera="lobby", rule="novelty", outcome="queued") == 1.0
    with pytest.raises(MetricLabelError, match="outcome"):
        metrics.alert("lobby", "novelty", "lost")


@pytest.mark.parametrize(
    "camera", ["rtsp://user:secret@10.0.0.5/stream", "is anyone at the door?", "", "x" * 65]
)
def test_urls_free_text_and_overlong_values_are_refused_as_labels(metrics: Metrics, camera: str) -> None:
    with pytest.raises(MetricLabelError):
        metrics.encoded(camera, 1, 0.1)
    assert b"secret" not in metrics.render()[0]


def test_backend_info_names_backend_device_and_token_width(metrics: Metrics) -> None:
    metrics.set_backend("embedded", "cpu", 1280)
    assert (
        value(metrics, "scissor_model_backend_info", backend="embedded", device="cpu", token_dim="1280")
        == 1.0
    )


def test_watched_camera_shows_zeros_before_any_event_and_forget_removes_its_series(metrics: Metrics) -> None:
    metrics.watch_camera("dock")
    metrics.watch_rule("dock", "person")
    assert value(metrics, "scissor_answers_total", camera="dock", outcome="error") == 0.0
    assert value(metrics, "scissor_scc_seconds_count", camera="dock") == 0.0
    assert value(metrics, "scissor_alerts_total", camera="dock", rule="person", outcome="failed") == 0.0
    metrics.watch_camera("lobby")
    metrics.forget_camera("dock")
    body = metrics.render()[0].decode()
    assert 'camera="dock"' not in body and 'camera="lobby"' in body


def snapshot_source(counters: dict[str, int]) -> ServiceScrape:
    cam = CameraScrape(
        "lobby",
        up=True,
        frames_decoded=counters["decoded"],
        frames_sampled=10,
        drops={"consumer_behind": 3},
        reconnects=2,
        memory_entries=40,
        memory_tokens_in=1960,
    )
    return ServiceScrape(
        cameras=[cam], mqtt_connected=True, redis_connected=False, outbox_length=5, mqtt_sent=9
    )


def test_snapshot_counters_are_exported_as_read_never_accumulated(metrics: Metrics) -> None:
    counters = {"decoded": 100}
    metrics.set_scrape_source(lambda: snapshot_source(counters))
    metrics.render()
    metrics.render()
    assert value(metrics, "scissor_frames_decoded_total", camera="lobby") == 100.0
    counters["decoded"] = 130
    assert value(metrics, "scissor_frames_decoded_total", camera="lobby") == 130.0
    assert value(metrics, "scissor_frames_dropped_total", camera="lobby", reason="consumer_behind") == 3.0
    assert value(metrics, "scissor_stream_up", camera="lobby") == 1.0
    assert value(metrics, "scissor_memory_entries", camera="lobby") == 40.0
    assert value(metrics, "scissor_tokens_in_total", camera="lobby") == 1960.0
    assert value(metrics, "scissor_mqtt_connected") == 1.0
    assert value(metrics, "scissor_redis_connected") == 0.0
    assert value(metrics, "scissor_alert_outbox_messages") == 5.0
    assert value(metrics, "scissor_mqtt_messages_total", outcome="sent") == 9.0
    assert value(metrics, "scissor_cameras") == 1.0


def test_a_failing_snapshot_source_keeps_event_metrics_and_counts_the_failure(metrics: Metrics) -> None:
    def broken() -> ServiceScrape:
        raise RuntimeError("store went away")

    metrics.encoded("lobby", 1, 0.05)
    metrics.set_scrape_source(broken)
    body, _ = metrics.render()
    assert b'scissor_frames_encoded_total{camera="lobby"} 1.0' in body
    assert value(metrics, "scissor_metrics_snapshot_failures_total") == 2.0  # render + get_sample_value


def test_camera_snapshot_reads_a_real_source_stats_and_token_memory() -> None:
    stats = SourceStats(frames_decoded=50, frames_sampled=8, drops={"consumer_behind": 1}, reconnects=1)
    memory = TokenMemory(dim=16)
    generator = torch.Generator().manual_seed(0)
    for i in range(3):
        memory.add_frame(torch.randn(10, 16, generator=generator), t=float(i), frame_index=i)
    snap = CameraScrape.from_parts("lobby", "up", stats, memory)
    assert (snap.up, snap.frames_decoded, snap.frames_sampled, snap.drops) == (
        True,
        50,
        8,
        {"consumer_behind": 1},
    )
    assert snap.memory_tokens_in == 30 and snap.memory_entries == len(memory) > 0
    assert CameraScrape.from_parts("lobby", "online", stats, memory).up  # the API's word for it
    assert not CameraScrape.from_parts("lobby", "connecting", stats, memory).up
    assert not CameraScrape.from_parts("lobby", "offline", stats, memory).up


def test_fully_fed_exposition_passes_promtool_and_names_carry_prefix_and_units(metrics: Metrics) -> None:
    metrics.watch_camera("lobby")
    metrics.watch_rule("lobby", "novelty")
    metrics.set_backend("tiny", "cpu", 64)
    metrics.set_scrape_source(lambda: snapshot_source({"decoded": 1}))
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    done = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()
    units = (
        "_seconds",
        "_ratio",
        "_tokens",
        "_total",
        "_info",
        "_messages",
        "_entries",
        "_fps",
        "_up",
        "_connected",
        "_cameras",
    )
    for family in text_string_to_metric_families(body.decode()):
        assert family.name.startswith("scissor_"), family.name
        if family.name.endswith(
            "_created"
        ):  # prometheus_client's creation-time gauges of counters and histograms
            continue
        name = family.name + ("_total" if family.type == "counter" else "")
        assert name.endswith(units) or family.name == "scissor_cameras", name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
