"""Camera state, status and counters as plain records.

Never does I/O (the service turns them into metrics/MQTT).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from enum import StrEnum


class State(StrEnum):
    """Where a camera is: `connecting` (opening), `up` (frames flowing), `down` (failed, will retry),
    `stopped` (closed, or a file that ended or cannot be read; no retry)."""

    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"
    STOPPED = "stopped"


# Short machine-readable causes; `SourceStatus.reason` says the same in words, with what to check.
REASON_CODES = frozenset(
    {
        "",
        "dns",
        "refused",
        "unreachable",
        "timeout",
        "unauthorized",
        "forbidden",
        "not_found",
        "server_error",
        "invalid_data",
        "unsupported",
        "ended",
        "file_not_found",
        "io_error",
        "closed",
        "internal",
    }
)


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """One status transition.

    Attributes:
        state: the camera's state.
        reason: why, in words a user can act on (redacted; empty while healthy).
        code: the cause as one of `REASON_CODES` (``""`` while healthy).
        since: `time.time()` of the transition.
    """

    state: State
    reason: str = ""
    code: str = ""
    since: float = field(default_factory=time.time)


@dataclass(slots=True)
class SourceStats:
    """Per-camera counters (plain numbers, read by the service's metrics collector).

    Attributes:
        frames_decoded: frames that came out of the decoder.
        frames_sampled: frames the fps sampler kept and put in the queue.
        frames_emitted: frames the consumer received from `frames()`.
        drops: frames lost, by reason: ``consumer_behind`` (queue full, oldest dropped),
            ``decode_error`` (a packet the decoder rejected).
        reconnects: sessions opened after the first one (file loops are not reconnects).
        connect_failures: open attempts that failed.
        loops: times a looping file restarted from its beginning.
        last_frame_wall_time: `time.time()` of the last decoded frame, or None.
        input_fps: decoded frames per stream second over the recent frames.
        decode_seconds: time spent decoding and converting (excludes waiting for the network).
    """

    frames_decoded: int = 0
    frames_sampled: int = 0
    frames_emitted: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    connect_failures: int = 0
    loops: int = 0
    last_frame_wall_time: float | None = None
    input_fps: float = 0.0
    decode_seconds: float = 0.0

    def count_drop(self, reason: str, n: int = 1) -> None:
        """Add `n` drops under `reason`."""
        self.drops[reason] = self.drops.get(reason, 0) + n

    @property
    def frames_dropped(self) -> int:
        """All drops, whatever the reason."""
        return sum(self.drops.values())

    def snapshot(self) -> SourceStats:
        """A copy that later updates from the decode thread do not change."""
        return dataclasses.replace(self, drops=dict(self.drops))

    def plus(self, later: SourceStats) -> SourceStats:
        """These counters followed by a later source's (the same camera reopened): counts add, so they stay
        monotonic across reopens; rates and the last frame's time are the later source's."""
        drops = dict(self.drops)
        for reason, n in later.drops.items():
            drops[reason] = drops.get(reason, 0) + n
        return SourceStats(
            frames_decoded=self.frames_decoded + later.frames_decoded,
            frames_sampled=self.frames_sampled + later.frames_sampled,
            frames_emitted=self.frames_emitted + later.frames_emitted,
            drops=drops,
            reconnects=self.reconnects + later.reconnects,
            connect_failures=self.connect_failures + later.connect_failures,
            loops=self.loops + later.loops,
            last_frame_wall_time=later.last_frame_wall_time or self.last_frame_wall_time,
            input_fps=later.input_fps or self.input_fps,
            decode_seconds=self.decode_seconds + later.decode_seconds,
        )
