"""Question routes: ask one camera or several about recent footage. Routes only: `Questions` does the work."""

from __future__ import annotations

from fastapi import APIRouter

from agent.api.deps import AuthDep, ServiceDep
from agent.records import Answer, AskBody, MultiAskBody

router = APIRouter(tags=["questions"], dependencies=[AuthDep])


@router.post("/cameras/{camera_id}/ask", response_model=Answer, response_model_by_alias=True)
async def ask_camera(camera_id: str, body: AskBody, service: ServiceDep) -> Answer:
    """Answer a question about one camera's memory, with evidence time ranges."""
    return await service.questions.ask(body, [camera_id], service.cameras)


@router.post("/ask", response_model=Answer, response_model_by_alias=True)
async def ask_cameras(body: MultiAskBody, service: ServiceDep) -> Answer:
    """Answer a question across several cameras; evidence names the camera."""
    return await service.questions.ask(body, list(dict.fromkeys(body.cameras)), service.cameras)
