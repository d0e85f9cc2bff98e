"""Camera routes: CRUD, status, memory summary, keyframe snapshots, memory snapshots.

Thin: the Service does the work.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import Field

from agent.api.deps import AuthDep, ServiceDep
from agent.records import CameraSpec, CameraStatus, OptionValue, Record

router = APIRouter(prefix="/cameras", tags=["cameras"], dependencies=[AuthDep])


class CameraPatch(Record):
    """Fields of a camera to change; the camera restarts its ingest with them."""

    url: str | None = Field(None, min_length=1, max_length=2048)
    fps: float | None = Field(None, gt=0.0, le=60.0)
    options: dict[str, OptionValue] | None = Field(None, max_length=32)


class MemoryEntry(Record):
    """One memory entry as users see it."""

    id: int
    first_seen_s: float
    last_seen_s: float
    tokens: int = Field(description="member tokens merged into the entry")
    frames: int
    evidence_frames: list[int]
    intervals: list[tuple[float, float]] = Field(
        default_factory=list, description="stream-second intervals in which the entry was on camera"
    )
    interval_frames: list[int] = Field(
        default_factory=list, description="per interval, its evidence frame (`snapshot?frame=N`)"
    )
    labels: list[tuple[str, float]] = Field(default_factory=list, description="top labels (embedded backend)")


class MemorySummary(Record):
    """A camera's memory: size, compression and entries in a time range."""

    camera: str
    entries: int
    capacity: int
    window_s: float
    tokens_in_total: int
    compression_ratio: float
    stats: dict[str, Any] = Field(default_factory=dict)
    items: list[MemoryEntry] = Field(default_factory=list)


@router.post("", status_code=201, response_model=CameraStatus)
async def add_camera(spec: CameraSpec, service: ServiceDep) -> CameraStatus:
    """Register a camera and start watching it."""
    return await service.add_camera(spec)


@router.get("", response_model=list[CameraStatus])
async def list_cameras(service: ServiceDep) -> list[CameraStatus]:
    """Every camera with its live status."""
    return [service.camera_status(cid) for cid in service.camera_ids()]


@router.get("/{camera_id}", response_model=CameraStatus)
async def get_camera(camera_id: str, service: ServiceDep) -> CameraStatus:
    """One camera's status: state, reason, fps in/out, drops, reconnects, memory size, compression ratio."""
    return service.camera_status(camera_id)


@router.patch("/{camera_id}", response_model=CameraStatus)
async def patch_camera(camera_id: str, patch: CameraPatch, service: ServiceDep) -> CameraStatus:
    """Change a camera's URL, fps or options; its memory is kept."""
    return await service.update_camera(camera_id, patch.model_dump(exclude_none=True))


@router.delete("/{camera_id}", status_code=204)
async def delete_camera(camera_id: str, service: ServiceDep) -> Response:
    """Stop watching a camera and forget it (its rules go too)."""
    await service.remove_camera(camera_id)
    return Response(status_code=204)


@router.get("/{camera_id}/memory", response_model=MemorySummary)
async def camera_memory(
    camera_id: str,
    service: ServiceDep,
    since_s: float | None = Query(
        None, ge=0.0, le=1e9, description="only entries seen in the last N seconds"
    ),
    limit: int = Query(200, ge=1, le=10_000),
) -> MemorySummary:
    """The camera's memory entries (time spans, counts, labels when the backend has them)."""
    return MemorySummary.model_validate(service.memory_summary(camera_id, since_s=since_s, limit=limit))


@router.get("/{camera_id}/snapshot", responses={200: {"content": {"image/jpeg": {}}}})
async def camera_snapshot(
    camera_id: str,
    service: ServiceDep,
    frame: int | None = Query(None, ge=0, le=1 << 62, description="frame index (evidence links name one)"),
    t: float | None = Query(
        None, ge=0.0, le=1e9, description="stream seconds of a kept keyframe (within 0.05 s)"
    ),
) -> Response:
    """One kept JPEG keyframe: of frame `frame`, or taken at stream second `t`, or the newest one when
    neither is given. 404 when that frame is not (or no longer) kept: never another moment's picture."""
    found = service.keyframe(camera_id, frame=frame, t=t)
    headers = {"X-Stream-Seconds": f"{found.t:.3f}", "X-Frame-Index": str(found.frame)}
    return Response(found.jpeg, media_type="image/jpeg", headers=headers)


@router.post("/{camera_id}/memory/snapshot", status_code=202)
async def save_memory(camera_id: str, service: ServiceDep) -> dict[str, Any]:
    """Write the camera's memory to the state store now (it is also written periodically)."""
    return await service.save_memory(camera_id)
