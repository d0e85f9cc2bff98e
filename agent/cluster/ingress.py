"""The HTTP API in cluster mode: the same FastAPI app over a `ClusterService`, plus `GET /cluster`, served by
a Ray Serve ingress deployment so any node's Serve proxy answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from fastapi import FastAPI

from agent.api import create_app
from agent.cluster import nodes
from agent.cluster.engine import ClusterService
from agent.settings import Settings

if TYPE_CHECKING:
    from agent.service import Service

DEPLOYMENT = "scissor"


def create_cluster_app(service: ClusterService, *, manage_service: bool = True) -> FastAPI:
    """The API's app over `service` (it offers every part of `Service` the routes use), with /cluster."""
    app = create_app(cast("Service", service), manage_service=manage_service)
    app.include_router(nodes.router)
    return app


def build_app(settings: Settings) -> FastAPI:
    """The app a Serve replica runs: its lifespan starts the cluster service inside the replica."""
    return create_cluster_app(ClusterService(settings))


def deployment(settings: Settings) -> Any:
    """The Serve application: one ingress replica running the API (it keeps the answerer and Q&A sessions;
    the cameras run in their own actors)."""
    from ray import serve

    @serve.deployment(name=DEPLOYMENT, num_replicas=1, ray_actor_options={"num_cpus": 0})
    @serve.ingress(lambda: build_app(settings))
    class Ingress:
        pass

    return Ingress.bind()  # type: ignore[attr-defined]  # serve.deployment returns an untyped Deployment


def app(args: dict[str, str]) -> Any:
    """The Serve application builder KubeRay's `serveConfigV2` names (`agent.cluster.ingress:app`): settings
    from the replica's environment (SCISSOR_*); `args` is unused."""
    from agent.settings import load_settings

    return deployment(load_settings(None))


def serve_forever(settings: Settings) -> int:
    """`scissor serve` with SCISSOR_ENGINE=ray: join (or start) Ray, start Serve's HTTP proxies on
    SCISSOR_HOST:SCISSOR_PORT, run the ingress until interrupted. An open API on a non-loopback address is
    refused (exit 2), as in single-process mode."""
    import sys
    import time

    from agent.cluster.raylib import RayUnavailable, connect
    from agent.server import exposure_refusal

    refusal = exposure_refusal(settings)
    if refusal is not None:
        print(f"scissor: {refusal}", file=sys.stderr)
        return 2
    try:
        connect(settings)
    except RayUnavailable as exc:  # Ray not installed, or imported too early to stay on loopback
        print(f"scissor: {exc}", file=sys.stderr)
        return 2
    from ray import serve

    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(deployment(settings), name=DEPLOYMENT, route_prefix="/")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.delete(DEPLOYMENT)
    return 0
