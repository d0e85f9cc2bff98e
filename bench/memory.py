"""`scissor bench memory`: TokenMemory per-frame update cost over a long camera-like stream (flat, bounded).

Streams F frames x N tokens x D dims through one memory and compares the median update time of the first and
last 1,000 frames; the share of the embedded encoder's per-frame time is measured in the same process, and
the host syncs per update (`compress.syncs`) below and at capacity. Workloads: `camera` (a drifting
background and objects that leave and come back) or `static` (`bench.compress.camera_like` frame by frame: a
static scene under sensor noise, where at a high tau most tokens are new every frame). `--device cuda` keeps
the memory and the tokens on the GPU. Prints a table, writes JSON. Never imported by the product.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bench.compress import camera_like_stream
from compress import TokenMemory
from compress.syncs import HostSyncs

FLAT_GOAL, SHARE_GOAL, SYNC_GOAL = 1.3, 0.05, 16


class CameraStream:
    """Camera-like tokens: a drifting background of big regions plus object slots whose objects leave and are
    replaced by new ones (or by recently seen ones returning), so concepts appear, vanish and come back."""

    def __init__(self, tokens: int, dim: int, *, objects: int = 8, seed: int = 0) -> None:
        self.g = torch.Generator().manual_seed(seed)
        self.n, self.d, self.slots = tokens, dim, objects
        self.background = self._unit(12)  # 12 regions: sky, road, walls...
        self.region = torch.randint(0, 12, (tokens,), generator=self.g)
        self.objects = self._unit(objects)
        self.seen: list[Tensor] = []
        self.noise = 0.3 / dim**0.5  # token cos to its concept ~0.96, two tokens ~0.92: above tau 0.9

    def _unit(self, k: int) -> Tensor:
        x: Tensor = torch.randn(k, self.d, generator=self.g)
        return torch.nn.functional.normalize(x, dim=1)

    def frame(self) -> Tensor:
        """Next `[N, D]` frame: each object slot changes with p = 0.3 (a third of changes are returns)."""
        change = torch.rand(self.slots, generator=self.g) < 0.3
        for s in change.nonzero().squeeze(1).tolist():
            self.seen = [*self.seen, self.objects[s]][-500:]
            if torch.rand(1, generator=self.g).item() < 1 / 3:
                self.objects[s] = self.seen[int(torch.randint(0, len(self.seen), (1,), generator=self.g))]
            else:
                self.objects[s] = self._unit(1)[0]
        drift = 0.02 * self._unit(12)
        self.background = torch.nn.functional.normalize(self.background + drift / self.d**0.5, dim=1)
        x = self.background[self.region].clone()
        per = max(1, self.n // (4 * self.slots))  # objects cover about a quarter of the frame
        for s in range(self.slots):
            x[s * per : (s + 1) * per] = self.objects[s]
        out: Tensor = x + self.noise * torch.randn(self.n, self.d, generator=self.g)
        return out


class Frames:
    """The workload's `[N, D]` frames, on the benchmark's device (`next_frame`)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.device = torch.device(args.device)
        if args.workload == "static":
            self.source: Any = camera_like_stream(args.tokens, args.dim, seed=args.seed)
        else:
            self.camera = CameraStream(args.tokens, args.dim, seed=args.seed)
            self.source = iter(self.camera.frame, None)

    def next_frame(self) -> Tensor:
        frame: Tensor = next(self.source)
        return frame.to(self.device)


