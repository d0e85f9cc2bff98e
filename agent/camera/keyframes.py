"""One camera's JPEG keyframes: exactly the frames its memory names as evidence, within a byte budget.

A keyframe URL names one frame (`/cameras/{id}/snapshot?frame=N`). A frame is kept while a live presence
interval of the memory names it as its evidence frame (`TokenMemory.live_evidence()`), and dropped once none
does (checked every few frames), so a link answers with the moment it names or with 404, never with another
moment's picture. Over the byte budget (or the count cap) the frames of the least-supported, oldest intervals
go first. The newest frame is also the live view.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image


@dataclass(frozen=True)
class Keyframe:
    """One kept JPEG: the frame's index and stream second, its pixels' size and bytes."""

    frame: int
    t: float
    width: int
    height: int
    jpeg: bytes


def encode_jpeg(rgb: npt.NDArray[np.uint8], *, max_side: int, aspect: float | None, quality: int) -> bytes:
    """`rgb` [H, W, 3] as JPEG at width/height `aspect` (the source's; None: as given), longest side at most
    `max_side` pixels (never upscaled past the given pixels' longest side)."""
    image = Image.fromarray(rgb)
    width, height = image.size
    if aspect is not None and aspect > 0:
        longest = min(max_side, max(width, height))
        size = (longest, round(longest / aspect)) if aspect >= 1 else (round(longest * aspect), longest)
        image = image.resize((max(1, size[0]), max(1, size[1])), Image.Resampling.BILINEAR)
    image.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class KeyframeStore:
    """The evidence frames of one camera, by frame index. Thread-safe: written by the camera's update step,
    read by the API."""

    def __init__(
        self, *, budget_bytes: int = 16 << 20, max_frames: int = 4096, max_side: int = 640, quality: int = 80
    ) -> None:
        if budget_bytes < 1 or max_frames < 1 or max_side < 16 or not 1 <= quality <= 95:
            raise ValueError(
                f"need budget_bytes, max_frames >= 1, max_side >= 16, quality 1..95, got {budget_bytes=}, "
                f"{max_frames=}, {max_side=}, {quality=}"
            )
        self.budget_bytes, self.max_frames = int(budget_bytes), int(max_frames)
        self.max_side, self.quality = int(max_side), int(quality)
        self._frames: dict[int, Keyframe] = {}
        self._support: dict[int, int] = {}
        self._latest: Keyframe | None = None
        self._pins: dict[int, None] = {}  # frames alerts link to, oldest first
        self._bytes = 0
        self._lock = threading.Lock()
        self.dropped_total = 0  # frames dropped for the budget while still named as evidence

    def encode(self, frame: int, t: float, rgb: npt.NDArray[np.uint8], aspect: float | None) -> Keyframe:
        """A `Keyframe` of these pixels at the store's size and quality (CPU work: off the event loop)."""
        jpeg = encode_jpeg(rgb, max_side=self.max_side, aspect=aspect, quality=self.quality)
        with Image.open(io.BytesIO(jpeg)) as image:
            width, height = image.size
        return Keyframe(frame, float(t), width, height, jpeg)

    def add(self, keyframe: Keyframe) -> None:
        """Keep the newest frame: it is the live view, and evidence until `retain` says otherwise (an interval
        that is still open may name it)."""
        with self._lock:
            self._latest = keyframe
            if keyframe.frame not in self._frames:
                self._frames[keyframe.frame] = keyframe
                self._support[keyframe.frame] = 0
                self._bytes += len(keyframe.jpeg)

    def pin(self, frame: int, max_pins: int = 256) -> bool:
        """Keep a kept frame although no interval names it (an alert links to it), until `max_pins` newer
        pins push it out; False when the frame is not kept (nothing to pin)."""
        with self._lock:
            if frame not in self._frames:
                return False
            self._pins.pop(frame, None)
            self._pins[frame] = None
            while len(self._pins) > max_pins:
                del self._pins[next(iter(self._pins))]
            return True

    def retain(self, wanted: Mapping[int, int]) -> None:
        """Keep only the frames `wanted` names (`TokenMemory.live_evidence()`: frame index -> support in
        tokens) and the pinned ones, then shrink to the budget: the least-supported, oldest frames go first
        (pins count as the best supported)."""
        with self._lock:
            pinned = max(wanted.values(), default=0) + 1
            for gone in [f for f in self._frames if f not in wanted and f not in self._pins]:
                self._bytes -= len(self._frames.pop(gone).jpeg)
            self._pins = {f: None for f in self._pins if f in self._frames}
            self._support = {f: pinned if f in self._pins else int(wanted[f]) for f in self._frames}
            if self._bytes > self.budget_bytes or len(self._frames) > self.max_frames:
                self._shrink()

    def _shrink(self) -> None:
        """Drop the least-supported frames (the oldest first among equals) until within budget and count."""
        order = sorted(self._frames, key=lambda f: (self._support[f], self._frames[f].t))
        for frame in order:
            if self._bytes <= self.budget_bytes and len(self._frames) <= self.max_frames:
                break
            self._bytes -= len(self._frames.pop(frame).jpeg)
            del self._support[frame]
            self._pins.pop(frame, None)
            self.dropped_total += 1

    def get(self, frame: int) -> Keyframe | None:
        """The kept keyframe of frame index `frame`, or None when it is not (or no longer) kept."""
        with self._lock:
            return self._frames.get(frame)

    def at(self, t: float, tolerance_s: float = 0.05) -> Keyframe | None:
        """The kept keyframe taken at stream second `t` (within `tolerance_s`), or None (never another
        moment's)."""
        with self._lock:
            found = [k for k in self._frames.values() if abs(k.t - t) <= tolerance_s]
            if self._latest is not None and abs(self._latest.t - t) <= tolerance_s:
                found.append(self._latest)
        return min(found, key=lambda k: abs(k.t - t)) if found else None

    def latest(self) -> Keyframe | None:
        """The newest frame seen (for a live view), whether or not it is evidence."""
        with self._lock:
            return self._latest

    def kept(self) -> list[int]:
        """Frame indices kept as evidence, oldest first."""
        with self._lock:
            return sorted(self._frames, key=lambda f: self._frames[f].t)

    @property
    def bytes(self) -> int:
        """JPEG bytes held as evidence (the newest frame not counted)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._frames)
