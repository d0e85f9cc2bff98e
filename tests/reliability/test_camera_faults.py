"""Camera faults at the service level: killed, stalled, corrupt, truncated and resized cameras recover on
their own."""

from __future__ import annotations

import asyncio
import functools
import http.server
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.models import Backend
from harness.rtsp import RtspServer
from tests.agent.service_harness import Running, running_service, wait_until
from tests.reliability.conftest import SMALL_VIDEO, Census, video_path

FAST_RETRY = {"read_timeout_s": 2.0, "open_timeout_s": 3.0, "backoff_max_s": 1.0}


def camera(camera_id: str, url: str) -> dict[str, object]:
    return {"id": camera_id, "url": url, "fps": 2, "options": FAST_RETRY}


async def state(run: Running, camera_id: str) -> str:
    return str((await run.client.get(f"/cameras/{camera_id}")).json()["state"])


async def wait_state(run: Running, camera_id: str, wanted: str, timeout_s: float = 30.0) -> None:
    for _ in range(int(timeout_s * 10)):
        if await state(run, camera_id) == wanted:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(
        f"camera {camera_id} not {wanted} within {timeout_s} s: {await state(run, camera_id)}"
    )


async def wait_frames(run: Running, camera_id: str, more: int, timeout_s: float = 30.0) -> None:
    cam = run.service.cameras.get(camera_id).runtime
    target = cam.frames_processed + more
    await wait_until(lambda: cam.frames_processed >= target, timeout_s, f"{more} new frames on {camera_id}")


async def steady_census(cameras: int) -> Census:
    """A census once every camera has its decode thread and short-lived status tasks have finished."""
    for _ in range(50):
        census = Census.take()
        if len(census.camera_threads()) == cameras and not any(t.startswith("Task-") for t in census.tasks):
            return census
        await asyncio.sleep(0.1)
    return Census.take()


def assert_no_leak(before: Census, after: Census) -> None:
    assert after.camera_threads() == before.camera_threads(), "one decode thread per camera, none leaked"
    assert after.tasks == before.tasks, "the same named tasks as before the fault, none leaked"
    assert len(after.threads) <= len(before.threads) + 2, (before.threads, after.threads)


async def test_a_killed_camera_recovers_on_its_own_while_the_other_keeps_filling_memory(
    embedded: Backend, rtsp_camera: Callable[..., RtspServer]
) -> None:
    gate, yard = rtsp_camera(), rtsp_camera()
    async with running_service(embedded) as run:
        for cid, server in (("gate", gate), ("yard", yard)):
            assert (await run.client.post("/cameras", json=camera(cid, server.url))).status_code == 201
        await wait_frames(run, "gate", 3)
        await wait_frames(run, "yard", 3)
        before = await steady_census(2)

        gate.kill()
        await wait_state(run, "gate", "offline")
        await wait_frames(run, "yard", 4)  # the other camera is unaffected during the outage
        reason = (await run.client.get("/cameras/gate")).json()["reason"]
        assert reason, "an offline camera says why"

        gate.restart()
        await wait_state(run, "gate", "online")
        await wait_frames(run, "gate", 3)
        status = (await run.client.get("/cameras/gate")).json()
        assert status["reconnects"] >= 1
        assert [run.service.cameras.get(c).runtime.errors for c in ("gate", "yard")] == [0, 0]
        assert_no_leak(before, await steady_census(2))


async def test_a_camera_that_answers_then_stalls_goes_offline_and_back_online_when_it_resumes(
    embedded: Backend, rtsp_camera: Callable[..., RtspServer]
) -> None:
    gate, yard = rtsp_camera(), rtsp_camera()
    async with running_service(embedded) as run:
        for cid, server in (("gate", gate), ("yard", yard)):
            await run.client.post("/cameras", json=camera(cid, server.url))
        await wait_frames(run, "gate", 3)
        before = await steady_census(2)
        gate.pause()  # SIGSTOP: the TCP connection stays open, no byte flows
        try:
            await wait_state(run, "gate", "offline", timeout_s=20)
            await wait_frames(run, "yard", 4)
        finally:
            gate.resume()
        await wait_state(run, "gate", "online", timeout_s=40)
        await wait_frames(run, "gate", 3)
        answer = await run.client.post("/cameras/gate/ask", json={"question": "what did you see?"})
        assert answer.status_code == 200 and answer.json()["tokens_used"] > 0
        assert_no_leak(before, await steady_census(2))


