"""What a camera actor hands the ingress beside its status: the records its event bus carried (alerts,
status changes, novelty) and the metric events its pipeline recorded (per-frame histograms, alert and
prompt-rule counters), so the ingress's `/events` and `/metrics` show them as the single-process service
does.

Both sit in a `Relay`: numbered and bounded (the oldest go first when nobody reads), read from a cursor
the reader sends back, so a report lost on the way is sent again and nothing is counted twice. The ingress
publishes the records on its own bus and replays the metric events on its own `Metrics`.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from agent.outputs.events import EventBus, Subscription
from agent.outputs.metrics import Metrics

T = TypeVar("T")
P = ParamSpec("P")
RELAY_LENGTH = 4096  # records or metric events an actor keeps for a reader that is away


@dataclass(frozen=True)
class MetricCall:
    """One call of a `Metrics` event method, to make again where the metrics are served."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class Batch(Generic[T]):
    """What a relay held past a cursor: its items and the cursor to send next time."""

    items: list[T]
    cursor: int


class Relay(Generic[T]):
    """A bounded, numbered queue read from a cursor (`since`), trimmed by what the reader has seen."""

    def __init__(self, maxlen: int = RELAY_LENGTH) -> None:
        self._items: collections.deque[tuple[int, T]] = collections.deque(maxlen=maxlen)
        self._next = 1
        self.lost = 0  # items pushed out unread

    def push(self, item: T) -> None:
        if len(self._items) == self._items.maxlen:
            self.lost += 1
        self._items.append((self._next, item))
        self._next += 1

    def since(self, cursor: int) -> Batch[T]:
        """Items numbered above `cursor` (those at or below it are dropped: the reader has them)."""
        while self._items and self._items[0][0] <= cursor:
            self._items.popleft()
        return Batch([item for _, item in self._items], self._next - 1)


def _kept(
    method: Callable[Concatenate[Metrics, P], None],
) -> Callable[Concatenate[RecordingMetrics, P], None]:
    """`method` of `Metrics`, counting as it does and then keeping the call in the instance's `calls` (a call
    that raises, a refused label, is not kept)."""

    def kept(self: RecordingMetrics, /, *args: P.args, **kwargs: P.kwargs) -> None:
        method(self, *args, **kwargs)
        self.calls.push(MetricCall(method.__name__, tuple(args), dict(kwargs)))

    kept.__name__, kept.__doc__ = method.__name__, method.__doc__
    return kept


class RecordingMetrics(Metrics):
    """A camera actor's `Metrics`: each event method also keeps its call in `calls`, for the ingress."""

    def __init__(self) -> None:
        super().__init__(CollectorRegistry())
        self.calls: Relay[MetricCall] = Relay()

    encoded = _kept(Metrics.encoded)
    memory_updated = _kept(Metrics.memory_updated)
    rule_prompt_dropped = _kept(Metrics.rule_prompt_dropped)
    answered = _kept(Metrics.answered)
    alert = _kept(Metrics.alert)
    watch_camera = _kept(Metrics.watch_camera)
    watch_rule = _kept(Metrics.watch_rule)
    forget_rule = _kept(Metrics.forget_rule)


# The Metrics methods a pipeline calls as things happen (its scrape-time counters travel in CameraScrape).
RELAYED_METRICS = frozenset(name for name in vars(RecordingMetrics) if not name.startswith("_"))


def replay(metrics: Metrics, calls: list[MetricCall]) -> None:
    """Make `calls` on `metrics` (the ingress's)."""
    for call in calls:
        if call.method in RELAYED_METRICS:
            getattr(metrics, call.method)(*call.args, **call.kwargs)


class RecordTap:
    """Every record published on a bus, kept in a relay for the ingress (subscribe on the bus's loop)."""

    def __init__(self, bus: EventBus) -> None:
        self.records: Relay[BaseModel] = Relay()
        self._subscription: Subscription = bus.subscribe(maxsize=RELAY_LENGTH)

    def follow(self, bus: EventBus) -> None:
        """Tap `bus` from now on (a restarted service's), keeping what is unread."""
        self._move()
        self._subscription.close()
        self._subscription = bus.subscribe(maxsize=RELAY_LENGTH)

    def since(self, cursor: int) -> Batch[BaseModel]:
        """Records numbered above `cursor`: what the bus carried since the reader's last batch."""
        self._move()
        return self.records.since(cursor)

    def _move(self) -> None:
        for record in self._subscription.drain():
            self.records.push(record)
