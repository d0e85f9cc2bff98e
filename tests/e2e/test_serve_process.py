"""`scissor serve` as a real process: RTSP camera -> memory -> answer; alert over real MQTT; SIGKILL and
restart."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import httpx
import pytest

from agent.demo import sample_video
from harness.ports import free_port
from harness.rtsp import RtspServer
from harness.serve import ServeProcess
from harness.servers import MosquittoServer, RedisServer

CAMERA_PASSWORD = "pa55-w0rd-never-logged"


def wait_for(predicate, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[RedisServer, MosquittoServer, RtspServer]]:
    with RedisServer() as redis, MosquittoServer() as broker:
        camera = RtspServer().start(sample_video("bikes.mp4"))
        try:
            yield redis, broker, camera
        finally:
            camera.stop()


async def _collect_alerts(
    broker_url: str, topic: str, found: list[dict[str, object]], stop: asyncio.Event
) -> None:
    host, port = broker_url.removeprefix("mqtt://").rsplit(":", 1)
    async with aiomqtt.Client(host, int(port)) as client:
        await client.subscribe(topic, qos=1)
        async for message in client.messages:
            found.append({**json.loads(message.payload), "mqtt_topic": message.topic.value})
            if stop.is_set():
                return


def test_serve_answers_alerts_over_mqtt_and_survives_sigkill(services, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    redis, broker, camera = services
    env = {
        "SCISSOR_BACKEND": "embedded",
        "SCISSOR_DEVICE": "cpu",
        "SCISSOR_REDIS_URL": redis.url,
        "SCISSOR_MQTT_URL": broker.url,
        "SCISSOR_PORT": str(free_port()),
        "SCISSOR_STATE__SNAPSHOT_INTERVAL_S": "2",
    }
    server = ServeProcess(env, tmp_path / "serve.log").start()
    alerts: list[dict[str, object]] = []

    async def scenario() -> None:
        stop = asyncio.Event()
        listener = asyncio.create_task(_collect_alerts(broker.url, "scissor/+/alerts/#", alerts, stop))
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as api:
            rtsp_url = camera.url.replace("rtsp://", f"rtsp://viewer:{CAMERA_PASSWORD}@")
            r = await api.post("/cameras", json={"id": "gate", "url": rtsp_url, "fps": 2})
            assert r.status_code == 201, r.text
            assert CAMERA_PASSWORD not in r.text
            rule = await api.post(
                "/rules",
                json={
                    "camera_id": "gate",
                    "kind": "label",
                    "cooldown_s": 3600,
                    "params": {"label": "bicycle", "min_score": 0.3},
                },
            )
            assert rule.status_code == 201, rule.text
            for _ in range(240):
                if alerts and (await api.get("/cameras/gate")).json()["memory_entries"] > 0:
                    break
                await asyncio.sleep(0.25)
            answer = await api.post("/cameras/gate/ask", json={"question": "what did you see?"})
            assert answer.status_code == 200, answer.text
            assert answer.json()["evidence"]
        stop.set()
        listener.cancel()

    asyncio.run(scenario())
    assert alerts, "a label alert reached a real MQTT subscriber"
    first = alerts[0]
    assert (
        first["camera"] == "gate"
        and first["kind"] == "label"
        and first["label"] == "bicycle"
        and str(first["mqtt_topic"]).startswith("scissor/gate/alerts/")
    )
    assert len({a["id"] for a in alerts}) == len(alerts)

    time.sleep(2.5)  # one periodic memory snapshot lands in Redis
    server.kill()
    server = ServeProcess(env, tmp_path / "serve.log").start()
    try:
        status = httpx.get(f"{server.url}/cameras/gate", timeout=10)
        assert status.status_code == 200, status.text
        assert status.json()["memory_entries"] > 0, "memory came back from the Redis snapshot"
        rules = httpx.get(f"{server.url}/rules", timeout=10).json()
        assert [r["kind"] for r in rules] == ["label"]
        earlier = httpx.post(
            f"{server.url}/cameras/gate/ask",
            json={"question": "what did you see?", "from": 0, "to": 5},
            timeout=60,
        )
        assert earlier.status_code == 200, earlier.text
        assert earlier.json()["tokens_used"] > 0, "minutes before the restart are still answered"
    finally:
        server.stop()
    assert CAMERA_PASSWORD not in server.log(), "the camera password leaked into the service log"
