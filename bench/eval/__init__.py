"""`scissor bench eval`: quality vs retention of SCC and every peer on real video with a real encoder, speed
and scale, FLOPs; writes docs/benchmarks.md, PNG plots and JSON.

Benchmark-only; never imported by the product. One command regenerates every number: `python -m agent.cli
bench eval` (about 10 minutes on 2 idle cores; `--quick` is the seconds-long CI smoke run). Encoded clip
tokens are cached in bench/out/eval_tokens/.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench.eval import doc, report
from bench.eval.data import SLIDESHOWS, VIDEOS, Clip, encode_clip, load_clips
from bench.eval.quality import METHODS, evaluate_clip
from bench.eval.speed import (
    cameras_per_node,
    compress_vs_reference,
    flops_table,
    ingest_share,
    memory_over_stream,
)

log = logging.getLogger("bench.eval")
RETENTIONS = (0.5, 0.35, 0.10, 0.05)
INGEST_JSON = Path("bench/out/ingest.json")


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scissor bench eval", description=__doc__)
    p.add_argument("--quick", action="store_true", help="2 small clips, 2 ratios, tiny speed sizes: seconds")
    p.add_argument("--out-dir", type=Path, default=Path("docs"), help="where benchmarks.md and the PNGs go")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON results (default bench/out/eval.json; with --quick, OUT_DIR/eval.json)",
    )
    p.add_argument("--frames", type=int, default=32, help="frames per clip (F)")
    p.add_argument("--px", type=int, default=448, help="encoder input side: 448 gives N = 196 tokens")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads per process (1: see docs/benchmarks.md)"
    )
    p.add_argument("--jobs", type=int, default=2, help="clips scored in parallel processes")
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[5, 32, 64, 128, 255],
        help="frames of 196 tokens for compression vs reference (255 = 50k tokens)",
    )
    p.add_argument("--stream", type=int, default=512, help="frames streamed through TokenMemory")
    p.add_argument("--cache", type=Path, default=Path("bench/out/eval_tokens"), help="encoded-token cache")
    p.add_argument("--no-cache", action="store_true", help="always re-encode the clips")
    args = p.parse_args(argv)
    if args.quick:
        args.frames, args.px, args.sizes, args.stream, args.jobs, args.no_cache = 8, 224, [2, 4], 16, 1, True
    args.out = args.out or (args.out_dir / "eval.json" if args.quick else Path("bench/out/eval.json"))
    return args


def _tokens(clips: list[Clip], encoder: Any, args: argparse.Namespace) -> tuple[list[Tensor], list[float]]:
    """Tokens per clip (cached on disk unless --no-cache) and the batch-of-8 encode times for them."""
    tokens, batch_s = [], []
    for clip in clips:
        path = args.cache / f"{clip.name}-{args.frames}x{args.px}.pt"
        if not args.no_cache and path.exists():
            saved = torch.load(path, weights_only=True)
        else:
            times, parts = [], []
            for i in range(0, len(clip.frames), 8):
                start = time.perf_counter()
                parts.append(
                    encode_clip(encoder, Clip(clip.name, clip.frames[i : i + 8], clip.scenes[i : i + 8]))
                )
                times.append((time.perf_counter() - start) / len(parts[-1]))
            saved = {
                "tokens": torch.cat(parts),
                "encode_s_per_frame": torch.tensor(times, dtype=torch.float64),
            }
            if not args.no_cache:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(saved, path)
        tokens.append(saved["tokens"])
        batch_s += saved["encode_s_per_frame"].tolist()
    return tokens, batch_s


def _score(job: tuple[str, Tensor, tuple[float, ...], int]) -> list[dict[str, Any]]:
    """Worker: score one clip (loads its own labeler head, so it runs in a separate process)."""
    name, x, retentions, threads = job
    torch.set_num_threads(threads)
    from agent.models import load_backend

    labeler = load_backend("embedded", device="cpu").labeler
    assert labeler is not None
    return evaluate_clip(x, labeler.class_logits, retentions, METHODS, clip=name)


def _quality(clips: list[Clip], tokens: list[Tensor], args: argparse.Namespace) -> list[dict[str, Any]]:
    retentions = (0.35, 0.10) if args.quick else RETENTIONS
    jobs = [(c.name, x, retentions, args.threads) for c, x in zip(clips, tokens, strict=True)]
    if args.jobs <= 1:
        return [row for job in jobs for row in _score(job)]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        return [row for rows in pool.map(_score, jobs) for row in rows]


def _speed(tokens: list[Tensor], encode_s: list[float], args: argparse.Namespace) -> dict[str, Any]:
    small = {"tokens": 49, "dim": 64, "runs": 1} if args.quick else {}
    compress_rows = compress_vs_reference(args.sizes, **small)
    checkpoints = (8, 16) if args.quick else (32, 128, 512, 2048)
    memory_rows = memory_over_stream(tokens, args.stream, checkpoints=checkpoints)
    encode = statistics.median(encode_s)
    steady = memory_rows[-1]["update_ms_median"] / 1e3
    cameras = cameras_per_node(encode, steady, ingest_share(INGEST_JSON), cores=os.cpu_count() or 1)
    return {
        "compress": compress_rows,
        "memory": memory_rows,
        "cameras": cameras,
        "flops": flops_table(RETENTIONS),
    }


def write(result: dict[str, Any], out_dir: Path) -> None:
    """Write benchmarks.md (keeping the marker blocks other commands wrote there), eval_quality.png and
    eval_speed.png into `out_dir`."""
    report.plot_quality(result, out_dir / "eval_quality.png")
    report.plot_speed(result, out_dir / "eval_speed.png")
    page = out_dir / "benchmarks.md"
    old = page.read_text() if page.exists() else ""
    page.write_text(doc.keep_blocks(old, doc.markdown(result)))  # the needles block, the QA block... stay


def main(argv: list[str]) -> int:
    """Run the evaluation, print the tables, write JSON, docs/benchmarks.md and the plots; returns 0."""
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    started, load0 = time.perf_counter(), os.getloadavg()[0]
    from agent.models import load_backend

    backend = load_backend("embedded", device="cpu", image_px=args.px)
    videos = VIDEOS[2:] if args.quick else VIDEOS
    slides = tuple(SLIDESHOWS)[:1] if args.quick else tuple(SLIDESHOWS)[:2]
    clips = load_clips(args.frames, args.px, videos=videos, slideshows=slides)
    log.info("encoding %d clips of %d frames at %d px", len(clips), args.frames, args.px)
    tokens, encode_s = _tokens(clips, backend.encoder, args)
    log.info("scoring %d methods x %d clips", len(METHODS), len(clips))
    quality = _quality(clips, tokens, args)
    log.info("speed and scale")
    speed = _speed(tokens, encode_s, args)
    meta = {
        "command": "python -m agent.cli bench eval" + (" --quick" if args.quick else ""),
        "clips": [{"name": c.name, "frames": len(c.frames), "scenes": len(set(c.scenes))} for c in clips],
        "frames": args.frames,
        "px": args.px,
        "tokens_per_frame": int(tokens[0].shape[1]),
        "dim": int(tokens[0].shape[2]),
        "threads": args.threads,
        "jobs": args.jobs,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_avg_start": load0,
        "load_avg_end": os.getloadavg()[0],
        "wall_s": time.perf_counter() - started,
        "json": str(args.out),
    }
    result = {"meta": meta, "quality": quality, "summary": report.summarise(quality), "speed": speed}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write(result, args.out_dir)
    print(report.headline(result))
    print(f"wrote {args.out}, {args.out_dir / 'benchmarks.md'} and plots in {args.out_dir}")
    return 0
