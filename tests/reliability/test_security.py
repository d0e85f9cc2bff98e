"""Security: the bearer token guards every route but /healthz; no password ever leaves in logs, metrics, MQTT
or API."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import httpx

from harness.ports import free_port
from harness.rtsp import RtspServer
from harness.serve import ServeProcess
from harness.servers import MosquittoServer, RedisServer

TOKEN = "tok-7f3a9c1e5b2d4f6a8e0c"
CAMERA_PASSWORD = "cam-pw-9d8c7b6a"
REDIS_PASSWORD = "redis-pw-5e4d3c2b"
MQTT_PASSWORD = "mqtt-pw-1a2b3c4d"
SECRETS = (CAMERA_PASSWORD, REDIS_PASSWORD, MQTT_PASSWORD, TOKEN)


async def collect_mqtt(broker: MosquittoServer, into: list[bytes], stop: asyncio.Event) -> None:
    """Every payload and topic on the broker, as the broker's own user sees them."""
    async with aiomqtt.Client(
        broker.host, broker.port, username="scissor", password=MQTT_PASSWORD, identifier="auditor"
    ) as client:
        await client.subscribe("#", qos=1)
        async for message in client.messages:
            into.append(message.topic.value.encode() + b" " + bytes(message.payload))
            if stop.is_set():
                return


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "gate", path)


async def exercise(server: ServeProcess, camera: RtspServer, responses: list[str]) -> None:
    """Everything a user does in a session: add cameras (one with a wrong password), rules, ask, read it
    all."""
    async with server.async_client() as api:

        async def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
            r = await api.request(method, path, **kwargs)
            responses.append(f"{method} {path} {r.status_code} {dict(r.headers)} {r.text}")
            return r

        good = camera.url_with("viewer", CAMERA_PASSWORD)
        assert (await call("POST", "/cameras", json={"id": "gate", "url": good, "fps": 2})).status_code == 201
        wrong = camera.url_with("viewer", CAMERA_PASSWORD + "-wrong")
        await call("POST", "/cameras", json={"id": "typo", "url": wrong, "fps": 2})
        await call("POST", "/cameras", json={"id": "gate", "url": good})  # 409 names the camera, not its URL
        await call("POST", "/cameras", json={"id": "bad", "url": good.replace("rtsp", "ftp")})  # 422
        rule = {"camera_id": "gate", "kind": "novelty", "params": {"threshold": 0.05}, "cooldown_s": 0}
        await call("POST", "/rules", json=rule)
        for _ in range(120):
            if (await call("GET", "/cameras/gate")).json()["memory_entries"] > 0:
                break
            await asyncio.sleep(0.5)
        await call("PATCH", "/cameras/gate", json={"fps": 1})
        for _ in range(60):
            if (await call("GET", "/cameras/gate")).json()["state"] == "online":
                break
            await asyncio.sleep(0.5)
        await call("POST", "/cameras/gate/ask", json={"question": "what did you see?", "session_id": "s1"})
        await call("POST", "/ask", json={"question": "anything?", "cameras": ["gate", "typo"]})
        schema = (await call("GET", "/openapi.json")).json()
        for path, ops in schema["paths"].items():
            if "get" in ops and path != "/events":
                await call("GET", concrete(path))
        for path in ("/metrics", "/readyz", "/cameras/typo", "/docs"):
            await call("GET", path)
        async with api.stream("GET", "/events") as events:
            text = ""
            async for chunk in events.aiter_text():
                text += chunk
                if "event:" in text:
                    break
            responses.append(text)


def test_no_password_or_token_appears_in_logs_metrics_mqtt_payloads_or_api_responses(tmp_path: Path) -> None:
    with (
        RedisServer(password=REDIS_PASSWORD) as redis,
        MosquittoServer(username="scissor", password=MQTT_PASSWORD) as broker,
        RtspServer(user="viewer", password=CAMERA_PASSWORD) as camera,
    ):
        from agent.demo import sample_video

        camera.start(sample_video("carphone_pristine.mp4"))
        env = {
            "SCISSOR_BACKEND": "embedded",
            "SCISSOR_DEVICE": "cpu",
            "SCISSOR_PORT": str(free_port()),
            "SCISSOR_LOG_LEVEL": "DEBUG",
            "SCISSOR_API_TOKEN": TOKEN,
            "SCISSOR_REDIS_URL": redis.url,
            "SCISSOR_MQTT_URL": f"mqtt://{broker.host}:{broker.port}",
            "SCISSOR_MQTT__USERNAME": "scissor",
            "SCISSOR_MQTT__PASSWORD": MQTT_PASSWORD,
            "SCISSOR_STATE__SNAPSHOT_INTERVAL_S": "1",
        }
        server = ServeProcess(env, tmp_path / "serve.log", token=TOKEN).start()
        payloads: list[bytes] = []
        responses: list[str] = []

        async def run() -> None:
            stop = asyncio.Event()
            listener = asyncio.create_task(collect_mqtt(broker, payloads, stop))
            await asyncio.sleep(0.5)
            await exercise(server, camera, responses)
            deadline = time.monotonic() + 30
            while not any(b"/alerts/" in p for p in payloads) and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
            stop.set()
            listener.cancel()

        try:
            asyncio.run(run())
            redis.kill()  # a Redis outage is logged: with its reason, never its URL's password
            time.sleep(2)
            with server.client() as api:
                responses.append(api.get("/readyz").text)
        finally:
            server.stop()
        log = server.log()

    assert any(b"/alerts/" in p for p in payloads), "an alert went over MQTT during the run"
    assert any(b"/status" in p for p in payloads) and len(responses) > 20
    assert "state store degraded" in log and "DEBUG" in log, "the run logged at DEBUG, outage included"
    for secret in SECRETS:
        assert secret not in log, f"{secret} in the service log"
        assert not [p for p in payloads if secret.encode() in p], f"{secret} in an MQTT payload"
        leaked = [r[:200] for r in responses if secret in r]
        assert not leaked, f"{secret} in an API response: {leaked}"


def test_every_route_but_healthz_refuses_a_missing_or_wrong_token(
    tmp_path: Path, rtsp_camera: Callable[..., RtspServer]
) -> None:
    env = {
        "SCISSOR_BACKEND": "embedded",
        "SCISSOR_DEVICE": "cpu",
        "SCISSOR_PORT": str(free_port()),
        "SCISSOR_API_TOKEN": TOKEN,
    }
    with ServeProcess(env, tmp_path / "serve.log", token=TOKEN) as server:
        with server.client() as api:
            assert api.post("/cameras", json={"id": "gate", "url": rtsp_camera().url}).status_code == 201
            schema = api.get("/openapi.json").json()
        routes = [(m.upper(), concrete(p)) for p, ops in schema["paths"].items() for m in ops]
        routes += [("GET", "/metrics"), ("GET", "/docs"), ("GET", "/openapi.json")]
        assert len(routes) >= 15
        for headers in (
            {},
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": "Bearer"},
            {"Authorization": TOKEN},
            {"X-Api-Token": TOKEN},
        ):
            with httpx.Client(base_url=server.url, headers=headers, timeout=30) as anonymous:
                for method, path in routes:
                    r = anonymous.request(method, path, json={})
                    if path == "/healthz":
                        assert r.status_code == 200
                        continue
                    assert r.status_code == 401, (headers, method, path, r.status_code, r.text[:200])
                    assert r.json()["error"] == "Unauthorized" and TOKEN not in r.text
        with server.client() as api:
            assert api.get("/cameras").status_code == 200 and api.get("/metrics").status_code == 200
