"""`scissor bench compress`: the SCC compressor vs its matmul floor vs the reference algorithm.

One process, same inputs. Prints a table and writes JSON (default bench/out/compress.json). Never imported
by the product.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench.reference import reference_compress
from compress.budget import compress_to_budget_with_stats
from compress.scc import compress_video, compress_video_with_stats, normalize
from compress.syncs import count_syncs

RETENTIONS = (0.35, 0.10, 0.04)
DENSE_TAUS = (0.9, 0.8)


def camera_like(frames: int, tokens: int, dim: int, seed: int = 0) -> Tensor:
    """A static camera: 4 large regions (horizontal bands) cover most of each frame, 6 small 2x2 objects move,
    per-position texture and sensor noise with log-uniform spread (so similarity thresholds spread).
    `[F, N, D]`."""
    g = torch.Generator().manual_seed(seed)
    side = max(2, math.isqrt(tokens))
    region = (torch.arange(tokens) // side * 4 // side).clamp_max(3)  # [N] band of each position
    base = torch.randn(4, dim, generator=g)[region]  # [N, D]

    def spread(lo: float, hi: float) -> Tensor:  # [N, 1] per-position scale, log-uniform in [lo, hi]
        return torch.exp(torch.empty(tokens, 1).uniform_(math.log(lo), math.log(hi), generator=g))

    scene = base + spread(0.05, 0.8) * torch.randn(tokens, dim, generator=g)  # static texture
    video = scene.expand(frames, tokens, dim).clone()
    objects = torch.randn(6, dim, generator=g)
    for f in range(frames):
        for o in range(6):
            y, x = (o * 5 + f // 4) % (side - 1), (o * 7 + f // 3) % (side - 1)
            cells = torch.tensor([(y + a) * side + x + b for a in range(2) for b in range(2)]).clamp_max(
                tokens - 1
            )
            video[f, cells] = objects[o] + 0.2 * torch.randn(4, dim, generator=g)
    return video + spread(0.03, 0.6) * torch.randn(frames, tokens, dim, generator=g)


def camera_like_stream(tokens: int, dim: int, seed: int = 0) -> Iterator[Tensor]:
    """`camera_like` one `[N, D]` frame at a time, without end (for the memory benchmark): the same static
    scene of 4 bands with per-position texture, the same 6 moving 2x2 objects and sensor noise of log-uniform
    spread per position, drawn frame by frame (so not the numbers `camera_like` gives)."""
    g = torch.Generator().manual_seed(seed)
    side = max(2, math.isqrt(tokens))
    region = (torch.arange(tokens) // side * 4 // side).clamp_max(3)

    def spread(lo: float, hi: float) -> Tensor:
        return torch.exp(torch.empty(tokens, 1).uniform_(math.log(lo), math.log(hi), generator=g))

    scene = torch.randn(4, dim, generator=g)[region] + spread(0.05, 0.8) * torch.randn(
        tokens, dim, generator=g
    )
    objects, noise = torch.randn(6, dim, generator=g), spread(0.03, 0.6)
    f = 0
    while True:
        frame = scene.clone()
        for o in range(6):
            y, x = (o * 5 + f // 4) % (side - 1), (o * 7 + f // 3) % (side - 1)
            cells = torch.tensor([(y + a) * side + x + b for a in range(2) for b in range(2)]).clamp_max(
                tokens - 1
            )
            frame[cells] = objects[o] + 0.2 * torch.randn(4, dim, generator=g)
        yield frame + noise * torch.randn(tokens, dim, generator=g)
        f += 1


def dense_regions(frames: int, tokens: int, dim: int, seed: int = 1) -> Tensor:
    """Three big uniform regions with light noise: dense per-frame graphs (mean degree ~N/3). `[F, N, D]`."""
    g = torch.Generator().manual_seed(seed)
    region = torch.arange(tokens) * 3 // max(tokens, 1)
    base = torch.randn(3, dim, generator=g)[region]
    return base + 0.25 * torch.randn(frames, tokens, dim, generator=g)


def _sync(device: torch.device) -> None:
    """Wait for queued kernels, so a timer on the host measures the work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn: Callable[[], object], runs: int, device: torch.device) -> float:
    times = []
    for _ in range(runs):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(video: Tensor, tau: float, runs: int, ref_runs: int) -> dict[str, Any]:
    """Time compress_video, its three-matmul floor and the reference at one tau, interleaved run by run."""
    f, n, d = video.shape
    _, stats = compress_video_with_stats(video, tau)
    unit = normalize(video)[0]  # the floor's operands: the same shapes the compressor multiplies
    k1, k = unit.reshape(f * n, d)[: stats.spatial_tokens], unit.reshape(f * n, d)[: stats.output_tokens]
    flat = unit.reshape(f * n, d)

    def floor() -> None:
        unit @ unit.transpose(1, 2)  # [F, N, N] per-frame similarity
        k1 @ k1.T  # [K1, K1] temporal similarity
        flat @ k.T  # [F*N, K] merge similarity

    floor()  # warm up allocator and BLAS before timing
    ours_t, floor_t, ref_t = [], [], []
    ref_counts = reference_compress(video, tau)[1]
    for i in range(runs):  # interleaved so machine load hits all three alike
        ours_t.append(_median_time(lambda: compress_video(video, tau), 1, video.device))
        floor_t.append(_median_time(floor, 1, video.device))
        if i < ref_runs:
            ref_t.append(_median_time(lambda: reference_compress(video, tau), 1, video.device))
    ours, fl, ref = statistics.median(ours_t), statistics.median(floor_t), statistics.median(ref_t)
    syncs = count_syncs(lambda: compress_video(video, tau))[1]  # an extra call, counted, not timed
    return {
        "host_syncs": syncs.total,
        "host_syncs_by_op": dict(syncs.by_op),
        "tau": tau,
        "input_tokens": f * n,
        "spatial_tokens": stats.spatial_tokens,
        "output_tokens": stats.output_tokens,
        "retention": stats.output_tokens / (f * n),
        "ours_s": ours,
        "floor_s": fl,
        "reference_s": ref,
        "ours_over_floor": ours / fl,
        "reference_over_ours": ref / ours,
        "reference_spatial_tokens": ref_counts.spatial_tokens,
        "reference_output_tokens": ref_counts.output_tokens,
        "reference_dropped_members": ref_counts.dropped,
    }


