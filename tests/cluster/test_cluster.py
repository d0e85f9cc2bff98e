"""Cluster mode on a real Ray cluster of several nodes on this machine (all on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agent.cluster.encoders import ENCODER_PREFIX, EncoderStats
from agent.records import CameraStatus
from tests.agent.service_harness import video_camera
from tests.cluster.conftest import LocalCluster, cluster_service, cluster_settings, non_loopback_sockets


async def wait_for(predicate_s: float, check: object, what: str) -> None:
    deadline = time.monotonic() + predicate_s
    while True:
        if await check():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {predicate_s} s waiting for {what}")
        await asyncio.sleep(0.5)


async def test_cameras_spread_over_nodes_answer_and_stay_on_loopback(
    local_cluster: LocalCluster, tmp_path: Path, redis_server: object
) -> None:
    url = redis_server.url  # type: ignore[attr-defined]
    settings = cluster_settings(local_cluster, tmp_path, redis_url=url)
    async with asyncio.timeout(240), cluster_service(settings) as run:  # a hang fails where it waits
        client = run.client
        records = run.service.bus.subscribe(maxsize=4096)  # what /events streams
        for i in range(3):
            response = await client.post("/cameras", json=video_camera(f"cam{i}", fps=1.0))
            assert response.status_code == 201, response.text
            assert response.json()["node"]

        async def online() -> bool:
            states = [(await client.get(f"/cameras/cam{i}")).json() for i in range(3)]
            return all(s["state"] == "online" and s["memory_entries"] > 0 for s in states)

        await wait_for(90, online, "3 cameras online with memory")
        await asyncio.sleep(6)  # a few more frames in every memory
        nodes = {(await client.get(f"/cameras/cam{i}")).json()["node"] for i in range(3)}
        assert len(nodes) >= 2, f"cameras not spread: {nodes}"
        view = (await client.get("/cluster")).json()
        assert len(view["nodes"]) == 3 and all(n["alive"] for n in view["nodes"])
        placed = {c: n["id"] for n in view["nodes"] for c in n["cameras"]}
        assert sorted(placed) == ["cam0", "cam1", "cam2"]
        assert all(n["resources"]["CPU"] == 1.0 for n in view["nodes"])

        answer = await client.post("/cameras/cam1/ask", json={"question": "what did you see?"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["raw_tokens_in_range"] >= body["tokens_used"] > 0
        assert {e["camera"] for e in body["evidence"]} <= {"cam1"}  # evidence, when the answerer names any
        shot = await client.get("/cameras/cam1/snapshot")
        assert shot.status_code == 200 and shot.content[:2] == b"\xff\xd8"  # a JPEG from cam1's actor
        summary = (await client.get("/cameras/cam2/memory")).json()
        assert summary["camera"] == "cam2" and summary["entries"] > 0
        both = await client.post("/ask", json={"question": "what happened?", "cameras": ["cam0", "cam2"]})
        assert both.status_code == 200, both.text
        assert {e["camera"] for e in both.json()["evidence"]} <= {"cam0", "cam2"}
        missing = await client.get("/cameras/nope")
        assert missing.status_code == 404 and missing.json()["error"] == "UnknownCamera"
        bad = await client.post("/cameras", json={"id": "bad", "url": "ftp://x/y"})
        assert bad.status_code == 422, bad.text
        assert (await client.get("/cameras/bad")).status_code == 404
        # The actors' records reach the ingress's bus (/events), their per-frame metrics its /metrics.
        online_seen = {r.id for r in records.drain() if isinstance(r, CameraStatus) and r.state == "online"}
        assert online_seen == {"cam0", "cam1", "cam2"}
        console = await client.get("/")  # the console page, served by the ingress as by the local service
        assert console.status_code == 200 and "text/html" in console.headers["content-type"]
        metrics = (await client.get("/metrics")).text
        for i in range(3):
            for family in ("scissor_encode_seconds_count", "scissor_memory_update_seconds_count"):
                line = next(x for x in metrics.splitlines() if x.startswith(f'{family}{{camera="cam{i}"}}'))
                assert float(line.split()[-1]) > 0, line
        # One encoder per node that holds cameras, every frame of its cameras encoded there.
        import ray

        for node in nodes:
            stats: EncoderStats = await ray.get_actor(
                ENCODER_PREFIX + node, namespace="scissor"
            ).stats.remote()
            assert stats.node == node and stats.frames > 0
        assert non_loopback_sockets() == []
