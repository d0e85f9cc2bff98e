"""Camera routes: CRUD, status, memory summary, keyframes, saving memory now. Routes only: the camera registry
and the pipelines do the work."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Response

from agent.api.deps import AuthDep, ServiceDep
from agent.records import CameraPatch, CameraSpec, CameraStatus, MemorySaved, MemorySummary

router = APIRouter(prefix="/cameras", tags=["cameras"], dependencies=[AuthDep])
MEMORY_ITEMS_MAX = 4096  # entries one memory listing returns at most (2 x the default capacity)


@router.post("", status_code=201, response_model=CameraStatus)
async def add_camera(spec: CameraSpec, service: ServiceDep) -> CameraStatus:
    """Register a camera and start watching it."""
    return await service.cameras.add(spec)


@router.get("", response_model=list[CameraStatus])
async def list_cameras(service: ServiceDep) -> list[CameraStatus]:
    """Every camera with its live status."""
    return [service.cameras.get(cid).status() for cid in service.cameras.ids()]


@router.get("/{camera_id}", response_model=CameraStatus)
async def get_camera(camera_id: str, service: ServiceDep) -> CameraStatus:
    """One camera's status: state, reason, fps in/out, drops, reconnects, memory size, compression ratio."""
    return service.cameras.get(camera_id).status()


@router.patch("/{camera_id}", response_model=CameraStatus)
async def patch_camera(camera_id: str, patch: CameraPatch, service: ServiceDep) -> CameraStatus:
    """Change a camera's URL, fps or options; its memory is kept."""
    return await service.cameras.update(camera_id, patch)


@router.delete("/{camera_id}", status_code=204)
async def delete_camera(camera_id: str, service: ServiceDep) -> Response:
    """Stop watching a camera and forget it (its rules go too)."""
    await service.cameras.remove(camera_id)
    return Response(status_code=204)


@router.get("/{camera_id}/memory", response_model=MemorySummary)
async def camera_memory(
    camera_id: str,
    service: ServiceDep,
    since_s: float | None = Query(
        None, ge=0.0, le=1e9, description="only entries seen in the last N seconds"
    ),
    limit: int = Query(
        200, ge=1, le=MEMORY_ITEMS_MAX, description=f"newest entries listed, at most {MEMORY_ITEMS_MAX}"
    ),
) -> Response:
    """The camera's memory entries (time spans, counts, labels when the backend has them)."""
    pipeline = service.cameras.get(camera_id)

    def listing() -> bytes:
        return pipeline.memory_summary(since_s=since_s, limit=limit).model_dump_json(by_alias=True).encode()

    # Reading, labelling and serialising thousands of entries takes a while: in a worker thread, so the event
    # loop (every other request, every camera's ingest) never waits for it.
    return Response(await asyncio.to_thread(listing), media_type="application/json")


@router.get("/{camera_id}/snapshot", responses={200: {"content": {"image/jpeg": {}}}})
async def camera_keyframe(
    camera_id: str,
    service: ServiceDep,
    frame: int | None = Query(None, ge=0, le=1 << 62, description="frame index (evidence links name one)"),
    t: float | None = Query(
        None, ge=0.0, le=1e9, description="stream seconds of a kept keyframe (within 0.05 s)"
    ),
) -> Response:
    """One kept JPEG keyframe: of frame `frame`, or taken at stream second `t`, or the newest one when
    neither is given. 404 when that frame is not (or no longer) kept: never another moment's picture."""
    found = service.cameras.get(camera_id).keyframe(frame=frame, t=t)
    headers = {"X-Stream-Seconds": f"{found.t:.3f}", "X-Frame-Index": str(found.frame)}
    return Response(found.jpeg, media_type="image/jpeg", headers=headers)


@router.post("/{camera_id}/memory/snapshot", status_code=202, response_model=MemorySaved)
async def save_memory(camera_id: str, service: ServiceDep) -> MemorySaved:
    """Write the camera's memory to the state store now (it is also written periodically)."""
    return await service.cameras.get(camera_id).save_memory()
