"""The MQTT publisher against a real mosquitto: topics, payloads, QoS, retained status, last will, outages."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

import aiomqtt
import pytest

from agent.outputs.mqtt import MqttPublisher
from agent.records import Alert, CameraStatus, Event
from agent.state.store import MemoryStore
from harness.servers import MosquittoServer


class Subscriber:
    """A real MQTT subscriber that reconnects by itself and records every message it receives."""

    def __init__(self, server: MosquittoServer, topic: str, identifier: str | None = None) -> None:
        self.server, self.topic, self.identifier = server, topic, identifier
        self.messages: list[aiomqtt.Message] = []
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.server.host,
                    self.server.port,
                    identifier=self.identifier,
                    clean_session=False if self.identifier else None,
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        self.messages.append(message)
            except aiomqtt.MqttError:
                self.subscribed.clear()
                await asyncio.sleep(0.1)

    def on(self, suffix: str) -> list[aiomqtt.Message]:
        return [m for m in self.messages if m.topic.value.endswith(suffix)]

    async def wait(self, ok: Callable[[], bool], timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not ok():
                await asyncio.sleep(0.02)


@asynccontextmanager
async def subscribed(
    server: MosquittoServer, topic: str, identifier: str | None = None
) -> AsyncIterator[Subscriber]:
    sub = Subscriber(server, topic, identifier)
    task = asyncio.create_task(sub.run())
    await asyncio.wait_for(sub.subscribed.wait(), 5)
    try:
        yield sub
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


@asynccontextmanager
async def publisher(server: MosquittoServer, root: str, **kw: object) -> AsyncIterator[MqttPublisher]:
    options: dict[str, object] = {
        "store": MemoryStore(),
        "topic_root": root,
        "client_id": root,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.3,
        **kw,
    }
    pub = MqttPublisher(server.url, **options)  # type: ignore[arg-type]
    await pub.start()
    try:
        yield pub
    finally:
        await pub.stop()


def alert(i: int, rule: str = "r1") -> Alert:
    return Alert(camera="cam1", rule=rule, kind="label", score=0.9, label="cat", stream_s=float(i))


async def test_an_alert_arrives_on_its_topic_as_json_with_qos_1(
    mosquitto_server: MosquittoServer, prefix: str
) -> None:
    delivered: list[tuple[Alert, float]] = []
    async with (
        subscribed(mosquitto_server, f"{prefix}/#") as sub,
        publisher(mosquitto_server, prefix, on_delivered=lambda a, t: delivered.append((a, t))) as pub,
    ):
        sent = alert(1)
        await pub.enqueue_alert(sent)
        await sub.wait(lambda: bool(sub.on("/alerts/r1")))
        [message] = sub.on("/alerts/r1")
        assert message.topic.value == f"{prefix}/cam1/alerts/r1" and message.qos == 1
        assert Alert.model_validate_json(message.payload) == sent, "the alert itself, as JSON"
        payload = json.loads(message.payload)
        assert {k: payload[k] for k in ("id", "camera", "rule", "kind", "label")} == {
            "id": sent.id,
            "camera": "cam1",
            "rule": "r1",
            "kind": "label",
            "label": "cat",
        }
        await sub.wait(lambda: bool(delivered))
        assert delivered[0][0].id == sent.id and pub.stats.sent == 1
        assert await pub.store.outbox_len() == 0


async def test_a_rule_topic_replaces_the_rule_id_in_the_alert_topic(
    mosquitto_server: MosquittoServer, prefix: str
) -> None:
    async with subscribed(mosquitto_server, f"{prefix}/#") as sub, publisher(mosquitto_server, prefix) as pub:
        sent = alert(1).model_copy(update={"topic": "doors/front"})
        await pub.enqueue_alert(sent)
        await sub.wait(lambda: bool(sub.on("/alerts/doors/front")))
        alerts = [m for m in sub.messages if "/alerts/" in m.topic.value]
        assert [m.topic.value for m in alerts] == [f"{prefix}/cam1/alerts/doors/front"], (
            "not under the rule id"
        )
        assert json.loads(alerts[0].payload)["id"] == sent.id


async def test_availability_and_camera_status_are_retained_for_later_subscribers(
    mosquitto_server: MosquittoServer, prefix: str
) -> None:
    async with publisher(mosquitto_server, prefix) as pub:
        await Subscriber(mosquitto_server, "x").wait(lambda: pub.connected)
        await pub.set_status(CameraStatus(id="cam1", url="rtsp://u:***@h/s", state="online"))
        async with subscribed(mosquitto_server, f"{prefix}/#") as late:
            await late.wait(lambda: bool(late.on("/availability")) and bool(late.on("/cam1/status")))
            assert late.on("/availability")[0].payload == b"online" and late.on("/availability")[0].retain
            assert json.loads(late.on("/cam1/status")[0].payload)["state"] == "online"
        await pub.clear_status("cam1")
    async with subscribed(mosquitto_server, f"{prefix}/#") as after_stop:
        await after_stop.wait(lambda: bool(after_stop.on("/availability")))
        await asyncio.sleep(0.2)
        assert after_stop.on("/availability")[-1].payload == b"offline"  # stop() published it
        assert after_stop.on("/cam1/status") == []  # the retained status was cleared


async def test_events_go_to_the_camera_events_topic(mosquitto_server: MosquittoServer, prefix: str) -> None:
    async with subscribed(mosquitto_server, f"{prefix}/#") as sub, publisher(mosquitto_server, prefix) as pub:
        await sub.wait(lambda: pub.connected)
        event = Event(kind="stream_up", camera="cam1", message="online")
        await pub.publish_event(event)
        await sub.wait(lambda: bool(sub.on("/cam1/events")))
        [message] = sub.on("/cam1/events")
        assert message.topic.value == f"{prefix}/cam1/events" and message.qos == 0 and not message.retain
        assert Event.model_validate_json(message.payload) == event


async def test_a_broker_outage_loses_no_alert_and_each_arrives_once_in_order(prefix: str) -> None:
    with MosquittoServer(persistent=True) as server:
        async with (
            subscribed(server, f"{prefix}/+/alerts/#", identifier=f"{prefix}-sub") as sub,
            publisher(server, prefix) as pub,
        ):
            await sub.wait(lambda: pub.connected)
            await pub.enqueue_alert(alert(0))
            await sub.wait(lambda: len(sub.messages) == 1)
            # SIGTERM, not SIGKILL: mosquitto saves the subscriber's persistent session on exit, so the test
            # observes the publisher's outbox, not the broker's autosave timing under load.
            server.stop()
            await sub.wait(lambda: not pub.connected)
            queued = [alert(i) for i in range(1, 31)]
            for a in queued:
                await pub.enqueue_alert(a)
            assert await pub.store.outbox_len() == 30 and pub.stats.sent == 1
            server.start()
            await sub.wait(lambda: len({m.payload for m in sub.messages}) == 31, timeout_s=20)
            ids = [json.loads(m.payload)["id"] for m in sub.messages]
            assert ids[1:] == [a.id for a in queued]  # all of them, once each, in order
            assert pub.stats.sent == 31 and pub.stats.reconnects >= 1 and await pub.store.outbox_len() == 0


async def test_past_the_outbox_bound_the_oldest_alerts_are_dropped_and_reported(prefix: str) -> None:
    dropped: list[str] = []
    with MosquittoServer(persistent=True) as server:
        # A persistent subscriber session first, saved by a clean broker stop: whichever of publisher and
        # subscriber reconnects first after the outage, the subscriber receives what was delivered.
        async with subscribed(server, f"{prefix}/#", identifier=f"{prefix}-sub") as sub:
            server.stop()
            store = MemoryStore(outbox_max=3)
            async with publisher(server, prefix, store=store, on_dropped=dropped.append) as pub:
                alerts = [alert(i) for i in range(5)]
                for a in alerts:
                    await pub.enqueue_alert(a)
                assert dropped == [alerts[0].id, alerts[1].id] and pub.stats.dropped == 2
                server.start()
                await sub.wait(lambda: len(sub.on("/alerts/r1")) == 3, timeout_s=20)
                got = [json.loads(m.payload)["id"] for m in sub.on("/alerts/r1")]
                assert got == [a.id for a in alerts[2:]]


async def test_the_last_will_marks_the_service_offline_when_its_process_dies(
    mosquitto_server: MosquittoServer, prefix: str
) -> None:
    script = textwrap.dedent(f"""
        import asyncio
        from agent.outputs.mqtt import MqttPublisher
        from agent.state.store import MemoryStore
        async def main():
            pub = MqttPublisher(
                {mosquitto_server.url!r}, store=MemoryStore(), topic_root={prefix!r}, client_id="dies"
            )
            await pub.start()
            await asyncio.sleep(60)
        asyncio.run(main())
    """)
    async with subscribed(mosquitto_server, f"{prefix}/availability") as sub:
        proc = subprocess.Popen([sys.executable, "-c", script])  # a child process that must die
        try:
            await sub.wait(lambda: [m.payload for m in sub.messages] == [b"online"], timeout_s=20)
        finally:
            proc.kill()
            proc.wait()
        await sub.wait(lambda: [m.payload for m in sub.messages] == [b"online", b"offline"])


async def test_broker_credentials_are_used_and_never_logged(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with MosquittoServer(username="alice", password="s3cret-pass") as server:
        async with publisher(server, prefix) as good:
            await Subscriber(server, "x").wait(lambda: good.connected)
        wrong = server.url.replace("s3cret-pass", "wrong-pass")
        store = MemoryStore()
        pub = MqttPublisher(wrong, store=store, topic_root=prefix, backoff_initial_s=0.05, backoff_max_s=0.1)
        await pub.start()
        await Subscriber(server, "x").wait(lambda: pub.stats.failed >= 2)
        assert not pub.connected
        await pub.stop()
    assert "s3cret-pass" not in caplog.text and "wrong-pass" not in caplog.text
    assert "alice" not in pub.safe_url and "mqtt broker" in caplog.text
