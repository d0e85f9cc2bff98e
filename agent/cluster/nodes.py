"""`GET /cluster`: the Ray nodes with their cameras, resources and health."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from pydantic import Field

from agent.api.deps import AuthDep
from agent.records import Record

if TYPE_CHECKING:
    from agent.cluster.engine import ClusterService

router = APIRouter(tags=["cluster"], dependencies=[AuthDep])


class NodeView(Record):
    """One Ray node."""

    id: str = Field(description="the Ray node id (what `GET /cameras/{id}` names as `node`)")
    address: str = Field(description="the node's address")
    alive: bool
    resources: dict[str, float] = Field(description="what the node offers (CPU, GPU, memory, ...)")
    cameras: list[str] = Field(description="cameras whose pipeline runs there")


class ClusterView(Record):
    """The cluster as `GET /cluster` shows it."""

    nodes: list[NodeView]
    unplaced: list[str] = Field(description="cameras whose actor is (re)starting: on no node right now")


def cluster_view(service: ClusterService, nodes: list[dict[str, Any]]) -> ClusterView:
    """The view of `nodes` (as `ray.nodes()` lists them) with the cameras the supervisor last saw there."""
    on: dict[str, list[str]] = {}
    unplaced = []
    for remote in service.cameras.remotes():
        if remote.report is None or remote.misses:
            unplaced.append(remote.id)
        else:
            on.setdefault(remote.report.node, []).append(remote.id)
    views = [
        NodeView(
            id=str(n["NodeID"]),
            address=str(n.get("NodeManagerAddress", "")),
            alive=bool(n.get("Alive", False)),
            resources={
                k: float(v) for k, v in (n.get("Resources") or {}).items() if not k.startswith("node:")
            },
            cameras=sorted(on.get(str(n["NodeID"]), [])),
        )
        for n in nodes
    ]
    return ClusterView(nodes=views, unplaced=sorted(unplaced))


@router.get("/cluster", response_model=ClusterView)
async def cluster(request: Request) -> ClusterView:
    """The Ray nodes (alive or dead) with the cameras on each, their resources and health."""
    service: ClusterService = request.app.state.service
    nodes = await asyncio.to_thread(service.ray.nodes)
    return cluster_view(service, nodes)
