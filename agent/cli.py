"""`scissor` command line: demo, serve, ask and bench.

Parses arguments and hands off; holds no service logic.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from importlib.metadata import entry_points
from typing import Any

BENCH_COMMAND = "bench"  # entry point of group `scissor.commands` (pyproject.toml): bench/ plugs in


def _bench(argv: list[str]) -> int:
    # The product never imports bench/ (it depends on the product, not the other way round): the installed
    # distribution names its runner, and the runner imports the one benchmark asked for.
    found = entry_points(group="scissor.commands", name=BENCH_COMMAND)
    if not found:
        print(
            "scissor bench: the benchmarks are not installed here (pip install -e . in a checkout)",
            file=sys.stderr,
        )
        return 2
    run = next(iter(found)).load()
    return int(run(argv) or 0)


def _settings(config: str | None, **overrides: Any) -> Any:
    from agent.settings import SettingsError, load_settings

    try:
        return load_settings(config, **overrides)
    except SettingsError as exc:
        print("scissor: invalid settings:", file=sys.stderr)
        print(str(exc), file=sys.stderr)
        raise SystemExit(2) from None


def _logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _serve(args: argparse.Namespace) -> int:
    from agent.server import run

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = _settings(args.config, **overrides)
    _logging(settings.log_level)
    return run(settings)


def _demo(args: argparse.Namespace) -> int:
    from agent.server import demo_settings_overrides, run_demo

    settings = _settings(args.config, **demo_settings_overrides(host=args.host, port=args.port))
    _logging(settings.log_level)
    return run_demo(settings, video=args.video, duration_s=args.duration)


def _ask(args: argparse.Namespace) -> int:
    import httpx

    body: dict[str, Any] = {"question": args.question}
    if args.since is not None:
        body["since_s"] = args.since
    if args.session:
        body["session_id"] = args.session
    headers = {}
    token = os.environ.get("SCISSOR_API_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = f"{args.url.rstrip('/')}/cameras/{args.camera}/ask"
    try:
        response = httpx.post(url, json=body, headers=headers, timeout=args.timeout)
    except httpx.HTTPError as exc:
        print(f"scissor ask: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 1
    data = response.json()
    if response.status_code != 200:
        print(
            f"scissor ask: {response.status_code} {data.get('error')}: {data.get('detail')}", file=sys.stderr
        )
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(data["answer"])
    for ev in data.get("evidence", []):
        print(
            f"  evidence: {ev.get('camera') or args.camera} {ev['from']:.1f}s-{ev['to']:.1f}s "
            f"({ev.get('from_time')}) {ev.get('snapshot_url') or ''}"
        )
    print(
        f"  [{data['tokens_used']} memory tokens for {data['raw_tokens_in_range']} frame tokens, "
        f"{data['latency_s']:.2f} s]"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scissor", description="Scissor Stream: video memory for camera streams"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the service (settings from SCISSOR_* env and an optional file)")
    demo = sub.add_parser("demo", help="run the service on a looping sample video, no other services needed")
    for p in (serve, demo):
        p.add_argument("--config", help="YAML or TOML settings file (default: $SCISSOR_CONFIG)")
        p.add_argument("--host", help="listen address (overrides SCISSOR_HOST)")
        p.add_argument("--port", type=int, help="listen port (overrides SCISSOR_PORT)")
    demo.add_argument("--video", help="video file to loop as the demo camera (default: a bundled sample)")
    demo.add_argument(
        "--duration", type=float, help="stop after this many seconds (default: run until Ctrl-C)"
    )
    ask = sub.add_parser("ask", help="ask a running server about a camera")
    ask.add_argument("camera")
    ask.add_argument("question")
    ask.add_argument("--since", type=float, help="only the last N seconds")
    ask.add_argument("--session", help="session id for follow-up questions")
    ask.add_argument("--url", default=os.environ.get("SCISSOR_URL", "http://127.0.0.1:8080"))
    ask.add_argument("--timeout", type=float, default=120.0)
    ask.add_argument("--json", action="store_true", help="print the raw JSON answer")
    sub.add_parser("bench", help="run a benchmark (scissor bench --help)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        return _bench(argv[1:])
    args = _parser().parse_args(argv)
    handlers = {"serve": _serve, "demo": _demo, "ask": _ask}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
