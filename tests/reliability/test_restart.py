"""Process restart: `scissor serve` SIGKILLed and started again gets its cameras, rules, sessions and memory
back."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from harness.ports import free_port
from harness.rtsp import RtspServer
from harness.serve import ServeProcess
from harness.servers import RedisServer


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.25)


def cameras(api: httpx.Client) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in api.get("/cameras").json()}


def test_sigkill_then_start_brings_back_cameras_rules_sessions_and_memory_and_ingest_resumes(
    tmp_path: Path, rtsp_camera: Callable[..., RtspServer]
) -> None:
    gate, yard = rtsp_camera(), rtsp_camera()
    with RedisServer() as redis:
        env = {
            "SCISSOR_BACKEND": "embedded",
            "SCISSOR_DEVICE": "cpu",
            "SCISSOR_REDIS_URL": redis.url,
            "SCISSOR_PORT": str(free_port()),
            "SCISSOR_STATE__SNAPSHOT_INTERVAL_S": "1",
        }
        first = ServeProcess(env, tmp_path / "serve.log").start()
        with first.client() as api:
            for cid, cam in (("gate", gate), ("yard", yard)):
                assert api.post("/cameras", json={"id": cid, "url": cam.url, "fps": 2}).status_code == 201
            rules = [
                api.post(
                    "/rules", json={"camera_id": "gate", "kind": "novelty", "params": {"threshold": 0.6}}
                ),
                api.post("/rules", json={"camera_id": "yard", "kind": "label", "params": {"label": "car"}}),
            ]
            assert all(r.status_code == 201 for r in rules), [r.text for r in rules]
            wait_for(
                lambda: all(c["memory_entries"] > 0 for c in cameras(api).values()), 60, "memory on both"
            )
            assert api.post(
                "/cameras/gate/ask", json={"question": "what did you see?", "session_id": "s1"}
            ).is_success
            time.sleep(2.5)  # a periodic snapshot lands after the last frames
            before = cameras(api)
        first.kill()

        second = ServeProcess(env, tmp_path / "serve.log").start()
        try:
            with second.client() as api:
                after = cameras(api)
                assert set(after) == {"gate", "yard"}
                assert all(after[c]["memory_entries"] > 0 for c in after), "memory snapshots came back"
                assert {r["id"] for r in api.get("/rules").json()} == {r.json()["id"] for r in rules}
                follow = api.post(
                    "/cameras/gate/ask",
                    json={"question": "and then?", "session_id": "s1", "from": 0, "to": 3},
                )
                assert follow.status_code == 200 and follow.json()["tokens_used"] > 0, (
                    "the old minutes answer"
                )
                wait_for(
                    lambda: all(c["state"] == "online" for c in cameras(api).values()), 60, "ingest resumes"
                )
                tokens_in = {c: api.get(f"/cameras/{c}/memory").json()["tokens_in_total"] for c in after}
                wait_for(
                    lambda: all(
                        api.get(f"/cameras/{c}/memory").json()["tokens_in_total"] > tokens_in[c]
                        for c in after
                    ),
                    60,
                    "memory to keep growing after the restart",
                )
                assert before["gate"]["memory_entries"] > 0
        finally:
            second.stop()
    assert "Traceback" not in second.log()


def test_a_restart_while_redis_is_down_serves_degraded_then_restores_everything_when_redis_returns(
    tmp_path: Path, rtsp_camera: Callable[..., RtspServer]
) -> None:
    gate = rtsp_camera()
    with RedisServer() as redis:
        env = {
            "SCISSOR_BACKEND": "embedded",
            "SCISSOR_DEVICE": "cpu",
            "SCISSOR_REDIS_URL": redis.url,
            "SCISSOR_PORT": str(free_port()),
            "SCISSOR_STATE__SYNC_RETRY_S": "0.3",
            "SCISSOR_REDIS__SOCKET_TIMEOUT_S": "0.5",
        }
        with ServeProcess(env, tmp_path / "first.log") as first, first.client() as api:
            assert api.post("/cameras", json={"id": "gate", "url": gate.url, "fps": 2}).status_code == 201
            assert (
                api.post(
                    "/rules", json={"camera_id": "gate", "kind": "novelty", "params": {"threshold": 0.6}}
                ).status_code
                == 201
            )
            wait_for(lambda: cameras(api)["gate"]["memory_entries"] > 0, 60, "memory")
        # Redis keeps its data while stopped here (SIGSTOP): it is unreachable, not emptied.
        redis.process.send_signal(19)  # type: ignore[union-attr]
        try:
            second = ServeProcess(env, tmp_path / "second.log").start()
            with second.client(timeout_s=10) as api:
                ready = api.get("/readyz")
                assert ready.status_code == 503 and ready.json()["checks"]["state"]["reason"]
                assert api.get("/healthz").status_code == 200
        finally:
            redis.process.send_signal(18)  # type: ignore[union-attr]
        try:
            with second.client() as api:
                wait_for(lambda: api.get("/readyz").status_code == 200, 30, "Redis to be reached")
                wait_for(lambda: "gate" in cameras(api), 30, "the camera to be restored from Redis")
                wait_for(lambda: cameras(api)["gate"]["state"] == "online", 60, "the camera to run")
                assert len(api.get("/rules").json()) == 1
        finally:
            second.stop()
