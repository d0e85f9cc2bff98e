"""Batches all cameras' frames into one encoder call with bounded latency; never touches memory or outputs."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

log = logging.getLogger(__name__)

EncodeFn = Callable[[list[np.ndarray]], torch.Tensor]


class FrameEncoder(Protocol):
    """What a camera pipeline encodes its frames with: this process's `EncodeBatcher`, or in cluster mode
    its node's encoder actor (`agent.cluster.encoders.RemoteEncoder`)."""

    async def encode(self, rgb: np.ndarray) -> tuple[torch.Tensor, float]:
        """Tokens `[N, D]` of one frame and the encoder seconds per frame."""
        ...


@dataclass
class _Request:
    rgb: np.ndarray
    future: asyncio.Future[tuple[torch.Tensor, float]]
    queued_at: float = field(default_factory=time.monotonic)


@dataclass
class BatcherStats:
    """Plain counters for metrics."""

    batches: int = 0
    frames: int = 0
    encode_seconds: float = 0.0
    last_batch_size: int = 0
    rejected: int = 0


class EncodeBatcher:
    """One encoder worker shared by every camera.

    Each camera awaits its own frame's tokens, so at most one request per camera is in flight and the queue is
    bounded by the number of cameras (plus `max_queue` as a hard cap). A batch is sent when `max_batch` frames
    wait or the oldest has waited `max_wait_s`.
    """

    def __init__(
        self, encode: EncodeFn, *, max_batch: int = 8, max_wait_s: float = 0.05, max_queue: int = 64
    ):
        self._encode = encode
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._queue: asyncio.Queue[_Request] = asyncio.Queue(maxsize=max_queue)
        # The encoder blocks (torch): one dedicated thread keeps the event loop free and batches serialised.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scissor-encode")
        self._task: asyncio.Task[None] | None = None
        self.stats = BatcherStats()

    async def start(self) -> None:
        """Start the batching task."""
        self._task = asyncio.create_task(self._run(), name="encode-batcher")

    async def stop(self) -> None:
        """Stop the task, fail waiting requests and release the worker thread."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        while not self._queue.empty():
            request = self._queue.get_nowait()
            if not request.future.done():
                request.future.set_exception(RuntimeError("encoder stopped"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def encode(self, rgb: np.ndarray) -> tuple[torch.Tensor, float]:
        """Tokens `[N, D]` of one frame (on the encoder's device), computed in a shared batch, and the encoder
        seconds per frame."""
        future: asyncio.Future[tuple[torch.Tensor, float]] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Request(rgb, future))
        except asyncio.QueueFull:
            self.stats.rejected += 1
            raise
        return await future

    def _encode_ready(self, frames: list[np.ndarray]) -> torch.Tensor:
        """The batch's tokens, left on the encoder's device. On a GPU the encoder thread waits for its own
        kernels (an event after them, not the whole device), so the seconds reported are the encoder's and
        not their launch; the memory's thread never waits for the encoder."""
        tokens = self._encode(frames)
        if tokens.is_cuda:
            done = torch.cuda.Event()  # type: ignore[no-untyped-call]  # torch leaves it untyped
            done.record(torch.cuda.current_stream(tokens.device))
            done.synchronize()  # host sync (encoder thread): the batch is ready
        return tokens

    async def _next_batch(self) -> list[_Request]:
        batch = [await self._queue.get()]
        deadline = batch[0].queued_at + self._max_wait_s
        while len(batch) < self._max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return [r for r in batch if not r.future.cancelled()]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            started = time.perf_counter()
            try:
                tokens = await loop.run_in_executor(
                    self._executor, self._encode_ready, [r.rgb for r in batch]
                )
            except Exception as exc:  # crash guard: one bad batch must not stop every camera
                log.exception("encoder failed on a batch of %d frames", len(batch))
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)
                continue
            seconds = time.perf_counter() - started
            self.stats.batches += 1
            self.stats.frames += len(batch)
            self.stats.last_batch_size = len(batch)
            self.stats.encode_seconds += seconds
            for i, request in enumerate(batch):
                if not request.future.done():
                    request.future.set_result((tokens[i], seconds / len(batch)))
