"""One task per camera: frames -> shared batched encoder -> TokenMemory -> update hook.

The only memory writer.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from agent.batcher import EncodeBatcher
from agent.keyframes import KeyframeStore
from compress.memory import MemoryUpdate, TokenMemory
from streamer import Frame, open_source, redact

log = logging.getLogger(__name__)

RETAIN_EVERY = 8  # frames between checks of which keyframes the memory still names as evidence

UpdateHook = Callable[["CameraRuntime", Frame, MemoryUpdate, float, float], Awaitable[None]]
StatusHook = Callable[["CameraRuntime"], Awaitable[None] | None]


@dataclass
class CameraRuntime:
    """Everything the service keeps for one camera while it runs."""

    id: str
    url: str
    fps: float
    options: dict[str, Any]
    added_at: float  # wall-clock seconds: stream second 0 of this camera
    memory: TokenMemory
    # Held while the memory changes (add_frame, in a worker thread) or is read: readers see whole updates.
    memory_lock: threading.Lock = field(default_factory=threading.Lock)
    keyframes: KeyframeStore = field(default_factory=KeyframeStore)
    source: Any = None  # streamer.Source while connected
    state: str = "connecting"
    reason: str = ""
    frames_processed: int = 0
    frames_rejected: int = 0  # frames whose tokens were not finite (NaN/inf): skipped, memory untouched
    errors: int = 0
    last_update: MemoryUpdate | None = None
    last_t: float = 0.0
    last_stats: Any = None  # the previous source's SourceStats, kept across restarts for metrics
    processed_times: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    task: asyncio.Task[None] | None = None

    @property
    def redacted_url(self) -> str:
        return redact(self.url)

    def fps_out(self, horizon_s: float = 10.0) -> float:
        """Frames written to memory per second over the last `horizon_s` seconds."""
        now = time.monotonic()
        recent = [t for t in self.processed_times if now - t <= horizon_s]
        return len(recent) / horizon_s if recent else 0.0

    def stream_seconds(self, wall_time: float | None = None) -> float:
        """Stream seconds since the camera was added (robust across reconnects, unlike PTS)."""
        return (time.time() if wall_time is None else wall_time) - self.added_at


class CameraWatcher:
    """Owns one camera's ingest loop; a failure here never reaches another camera."""

    def __init__(
        self,
        camera: CameraRuntime,
        *,
        batcher: EncodeBatcher,
        frame_size: tuple[int, int],
        on_update: UpdateHook,
        on_status: StatusHook,
        restart_backoff_s: float = 2.0,
    ):
        self.camera = camera
        self._batcher = batcher
        self._frame_size = frame_size
        self._on_update = on_update
        self._on_status = on_status
        self._restart_backoff_s = restart_backoff_s
        self._inflight: asyncio.Future[tuple[MemoryUpdate, float, float]] | None = None
        self._status_tasks: set[asyncio.Task[None]] = set()  # held until done, so none is garbage-collected

    def start(self) -> None:
        """Start the camera's task."""
        self.camera.task = asyncio.create_task(self._run(), name=f"watcher-{self.camera.id}")

    async def stop(self) -> None:
        """Cancel the task and wait for the source to release its thread and socket."""
        task, self.camera.task = self.camera.task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._inflight is not None:  # a memory update already running in its thread finishes first
            await asyncio.gather(self._inflight, return_exceptions=True)
        self.camera.state, self.camera.reason = "stopped", "removed"

    async def _status(self, state: str, reason: str) -> None:
        if (state, reason) == (self.camera.state, self.camera.reason):
            return
        self.camera.state, self.camera.reason = state, reason
        result = self._on_status(self.camera)
        if result is not None:
            await result

    def _source_status(self, status: Any) -> None:
        # Called by the streamer on the event loop whenever the source's state changes.
        task = asyncio.ensure_future(self._status(str(status.state), str(status.reason or "")))
        self._status_tasks.add(task)
        task.add_done_callback(self._status_tasks.discard)

    async def _run(self) -> None:
        while True:
            try:
                await self._ingest()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # crash guard: log, mark down, retry; other cameras are unaffected
                self.camera.errors += 1
                log.exception("camera %s: watcher failed; restarting", self.camera.id)
                await self._status("down", f"internal error: {type(exc).__name__}")
            await asyncio.sleep(self._restart_backoff_s)

    async def _ingest(self) -> None:
        camera = self.camera
        options = dict(camera.options)
        options.setdefault("size", self._frame_size)
        source = open_source(
            camera.url, camera_id=camera.id, fps=camera.fps, on_status=self._source_status, **options
        )
        async with source as src:
            camera.source = src
            try:
                async for frame in src.frames():
                    await self._process(frame)
            finally:
                camera.last_stats = src.stats
                camera.source = None
        await self._status("down", "stream ended")

    def _add_frame(self, tokens: torch.Tensor, t: float, frame: Frame) -> tuple[MemoryUpdate, float, float]:
        """(update, stream seconds used, seconds taken) of one add_frame under the camera's memory lock, then
        the frame's keyframe (kept while the memory names it as evidence)."""
        update, t, update_s = self._update_memory(tokens, t, frame.index)
        camera = self.camera
        camera.keyframes.add(camera.keyframes.encode(frame.index, t, frame.rgb, frame.source_aspect))
        if camera.frames_processed % RETAIN_EVERY == 0:
            with camera.memory_lock:
                wanted = camera.memory.live_evidence()
            camera.keyframes.retain(wanted)
        return update, t, update_s

    def _update_memory(self, tokens: torch.Tensor, t: float, index: int) -> tuple[MemoryUpdate, float, float]:
        memory = self.camera.memory
        with self.camera.memory_lock:
            t = max(
                t, memory.newest_t or t
            )  # a restarted watcher never steps behind the memory's newest frame
            started = time.perf_counter()
            update = memory.add_frame(tokens, t, index)
            return update, t, time.perf_counter() - started

    def _reject(self, frame: Frame, reason: str) -> None:
        # One bad frame (NaN/inf tokens) is skipped and counted;
        # it must neither poison memory nor restart ingest.
        camera = self.camera
        camera.frames_rejected += (
            1  # reported as drops with reason "bad_tokens" (service snapshot and status)
        )
        if camera.frames_rejected == 1 or camera.frames_rejected % 100 == 0:
            log.warning(
                "camera %s: frame %d skipped (%s); %d so far",
                camera.id,
                frame.index,
                reason,
                camera.frames_rejected,
            )

    async def _process(self, frame: Frame) -> None:
        camera = self.camera
        tokens, encode_s = await self._batcher.encode(frame.rgb)
        if not bool(torch.isfinite(tokens).all()):
            self._reject(frame, "bad_tokens")
            return
        # Wall-clock stream seconds survive reconnects (PTS restart); never step back if the clock does.
        t = max(camera.stream_seconds(frame.wall_time), camera.last_t)
        # add_frame takes tens of ms at capacity: it runs in a worker thread so the event loop stays free.
        # Shielded: a cancelled watcher still lets a running update finish (stop() waits for it),
        # so none is half applied.
        self._inflight = asyncio.get_running_loop().run_in_executor(None, self._add_frame, tokens, t, frame)
        update, t, update_s = await asyncio.shield(self._inflight)
        camera.last_t = t
        camera.frames_processed += 1
        camera.processed_times.append(time.monotonic())
        camera.last_update = update
        await self._on_update(camera, frame, update, encode_s, update_s)
