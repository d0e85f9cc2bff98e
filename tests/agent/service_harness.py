"""Runs a real Service in-process behind its FastAPI app for tests (httpx over ASGI, real models and
servers)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from agent.api import create_app
from agent.demo import sample_video
from agent.models import Backend
from agent.outputs.metrics import Metrics
from agent.service import Service
from agent.settings import Settings, load_settings


@dataclass
class Running:
    service: Service
    client: httpx.AsyncClient


@asynccontextmanager
async def running_service(backend: Backend | None = None, **overrides: Any) -> AsyncIterator[Running]:
    """Start a Service with `overrides` (settings fields), yield it with an API client, stop it."""
    settings: Settings = load_settings(None, **{"redis_url": "memory://", "mqtt_url": "none", **overrides})
    service = Service(settings, backend=backend, metrics=Metrics(CollectorRegistry()))
    await service.start()
    app = create_app(service, manage_service=False)
    headers = {}
    if settings.api_token is not None:
        headers["Authorization"] = f"Bearer {settings.api_token.get_secret_value()}"
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1", headers=headers, timeout=60
        ) as client:
            yield Running(service, client)
    finally:
        await service.stop()


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 60.0, what: str = "condition") -> None:
    """Poll `predicate` every 0.1 s until it holds; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.1)


def video_camera(
    camera_id: str = "cam1", *, fps: float = 4.0, video: str = "bigbuckbunny.mp4"
) -> dict[str, Any]:
    """A camera spec that loops a real bundled sample video as a live stream."""
    return {"id": camera_id, "url": str(sample_video(video)), "fps": fps, "options": {"loop": True}}