def _sync(device: torch.device) -> None:
    """Wait for queued kernels, so a timer on the host measures the work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def run_stream(args: argparse.Namespace) -> dict[str, Any]:
    """Stream the frames and time every update (token generation excluded); every `sync_every`-th update is
    counted for host syncs instead of timed (the counter slows it down)."""
    device = torch.device(args.device)
    memory = TokenMemory(
        args.dim,
        tau=args.tau,
        capacity=args.capacity,
        window_s=args.window_s,
        device=device,
        gap_s=args.gap_s,
        max_intervals=args.max_intervals,
    )
    stream = Frames(args)
    times: list[float | None] = []
    peak, novelty, early, full_at = 0, [], b"", None
    syncs: dict[str, list[int]] = {"below": [], "at": []}
    by_op: dict[str, int] = {}
    edge = min(args.edge, args.frames // 2)
    for f in range(args.frames):
        if f == edge // 2:
            early = memory.to_bytes()  # the memory at the middle of the first `edge` frames
        tokens = stream.next_frame()
        full = len(memory) >= args.capacity
        if args.sync_every and f % args.sync_every == args.sync_every - 1:
            with HostSyncs() as counted:
                update = memory.add_frame(tokens, f / args.fps, f)
            syncs["at" if full else "below"].append(counted.total)
            if counted.total >= max(by_op.values(), default=0):
                by_op = {"frame": f, "full": full, **counted.by_op}
            times.append(None)
        else:
            _sync(device)
            start = time.perf_counter()
            update = memory.add_frame(tokens, f / args.fps, f)
            _sync(device)
            times.append(time.perf_counter() - start)
        peak = max(peak, len(memory))
        novelty.append(update.novelty)
        if full_at is None and len(memory) == args.capacity:
            full_at = f + 1

    def timed(part: list[float | None]) -> list[float]:
        return [t for t in part if t is not None]

    first, last = _median(timed(times[:edge])), _median(timed(times[-edge:]))
    # Flat with stream length: the first `edge` frames after the memory first filled vs the last `edge`.
    full_ms = (
        _median(timed(times[full_at : full_at + edge]))
        if full_at is not None and full_at < len(times)
        else None
    )
    blob = memory.to_bytes()
    side = side_by_side(
        TokenMemory.from_bytes(early, device=device),
        TokenMemory.from_bytes(blob, device=device),
        stream,
        args,
    )
    return {
        **sync_stats(syncs),
        "host_syncs_worst_by_op": by_op,
        **side,
        "first_median_ms": first * 1e3,
        "last_median_ms": last * 1e3,
        "flat_ratio": last / first,
        "full_at_frame": full_at,
        "full_median_ms": None if full_ms is None else full_ms * 1e3,
        "full_ratio": None if full_ms is None else last / full_ms,
        "frames_per_s_at_capacity": None if full_at is None else 1.0 / last,
        "p95_ms": float(np.percentile(timed(times), 95)) * 1e3,
        "max_ms": max(timed(times)) * 1e3,
        "edge_frames": edge,
        "peak_entries": peak,
        "final_entries": len(memory),
        "snapshot_bytes": len(blob),
        "snapshot_bytes_per_entry": len(blob) / max(1, len(memory)),
        **interval_stats(memory),
        "mean_novelty": statistics.fmean(novelty),
        **memory.summary(),
    }


def sync_stats(syncs: dict[str, list[int]]) -> dict[str, float | int | None]:
    """Host syncs per counted update, below and at capacity: max and mean (None where none was counted)."""
    out: dict[str, float | int | None] = {}
    for part, counts in syncs.items():
        out[f"host_syncs_{part}_capacity_max"] = max(counts) if counts else None
        out[f"host_syncs_{part}_capacity_mean"] = statistics.fmean(counts) if counts else None
        out[f"host_syncs_{part}_capacity_frames"] = len(counts)
    return out


def interval_stats(memory: TokenMemory) -> dict[str, float | int]:
    """Intervals per live entry (mean, max) and the frames their evidence names (a keyframe store keeps)."""
    counts = [len(info.intervals) for info in memory.tokens()[1]] or [0]
    return {
        "intervals_mean": statistics.fmean(counts),
        "intervals_max": max(counts),
        "live_evidence_frames": len(memory.live_evidence()),
    }


def side_by_side(
    early: TokenMemory, late: TokenMemory, stream: Frames, args: argparse.Namespace
) -> dict[str, float]:
    """Early vs late memory fed the same next frames, alternating per frame: a ratio immune to load drift."""
    times: dict[str, list[float]] = {"early": [], "late": []}
    for f in range(args.replay):
        tokens, t = stream.next_frame(), (args.frames + f) / args.fps
        for name, memory in (
            (("early", early), ("late", late)) if f % 2 else (("late", late), ("early", early))
        ):
            _sync(stream.device)
            start = time.perf_counter()
            memory.add_frame(tokens, max(t, memory.newest_t or t), args.frames + f)
            _sync(stream.device)
            times[name].append(time.perf_counter() - start)
    early_ms, late_ms = (statistics.median(times[k]) * 1e3 for k in ("early", "late"))
    return {
        "replay_early_ms": early_ms,
        "replay_late_ms": late_ms,
        "replay_ratio": late_ms / early_ms,
        "replay_early_entries": len(early),
        "replay_late_entries": len(late),
    }


def encoder_ms(runs: int, batch: int) -> dict[str, Any] | None:
    """Median per-frame time of the embedded encoder on `batch` frames, or None when it is not installed."""
    try:
        from agent.models import load_backend

        backend = load_backend("embedded", device="cpu")
    except (ImportError, FileNotFoundError) as error:  # WeightsNotFound is a FileNotFoundError
        print(f"(embedded encoder not available: {error})")
        return None
    w, h = backend.frame_size
    frames = [np.random.default_rng(i).integers(0, 255, (h, w, 3), dtype=np.uint8) for i in range(batch)]
    backend.encoder.encode(frames[:1])  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        backend.encoder.encode(frames)
        times.append((time.perf_counter() - start) / batch)
    return {
        "encoder_ms_per_frame": statistics.median(times) * 1e3,
        "encoder_batch": batch,
        "encoder_tokens": [backend.tokens_per_frame, backend.token_dim],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scissor bench memory", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000, help="frames streamed into the memory")
    parser.add_argument("--tokens", type=int, default=196, help="tokens per frame (N)")
    parser.add_argument("--dim", type=int, default=896, help="token width (D)")
    parser.add_argument("--capacity", type=int, default=2048, help="most memory entries (M)")
    parser.add_argument("--window-s", type=float, default=600.0, help="stream seconds the memory covers")
    parser.add_argument("--fps", type=float, default=4.0, help="stream seconds per frame = 1 / fps")
    parser.add_argument("--tau", type=float, default=0.9, help="SCC cosine threshold")
    parser.add_argument(
        "--workload",
        choices=("camera", "static"),
        default="camera",
        help="camera: objects come, go and return; static: bench compress's camera_like, frame by frame",
    )
    parser.add_argument("--device", default="cpu", help="torch device of the memory and the tokens (cuda)")
    parser.add_argument(
        "--sync-every", type=int, default=25, help="count host syncs of every n-th update (0: none)"
    )
    parser.add_argument(
        "--gap-s", type=float, default=None, help="interval gap (default: measured from the stream)"
    )
    parser.add_argument("--max-intervals", type=int, default=16, help="intervals kept per entry")
    parser.add_argument("--edge", type=int, default=1000, help="frames in the first / last medians")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic stream")
    parser.add_argument(
        "--replay", type=int, default=200, help="frames fed to the early and late memories in turn"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: compression beside the encoder)"
    )
    parser.add_argument(
        "--encoder-runs", type=int, default=3, help="timed EfficientNet-Lite0 encode runs (median)"
    )
    parser.add_argument("--no-encoder", action="store_true", help="skip timing the encoder")
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--out", type=Path, default=Path("bench/out/memory.json"), help="JSON results file")
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.tokens, args.dim, args.capacity, args.edge, args.no_encoder = (
            300,
            49,
            64,
            64,
            100,
            True,
        )
        args.window_s, args.replay = 60.0, 20
    torch.set_num_threads(args.threads)
    result = run_stream(args)
    enc = None if args.no_encoder else encoder_ms(args.encoder_runs, batch=8)
    if enc:
        result.update(enc, encoder_share=result["last_median_ms"] / enc["encoder_ms_per_frame"])
    result["meets_flat_goal"] = result["flat_ratio"] <= FLAT_GOAL and result["replay_ratio"] <= FLAT_GOAL
    where = (
        f"cuda: {torch.cuda.get_device_name(args.device)}" if args.device.startswith("cuda") else args.device
    )
    print(
        f"TokenMemory: {args.frames} frames x {args.tokens} tokens x {args.dim} dims ({args.workload}), "
        f"capacity {args.capacity}, window {args.window_s:g} s at {args.fps:g} fps, tau {args.tau}, "
        f"{args.threads} thread(s), on {where}"
    )
    result["device"] = where
    rows = [
        (f"median update, first {result['edge_frames']} frames", f"{result['first_median_ms']:.2f} ms"),
        (f"median update, last {result['edge_frames']} frames", f"{result['last_median_ms']:.2f} ms"),
        (f"last / first (goal <= {FLAT_GOAL})", f"{result['flat_ratio']:.3f}"),
    ]
    for part in ("below", "at"):
        if result[f"host_syncs_{part}_capacity_max"] is not None:
            rows.append(
                (
                    f"host syncs / update {part} capacity (goal <= {SYNC_GOAL})",
                    f"{result[f'host_syncs_{part}_capacity_mean']:.1f} mean / "
                    f"{result[f'host_syncs_{part}_capacity_max']} max",
                )
            )
    if result["full_ratio"] is not None:
        rows += [
            (
                f"median update, {result['edge_frames']} frames once full",
                f"{result['full_median_ms']:.2f} ms",
            ),
            (f"  (from frame {result['full_at_frame']}); last / once full", f"{result['full_ratio']:.3f}"),
        ]
    rows += [
        (f"side by side, same {args.replay} frames: early memory", f"{result['replay_early_ms']:.2f} ms"),
        (
            f"  ({result['replay_early_entries']} entries) vs late ({result['replay_late_entries']})",
            f"{result['replay_late_ms']:.2f} ms",
        ),
        ("  late / early", f"{result['replay_ratio']:.3f}"),
        ("p95 / max update", f"{result['p95_ms']:.2f} / {result['max_ms']:.1f} ms"),
        ("peak / final entries", f"{result['peak_entries']} / {result['final_entries']}"),
        ("consolidations / evicted entries", f"{result['consolidations_total']} / {result['evicted_total']}"),
        ("mean novelty", f"{result['mean_novelty']:.3f}"),
        (
            "snapshot size (per entry)",
            f"{result['snapshot_bytes'] / 1e6:.2f} MB ({result['snapshot_bytes_per_entry']:.0f} B)",
        ),
        ("intervals per entry, mean / max", f"{result['intervals_mean']:.2f} / {result['intervals_max']}"),
        ("evidence frames named (live_evidence)", f"{result['live_evidence_frames']}"),
    ]
    if enc:
        rows += [
            ("embedded encoder per frame (batch 8)", f"{enc['encoder_ms_per_frame']:.1f} ms"),
            (f"update / encoder (goal < {SHARE_GOAL:.0%})", f"{result['encoder_share']:.1%}"),
        ]
    for name, value in rows:
        print(f"  {name:<42} {value:>16}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if k != "out"}
    args.out.write_text(json.dumps({"config": config, "result": result}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
