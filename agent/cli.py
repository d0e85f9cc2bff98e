"""`scissor` command line: demo, serve, ask and bench. Parses arguments and hands off; holds no logic."""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = {
    "compress": "SCC compressor vs its matmul floor vs the reference algorithm",
    "memory": "TokenMemory per-frame cost over a long stream",
    "models": "encoder and answerer cost, FLOPs model",
    "ingest": "decode + sampling throughput for concurrent sources",
    "eval": "quality vs retention for SCC and baselines, plots into docs/",
    "reliability": "faults and load against real services",
}


def _bench(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: scissor bench NAME [options]\n\nbenchmarks:")
        for name, what in BENCHMARKS.items():
            print(f"  {name:<12} {what}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(f"scissor bench: unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{name}")
    return int(module.main(rest) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="scissor", description="Scissor Stream: video memory for camera streams")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("bench", help="run a benchmark (scissor bench --help)", add_help=False)
    if argv and argv[0] == "bench":
        return _bench(argv[1:])
    parser.parse_args(argv)
    return 2


if __name__ == "__main__":
    sys.exit(main())
