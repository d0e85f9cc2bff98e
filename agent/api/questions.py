"""Question routes: ask one camera or several about recent footage. Thin: the Service does the work."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import ConfigDict, Field, model_validator

from agent.api.deps import AuthDep, ServiceDep
from agent.records import ID_PATTERN, CameraId, Evidence, Record

router = APIRouter(tags=["questions"], dependencies=[AuthDep])

Seconds = Annotated[float, Field(ge=0.0, le=1e9, allow_inf_nan=False)]


class AskBody(Record):
    """A question about one camera's recent footage."""

    question: str = Field(min_length=1, max_length=100_000, description="the question, in plain language")
    since_s: Seconds | None = Field(None, description="look at the last N seconds (default: whole memory)")
    from_s: Seconds | None = Field(
        None, alias="from", description="stream seconds since the camera was added"
    )
    to_s: Seconds | None = Field(None, alias="to", description="stream seconds since the camera was added")
    session_id: str | None = Field(
        None, pattern=ID_PATTERN, description="follow-ups in a session see prior turns"
    )
    max_memory_tokens: int | None = Field(
        None, ge=1, le=65_536, description="most memory tokens handed to the model"
    )
    max_new_tokens: int = Field(64, ge=1, le=1024)

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    @model_validator(mode="after")
    def _one_range(self) -> AskBody:
        if self.since_s is not None and (self.from_s is not None or self.to_s is not None):
            raise ValueError("give either since_s or from/to, not both")
        if self.from_s is not None and self.to_s is not None and self.to_s < self.from_s:
            raise ValueError("'to' is before 'from'")
        return self


class MultiAskBody(AskBody):
    """One question across several cameras; memories are merged by time."""

    cameras: list[CameraId] = Field(min_length=1, max_length=64)


class AnswerOut(Record):
    """An answer with the evidence it rests on."""

    answer: str
    evidence: list[Evidence]
    tokens_used: int = Field(description="memory tokens handed to the model")
    raw_tokens_in_range: int = Field(description="frame tokens those memory tokens summarise")
    prefill_tokens: int
    latency_s: float
    session_id: str | None = None
    cameras: list[str]


@router.post("/cameras/{camera_id}/ask", response_model=AnswerOut, response_model_by_alias=True)
async def ask_camera(camera_id: str, body: AskBody, service: ServiceDep) -> AnswerOut:
    """Answer a question about one camera's memory, with evidence time ranges."""
    return AnswerOut.model_validate(await service.ask([camera_id], body))


@router.post("/ask", response_model=AnswerOut, response_model_by_alias=True)
async def ask_cameras(body: MultiAskBody, service: ServiceDep) -> AnswerOut:
    """Answer a question across several cameras; evidence names the camera."""
    return AnswerOut.model_validate(await service.ask(list(dict.fromkeys(body.cameras)), body))
