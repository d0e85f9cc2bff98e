"""Liveness, readiness, Prometheus metrics and server-sent events. No business logic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse, StreamingResponse

from agent.api.deps import AuthDep, ServiceDep
from agent.outputs.events import EventBus

router = APIRouter(tags=["system"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive (no auth, no dependencies)."""
    return {"status": "ok"}


@router.get("/readyz", dependencies=[AuthDep])
async def readyz(service: ServiceDep) -> JSONResponse:
    """Ready when the model, the state store and the broker (if configured) are reachable; says why not."""
    ready, checks = await service.readiness()
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", dependencies=[AuthDep], include_in_schema=False)
async def metrics(service: ServiceDep) -> Response:
    """Prometheus exposition (a route, not a mount: no redirect on scrape)."""
    body, content_type = service.metrics.render()
    return Response(body, media_type=content_type)


async def _sse(bus: EventBus, keepalive_s: float) -> AsyncIterator[bytes]:
    subscription = bus.subscribe()
    async with subscription as events:
        yield b": connected\n\n"
        while True:
            try:
                record = await asyncio.wait_for(events.get(), keepalive_s)
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            name = type(record).__name__.lower()
            kind = name if name in ("alert", "camerastatus") else getattr(record, "kind", name)
            yield f"event: {kind}\ndata: {record.model_dump_json()}\n\n".encode()


@router.get("/events", dependencies=[AuthDep], responses={200: {"content": {"text/event-stream": {}}}})
async def events(service: ServiceDep) -> StreamingResponse:
    """Server-sent events: alerts, camera status changes and novelty events as they happen."""
    return StreamingResponse(
        _sse(service.bus, 15.0),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
