"""Sampling to a target fps from presentation timestamps, and the bounded thread-to-asyncio frame hand-off.

Never blocks the event loop and never grows without bound: the queue drops its oldest frame (counted)
when full.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")

# Timestamps are floats from rationals; a frame this close before its due time still counts as due.
_EPS_S = 1e-6


class FpsSampler:
    """Picks frames so that emitted timestamps are about 1/fps apart, from pts (never the wall clock).

    The first frame is always taken. Afterwards a frame is taken once its timestamp reaches the next due time;
    due times advance on a fixed grid, so a 25 fps source sampled at 2 fps yields 2 frames per stream second
    even though 0.5 s is not a multiple of 0.04 s. After a gap longer than one period the grid restarts at
    the next frame instead of emitting a burst.
    """

    def __init__(self, fps: float | None) -> None:
        """Args: fps: target frames per second; None or 0 keeps every frame."""
        if fps is not None and fps < 0:
            raise ValueError(f"fps must be > 0 (or None/0 for every frame), got {fps}")
        self.period_s = 1.0 / fps if fps else 0.0
        self._next_s: float | None = None

    def take(self, pts_s: float) -> bool:
        """Whether the frame at `pts_s` (seconds, increasing) should be emitted."""
        if self.period_s == 0.0:
            return True
        if self._next_s is not None and pts_s < self._next_s - _EPS_S:
            return False
        if self._next_s is None or pts_s - self._next_s >= self.period_s:
            self._next_s = pts_s + self.period_s  # first frame, or after a gap: restart the grid here
        else:
            self._next_s += self.period_s
        return True


class QueueClosed(Exception):
    """Raised by `FrameQueue.put` after `close()`: the consumer is gone, stop producing."""


class FrameQueue(Generic[T]):
    """Bounded hand-off from one producer thread to one asyncio consumer.

    The producer calls `put` from its thread; when the queue is full it either drops the oldest item (live
    sources: the freshest frame wins) or blocks until there is room (files read faster than real time).
    The consumer awaits `get` on the event loop. At most one wake-up callback is ever pending on the loop, so
    memory stays bounded even when the loop is busy.
    """

    def __init__(self, maxsize: int, loop: asyncio.AbstractEventLoop) -> None:
        """Args: maxsize: items held at most (>= 1). loop: the consumer's event loop."""
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._loop = loop
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._ready = asyncio.Event()
        self._wake_pending = False
        self._closed = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._closed

    def put(self, item: T, *, block: bool = False, stop: threading.Event | None = None) -> bool:
        """Add `item` from the producer thread.

        Args:
            item: what to hand over.
            block: wait for room instead of dropping the oldest item.
            stop: when blocking, give up (returning False, item not added) once this event is set.

        Returns:
            True if an older item was dropped to make room.

        Raises:
            QueueClosed: the queue was closed; the item was not added.
        """
        dropped = False
        with self._cond:
            while block and len(self._items) >= self.maxsize and not self._closed:
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.05)
            if self._closed:
                raise QueueClosed
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                dropped = True
            self._items.append(item)
        self._wake()
        return dropped

    def close(self) -> None:
        """No more items will come: `get` returns what is left, then None. Safe from any thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._wake()

    def _wake(self) -> None:
        with self._cond:
            if self._wake_pending:
                return
            self._wake_pending = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._on_wake)

    def _on_wake(self) -> None:
        with self._cond:
            self._wake_pending = False
        self._ready.set()

    async def get(self) -> T | None:
        """The oldest item, waiting for one; None once the queue is closed and empty."""
        while True:
            with self._cond:
                if self._items:
                    item = self._items.popleft()
                    self._cond.notify_all()  # a blocked producer may go on
                    return item
                if self._closed:
                    return None
                # Cleared under the lock, after the emptiness check: a put after this point wakes us.
                self._ready.clear()
            await self._ready.wait()
