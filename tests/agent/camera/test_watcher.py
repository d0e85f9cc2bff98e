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
    assert camera.last_stats is not None and camera.last_stats.frames_sampled >= 5


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