async def test_a_camera_that_comes_back_at_another_resolution_keeps_filling_the_same_memory(
    embedded: Backend, rtsp_camera: Callable[..., RtspServer]
) -> None:
    wide = rtsp_camera("bikes.mp4")  # 640x272
    async with running_service(embedded) as run:
        await run.client.post("/cameras", json=camera("gate", wide.url))
        await wait_frames(run, "gate", 3)
        memory = run.service.cameras.get("gate").runtime.memory
        tokens_before = memory.tokens_in_total
        before = await steady_census(1)
        wide.kill()
        await wait_state(run, "gate", "offline")
        small = RtspServer(port=wide.port).start(video_path(SMALL_VIDEO))  # 176x144 on the same URL
        try:
            await wait_state(run, "gate", "online")
            await wait_frames(run, "gate", 4)
        finally:
            small.stop()
        assert run.service.cameras.get("gate").runtime.memory is memory
        assert memory.tokens_in_total > tokens_before
        assert run.service.cameras.get("gate").runtime.errors == 0, "no internal error on the size change"
        assert_no_leak(before, await steady_census(1))


class CorruptingProxy:
    """A TCP proxy in front of a real RTSP server that, while `corrupt` is set, overwrites bytes of the
    media."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.corrupt = False
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                return
            self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, media: bool) -> None:
        try:
            while data := src.recv(65536):
                if media and self.corrupt and len(data) > 64:
                    data = data[:16] + os.urandom(len(data) - 32) + data[-16:]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server over `tmp_path`, holding a truncated recording and random bytes named .mp4."""
    data = video_path("bikes.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.mp4").write_bytes(os.urandom(200_000))
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


async def test_corrupt_and_truncated_streams_are_reported_and_never_disturb_a_healthy_camera(
    embedded: Backend, rtsp_camera: Callable[..., RtspServer], http_files: str
) -> None:
    good, mangled = rtsp_camera(), rtsp_camera()
    proxy = CorruptingProxy(mangled.port)
    try:
        async with running_service(embedded) as run:
            await run.client.post("/cameras", json=camera("good", good.url))
            await run.client.post("/cameras", json=camera("mangled", f"rtsp://127.0.0.1:{proxy.port}/cam"))
            await run.client.post("/cameras", json=camera("cut", f"{http_files}/cut.mp4"))
            await run.client.post("/cameras", json=camera("noise", f"{http_files}/noise.mp4"))
            await wait_frames(run, "mangled", 3)
            proxy.corrupt = True
            mangled_cam = run.service.cameras.get("mangled").runtime
            await wait_until(
                lambda: mangled_cam.state != "up" or bool(sum(mangled_cam.source.stats.drops.values())),
                20,
                "the corruption to be noticed",
            )
            await wait_frames(run, "good", 4)
            for cid in ("cut", "noise"):
                status = (await run.client.get(f"/cameras/{cid}")).json()
                assert status["state"] != "online" and status["reason"], status
                assert run.service.cameras.get(cid).runtime.frames_processed == 0
            proxy.corrupt = False
            await wait_state(run, "mangled", "online", timeout_s=40)
            await wait_frames(run, "mangled", 3, timeout_s=40)
            assert all(p.runtime.errors == 0 for p in run.service.cameras.pipelines()), "no watcher crashed"
            metrics = (await run.client.get("/metrics")).text
            assert 'scissor_stream_up{camera="good"} 1.0' in metrics
            census = Census.take()
        assert not [t for t in Census.take().camera_threads() if t in census.camera_threads()], (
            "every decode thread ends with the service"
        )
    finally:
        proxy.close()
