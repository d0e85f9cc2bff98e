"""Alert routes: the recent alerts the event bus kept, for a page or client that was not following `/events`
when they fired. Routes only: the bus keeps them."""

from __future__ import annotations

from fastapi import APIRouter, Query

from agent.api.deps import AuthDep, ServiceDep
from agent.outputs.events import RECENT_ALERTS
from agent.records import Alert

router = APIRouter(prefix="/alerts", tags=["alerts"], dependencies=[AuthDep])


@router.get("", response_model=list[Alert])
async def recent_alerts(
    service: ServiceDep,
    camera: str | None = Query(None, max_length=64, description="only this camera's alerts"),
    limit: int = Query(50, ge=1, le=RECENT_ALERTS, description="most alerts returned"),
) -> list[Alert]:
    """The latest alerts, newest first: the same records as `/events` and MQTT carried, kept in memory since
    the service started (the last 100 of all cameras)."""
    return service.bus.recent_alerts(camera, limit)
