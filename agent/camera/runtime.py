"""Everything one camera keeps while it runs: where it streams from, its memory and keyframes, its counters.

Plain data: the pipeline changes it, the watcher sets the ingest state, readers read it under `memory_lock`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agent.camera.keyframes import KeyframeStore
from compress.memory import TokenMemory
from streamer import SourceStats, redact

# The streamer's words for a source's state, as the API says them.
STATE_NAMES = {
    "connecting": "starting",
    "up": "online",
    "down": "offline",
    "stopped": "stopped",
    "ended": "ended",  # a file camera that played to its end (not looping): no reconnects
    "failed": "failed",  # a file camera that cannot be read: no retries
}


# Source options the server sets itself, never a client: local files allowed, the camera-target policy, CAs.
SERVER_SOURCE_OPTIONS = frozenset({"allow_files", "policy", "ca_file", "max_pixels"})  # set by the server


@dataclass
class CameraRuntime:
    """One camera's state while it runs."""

    id: str
    url: str
    fps: float
    options: dict[str, Any]  # the source options `open_source` takes (the server's own included)
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
    last_t: float = 0.0
    stats_before: SourceStats = field(default_factory=SourceStats)  # every finished source's, added up
    processed_times: deque[float] = field(default_factory=lambda: deque(maxlen=64))

    @property
    def redacted_url(self) -> str:
        """The stream URL with its credentials replaced by `***`."""
        return redact(self.url)

    @property
    def api_state(self) -> str:
        """The state in the API's words (`CameraState`)."""
        return STATE_NAMES.get(self.state, "offline")

    @property
    def spec_options(self) -> dict[str, Any]:
        """The source options a client set (`allow_files` left out; memory options live in the memory)."""
        return {k: v for k, v in self.options.items() if k not in SERVER_SOURCE_OPTIONS}

    def stats(self) -> SourceStats:
        """The camera's ingest counters for the life of the process: every source it opened, the running one
        last (monotonic across reopens and watcher restarts)."""
        current = self.source.stats if self.source is not None else SourceStats()
        return self.stats_before.plus(current)

    def fps_out(self, horizon_s: float = 10.0) -> float:
        """Frames written to memory per second over the last `horizon_s` seconds."""
        now = time.monotonic()
        recent = [t for t in self.processed_times if now - t <= horizon_s]
        return len(recent) / horizon_s if recent else 0.0

    def stream_seconds(self, wall_time: float | None = None) -> float:
        """Stream seconds since the camera was added (robust across reconnects, unlike PTS)."""
        return (time.time() if wall_time is None else wall_time) - self.added_at
