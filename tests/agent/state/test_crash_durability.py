"""`scissor serve` as a real process, SIGKILLed while Redis (and the broker) are down: what the API answered
2xx, and the alerts it queued, are there after the restart."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import aiomqtt
import httpx
import redis

from agent.demo import sample_video
from harness.ports import free_port
from harness.rtsp import RtspServer
from harness.serve import ServeProcess
from harness.servers import MosquittoServer, RedisServer

# Novelty >= 0 holds on every frame; with no cooldown and repeat_s under the frame period, every frame alerts.
FIRE_ON_EVERY_FRAME = {"kind": "novelty", "params": {"threshold": 0.0}, "cooldown_s": 0, "repeat_s": 0.1}


def wait_for(check: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


def serve_env(redis_server: RedisServer, **extra: str) -> dict[str, str]:
    return {
        "SCISSOR_BACKEND": "embedded",
        "SCISSOR_DEVICE": "cpu",
        "SCISSOR_REDIS_URL": redis_server.url,
        "SCISSOR_PORT": str(free_port()),
        "SCISSOR_REDIS__SOCKET_TIMEOUT_S": "0.5",
        "SCISSOR_STATE__SYNC_RETRY_S": "0.3",
        **extra,
    }


def metric(api: httpx.Client, name: str) -> float:
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_camera_added_while_redis_is_down_survives_a_sigkill(
    tmp_path: Path, redis_server: RedisServer, state_dir: Path
) -> None:
    env = serve_env(redis_server)
    first = ServeProcess(env, tmp_path / "first.log").start()
    with first.client(timeout_s=30) as api:
        wait_for(lambda: api.get("/readyz").status_code == 200, 20, "Redis to be reached")
        redis_server.kill()
        url = f"rtsp://127.0.0.1:{free_port()}/door"
        added = api.post("/cameras", json={"id": "door", "url": url, "fps": 1})
        assert added.status_code == 201, added.text
        assert api.get("/readyz").json()["checks"]["state"]["ok"] is False, "the write went nowhere but disk"
    first.kill()

    redis_server.start()  # restarted empty: the camera exists only where the service wrote it down
    second = ServeProcess(env, tmp_path / "second.log").start()
    try:
        with second.client(timeout_s=30) as api:
            assert [c["id"] for c in api.get("/cameras").json()] == ["door"]
        direct = redis.Redis.from_url(redis_server.url)
        wait_for(lambda: direct.hexists("scissor:camera", "door"), 20, "the camera to be written to Redis")
        direct.close()
        wait_for(lambda: (state_dir / "scissor.wal").stat().st_size == 0, 10, "the write-ahead file to empty")
    finally:
        second.stop()


class Collector:
    """A real MQTT subscriber to every alert, in the background, reconnecting while the broker is down."""

    def __init__(self, broker: MosquittoServer) -> None:
        self.broker, self.alerts = broker, list[dict[str, object]]()
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(self.broker.host, self.broker.port) as client:
                    await client.subscribe("scissor/+/alerts/#", qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        self.alerts.append(json.loads(bytes(message.payload)))
            except aiomqtt.MqttError:
                self.subscribed.clear()
                await asyncio.sleep(0.2)


def test_alerts_queued_while_redis_and_the_broker_are_down_survive_a_sigkill_and_arrive_once(
    tmp_path: Path, redis_server: RedisServer, mosquitto_server: MosquittoServer
) -> None:
    camera = RtspServer().start(sample_video("carphone_pristine.mp4"))
    env = serve_env(redis_server, SCISSOR_MQTT_URL=mosquitto_server.url, SCISSOR_MQTT__BACKOFF_MAX_S="0.5")
    first = ServeProcess(env, tmp_path / "first.log").start()
    try:
        with first.client(timeout_s=30) as api:
            wait_for(lambda: api.get("/readyz").status_code == 200, 20, "Redis and the broker")
            assert api.post("/cameras", json={"id": "gate", "url": camera.url, "fps": 4}).status_code == 201
            assert api.post("/rules", json={"camera_id": "gate", **FIRE_ON_EVERY_FRAME}).status_code == 201
            wait_for(lambda: metric(api, "scissor_alerts_total") > 0, 60, "the rule to fire")
            redis_server.kill()
            mosquitto_server.kill()
            wait_for(lambda: metric(api, "scissor_alert_outbox_messages") >= 19, 60, "19 alerts queued")
            queued = metric(api, "scissor_alert_outbox_messages")
            killed_at = time.time()
        first.kill()
    finally:
        camera.stop()  # no new alerts after the restart: only the queued ones can arrive

    async def after_restart() -> list[dict[str, object]]:
        collector = Collector(mosquitto_server)
        task = asyncio.create_task(collector.run())
        try:
            mosquitto_server.start()
            await asyncio.wait_for(collector.subscribed.wait(), 10)
            redis_server.start()  # restarted empty
            second = await asyncio.to_thread(ServeProcess(env, tmp_path / "second.log").start)
            try:
                async with asyncio.timeout(60):
                    while len(queued_before(collector.alerts, killed_at)) < queued:
                        await asyncio.sleep(0.2)
                await asyncio.sleep(1.0)  # a duplicate would arrive right behind
            finally:
                await asyncio.to_thread(second.stop)
            return collector.alerts
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    delivered = queued_before(asyncio.run(after_restart()), killed_at)
    ids = [a["id"] for a in delivered]
    assert len(ids) >= queued >= 19
    assert len(set(ids)) == len(ids), "each queued alert arrives once, under its own id"


def queued_before(alerts: list[dict[str, object]], t: float) -> list[dict[str, object]]:
    """The alerts that fired before wall time `t` (the kill)."""
    return [a for a in alerts if datetime.fromisoformat(str(a["time"])).timestamp() < t]
