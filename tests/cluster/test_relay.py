"""What a camera actor relays to the ingress (no Ray needed): records and metric events read from a cursor,
sent again when a report is lost, never twice, replayed into the ingress's metrics."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from agent.cluster.relay import RecordingMetrics, RecordTap, Relay, replay
from agent.outputs.events import EventBus
from agent.outputs.metrics import Metrics
from agent.outputs.scrape import MetricLabelError
from agent.records import Event


def test_a_relay_resends_what_a_lost_report_carried_and_drops_what_the_reader_has() -> None:
    relay: Relay[str] = Relay(maxlen=3)
    relay.push("a")
    relay.push("b")
    first = relay.since(0)
    assert first.items == ["a", "b"] and first.cursor == 2
    assert relay.since(0).items == ["a", "b"]  # that report was lost: the reader asks from 0 again
    relay.push("c")
    second = relay.since(first.cursor)
    assert second.items == ["c"] and second.cursor == 3  # the reader has a and b
    assert relay.since(second.cursor).items == []  # ... and now c
    for item in "def":
        relay.push(item)
    assert relay.since(3).items == ["d", "e", "f"] and relay.lost == 0
    relay.push("g")  # the reader is away: d, the oldest, goes
    assert relay.since(3).items == ["e", "f", "g"] and relay.lost == 1


def _sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_metric_events_replayed_at_the_ingress_count_as_they_did_in_the_actor() -> None:
    actor = RecordingMetrics()
    actor.watch_camera("cam1")
    actor.encoded("cam1", 1, 0.25)
    actor.encoded("cam1", 1, 0.5)
    actor.memory_updated("cam1", novelty=0.4, tokens_kept=3, update_seconds=0.02, scc_seconds=None)
    actor.alert("cam1", "r1", "sent")
    with pytest.raises(MetricLabelError):
        actor.alert("cam1", "r1", "exploded")  # refused in the actor: not relayed either
    ingress = Metrics(CollectorRegistry())
    batch = actor.calls.since(0)
    replay(ingress, batch.items)
    for name, labels in [
        ("scissor_encode_seconds_count", {"camera": "cam1"}),
        ("scissor_encode_seconds_sum", {"camera": "cam1"}),
        ("scissor_memory_update_seconds_count", {"camera": "cam1"}),
        ("scissor_tokens_kept_total", {"camera": "cam1"}),
        ("scissor_alerts_total", {"camera": "cam1", "rule": "r1", "outcome": "sent"}),
    ]:
        assert _sample(ingress, name, **labels) == _sample(actor, name, **labels), name
    assert _sample(ingress, "scissor_encode_seconds_count", camera="cam1") == 2.0
    replay(ingress, actor.calls.since(batch.cursor).items)  # the next report: nothing new
    assert _sample(ingress, "scissor_encode_seconds_count", camera="cam1") == 2.0


async def test_a_tap_keeps_records_across_a_restarted_service_s_bus() -> None:
    first = EventBus()
    tap = RecordTap(first)
    first.publish(Event(kind="novelty", camera="cam1", message="scene changed"))
    second = EventBus()  # the actor's service stopped and started again
    tap.follow(second)
    second.publish(Event(kind="novelty", camera="cam1", message="scene changed again"))
    first.publish(Event(kind="novelty", camera="cam1", message="from the stopped service"))
    batch = tap.since(0)
    assert [r.message for r in batch.items] == ["scene changed", "scene changed again"]  # type: ignore[attr-defined]
    assert tap.since(batch.cursor).items == []
