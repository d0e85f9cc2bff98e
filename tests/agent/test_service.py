"""The service end to end in-process: real embedded model on a real looping video, the HTTP API, rules,
sessions."""

from __future__ import annotations

import asyncio
import io
import itertools
import threading

import pytest
from PIL import Image
from torch import Tensor

from agent.models import Backend, load_backend
from compress import MemoryUpdate
from harness.ports import free_port
from tests.agent.service_harness import running_service, video_camera, wait_until


@pytest.fixture(scope="module")
def embedded() -> Backend:
    return load_backend("embedded", device="cpu")


async def test_a_camera_added_over_the_api_fills_memory_and_questions_get_evidence(embedded: Backend) -> None:
    async with running_service(embedded, allow_file_urls=True) as run:
        created = await run.client.post("/cameras", json=video_camera())
        assert created.status_code == 201, created.text
        assert created.json()["id"] == "cam1"
        camera = run.service.cameras.get("cam1").runtime
        await wait_until(lambda: camera.frames_processed >= 6, what="six frames in memory")

        status = (await run.client.get("/cameras/cam1")).json()
        assert status["state"] == "online"
        assert status["memory_entries"] > 0
        assert status["compression_ratio"] > 1.0

        answer = await run.client.post("/cameras/cam1/ask", json={"question": "what did you see?"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["answer"]
        assert body["tokens_used"] > 0
        assert body["raw_tokens_in_range"] >= body["tokens_used"]
        assert body["evidence"], body
        for span in body["evidence"]:
            assert span["from"] <= span["to"]
            assert span["camera"] == "cam1"
        url = body["evidence"][0]["snapshot_url"]
        shot = await run.client.get(url)
        assert shot.status_code == 200
        assert shot.content[:2] == b"\xff\xd8"  # a JPEG
        assert url.endswith(f"?frame={shot.headers['X-Frame-Index']}")  # the link names one frame
        with Image.open(io.BytesIO(shot.content)) as picture:
            assert abs(picture.width / picture.height - 16 / 9) < 0.02  # the clip's 1280x720, not the model's
        gone = await run.client.get("/cameras/cam1/snapshot?frame=987654")
        assert gone.status_code == 404 and gone.json()["error"] == "KeyframeGone"

        await run.service.cameras.get("cam1").stop()  # a still memory: the summary and the status must agree
        still = (await run.client.get("/cameras/cam1")).json()
        memory = (await run.client.get("/cameras/cam1/memory")).json()
        assert memory["entries"] == still["memory_entries"] == len(camera.memory) > 0
        newest = [e.id for e in camera.memory.tokens()[1]][-200:]  # the summary's default limit
        assert [item["id"] for item in memory["items"]] == newest
        assert memory["items"][0]["labels"], "the embedded backend labels memory entries"
        for item in memory["items"]:
            spans = item["intervals"]
            assert spans[0][0] == item["first_seen_s"] and spans[-1][1] == item["last_seen_s"]
            assert all(a <= b < c for (a, b), (c, _) in itertools.pairwise(spans))
            assert len(item["interval_frames"]) == len(spans)


async def test_follow_up_questions_in_a_session_are_kept(embedded: Backend) -> None:
    async with running_service(embedded, allow_file_urls=True) as run:
        await run.client.post("/cameras", json=video_camera())
        await wait_until(lambda: run.service.cameras.get("cam1").runtime.frames_processed >= 3, what="frames")
        for question in ("what did you see?", "and when?"):
            r = await run.client.post("/cameras/cam1/ask", json={"question": question, "session_id": "s1"})
            assert r.status_code == 200, r.text
        turns = await run.service.store.turns("s1")
        assert [t.question for t in turns] == ["what did you see?", "and when?"]


async def test_bad_requests_get_clear_4xx_errors(embedded: Backend) -> None:
    async with running_service(embedded) as run:
        c = run.client
        cases = [
            (await c.get("/cameras/nope"), 404, "UnknownCamera"),
            (await c.post("/cameras", json={"id": "x", "url": "ftp://host/cam"}), 422, None),
            (await c.post("/cameras", json={"id": "../etc", "url": "rtsp://h/s"}), 422, "ValidationError"),
            (await c.post("/cameras", json={"id": "f", "url": "/etc/passwd"}), 422, None),
            (
                await c.post("/cameras", content=b"{not json", headers={"content-type": "application/json"}),
                422,
                "ValidationError",
            ),
            (await c.post("/cameras/nope/ask", json={"question": "hi"}), 404, "UnknownCamera"),
            (
                await c.post(
                    "/rules", json={"camera_id": "nope", "kind": "novelty", "params": {"threshold": 0.5}}
                ),
                404,
                "UnknownCamera",
            ),
            (
                await c.post(
                    "/cameras", content=b"x" * 2_000_000, headers={"content-type": "application/json"}
                ),
                413,
                "PayloadTooLarge",
            ),
        ]
        for response, status, error in cases:
            assert response.status_code == status, (response.request.url, response.text)
            body = response.json()
            assert body["detail"] and "Traceback" not in response.text
            if error:
                assert body["error"] == error
        await c.post("/cameras", json={"id": "cam", "url": "rtsp://127.0.0.1:1/none"})
        for bad in (
            {"question": "x" * 5000},
            {"question": "hi", "since_s": -5},
            {"question": ""},
            {"question": "hi", "from": 10, "to": 5},
        ):
            r = await c.post("/cameras/cam/ask", json=bad)
            assert r.status_code == 422, (bad, r.text)


async def test_with_a_token_every_route_but_healthz_needs_it(embedded: Backend) -> None:
    async with running_service(embedded, api_token="s3cret-token-for-tests-only") as run:
        anonymous = {"Authorization": ""}
        assert (await run.client.get("/healthz", headers=anonymous)).status_code == 200
        for path in ("/cameras", "/rules", "/readyz", "/metrics"):
            assert (await run.client.get(path, headers=anonymous)).status_code == 401, path
            wrong = {"Authorization": "Bearer nope"}
            assert (await run.client.get(path, headers=wrong)).status_code == 401, path
            assert (await run.client.get(path)).status_code in (200, 503), path


async def test_camera_urls_come_back_redacted(embedded: Backend) -> None:
    async with running_service(embedded) as run:
        r = await run.client.post(
            "/cameras", json={"id": "door", "url": "rtsp://admin:hunter2@127.0.0.1:1/s"}
        )
        assert r.status_code == 201, r.text
        for response in (r, await run.client.get("/cameras"), await run.client.get("/cameras/door")):
            assert "hunter2" not in response.text
        metrics = await run.client.get("/metrics")
        assert "hunter2" not in metrics.text


async def test_questions_past_the_admission_limit_get_429_and_the_rest_are_answered(
    embedded: Backend,
) -> None:
    async with running_service(embedded, allow_file_urls=True, api={"max_pending_questions": 1}) as run:
        await run.client.post("/cameras", json=video_camera())
        await wait_until(lambda: run.service.cameras.get("cam1").runtime.frames_processed >= 2, what="frames")
        responses = await asyncio.gather(
            *(run.client.post("/cameras/cam1/ask", json={"question": "what?"}) for _ in range(4))
        )
        codes = sorted(r.status_code for r in responses)
        assert 200 in codes and 429 in codes, codes
        busy = next(r for r in responses if r.status_code == 429).json()
        assert busy["error"] == "TooBusy" and busy["limit"] == 1
        assert (await run.client.post("/cameras/cam1/ask", json={"question": "what?"})).status_code == 200


async def test_memory_updates_run_in_a_worker_thread_under_the_camera_lock(embedded: Backend) -> None:
    async with running_service(embedded, allow_file_urls=True) as run:
        await run.client.post("/cameras", json=video_camera())
        camera = run.service.cameras.get("cam1").runtime
        await wait_until(lambda: camera.frames_processed >= 2, what="frames")
        seen: list[tuple[int, bool]] = []
        add_frame = camera.memory.add_frame

        def spy(tokens: Tensor, t: float, frame_index: int) -> MemoryUpdate:
            seen.append((threading.get_ident(), camera.memory_lock.locked()))
            return add_frame(tokens, t, frame_index)

        camera.memory.add_frame = spy  # type: ignore[method-assign]
        done = camera.frames_processed
        await wait_until(lambda: camera.frames_processed >= done + 2, what="two more frames")
        assert seen and all(ident != threading.get_ident() and locked for ident, locked in seen)
        status = await run.client.get("/cameras/cam1")  # readers take the lock too and still answer
        assert status.status_code == 200 and status.json()["memory_entries"] > 0


async def test_the_memory_summary_labels_the_entries_it_lists(embedded: Backend) -> None:
    async with running_service(embedded, allow_file_urls=True) as run:
        await run.client.post("/cameras", json=video_camera())
        camera = run.service.cameras.get("cam1").runtime
        await wait_until(lambda: len(camera.memory) >= 6, what="six memory entries")
        await run.service.cameras.get("cam1").stop()  # a still memory, to compare with
        body = (await run.client.get("/cameras/cam1/memory", params={"limit": 2})).json()
        tokens, entries = camera.memory.tokens()
        assert [item["id"] for item in body["items"]] == [e.id for e in entries[-2:]]
        expected = run.service.cameras.get("cam1").top_labels(tokens[-2:], 3)
        assert [item["labels"] for item in body["items"]] == [[list(x) for x in row] for row in expected]


async def test_a_camera_outside_the_camera_networks_is_a_422_naming_the_setting(embedded: Backend) -> None:
    lan_only = {"allow_nets": ["10.0.0.0/8", "192.168.0.0/16"]}  # the default's kind: no loopback
    async with running_service(embedded, camera=lan_only) as run:
        refused = await run.client.post("/cameras", json={"id": "c", "url": "rtsp://127.0.0.1:8554/cam"})
        assert refused.status_code == 422, refused.text
        assert "SCISSOR_CAMERA__ALLOW_NETS" in refused.json()["detail"]
        assert run.service.cameras.ids() == []
    everything = {"allow_nets": ["0.0.0.0/0", "::/0"]}
    async with running_service(embedded, camera=everything) as run:
        metadata = await run.client.post("/cameras", json={"id": "m", "url": "http://169.254.169.254/latest"})
        assert metadata.status_code == 422 and "never a camera" in metadata.json()["detail"]
        # Loopback only (tests never leave it): nothing listens there, the camera just goes offline.
        lan = {
            "id": "lan",
            "url": f"rtsps://admin:pw@127.0.0.1:{free_port()}/s",
            "options": {"insecure_tls": True},
        }
        accepted = await run.client.post("/cameras", json=lan)
        assert accepted.status_code == 201, accepted.text  # the opt-out is per camera and explicit
