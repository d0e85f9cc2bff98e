"""One camera's people over time: a bounded series of detections, and the feed that fills it from frames.

`DetectionTrack` holds, per sampled frame the detector ran on, the stream second, the frame index, and the
person and face counts; it answers "is there a person?", "when did someone appear?" (`intervals`) and "how
many faces at t=20?" (`count_at`). `PeopleFeed` runs the detector on the camera's frames at its own fps in a
worker thread, one frame in flight at most (a frame that comes while one is running is skipped and counted),
so neither the event loop nor the memory update ever waits for it. Pure data and threads; never the models'
loading, never the answer's wording.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from agent.models.base import ModelError
from agent.models.people import PeopleDetector

log = logging.getLogger(__name__)

Label = Literal["person", "face"]
LABELS: tuple[Label, ...] = ("person", "face")


@dataclass(frozen=True)
class Detection:
    """What the detector found on one frame: stream second `t`, frame index, people and faces, best score."""

    t: float
    frame: int
    persons: int
    faces: int
    score: float  # the best person evidence on the frame (a face's or the body's score), 0 when none

    def count(self, label: Label) -> int:
        """People (`person`) or faces (`face`) on the frame."""
        return self.persons if label == "person" else self.faces


@dataclass(frozen=True)
class Presence:
    """One run of sampled frames on which `label` was present.

    Attributes:
        label: "person" or "face".
        start_s, end_s: stream seconds of the run's first and last positive frames (inside the range asked).
        max_count: the most people (or faces) on one of its frames.
        best_frame: frame index of its best frame: the highest count, then the highest score, then the
            earliest (the one to show as evidence).
        best_t: stream second of that frame.
        frames: positive frames in the run.
    """

    label: Label
    start_s: float
    end_s: float
    max_count: int
    best_frame: int
    best_t: float
    frames: int


class DetectionTrack:
    """A bounded, time-ordered series of `Detection`s of one camera (the oldest go first past `capacity`).

    Thread-safe: the feed appends from the event loop while questions read from their threads. A run of
    presence ends at a frame without the label or where two samples are more than `gap_s` apart (the
    detector was not running then: nothing is claimed about that time).
    """

    def __init__(self, *, capacity: int = 4096, gap_s: float = 5.0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if gap_s <= 0:
            raise ValueError(f"gap_s must be > 0, got {gap_s}")
        self.capacity, self.gap_s = capacity, gap_s
        self._items: deque[Detection] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, detection: Detection) -> None:
        """Append one frame's detection; its `t` never steps behind the newest (raised to it if it would)."""
        with self._lock:
            if self._items and detection.t < self._items[-1].t:
                detection = Detection(
                    self._items[-1].t, detection.frame, detection.persons, detection.faces, detection.score
                )
            self._items.append(detection)

    def between(self, since: float | None = None, until: float | None = None) -> list[Detection]:
        """Detections with `since <= t <= until` (None: open), oldest first."""
        with self._lock:
            items = list(self._items)
        times = [d.t for d in items]
        lo = 0 if since is None else bisect.bisect_left(times, since)
        hi = len(items) if until is None else bisect.bisect_right(times, until)
        return items[lo:hi]

    def covered(self) -> tuple[float, float] | None:
        """(oldest, newest) stream seconds the track holds a detection for, None when empty."""
        with self._lock:
            return (self._items[0].t, self._items[-1].t) if self._items else None

    def intervals(
        self, label: Label, since: float | None = None, until: float | None = None
    ) -> list[Presence]:
        """Runs of frames in `[since, until]` with `label` present, oldest first. Times are those of sampled
        frames inside the range, so no run names a second outside it."""
        runs: list[Presence] = []
        run: list[Detection] = []
        previous: Detection | None = None
        for d in self.between(since, until):
            broken = previous is not None and d.t - previous.t > self.gap_s
            if run and (d.count(label) == 0 or broken):
                runs.append(_presence(label, run))
                run = []
            if d.count(label) > 0:
                run.append(d)
            previous = d
        if run:
            runs.append(_presence(label, run))
        return runs

    def nearest(self, t: float, *, tolerance_s: float | None = None) -> Detection | None:
        """The detection nearest stream second `t` (the earlier on a tie) within `tolerance_s` (default
        `gap_s / 2`), None when the detector ran on no frame that close."""
        tolerance = self.gap_s / 2 if tolerance_s is None else tolerance_s
        near = self.between(t - tolerance, t + tolerance)
        return min(near, key=lambda d: abs(d.t - t)) if near else None

    def count_at(self, label: Label, t: float, *, tolerance_s: float | None = None) -> int | None:
        """People (`person`) or faces (`face`) on the detection nearest `t` (`nearest`), None when none is
        that close: "unknown", never 0."""
        found = self.nearest(t, tolerance_s=tolerance_s)
        return None if found is None else found.count(label)

    def state_dict(self) -> dict[str, Any]:
        """The track as plain lists (JSON- and torch.save-able); `load_state_dict` restores it exactly."""
        with self._lock:
            items = list(self._items)
        return {
            "version": 1,
            "capacity": self.capacity,
            "gap_s": self.gap_s,
            "t": [d.t for d in items],
            "frame": [d.frame for d in items],
            "persons": [d.persons for d in items],
            "faces": [d.faces for d in items],
            "score": [d.score for d in items],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the track's detections with those of `state` (the newest `capacity` of them)."""
        if state.get("version") != 1:
            raise ValueError(f"unknown detection track version {state.get('version')!r}")
        columns = [state[k] for k in ("t", "frame", "persons", "faces", "score")]
        if len({len(c) for c in columns}) != 1:
            raise ValueError("detection track columns differ in length")
        rows = zip(*columns, strict=True)
        items = [Detection(float(t), int(f), int(p), int(c), float(s)) for t, f, p, c, s in rows]
        if any(b.t < a.t for a, b in itertools.pairwise(items)):
            raise ValueError("detection track times step back")
        with self._lock:
            self._items = deque(items, maxlen=self.capacity)


def _presence(label: Label, run: list[Detection]) -> Presence:
    best = max(run, key=lambda d: (d.count(label), d.score, -d.t))
    return Presence(label, run[0].t, run[-1].t, best.count(label), best.frame, best.t, len(run))


@dataclass(frozen=True)
class PeopleSetup:
    """What a camera pipeline is given to detect people: the shared detector, its fps, the track's size."""

    detector: PeopleDetector
    fps: float = 1.0
    detections_kept: int = 4096


class PeopleFeed:
    """Runs a `PeopleDetector` on one camera's frames at `fps`, into its `DetectionTrack`.

    `offer` never waits: a frame is taken when `1 / fps` stream seconds passed since the last one taken and
    no detection is running; the detector runs in a worker thread. A failed detection is counted and
    skipped (the detector restarts its worker on the next frame); nothing stops the camera.
    """

    def __init__(self, detector: PeopleDetector, track: DetectionTrack, *, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.detector, self.track, self.period_s = detector, track, 1.0 / fps
        self._task: asyncio.Task[None] | None = None
        self._last_t: float | None = None
        self.frames_detected = 0
        self.frames_skipped = 0  # due while the previous detection was still running
        self.failures = 0

    def offer(self, rgb: npt.NDArray[np.uint8], *, t: float, frame: int, aspect: float | None) -> bool:
        """Detect on this frame if it is due and none is running (True when taken). Event loop only."""
        if self._last_t is not None and t - self._last_t < self.period_s:
            return False
        if self._task is not None and not self._task.done():
            self.frames_skipped += 1
            return False
        self._last_t = t
        self._task = asyncio.get_running_loop().create_task(self._detect(rgb, t, frame, aspect))
        return True

    async def drain(self) -> None:
        """Wait for the detection in flight, if any (a stopping camera keeps what it saw last)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _detect(self, rgb: npt.NDArray[np.uint8], t: float, frame: int, aspect: float | None) -> None:
        try:
            # Blocking: a pipe round trip to the detector's process (tens of ms): off the event loop.
            people = await asyncio.to_thread(self.detector.detect, rgb, aspect)
        except (ModelError, OSError, ValueError) as exc:
            self.failures += 1
            if self.failures == 1 or self.failures % 100 == 0:
                log.warning("people detection on frame %d failed (%s); %d so far", frame, exc, self.failures)
            return
        self.frames_detected += 1
        self.track.add(Detection(t, frame, people.persons, people.face_count, people.person_score))
