"""`scissor` command line: demo, serve, ask and bench: argparse -> Settings -> the Service under uvicorn.

Holds no service logic. Heavy imports (torch, uvicorn, the service) wait until a command needs them, so
`scissor ask` and `scissor bench --help` answer at once.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Coroutine
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import AgentError
from agent.logs import configure_logging, report_left_out
from agent.preflight import missing_offline_weights
from agent.server import ListenRefused, api_server, bind_listener, exposure_refusal, uvicorn_config

if TYPE_CHECKING:
    from agent.service import Service
    from agent.settings import Settings

log = logging.getLogger("agent.cli")
# What a service that cannot start raises for a reason a person can fix (a model id not on disk, a file not
# readable); anything else is a bug and keeps its traceback.
STARTUP_ERRORS = (OSError, ValueError, ImportError, AgentError)
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
        print(f"scissor: {exc}", file=sys.stderr)  # "invalid settings:" once, then a line per key
        raise SystemExit(2) from None


def _serve(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = _settings(args.config, **overrides)
    configure_logging(settings.log_level)
    if settings.engine == "ray":  # cluster mode: Ray and the cluster package load only here
        from agent.cluster.ingress import serve_forever

        return serve_forever(settings)
    return _run(settings)


def _demo(args: argparse.Namespace) -> int:
    from agent import demo

    settings = _settings(args.config, **demo.demo_settings_overrides(host=args.host, port=args.port))
    configure_logging(settings.log_level)
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
    listens and is cancelled at shutdown. An exposed open API, a model offline mode cannot reach, or an
    address that cannot be bound is refused (exit 2) before torch and the service load."""
    refusal = exposure_refusal(settings) or missing_offline_weights(settings.backend)
    try:
        if refusal is not None:
            raise ListenRefused(refusal)
        listener = bind_listener(settings.host, settings.port)
    except ListenRefused as exc:
        print(f"scissor: {exc}", file=sys.stderr)
        return 2
    from agent.service import Service

    configure_torch(settings)
    with listener:
        service = Service(settings)
        code = asyncio.run(_serve_app(service, listener, after_start=after_start, duration_s=duration_s))
    report_left_out()
    # Everything is stopped and saved. What is left is the interpreter's last collection over torch's and
    # transformers' objects: 2-3 s after the last log line on the 2-core box, for nothing. A frozen heap is
    # skipped by it (0.3 s).
    gc.freeze()
    return code


async def _serve_app(
    service: Service,
    listener: socket.socket,
    *,
    after_start: Callable[[Service], Coroutine[Any, Any, None]] | None,
    duration_s: float | None,
) -> int:
    """Start the service, serve its API on `listener` until told to stop, stop the service; the exit code.

    The service starts before uvicorn rather than in the app's lifespan, so a service that cannot start (a
    model that is not there) is one clear line and exit 2, not uvicorn's traceback and "startup failed".
    """
    from agent.api import create_app

    try:
        await service.start()
    except STARTUP_ERRORS as exc:
        print(f"scissor: the service did not start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        app = create_app(service, manage_service=False)
        server = api_server(uvicorn_config(app, service.settings.api, timeout_graceful_shutdown=5))
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        if serving.done():
            await serving
            return 1
        host, port = listener.getsockname()[:2]
        log.info("API listening on http://%s:%d", f"[{host}]" if ":" in host else host, port)
        _warn_if_state_unreachable(service)
        helpers = [asyncio.create_task(after_start(service))] if after_start else []
        if duration_s is not None:
            await asyncio.wait({serving}, timeout=duration_s)
            server.should_exit = True
        await serving
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
    finally:
        await service.stop()
    return 0


def _warn_if_state_unreachable(service: Service) -> None:
    # /readyz says so too, but a person starting the service reads the log first.
    settings = service.settings
    if settings.redis_enabled and not service.store.healthy:
        from streamer.urls import redact

        log.warning(
            "state store %s unreachable at start (%s): cameras, rules and alerts are kept locally "
            "(in RAM and the write-ahead file) until it returns, then written back",
            redact(settings.redis_url),
            service.store.reason or "no answer",
        )


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
    ask = sub.add_parser(
        "ask",
        help="ask a running server about a camera",
        description="Ask a running Scissor Stream server a question about one camera's recent footage.",
        epilog="Authentication: when the server requires a token, set SCISSOR_API_TOKEN in the environment; "
        "it is sent as 'Authorization: Bearer <token>' (never on the command line, where ps could show it).",
    )
    ask.add_argument("camera", help="the camera's id, as given when it was added (GET /cameras lists them)")
    ask.add_argument("question", help="the question, in quotes: 'when did a bicycle pass?'")
    ask.add_argument("--since", type=float, metavar="S", help="look only at the last S seconds of footage")
    ask.add_argument(
        "--session", metavar="ID", help="session id from an earlier answer, for follow-up questions"
    )
    ask.add_argument(
        "--url",
        default=os.environ.get("SCISSOR_URL", "http://127.0.0.1:8080"),
        help="the server's base URL (default: $SCISSOR_URL or %(default)s)",
    )
    ask.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="seconds to wait for the answer (default: %(default)s)",
    )
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
