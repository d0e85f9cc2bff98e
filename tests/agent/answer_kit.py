"""What the answer tests share: a labeler whose head is the identity (a token's 1000 values are its ImageNet
logits, so a test says what an entry looks like), cameras whose memories are given entries, and `Questions`
over the real embedded answerer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from prometheus_client import CollectorRegistry
from torch import Tensor

from agent.errors import UnknownCamera
from agent.models.base import PeopleSeen
from agent.models.embedded_answer import EmbeddedAnswerer
from agent.models.labels import Labeler
from agent.outputs.metrics import Metrics
from agent.questions import MemoryReader, Questions
from agent.state.store import MemoryStore
from compress.memory import EntryInfo

LABELER = Labeler(lambda tokens: tokens.float())
BICYCLE = 671  # mountain bike
CAR = 436  # beach wagon, a motorcar
CAT = 281  # tabby cat
SWITCH = 844  # electrical switch


def token(cls: int, strength: float = 14.0) -> Tensor:
    """An entry mean whose whole-frame and per-entry prediction is `cls` (p ~ 1)."""
    row = torch.zeros(1000)
    row[cls] = strength
    return row


def seen(i: int, cls: int, *intervals: tuple[float, float], count: int = 30) -> tuple[EntryInfo, Tensor]:
    """Entry `i` showing class `cls`, on camera in `intervals` (evidence frame of each: 10 * its start)."""
    frames = tuple(int(a * 10) for a, _ in intervals)
    info = EntryInfo(
        i, intervals[0][0], intervals[-1][1], count, len(intervals) * 2, frames[:1], intervals, frames
    )
    return info, token(cls)


class Camera:
    """A camera as a question reads it: fixed entries with their tokens; every keyframe is kept."""

    token_dim = 1000

    def __init__(
        self,
        camera_id: str,
        added_at: float,
        now: float,
        rows: Sequence[tuple[EntryInfo, Tensor]],
        people: PeopleSeen | None = None,
    ) -> None:
        self.id, self.added_at, self.now = camera_id, added_at, now
        self.seen_people = people
        self.rows = list(rows)

    def stream_seconds(self) -> float:
        return self.now

    def read(self, since: float | None, until: float | None) -> tuple[Tensor, list[EntryInfo]]:
        lo = -1e18 if since is None else since
        hi = 1e18 if until is None else until
        found = [(e, t) for e, t in self.rows if any(a <= hi and b >= lo for a, b in e.intervals)]
        tokens = torch.stack([t for _, t in found]) if found else torch.zeros(0, 1000)
        return tokens, [e for e, _ in found]

    def people(self, since: float | None, until: float | None) -> PeopleSeen | None:
        """The given detector track cut to the range, as the pipeline's is."""
        if self.seen_people is None:
            return None
        lo, hi = -1e18 if since is None else since, 1e18 if until is None else until
        track = self.seen_people

        def cut(runs: tuple[tuple[float, float, int], ...]) -> tuple[tuple[float, float, int], ...]:
            return tuple((max(a, lo), min(b, hi), n) for a, b, n in runs if a <= hi and b >= lo)

        samples = tuple(s for s in track.samples if lo <= s[0] <= hi)
        covered = (samples[0][0], samples[-1][0]) if samples else None
        return PeopleSeen(track.detector, cut(track.person), cut(track.face), covered, samples)

    def keyframe_time(self, frame: int) -> float | None:
        """Frame i is stream second i / 10 (as `seen` makes them)."""
        return frame / 10 if frame >= 0 else None


class Cameras:
    def __init__(self, *cameras: Camera) -> None:
        self.by_id = {c.id: c for c in cameras}

    def readers(self, camera_ids: Sequence[str]) -> list[MemoryReader]:
        missing = [c for c in camera_ids if c not in self.by_id]
        if missing:
            raise UnknownCamera(missing[0])
        return [self.by_id[c] for c in camera_ids]


def embedded_questions(**kwargs: float) -> Questions:
    """`Questions` over the embedded answerer on `LABELER` (its min_support is 10 tokens of 30 per entry)."""
    return Questions(
        answerer=EmbeddedAnswerer(LABELER),
        store=MemoryStore(),
        metrics=Metrics(CollectorRegistry()),
        **kwargs,  # type: ignore[arg-type]
    )
