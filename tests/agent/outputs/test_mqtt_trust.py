"""What other broker clients can do to the publisher, against a real mosquitto: a second instance with default
settings, a forged retained availability, a camera removed while the broker was down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiomqtt

from agent.outputs.mqtt import MqttPublisher
from agent.records import CameraStatus
from agent.settings import Settings
from agent.state.store import MemoryStore, Store
from harness.servers import MosquittoServer


async def wait(ok: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not ok():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None


@asynccontextmanager
async def running(
    broker: MosquittoServer, root: str, store: Store | None = None, **mqtt: object
) -> AsyncIterator[MqttPublisher]:
    """A publisher built the way the service builds it: from settings (client id left at its default)."""
    settings = Settings(mqtt_url=broker.url, mqtt={"topic_root": root, "backoff_max_s": 0.3, **mqtt})
    pub = MqttPublisher.from_settings(settings, store=store or MemoryStore())
    await pub.start()
    try:
        yield pub
    finally:
        await pub.stop()


async def retained(broker: MosquittoServer, topic: str, wait_s: float = 1.0) -> bytes | None:
    """The retained payload a fresh subscriber gets on `topic` (None when the broker holds none)."""
    async with aiomqtt.Client(broker.host, broker.port, timeout=5) as sub:
        await sub.subscribe(topic, qos=1)
        try:
            async with asyncio.timeout(wait_s):
                async for message in sub.messages:
                    return bytes(message.payload)
        except TimeoutError:
            return None
    return None


def status(camera_id: str) -> CameraStatus:
    return CameraStatus(id=camera_id, url="rtsp://cam.lan/s", state="online")


async def test_two_instances_with_default_settings_do_not_kick_each_other_off(
    mosquitto_server: MosquittoServer, prefix: str
) -> None:
    async with running(mosquitto_server, prefix) as one, running(mosquitto_server, prefix) as two:
        assert one.client_id != two.client_id and one.client_id.startswith("scissor-")
        await wait(lambda: one.connected and two.connected, what="both to connect")
        await asyncio.sleep(3.0)  # a broker takes over a duplicate id at once: both would flip within this
        assert one.connected and two.connected
        assert (one.stats.reconnects, two.stats.reconnects) == (0, 0)


async def test_an_explicit_client_id_is_kept(mosquitto_server: MosquittoServer, prefix: str) -> None:
    async with running(mosquitto_server, prefix, client_id=f"{prefix}-gw") as pub:
        assert pub.client_id == f"{prefix}-gw"
        await wait(lambda: pub.connected, what="the publisher to connect")


async def test_a_foreign_retained_availability_is_put_back_to_online(
    mosquitto_server: MosquittoServer, prefix: str
) -> None:
    topic = f"{prefix}/availability"
    async with running(mosquitto_server, prefix) as pub:
        await wait(lambda: pub.connected, what="the publisher to connect")
        assert await retained(mosquitto_server, topic) == b"online"
        for forged in (b"offline", b"", b"maintenance"):  # a forged value, a cleared topic, anything else
            seen = pub.stats.availability_reasserted
            async with aiomqtt.Client(mosquitto_server.host, mosquitto_server.port) as intruder:
                await intruder.publish(topic, forged, qos=1, retain=True)
            await wait(lambda s=seen: pub.stats.availability_reasserted > s, what="the correction")  # type: ignore[misc]
            assert await retained(mosquitto_server, topic) == b"online", forged
    assert await retained(mosquitto_server, topic) == b"offline", "a clean stop still says offline"


async def test_a_camera_removed_while_connected_leaves_no_retained_status(
    mosquitto_server: MosquittoServer, prefix: str
) -> None:
    async with running(mosquitto_server, prefix) as pub:
        await wait(lambda: pub.connected, what="the publisher to connect")
        await pub.set_status(status("door"))
        assert await retained(mosquitto_server, f"{prefix}/door/status") is not None
        await pub.clear_status("door")
        assert await retained(mosquitto_server, f"{prefix}/door/status") is None
        assert await pub.store.retained_clears() == []


async def test_a_camera_removed_during_a_broker_outage_is_cleared_when_the_broker_returns(
    prefix: str,
) -> None:
    store = MemoryStore()
    with MosquittoServer(persistent=True) as broker:  # retained messages survive the broker's restart
        async with running(broker, prefix, store=store) as pub:
            await wait(lambda: pub.connected, what="the publisher to connect")
            await pub.set_status(status("door"))
            await pub.set_status(status("yard"))
            await asyncio.sleep(1.5)  # the broker saves its retained messages every second
            broker.kill()
            await wait(lambda: not pub.connected, what="the publisher to notice the outage")
            await pub.clear_status("door")
            assert await store.retained_clears() == ["door"], "the clear waits for the broker"
            broker.start()
            await wait(lambda: pub.connected, what="the publisher to reconnect")
            await wait(lambda: not store.maps["retained_clear"], what="the pending clear to be sent")
            assert await retained(broker, f"{prefix}/door/status") is None, (
                "the removed camera's status stays"
            )
            assert await retained(broker, f"{prefix}/yard/status") is not None, "the other camera's is kept"


async def test_a_clear_pending_in_the_store_is_sent_by_the_next_process(prefix: str) -> None:
    store = MemoryStore()  # what a restarted process finds in Redis (or the write-ahead file)
    with MosquittoServer(persistent=True) as broker:
        async with running(broker, prefix, store=store) as pub:
            await wait(lambda: pub.connected, what="the publisher to connect")
            await pub.set_status(status("door"))
            await asyncio.sleep(1.5)
            broker.kill()
            await wait(lambda: not pub.connected, what="the publisher to notice the outage")
            await pub.clear_status("door")
        broker.start()
        async with running(broker, prefix, store=store) as again:
            await wait(lambda: again.connected and not store.maps["retained_clear"], what="the clear")
            assert await retained(broker, f"{prefix}/door/status") is None
