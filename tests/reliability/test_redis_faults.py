"""Redis faults at the service level: answers from RAM while Redis is down, /readyz says why, state written
back."""

from __future__ import annotations

from collections.abc import Callable

from agent.models import Backend
from harness.rtsp import RtspServer
from harness.servers import RedisServer
from tests.agent.service_harness import running_service, wait_until


async def test_a_redis_outage_degrades_readiness_but_not_answers_and_state_survives_a_later_restart(
    embedded: Backend, redis_server: RedisServer, rtsp_camera: Callable[..., RtspServer]
) -> None:
    camera = rtsp_camera()
    settings = {
        "redis_url": redis_server.url,
        "state": {"sync_retry_s": 0.2, "snapshot_interval_s": 1.0},
        "redis": {"socket_timeout_s": 0.5},
    }
    async with running_service(embedded, **settings) as run:
        api = run.client
        assert (
            await api.post("/cameras", json={"id": "gate", "url": camera.url, "fps": 2})
        ).status_code == 201
        rule = {"camera_id": "gate", "kind": "novelty", "params": {"threshold": 0.9}}
        assert (await api.post("/rules", json=rule)).status_code == 201
        gate = run.service.cameras.get("gate").runtime
        await wait_until(lambda: gate.frames_processed >= 3, 30, "frames before the outage")
        assert (await api.get("/readyz")).status_code == 200

        redis_server.kill()
        await wait_until(lambda: not run.service.store.healthy, 10, "the store to notice the outage")
        ready = await api.get("/readyz")
        assert ready.status_code == 503
        state = ready.json()["checks"]["state"]
        assert state["ok"] is False and state["reason"], "readiness says why it is degraded"
        processed = gate.frames_processed
        await wait_until(lambda: gate.frames_processed >= processed + 3, 30, "memory to keep filling")
        answer = await api.post(
            "/cameras/gate/ask", json={"question": "what did you see?", "session_id": "s1"}
        )
        assert answer.status_code == 200 and answer.json()["tokens_used"] > 0, answer.text
        # Changes made during the outage are kept in RAM and written back later.
        assert (
            await api.post("/cameras", json={"id": "yard", "url": camera.url, "fps": 1})
        ).status_code == 201
        assert (await api.post("/rules", json={**rule, "camera_id": "yard"})).status_code == 201
        assert len((await api.get("/rules")).json()) == 2
        assert (await api.get("/metrics")).status_code == 200

        redis_server.start()  # empty: this Redis keeps nothing across a kill
        await wait_until(lambda: run.service.store.healthy, 15, "the store to reconnect")
        assert (await api.get("/readyz")).status_code == 200
        await wait_until(lambda: not run.service.store.dirty, 10, "every change to be written back")
        entries = len(gate.memory)

    async with running_service(embedded, **settings) as again:  # a new process reading the same Redis
        cameras = {c["id"]: c for c in (await again.client.get("/cameras")).json()}
        assert set(cameras) == {"gate", "yard"}, "cameras written before and during the outage came back"
        assert len((await again.client.get("/rules")).json()) == 2
        assert cameras["gate"]["memory_entries"] >= min(entries, 1), "the memory snapshot came back"
        assert [t.question for t in await again.service.store.turns("s1")] == ["what did you see?"]
