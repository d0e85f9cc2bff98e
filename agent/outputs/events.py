"""In-process fan-out of records (alerts, camera status, events) to subscribers, and the last alerts kept for
whoever arrives later (`GET /alerts`).

Publishing never blocks or awaits.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable
from typing import Self

from pydantic import BaseModel

from agent.records import Alert

DEFAULT_QUEUE = 256
RECENT_ALERTS = 100  # alerts kept for a page that opens later (the console shows 50)


class Subscription:
    """One subscriber's bounded queue. Iterate it with `async for`; leave with `close()` or `async with`.

    When the subscriber falls behind, the oldest record is dropped (the freshest wins) and `dropped` counts
    it.
    """

    def __init__(self, bus: EventBus, maxsize: int, accept: Callable[[BaseModel], bool] | None) -> None:
        self._bus, self._accept = bus, accept
        self._queue: collections.deque[BaseModel] = collections.deque(maxlen=maxsize)
        self._ready = asyncio.Event()
        self.dropped = 0
        self.closed = False

    def offer(self, record: BaseModel) -> None:
        """Queue a record without blocking (called by the bus)."""
        if self.closed or (self._accept is not None and not self._accept(record)):
            return
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1  # deque(maxlen) evicts the oldest on append
        self._queue.append(record)
        self._ready.set()

    async def get(self, timeout_s: float | None = None) -> BaseModel:
        """Return the next record, waiting up to `timeout_s` (None: forever).

        Raises:
            TimeoutError: nothing arrived in time.
            StopAsyncIteration: the subscription is closed and drained.
        """
        while not self._queue:
            if self.closed:
                raise StopAsyncIteration
            self._ready.clear()
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        return self._queue.popleft()

    def __aiter__(self) -> AsyncIterator[BaseModel]:
        return self

    async def __anext__(self) -> BaseModel:
        return await self.get()

    def drain(self) -> list[BaseModel]:
        """Every record queued, at once, without waiting."""
        records = list(self._queue)
        self._queue.clear()
        return records

    def pending(self) -> int:
        """Records queued and not yet read."""
        return len(self._queue)

    def close(self) -> None:
        """Stop receiving; a waiting reader ends once the queue is drained."""
        self.closed = True
        self._bus.unsubscribe(self)
        self._ready.set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Bounded fan-out bus: `publish(record)` hands a record to every live subscription, never blocking.

    Publish from the event loop's thread only (asyncio primitives are not thread-safe); from a worker
    thread use `loop.call_soon_threadsafe(bus.publish, record)`.
    """

    def __init__(self, *, default_queue: int = DEFAULT_QUEUE, recent_alerts: int = RECENT_ALERTS) -> None:
        if default_queue < 1 or recent_alerts < 1:
            raise ValueError("default_queue and recent_alerts must be >= 1")
        self.default_queue = default_queue
        self._subscriptions: list[Subscription] = []
        self._recent: collections.deque[Alert] = collections.deque(maxlen=recent_alerts)
        self.published = 0

    def publish(self, record: BaseModel) -> None:
        """Offer `record` to every subscriber; a full one drops its oldest record, never the publisher."""
        self.published += 1
        if isinstance(record, Alert):
            self._recent.append(record)  # deque(maxlen): the oldest goes
        for sub in tuple(self._subscriptions):
            sub.offer(record)

    def recent_alerts(self, camera: str | None = None, limit: int = RECENT_ALERTS) -> list[Alert]:
        """The last `limit` alerts published (of `camera`, if given), newest first; only this process's, since
        it started (at most `recent_alerts` of all cameras)."""
        wanted = (a for a in reversed(self._recent) if camera is None or a.camera == camera)
        return [alert for alert, _ in zip(wanted, range(limit), strict=False)]

    def subscribe(
        self, *, maxsize: int | None = None, accept: Callable[[BaseModel], bool] | None = None
    ) -> Subscription:
        """Return a new subscription with a bounded queue.

        Args:
            maxsize: records held for this subscriber (default: the bus's `default_queue`).
            accept: keep only records for which this returns True (e.g. one camera's).
        """
        size = self.default_queue if maxsize is None else maxsize
        if size < 1:
            raise ValueError("maxsize must be >= 1")
        sub = Subscription(self, size, accept)
        self._subscriptions.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Remove a subscription (idempotent)."""
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)

    @property
    def subscribers(self) -> int:
        """Live subscriptions."""
        return len(self._subscriptions)

    @property
    def dropped(self) -> int:
        """Records dropped across live subscriptions (for metrics)."""
        return sum(sub.dropped for sub in self._subscriptions)
