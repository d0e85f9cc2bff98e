"""`scissor bench faithful`: incremental TokenMemory vs batch compress_video on the same 32-frame clips.

Side by side: token counts and coverage of the original tokens for tau in {0.8, 0.85, 0.9, 0.95}, on
camera-like synthetic clips and (when the embedded encoder is installed) real clips. Prints a table, writes
JSON. Never imported by the product.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench.compress import camera_like
from compress import TokenMemory, compress_video, coverage

TAUS = (0.8, 0.85, 0.9, 0.95)
REAL_VIDEOS = ("bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4")
COVERAGE_GOAL, COUNT_GOAL = 0.99, 1.1  # incremental coverage >= 0.99 x batch, at <= 1.1 x batch's token count


def incremental(clip: Tensor, tau: float) -> Tensor:
    """Stream `clip` `[F, N, D]` frame by frame through a memory with no eviction and room for every token."""
    f, n, d = clip.shape
    memory = TokenMemory(d, tau=tau, capacity=f * n, window_s=math.inf)
    for i in range(f):
        memory.add_frame(clip[i], float(i), i)
    return memory.tokens()[0]


def _timed(fn: Callable[[], Tensor], runs: int) -> tuple[Tensor, float]:
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def compare(name: str, clip: Tensor, tau: float, runs: int) -> dict[str, Any]:
    """One row: both methods on the same clip, interleaved run by run, coverage of all original tokens."""
    flat = clip.reshape(-1, clip.shape[-1])
    batch, batch_s = _timed(lambda: compress_video(clip, tau), runs)
    inc, inc_s = _timed(lambda: incremental(clip, tau), runs)
    row: dict[str, Any] = {
        "clip": name,
        "tau": tau,
        "tokens_in": flat.shape[0],
        "batch_tokens": batch.shape[0],
        "incremental_tokens": inc.shape[0],
        "batch_coverage": coverage(flat, batch),
        "incremental_coverage": coverage(flat, inc),
        "batch_s": batch_s,
        "incremental_s": inc_s,
    }
    row["count_ratio"] = row["incremental_tokens"] / max(1, row["batch_tokens"])
    row["coverage_ratio"] = row["incremental_coverage"] / row["batch_coverage"]
    row["meets_goal"] = row["coverage_ratio"] >= COVERAGE_GOAL and row["count_ratio"] <= COUNT_GOAL
    return row


def real_clips(frames: int, names: tuple[str, ...]) -> list[tuple[str, Tensor]]:
    """Embedded-encoder tokens of sample videos, or [] when the encoder or its weights are missing."""
    try:
        from agent.models import load_backend
        from bench.eval.data import encode_clip, video_clip

        backend = load_backend("embedded", device="cpu")
    except (ImportError, FileNotFoundError) as error:  # WeightsNotFound is a FileNotFoundError
        print(f"(real clips skipped: {error})")
        return []
    size = backend.frame_size[0]
    return [
        (f"{n.removesuffix('.mp4')} (embedded)", encode_clip(backend.encoder, video_clip(n, frames, size)))
        for n in names
    ]


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'clip':<26} {'tau':>5} {'batch K':>8} {'incr K':>7} {'K ratio':>7} {'batch cov':>9} "
        f"{'incr cov':>8}"
    )
    print(head + f" {'cov ratio':>9} {'batch ms':>9} {'incr ms':>8} goal")
    for r in rows:
        print(
            f"{r['clip']:<26} {r['tau']:>5.2f} {r['batch_tokens']:>8} {r['incremental_tokens']:>7} "
            f"{r['count_ratio']:>7.3f} {r['batch_coverage']:>9.4f} {r['incremental_coverage']:>8.4f} "
            f"{r['coverage_ratio']:>9.4f} {r['batch_s'] * 1e3:>9.1f} {r['incremental_s'] * 1e3:>8.1f} "
            f"{'yes' if r['meets_goal'] else 'NO'}"
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scissor bench faithful", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32, help="frames per synthetic clip (F)")
    parser.add_argument("--tokens", type=int, default=196, help="tokens per frame (N)")
    parser.add_argument("--dim", type=int, default=896, help="token width (D)")
    parser.add_argument("--seeds", type=int, default=3, help="synthetic clips")
    parser.add_argument("--runs", type=int, default=3, help="timing runs per method (median)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: compression beside the encoder)"
    )
    parser.add_argument("--no-real", action="store_true", help="skip the embedded-encoder clips")
    parser.add_argument(
        "--quick", action="store_true", help="seconds-long smoke run (tiny clips, no real clips)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/out/faithful.json"), help="JSON results file")
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.tokens, args.dim, args.seeds, args.runs, args.no_real = 6, 36, 32, 1, 1, True
    torch.set_num_threads(args.threads)
    clips = [
        (f"camera-like seed {s}", camera_like(args.frames, args.tokens, args.dim, seed=s))
        for s in range(args.seeds)
    ]
    if not args.no_real:
        clips += real_clips(args.frames, REAL_VIDEOS)
    rows = [compare(name, clip, tau, args.runs) for name, clip in clips for tau in TAUS]
    print_table(rows)
    summary = {
        "rows_meeting_goal": sum(r["meets_goal"] for r in rows),
        "rows": len(rows),
        "worst_coverage_ratio": min(r["coverage_ratio"] for r in rows),
        "worst_count_ratio": max(r["count_ratio"] for r in rows),
    }
    print(
        f"\n{summary['rows_meeting_goal']}/{summary['rows']} rows meet the goal (coverage >= {COVERAGE_GOAL} "
        f"x batch at <= {COUNT_GOAL} x its tokens); worst coverage ratio "
        f"{summary['worst_coverage_ratio']:.4f}, worst count ratio {summary['worst_count_ratio']:.3f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if k != "out"}
    args.out.write_text(json.dumps({"config": config, "summary": summary, "rows": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
