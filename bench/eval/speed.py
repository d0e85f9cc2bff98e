"""Speed and scale half of `scissor bench eval`: compression vs the reference, memory cost over a stream,
cameras per node, and the paper's FLOPs model (Eq. 9, docs/method.md). Benchmark-only; never imported by the
product.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench.compress import camera_like
from bench.models import flops_eq9
from bench.reference import reference_compress
from compress.memory import TokenMemory
from compress.scc import compress_video_with_stats

# LLaVA-OneVision language models (docs/method.md, Table 5 / Eq. 9): layers T, hidden d, FFN c.
LLMS = {"LLaVA-OV-0.5B": (24, 896, 4864), "LLaVA-OV-7B": (28, 3584, 18944)}
PAPER_TOKENS = 6272  # 32 frames x 196 tokens


def flops_table(retentions: Sequence[float]) -> list[dict[str, Any]]:
    """Eq. 9 for each model at full tokens and at each retention of the 6,272-token workload."""
    rows = []
    for model, (t, d, c) in LLMS.items():
        full = flops_eq9(PAPER_TOKENS, t, d, c)
        for ratio in (1.0, *retentions):
            k = round(ratio * PAPER_TOKENS)
            flops = flops_eq9(k, t, d, c)
            rows.append(
                {
                    "model": model,
                    "retention": ratio,
                    "tokens": k,
                    "tflops": flops / 1e12,
                    "share": flops / full,
                    "speedup": full / flops,
                }
            )
    return rows


def _timed(fn: Any, *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def compress_vs_reference(
    frame_counts: Sequence[int],
    *,
    tokens: int = 196,
    dim: int = 896,
    tau: float = 0.9,
    runs: int = 3,
    big: int = 20_000,
) -> list[dict[str, Any]]:
    """Median wall time of `compress_video` and of the reference re-expression on `bench.compress.camera_like`
    streams of F x 196 tokens, interleaved run by run; sizes above `big` tokens get one run each."""
    rows = []
    for frames in frame_counts:
        video = camera_like(frames, tokens, dim)
        n_runs = 1 if frames * tokens > big else runs
        ours, ref = [], []
        stats, counts = None, None
        for _ in range(n_runs):
            seconds, (_, stats) = _timed(compress_video_with_stats, video, tau)
            ours.append(seconds)
            seconds, (_, counts) = _timed(reference_compress, video, tau)
            ref.append(seconds)
        assert stats is not None and counts is not None
        o, r = statistics.median(ours), statistics.median(ref)
        rows.append(
            {
                "frames": frames,
                "tokens": frames * tokens,
                "dim": dim,
                "tau": tau,
                "runs": n_runs,
                "kept": stats.output_tokens,
                "retention": stats.output_tokens / (frames * tokens),
                "ours_s": o,
                "reference_s": r,
                "reference_over_ours": r / o,
                "reference_dropped_members": counts.dropped,
            }
        )
    return rows


def memory_over_stream(
    clips: Sequence[Tensor],
    length: int,
    *,
    tau: float = 0.8,
    capacity: int = 1024,
    window_s: float = 600.0,
    checkpoints: Sequence[int] = (32, 128, 512, 2048),
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Per-frame `TokenMemory.add_frame` time over a 1 fps stream replaying the real clips with fresh noise.

    Returns one row per checkpoint <= length: median update time of the frames since the previous checkpoint,
    live entries and stored tokens at the checkpoint.
    """
    frames = torch.cat(list(clips))  # [F_total, N, D]
    g = torch.Generator().manual_seed(seed)
    scale = 0.05 * float(frames.std())
    memory = TokenMemory(frames.shape[2], tau, capacity=capacity, window_s=window_s)
    rows, times, marks = [], [], [c for c in checkpoints if c <= length] or [length]
    for i in range(1, length + 1):
        x = frames[(i - 1) % frames.shape[0]]
        x = (x + scale * torch.randn(x.shape, generator=g)).clamp_min(0)  # ReLU6 tokens stay non-negative
        seconds, _ = _timed(memory.add_frame, x, float(i), i)
        times.append(seconds)
        if i in marks:
            summary = memory.summary()
            rows.append(
                {
                    "frames": i,
                    "update_ms_median": 1e3 * statistics.median(times),
                    "update_ms_p90": 1e3 * sorted(times)[int(0.9 * (len(times) - 1))],
                    "entries": summary["entries"],
                    "tokens_stored": summary["tokens_stored"],
                    "capacity": capacity,
                    "tau": tau,
                }
            )
            times = []
    return rows


def ingest_share(path: Path, fps: float = 1.0) -> float | None:
    """CPU cores one camera's decode + sampling costs at `fps`.

    Read from bench/ingest.py's JSON (live mode, 1 source).
    """
    if not path.exists():
        return None
    for row in json.loads(path.read_text())["rows"]:
        if row["mode"] == "live" and row["sources"] == 1 and math.isclose(row["sample_fps"], fps):
            return float(row["cpu_share_per_camera"])
    return None


def cameras_per_node(
    encode_s_per_frame: float,
    memory_s_per_frame: float,
    ingest_cores: float | None,
    *,
    cores: int,
    fps: float = 1.0,
) -> dict[str, Any]:
    """Cameras one node sustains at `fps`: each core runs a single-threaded worker; a camera costs encode +
    memory update per frame plus its decode share (cores busy per camera = fps * (encode + memory) +
    ingest)."""
    per_camera = fps * (encode_s_per_frame + memory_s_per_frame) + (ingest_cores or 0.0)
    return {
        "fps": fps,
        "cores": cores,
        "encode_s_per_frame": encode_s_per_frame,
        "memory_s_per_frame": memory_s_per_frame,
        "ingest_cores_per_camera": ingest_cores,
        "cores_per_camera": per_camera,
        "cameras_per_core": 1 / per_camera,
        "cameras_per_node": math.floor(cores / per_camera),
    }
