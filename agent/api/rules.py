"""Rule routes: standing queries that raise alerts. Routes only: the camera registry does the work."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from agent.api.deps import AuthDep, ServiceDep
from agent.records import Rule, RuleSpec

router = APIRouter(prefix="/rules", tags=["rules"], dependencies=[AuthDep])


@router.post("", status_code=201, response_model=Rule)
async def add_rule(spec: RuleSpec, service: ServiceDep) -> Rule:
    """Create a rule on a camera (novelty | label | prompt)."""
    return await service.cameras.add_rule(spec)


@router.get("", response_model=list[Rule])
async def list_rules(service: ServiceDep, camera_id: str | None = Query(None, max_length=64)) -> list[Rule]:
    """Every rule, or one camera's."""
    return service.cameras.rules(camera_id)


@router.get("/{rule_id}", response_model=Rule)
async def get_rule(rule_id: str, service: ServiceDep) -> Rule:
    """One rule."""
    return service.cameras.rule(rule_id)


@router.delete("/{rule_id}", status_code=204)
async def delete_rule(rule_id: str, service: ServiceDep) -> Response:
    """Delete a rule."""
    await service.cameras.remove_rule(rule_id)
    return Response(status_code=204)
