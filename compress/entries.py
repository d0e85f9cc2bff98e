"""What `TokenMemory` reports: an `EntryInfo` per live entry, a `MemoryUpdate` per frame. Plain data."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EntryInfo:
    """Metadata of one live memory entry, as `TokenMemory.tokens` returns it.

    Attributes:
        id: stable entry id (unique within one memory, never reused).
        first_seen: stream seconds of the first frame the entry appeared in.
        last_seen: stream seconds of the latest frame the entry appeared in.
        count: member tokens accumulated into the entry.
        frames: number of frames the entry appeared in.
        evidence: a few frame indices where the entry was seen (oldest first).
        intervals: the stream-second intervals [start, end] in which the entry was on camera, sorted and
            disjoint: first_seen is intervals[0][0], last_seen intervals[-1][1]. Left out, one interval
            first_seen..last_seen.
        interval_frames: per interval, its evidence frame: the frame index where the entry absorbed the most
            tokens within the interval (ties: the earliest); -1 where not known. Left out with the intervals,
            the first evidence frame.
    """

    id: int
    first_seen: float
    last_seen: float
    count: int
    frames: int
    evidence: tuple[int, ...]
    intervals: tuple[tuple[float, float], ...] = ()
    interval_frames: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        """Fill the interval fields left out (one interval first_seen..last_seen); ValueError unless there is
        one evidence frame per interval."""
        if not self.intervals:
            object.__setattr__(self, "intervals", ((self.first_seen, self.last_seen),))
            if not self.interval_frames:
                object.__setattr__(self, "interval_frames", (self.evidence[0] if self.evidence else -1,))
        if len(self.interval_frames) != len(self.intervals):
            raise ValueError(
                f"EntryInfo {self.id}: {len(self.intervals)} intervals but {len(self.interval_frames)} "
                "evidence frames"
            )


@dataclass(frozen=True)
class MemoryUpdate:
    """What one `TokenMemory.add_frame` call changed.

    Attributes:
        t: stream seconds of the frame.
        frame_index: the frame's index.
        new: ids of entries created by this frame.
        absorbed: ids of pre-existing entries that absorbed some of the frame's tokens.
        merged_away: ids of entries that no longer exist because they merged into another (bridging or
            consolidation) during this update.
        evicted: ids of entries evicted by the time window during this update.
        novelty: share of the frame's tokens that matched no pre-existing entry, in [0, 1].
        frame_components: number of spatial components of the frame.
    """

    t: float
    frame_index: int
    new: tuple[int, ...]
    absorbed: tuple[int, ...]
    merged_away: tuple[int, ...]
    evicted: tuple[int, ...]
    novelty: float
    frame_components: int
