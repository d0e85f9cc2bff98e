"""The dispatcher: every record reaches the event bus; alert outcomes are counted and reach the rule runner
that owns the camera; without a broker an alert counts as delivered at once."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from agent.outputs.dispatch import Dispatcher
from agent.outputs.events import EventBus
from agent.outputs.metrics import Metrics
from agent.records import Alert, CameraStatus, Event


def alert(i: int, camera: str = "cam1", rule: str = "r1") -> Alert:
    return Alert(camera=camera, rule=rule, kind="label", score=0.9, label="cat", stream_s=float(i))


class Owner:
    """Records what the dispatcher tells a camera's rule runner."""

    def __init__(self) -> None:
        self.delivered_ids: list[str] = []
        self.dropped_ids: list[tuple[str, str]] = []

    def delivered(self, alert: Alert, t: float) -> None:
        self.delivered_ids.append(alert.id)

    def dropped(self, rule_id: str, alert_id: str) -> None:
        self.dropped_ids.append((rule_id, alert_id))


def outcomes(metrics: Metrics, outcome: str, camera: str = "cam1", rule: str = "r1") -> float | None:
    labels = {"camera": camera, "rule": rule, "outcome": outcome}
    return metrics.registry.get_sample_value("scissor_alerts_total", labels)


async def test_without_a_broker_an_alert_reaches_the_bus_and_its_owner_hears_it_was_delivered() -> None:
    bus, metrics, owner = EventBus(), Metrics(CollectorRegistry()), Owner()
    sub = bus.subscribe()
    dispatcher = Dispatcher(bus=bus, metrics=metrics)
    dispatcher.own("cam1", owner)
    sent = alert(1)
    await dispatcher.alert(sent)
    assert await sub.get(1) == sent
    assert owner.delivered_ids == [sent.id] and dispatcher.stats.sent == 1 and dispatcher.ready
    assert outcomes(metrics, "queued") == 1.0 and outcomes(metrics, "sent") == 1.0


async def test_events_and_statuses_reach_the_bus_in_order() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    dispatcher = Dispatcher(bus=bus, metrics=Metrics(CollectorRegistry()))
    event = Event(kind="stream_up", camera="cam1")
    status = CameraStatus(id="cam1", url="rtsp://h/s", state="online")
    await dispatcher.event(event)
    await dispatcher.status(status)
    assert [await sub.get(1), await sub.get(1)] == [event, status]


def test_a_dropped_alert_is_counted_and_told_to_the_owner_of_its_camera_only() -> None:
    metrics, owner, other = Metrics(CollectorRegistry()), Owner(), Owner()
    dispatcher = Dispatcher(bus=EventBus(), metrics=metrics)
    dispatcher.own("cam1", owner)
    dispatcher.own("cam2", other)
    lost = alert(1)
    dispatcher._pending[lost.id] = (lost.camera, lost.rule)  # as `alert()` leaves it while MQTT is down
    dispatcher.dropped(lost.id)
    dispatcher.dropped("an-id-it-never-sent")
    assert owner.dropped_ids == [("r1", lost.id)] and other.dropped_ids == []
    assert outcomes(metrics, "dropped") == 1.0


def test_a_disowned_camera_hears_nothing_but_its_alerts_are_still_counted() -> None:
    metrics, owner = Metrics(CollectorRegistry()), Owner()
    dispatcher = Dispatcher(bus=EventBus(), metrics=metrics)
    dispatcher.own("cam1", owner)
    dispatcher.disown("cam1")
    dispatcher.delivered(alert(1), 0.0)
    assert owner.delivered_ids == [] and outcomes(metrics, "sent") == 1.0


async def test_the_alert_log_line_names_an_unnamed_rule_by_its_kind_and_condition(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher = Dispatcher(bus=EventBus(), metrics=Metrics(CollectorRegistry()))
    rule_id = "9f" * 16
    titled = alert(1, rule=rule_id).model_copy(update={"rule_title": "label:cat"})
    with caplog.at_level(logging.INFO, logger="agent.outputs.dispatch"):
        await dispatcher.alert(titled)
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("alert ")]
    assert f"rule='label:cat' (id {rule_id})" in line, line
