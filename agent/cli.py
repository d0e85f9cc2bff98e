"""`scissor` command line: demo, serve, ask and bench: argparse -> Settings -> the Service under uvicorn.

Holds no service logic. Heavy imports (torch, uvicorn, the service) wait until a command needs them, so
`scissor ask` and `scissor bench --help` answer at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.service import Service
    from agent.settings import Settings

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


def _settings(config: str | None, **overrides: Any) -> Settings:
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
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = _settings(args.config, **overrides)
    _logging(settings.log_level)
    return _run(settings)


def _demo(args: argparse.Namespace) -> int:
    from agent import demo

    settings = _settings(args.config, **demo.demo_settings_overrides(host=args.host, port=args.port))
    _logging(settings.log_level)
    video = Path(args.video) if args.video else demo.sample_video()
    if not video.is_file():
        print(f"scissor demo: no such video file: {video}", file=sys.stderr)
        return 2
    return _run(settings, after_start=lambda service: demo.populate(service, video), duration_s=args.duration)


def configure_torch(settings: Settings) -> int:
    """Set torch's intra-op threads for this process; returns the number used.

    The encoder, the answerer and memory updates run concurrently; with torch's default (every core per op)
    they oversubscribe the CPU and ingest stalls, so the default is half the cores.
    """
    import torch

    threads = settings.torch_threads or max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(threads)
    return threads


def _run(
    settings: Settings,
    *,
    after_start: Callable[[Service], Coroutine[Any, Any, None]] | None = None,
    duration_s: float | None = None,
) -> int:
    """Run the Service under uvicorn until SIGINT/SIGTERM (or `duration_s`); `after_start` runs once the API
    listens and is cancelled at shutdown."""
    from agent.service import Service

    configure_torch(settings)
    asyncio.run(_serve_app(Service(settings), settings, after_start=after_start, duration_s=duration_s))
    return 0


async def _serve_app(
    service: Service,
    settings: Settings,
    *,
    after_start: Callable[[Service], Coroutine[Any, Any, None]] | None,
    duration_s: float | None,
) -> None:
    import uvicorn

    from agent.api import create_app

    config = uvicorn.Config(
        create_app(service),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.05)
    if serving.done():
        await serving
        return
    helpers = [asyncio.create_task(after_start(service))] if after_start else []
    if duration_s is not None:
        await asyncio.wait({serving}, timeout=duration_s)
        server.should_exit = True
    await serving
    for task in helpers:
        task.cancel()
    await asyncio.gather(*helpers, return_exceptions=True)


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


def _version() -> str:
    """The installed scissor-stream's version (the package metadata's, so it cannot drift)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scissor-stream")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scissor", description="Scissor Stream: video memory for camera streams"
    )
    parser.add_argument("--version", action="version", version=f"scissor {_version()}")
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
