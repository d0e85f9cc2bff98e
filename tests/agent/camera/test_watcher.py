"""The camera watcher against a real video file: frames reach the hook in order, state changes are reported,
and a crash in the frame path is counted, reported and followed by a restart."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from agent.camera.runtime import CameraRuntime
from agent.camera.watcher import CameraWatcher
from agent.demo import sample_video
from compress.memory import TokenMemory
from streamer import Frame


def runtime() -> CameraRuntime:
    return CameraRuntime(
        id="yard",
        url=str(sample_video("carphone_pristine.mp4")),
        fps=10.0,
        options={"allow_files": True, "loop": True},
        added_at=time.time(),
        memory=TokenMemory(4),
    )


async def until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_frames_reach_the_hook_in_order_at_the_encoders_size_and_states_are_reported() -> None:
    camera = runtime()
    frames: list[Frame] = []
    states: list[tuple[str, str]] = []

    async def on_frame(frame: Frame) -> None:
        frames.append(frame)

    async def on_status() -> None:
        states.append((camera.state, camera.reason))

    watcher = CameraWatcher(camera, frame_size=(32, 24), on_frame=on_frame, on_status=on_status)
    watcher.start()
    try:
        await until(lambda: len(frames) >= 5)
        assert camera.source is not None and camera.state == "up"
    finally:
        await watcher.stop()
    assert [f.index for f in frames] == sorted(f.index for f in frames)
    assert frames[0].rgb.shape == (24, 32, 3) and frames[0].camera_id == "yard"
    assert "up" in [state for state, _ in states], "the source coming up was reported"
    assert (camera.state, camera.reason) == ("stopped", "removed") and camera.source is None
    assert camera.stats().frames_sampled >= 5  # the closed source's counters stay with the camera


async def test_a_crash_in_the_frame_path_is_counted_reported_down_and_ingest_starts_again() -> None:
    camera = runtime()
    seen: list[int] = []
    states: list[tuple[str, str]] = []

    async def on_frame(frame: Frame) -> None:
        seen.append(frame.index)
        if len(seen) == 2:
            raise RuntimeError("a bug in the frame path")

    async def on_status() -> None:
        states.append((camera.state, camera.reason))

    watcher = CameraWatcher(
        camera, frame_size=(32, 24), on_frame=on_frame, on_status=on_status, restart_backoff_s=0.05
    )
    watcher.start()
    try:
        await until(lambda: len(seen) >= 5)
    finally:
        await watcher.stop()
    assert camera.errors == 1
    assert ("down", "internal error: RuntimeError") in states
    assert states.index(("down", "internal error: RuntimeError")) < len(states) - 1, "it came back afterwards"


async def test_a_crash_restart_keeps_the_counters_monotonic_and_counts_a_reconnect() -> None:
    camera = runtime()
    decoded: list[int] = []

    async def on_frame(frame: Frame) -> None:
        decoded.append(camera.stats().frames_decoded)
        if len(decoded) == 3:
            raise RuntimeError("a bug in the frame path")

    async def on_status() -> None:
        pass

    watcher = CameraWatcher(
        camera, frame_size=(32, 24), on_frame=on_frame, on_status=on_status, restart_backoff_s=0.05
    )
    watcher.start()
    try:
        await until(lambda: len(decoded) >= 8)
    finally:
        await watcher.stop()
    assert decoded == sorted(decoded), f"frames_decoded went backwards across the reopen: {decoded}"
    assert camera.stats().reconnects >= 1


async def test_a_file_camera_plays_at_its_own_pace_then_ends_once_without_reopening() -> None:
    camera = runtime()
    camera.options = {"allow_files": True}  # no loop: carphone's 4 s play once
    camera.fps = 5.0
    frames: list[Frame] = []
    states: list[str] = []

    async def on_frame(frame: Frame) -> None:
        frames.append(frame)

    async def on_status() -> None:
        states.append(camera.state)

    watcher = CameraWatcher(
        camera, frame_size=(32, 24), on_frame=on_frame, on_status=on_status, restart_backoff_s=0.05
    )
    started = time.monotonic()
    watcher.start()
    try:
        await until(lambda: camera.state == "ended", timeout_s=20)
        took = time.monotonic() - started
        seen = len(frames)
        await asyncio.sleep(1.0)  # many restart backoffs: nothing reopens
        assert len(frames) == seen and camera.state == "ended" and camera.reason == "end of file"
    finally:
        await watcher.stop()
    assert took >= 3.5, f"a 4 s clip played in {took:.1f} s: faster than its own pace"
    assert abs(seen - 20) <= 1  # 4 s at 5 fps
    assert "down" not in states and states.count("ended") == 1
    assert camera.stats().reconnects == 0
