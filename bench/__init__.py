"""`scissor bench NAME`: the benchmarks, each prints a table and writes JSON; never imported by the product.

The `scissor` command reaches `main` through the distribution's entry point (`scissor.commands` in
pyproject.toml), so the product holds no import of bench/. A benchmark is imported only when it runs: most
pull in torch, the models or real servers, and `scissor bench --help` must answer at once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

BENCHMARKS = {
    "compress": "SCC compressor vs its matmul floor vs the reference algorithm",
    "memory": "TokenMemory per-frame cost over a long stream",
    "faithful": "incremental memory vs batch compress_video on finite clips",
    "models": "encoder and answerer cost, FLOPs model",
    "ingest": "decode + sampling throughput for concurrent sources",
    "eval": "quality vs retention for SCC and baselines, plots into docs/",
    "reliability": "faults and load against real services",
    "needles": "after an hour of real footage: does the memory still know when each needle was on camera",
    "qa": "questions of every kind over footage with known timelines, scored per kind against the truth",
    "cluster": "cluster mode on one Ray node vs SCISSOR_ENGINE=local: frames/s, question latency, RSS",
    "people": "person and face detection: precision and recall on hand-labelled real frames, cost per frame",
}


def main(argv: list[str]) -> int:
    """Run benchmark `argv[0]` with the remaining arguments; list the benchmarks for no name or --help."""
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: scissor bench NAME [options]\n\nbenchmarks:")
        for name, what in BENCHMARKS.items():
            print(f"  {name:<12} {what}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(
            f"scissor bench: unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}",
            file=sys.stderr,
        )
        return 2
    return int(_entry(name)(rest) or 0)


def _entry(name: str) -> Callable[[list[str]], int | None]:
    """The `main` of benchmark `name`, imported now."""
    match name:
        case "compress":
            from bench.compress import main as run
        case "memory":
            from bench.memory import main as run
        case "faithful":
            from bench.faithful import main as run
        case "models":
            from bench.models import main as run
        case "ingest":
            from bench.ingest import main as run
        case "eval":
            from bench.eval import main as run
        case "reliability":
            from bench.reliability import main as run
        case "needles":
            from bench.needles import main as run
        case "qa":
            from bench.qa import main as run
        case "cluster":
            from bench.cluster import main as run
        case "people":
            from bench.people import main as run
        case _:
            raise ValueError(f"no benchmark {name!r}")
    return run