def _device_name(device: torch.device) -> str:
    """`cpu`, or the GPU's name (`cuda: NVIDIA H200`)."""
    return f"cuda: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else device.type


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'workload':<12}{'tau':>8}{'K1':>7}{'K':>7}{'ret%':>7}{'ours s':>9}{'floor s':>9}{'ref s':>9}"
        f"{'ours/floor':>11}{'ref/ours':>10}{'ref K':>7}{'ref drop':>9}{'syncs':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['workload']:<12}{r['tau']:>8.4f}{r['spatial_tokens']:>7}{r['output_tokens']:>7}"
            f"{100 * r['retention']:>7.1f}{r['ours_s']:>9.3f}{r['floor_s']:>9.3f}{r['reference_s']:>9.3f}"
            f"{r['ours_over_floor']:>11.2f}{r['reference_over_ours']:>10.2f}{r['reference_output_tokens']:>7}"
            f"{r['reference_dropped_members']:>9}{r['host_syncs']:>7}"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Run the benchmark; returns the process exit code."""
    p = argparse.ArgumentParser(prog="scissor bench compress", description=__doc__)
    p.add_argument("--frames", type=int, default=32, help="frames per clip (F)")
    p.add_argument("--tokens", type=int, default=196, help="tokens per frame (N)")
    p.add_argument(
        "--dim", type=int, default=896, help="token width (D): 896 for the 0.5B model, 3584 for 7B"
    )
    p.add_argument("--runs", type=int, default=5, help="timed runs of ours and the floor (median)")
    p.add_argument("--ref-runs", type=int, default=3, help="timed runs of the reference (median)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave torch's default)")
    p.add_argument("--device", default="cpu", help="torch device the inputs and the compressor run on (cuda)")
    p.add_argument("--quick", action="store_true", help="tiny shapes, one run: a smoke test in seconds")
    p.add_argument("--out", type=Path, default=Path("bench/out/compress.json"), help="JSON results file")
    args = p.parse_args(argv)
    if args.quick:
        args.frames, args.tokens, args.dim, args.runs, args.ref_runs = 4, 49, 64, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    shape = (args.frames, args.tokens, args.dim)
    rows: list[dict[str, Any]] = []
    device = torch.device(args.device)
    camera = camera_like(*shape).to(device)
    for target in RETENTIONS[:1] if args.quick else RETENTIONS:
        tau = compress_to_budget_with_stats(
            camera, retention=target, merge=False, tau_tolerance=2e-3, max_steps=14
        )[1].tau
        rows.append(
            {
                "workload": "camera",
                "target_retention": target,
                **measure(camera, tau, args.runs, args.ref_runs),
            }
        )
    dense = dense_regions(*shape).to(device)
    for tau in DENSE_TAUS[:1] if args.quick else DENSE_TAUS:
        rows.append({"workload": "dense", **measure(dense, tau, args.runs, args.ref_runs)})
    print(
        f"compress_video vs floor (3 matmuls) vs reference; F x N x D = {shape}, torch threads "
        f"{torch.get_num_threads()}, medians of {args.runs} (reference {args.ref_runs}), "
        f"on {_device_name(device)}"
    )
    print(_table(rows))
    print("syncs: host syncs per compress_video call (compress.syncs.HostSyncs; goal <= 24)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "shape": shape,
                "threads": torch.get_num_threads(),
                "device": _device_name(device),
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {args.out}")
    return 0
