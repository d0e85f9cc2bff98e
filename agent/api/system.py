"""Liveness, readiness, Prometheus metrics and server-sent events. No business logic."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

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


def _kind(record: BaseModel) -> str:
    """The SSE event name of a record: `alert`, `camerastatus`, or an event's own kind (`novelty`, ...)."""
    name = type(record).__name__.lower()
    return name if name in ("alert", "camerastatus") else str(getattr(record, "kind", name))


def _camera_of(record: BaseModel) -> str | None:
    return getattr(record, "camera", None) or getattr(record, "id", None)


async def event_stream(
    bus: EventBus, keepalive_s: float, camera: str | None = None, kinds: frozenset[str] = frozenset()
) -> AsyncGenerator[bytes, None]:
    def wanted(record: BaseModel) -> bool:
        return (camera is None or _camera_of(record) == camera) and (not kinds or _kind(record) in kinds)

    subscription = bus.subscribe(accept=wanted)
    async with subscription as events:
        yield b": connected\n\n"
        while True:
            try:
                record = await asyncio.wait_for(events.get(), keepalive_s)
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            yield f"event: {_kind(record)}\ndata: {record.model_dump_json()}\n\n".encode()


@router.get("/events", dependencies=[AuthDep], responses={200: {"content": {"text/event-stream": {}}}})
async def events(
    service: ServiceDep,
    camera: str | None = Query(None, max_length=64, description="only this camera's records"),
    kind: list[str] = Query(  # noqa: B008 (FastAPI's declaration style)
        [], max_length=16, description="only these event names (alert, camerastatus, novelty, ...)"
    ),
) -> StreamingResponse:
    """Server-sent events: alerts, camera status changes and novelty events as they happen; `camera` and
    `kind` (repeatable) filter them."""
    return StreamingResponse(
        event_stream(service.bus, 15.0, camera, frozenset(kind)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
