"""`scissor bench cluster`: cluster mode on one Ray node vs SCISSOR_ENGINE=local on the same cameras.

Both runs use the same real Redis, the same looping sample video per camera, the same API calls over ASGI:
frames/s written to memory (every camera's `fps_out`, sampled each second), question latency (p50/p95 of
sequential `POST /cameras/{id}/ask`) and resident memory of the whole process tree (the Ray node and its
actors included). Every Ray process stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil

from agent.demo import sample_video
from harness.servers import RedisServer


def rss_mb() -> float:
    """Resident MB of this process and every descendant."""
    me = psutil.Process()
    total = 0
    for process in [me, *me.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def camera(i: int, fps: float) -> dict[str, Any]:
    return {"id": f"cam{i}", "url": str(sample_video()), "fps": fps, "options": {"loop": True}}


async def measure(
    client: httpx.AsyncClient, cameras: int, fps: float, seconds: float, questions: int
) -> dict[str, Any]:
    ids = [f"cam{i}" for i in range(cameras)]
    for i in range(cameras):
        created = await client.post("/cameras", json=camera(i, fps))
        assert created.status_code == 201, created.text
    deadline = time.monotonic() + 180
    while True:  # warm: every camera online with memory
        found = [(await client.get(f"/cameras/{c}")).json() for c in ids]
        if all(s["state"] == "online" and s["memory_entries"] > 0 for s in found):
            break
        assert time.monotonic() < deadline, f"cameras not online: {found}"
        await asyncio.sleep(0.5)
    await asyncio.sleep(5)
    rates, started = [], time.monotonic()
    while time.monotonic() - started < seconds:
        rate = 0.0
        for c in ids:
            rate += float((await client.get(f"/cameras/{c}")).json()["fps_out"])
        rates.append(rate)
        await asyncio.sleep(1.0)
    latencies = []
    for n in range(questions):
        t0 = time.perf_counter()
        answer = await client.post(f"/cameras/{ids[n % cameras]}/ask", json={"question": "what did you see?"})
        latencies.append(time.perf_counter() - t0)
        assert answer.status_code == 200, answer.text
    latencies.sort()
    return {
        "fps_encoded": statistics.fmean(rates),
        "question_p50_ms": 1000 * latencies[len(latencies) // 2],
        "question_p95_ms": 1000 * latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))],
        "rss_mb": rss_mb(),
    }


@asynccontextmanager
async def local_api(settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    from agent.api import create_app
    from agent.service import Service

    service = Service(settings)
    await service.start()
    try:
        transport = httpx.ASGITransport(app=create_app(service, manage_service=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=120) as c:
            yield c
    finally:
        await service.stop()


@asynccontextmanager
async def cluster_api(settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    from agent.cluster.engine import ClusterService
    from agent.cluster.ingress import create_cluster_app

    service = ClusterService(settings)
    await service.start()
    try:
        transport = httpx.ASGITransport(app=create_cluster_app(service, manage_service=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=120) as c:
            yield c
    finally:
        for remote in service.cameras.remotes():  # the actors are detached: stop them with the run
            service.ray.kill(remote.handle, no_restart=True)
        await service.stop()


async def run_mode(mode: str, args: argparse.Namespace, state: Path) -> dict[str, Any]:
    from agent.settings import load_settings

    with RedisServer() as redis:
        values: dict[str, Any] = {
            "backend": "embedded",
            "device": "cpu",
            "redis_url": redis.url,
            "allow_file_urls": True,
            "state": {"dir": str(state / mode)},
            "camera": {"allow_nets": ["127.0.0.0/8"]},
        }
        if mode == "local":
            async with local_api(load_settings(None, **values)) as client:
                return await measure(client, args.cameras, args.fps, args.seconds, args.questions)
        from agent.cluster.raylib import import_ray

        ray = import_ray("127.0.0.1")
        ray.init(
            num_cpus=args.cpus, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False
        )
        try:
            address = ray.get_runtime_context().gcs_address
            cpus = args.cpus / (args.cameras + 1)
            ray_options = {"address": address, "node_ip": "127.0.0.1", "camera_cpus": cpus}
            settings = load_settings(None, **values, engine="ray", ray=ray_options)
            async with cluster_api(settings) as client:
                return await measure(client, args.cameras, args.fps, args.seconds, args.questions)
        finally:
            ray.shutdown()


async def failover(kills: int, state: Path, out: Path | None = None) -> list[dict[str, Any]]:
    """`kills` times: kill a worker node holding cameras (no graceful stop), time until every camera is online
    on a surviving node, then add a fresh node. 3 nodes, 4 cameras at 1 frame/s, memory blobs every 2 s."""
    from agent.cluster.engine import ClusterService
    from agent.cluster.ingress import create_cluster_app
    from agent.cluster.raylib import import_ray
    from agent.settings import load_settings

    ray = import_ray("127.0.0.1")  # before anything imports Ray: keeps the driver on loopback
    from ray.cluster_utils import Cluster

    node: dict[str, Any] = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 100 * 2**20}
    health = {"health_check_period_ms": 1000, "health_check_failure_threshold": 10}
    cluster = Cluster(
        initialize_head=True, head_node_args={**node, "include_dashboard": False, "_system_config": health}
    )
    workers = [cluster.add_node(**node) for _ in range(2)]
    results: list[dict[str, Any]] = []
    try:
        with RedisServer() as redis:
            ray_options = {"address": cluster.address, "node_ip": "127.0.0.1", "camera_cpus": 0.5}
            settings = load_settings(
                None,
                backend="embedded",
                device="cpu",
                redis_url=redis.url,
                allow_file_urls=True,
                engine="ray",
                ray=ray_options,
                state={"dir": str(state / "failover"), "snapshot_interval_s": 2.0},
                camera={"allow_nets": ["127.0.0.0/8"]},
            )
            service = ClusterService(settings)
            await service.start()
            transport = httpx.ASGITransport(app=create_cluster_app(service, manage_service=False))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://localhost", timeout=120
            ) as client:
                ids = [f"cam{i}" for i in range(4)]
                for i in range(4):
                    assert (await client.post("/cameras", json=camera(i, 1.0))).status_code == 201

                async def statuses() -> dict[str, dict[str, Any]]:
                    return {c: (await client.get(f"/cameras/{c}")).json() for c in ids}

                while not all(s["state"] == "online" for s in (await statuses()).values()):
                    await asyncio.sleep(0.5)
                for k in range(kills):
                    await asyncio.sleep(5)
                    placement = {c: s["node"] for c, s in (await statuses()).items()}
                    victim = next(w for w in workers if w.node_id in placement.values())
                    moved = [c for c, n in placement.items() if n == victim.node_id]
                    workers.remove(victim)
                    cluster.remove_node(victim, allow_graceful=False)
                    started = time.monotonic()
                    while True:
                        found = await statuses()
                        if all(
                            s["state"] == "online" and s["node"] not in (None, victim.node_id)
                            for s in found.values()
                        ):
                            break
                        assert time.monotonic() - started < 300, found
                        await asyncio.sleep(0.25)
                    took = time.monotonic() - started
                    results.append({"kill": k + 1, "cameras_moved": len(moved), "failover_s": took})
                    print(
                        f"kill {k + 1}: {len(moved)} camera(s) online elsewhere after {took:.1f} s",
                        flush=True,
                    )
                    if out is not None:  # after every kill: a run cut short keeps what it measured
                        out.write_text(json.dumps({"failover": results}, indent=2))
                    workers.append(cluster.add_node(**node))
            for remote in service.cameras.remotes():
                ray.kill(remote.handle, no_restart=True)
            await service.stop()
    finally:
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]  # ray.cluster_utils is untyped
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scissor bench cluster", description=__doc__)
    parser.add_argument("--cameras", type=int, default=2, help="cameras in both runs")
    parser.add_argument("--fps", type=float, default=2.0, help="frames/s sampled per camera")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of fps sampling per run")
    parser.add_argument("--questions", type=int, default=20, help="questions asked per run")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs the one Ray node offers")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--kills", type=int, default=0, help="then kill a node this many times, timing failover"
    )
    parser.add_argument("--only-failover", action="store_true", help="skip the overhead comparison")
    args = parser.parse_args(argv)
    if args.only_failover:
        with tempfile.TemporaryDirectory() as state:
            asyncio.run(failover(args.kills, Path(state), args.json))
        return 0
    with tempfile.TemporaryDirectory() as state:
        local = asyncio.run(run_mode("local", args, Path(state)))
        cluster = asyncio.run(run_mode("ray", args, Path(state)))
    print(f"{'':<18}{'local':>10}{'ray (1 node)':>14}{'overhead':>10}")
    for key in ("fps_encoded", "question_p50_ms", "question_p95_ms", "rss_mb"):
        worse = (local[key] / cluster[key] - 1) if key == "fps_encoded" else (cluster[key] / local[key] - 1)
        print(f"{key:<18}{local[key]:>10.1f}{cluster[key]:>14.1f}{100 * worse:>9.1f}%")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"json": str(args.json)}, "local": local, "ray": cluster}, indent=2
            )
        )
    return 0
