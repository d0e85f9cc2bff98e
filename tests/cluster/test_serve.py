"""The API as a Ray Serve ingress deployment: Serve's HTTP proxy on 127.0.0.1 answers the same routes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from harness.ports import free_port
from harness.servers import RedisServer
from tests.agent.service_harness import video_camera
from tests.cluster.conftest import LocalCluster, cluster_settings, non_loopback_sockets


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("local_cluster", [1], indirect=True)
async def test_serve_s_proxy_answers_the_api_and_the_cluster_view(
    local_cluster: LocalCluster, tmp_path: Path, redis_server: RedisServer
) -> None:
    import ray
    from ray import serve

    from agent.cluster.ingress import DEPLOYMENT, deployment

    port = free_port()
    settings = cluster_settings(local_cluster, tmp_path, redis_url=redis_server.url, port=port)
    ray.init(address=local_cluster.address, _node_ip_address="127.0.0.1", namespace="scissor")
    serve.start(http_options={"host": "127.0.0.1", "port": port, "location": "HeadOnly"})
    serve.run(deployment(settings), name=DEPLOYMENT, route_prefix="/")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            created = await client.post("/cameras", json=video_camera("cam0", fps=1.0))
            assert created.status_code == 201, created.text
            node = created.json()["node"]
            deadline = time.monotonic() + 90
            while (status := (await client.get("/cameras/cam0")).json())["state"] != "online":
                assert time.monotonic() < deadline, status
                await asyncio.sleep(0.5)
            assert status["node"] == node
            view = (await client.get("/cluster")).json()
            assert [c for n in view["nodes"] for c in n["cameras"]] == ["cam0"]
            missing = await client.get("/cameras/nope")
            assert missing.status_code == 404 and missing.json()["error"] == "UnknownCamera"
            answer = await client.post("/cameras/cam0/ask", json={"question": "what did you see?"})
            assert answer.status_code == 200, answer.text
            # Ray Serve 2.60's replica binds its inter-deployment gRPC server on [::]:0, hard-coded
            # (ray/serve/_private/replica.py, `add_port_to_grpc_server(self._server, "[::]:0")`): the one
            # socket beyond loopback, a listener nothing here connects to (docs/cluster.md, limits).
            found = non_loopback_sockets()
            serve_grpc = [f for f in found if "ServeReplica" in f and "LISTEN" in f and "ip='::'" in f]
            assert found == serve_grpc and len(serve_grpc) == 1, found
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]  # ray.serve is untyped here
