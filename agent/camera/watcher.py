"""One camera's ingest loop: open the source, hand each frame on, report state changes, restart after a crash.

A failure here never reaches another camera. Knows nothing of encoders, memory or rules: each frame goes to
`on_frame`, each state change to `on_status`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from agent.camera.runtime import CameraRuntime
from streamer import Frame, InvalidCameraURL, State, open_source
from streamer.urls import is_file_url

log = logging.getLogger(__name__)

POLICY_RETRY_S = 30.0  # a camera whose host now resolves outside the policy is looked at again after this

FrameHook = Callable[[Frame], Awaitable[None]]
StatusHook = Callable[[], Awaitable[None]]


class CameraWatcher:
    """Owns one camera's ingest task (named `watcher-<camera>`).

    Args:
        camera: the camera's runtime; the watcher sets `state`, `reason`, `source` and `stats_before` on it.
        frame_size: (width, height) frames are resized to at decode (the encoder's input).
        on_frame: awaited for every frame, in order; the next frame waits for it.
        on_status: awaited after every change of `state` or `reason`.
        restart_backoff_s: the pause before ingest starts again after it ended or crashed.
    """

    def __init__(
        self,
        camera: CameraRuntime,
        *,
        frame_size: tuple[int, int],
        on_frame: FrameHook,
        on_status: StatusHook,
        restart_backoff_s: float = 2.0,
    ) -> None:
        self.camera = camera
        self._frame_size = frame_size
        self._on_frame, self._on_status = on_frame, on_status
        self._restart_backoff_s = restart_backoff_s
        self._task: asyncio.Task[None] | None = None
        self._status_tasks: set[asyncio.Task[None]] = set()  # held until done, so none is garbage-collected

    def start(self) -> None:
        """Start the camera's task."""
        self._task = asyncio.create_task(self._run(), name=f"watcher-{self.camera.id}")

    async def stop(self) -> None:
        """Cancel the task and wait for the source to release its thread and socket."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.camera.state, self.camera.reason = "stopped", "removed"

    async def _status(self, state: str, reason: str) -> None:
        if (state, reason) == (self.camera.state, self.camera.reason):
            return
        self.camera.state, self.camera.reason = state, reason
        await self._on_status()

    def _source_status(self, status: Any) -> None:
        # Called by the streamer on the event loop whenever the source's state changes.
        task = asyncio.ensure_future(self._status(str(status.state), str(status.reason or "")))
        self._status_tasks.add(task)
        task.add_done_callback(self._status_tasks.discard)

    async def _run(self) -> None:
        opened = 0
        while True:
            try:
                if opened:
                    self.camera.stats_before.reconnects += 1  # a reopen of the camera counts as a reconnect
                opened += 1
                if not await self._ingest():
                    return  # a file camera that ended (or cannot be read): once, no reconnect storm
            except asyncio.CancelledError:
                raise
            except InvalidCameraURL as exc:  # the camera-target policy refused where the name leads now
                await self._status("down", "camera unreachable (outside the camera-target policy)")
                log.warning("camera %s: %s", self.camera.id, exc.reason)
                await asyncio.sleep(max(self._restart_backoff_s, POLICY_RETRY_S))
                continue
            except Exception as exc:  # crash guard: log, mark down, retry; other cameras are unaffected
                self.camera.errors += 1
                log.exception("camera %s: watcher failed; restarting", self.camera.id)
                await self._status("down", f"internal error: {type(exc).__name__}")
            await asyncio.sleep(self._restart_backoff_s)

    async def _ingest(self) -> bool:
        """One source, until it ends; whether to open the camera again (False for a file that ended or
        failed: a file camera plays once, at its own pace, unless it loops)."""
        camera = self.camera
        options = dict(camera.options)
        options.setdefault("size", self._frame_size)
        local = is_file_url(camera.url)
        if local:
            options.setdefault("realtime", True)  # by its timestamps, as a camera would send it
        # open_source checks the policy, which may resolve a host name: off the event loop.
        source = await asyncio.to_thread(
            open_source,
            camera.url,
            camera_id=camera.id,
            fps=camera.fps,
            on_status=self._source_status,
            **options,
        )
        async with source as src:
            camera.source = src
            try:
                async for frame in src.frames():
                    await self._on_frame(frame)
            finally:
                ended = src.status
                camera.stats_before = camera.stats_before.plus(src.stats)
                camera.source = None
        if local and ended.state == State.STOPPED and ended.code != "closed":
            finished = ended.code == "ended"
            await self._status("ended" if finished else "failed", "end of file" if finished else ended.reason)
            return False
        await self._status("down", "stream ended")
        return True
