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

# What each process of the tree is, by its command line (Ray titles its workers `ray::<Actor class>`).
PROCESS_KINDS = (
    ("ray::CameraActor", "camera actors"),
    ("ray::NodeEncoder", "node encoders"),
    ("ray::IDLE", "idle Ray workers"),
    ("ray::", "other Ray workers"),
    ("gcs_server", "Ray daemons"),
    ("raylet", "Ray daemons"),
    ("dashboard", "Ray daemons"),
    ("runtime_env", "Ray daemons"),
    ("log_monitor", "Ray daemons"),
    ("monitor.py", "Ray daemons"),
)


def process_kind(cmdline: list[str]) -> str:
    text = " ".join(cmdline)
    return next((kind for marker, kind in PROCESS_KINDS if marker in text), "other")


def memory_mb() -> dict[str, Any]:
    """Memory of this process (the API: the ingress in cluster mode) and every descendant: resident (RSS,
    shared pages counted in every process that maps them) and proportional (PSS, shared pages split among
    them: what the tree really costs), PSS by kind of process, and how many of each."""
    me = psutil.Process()
    rss = pss = 0
    by_kind: dict[str, float] = {}
    count: dict[str, int] = {}
    for process in [me, *me.children(recursive=True)]:
        try:
            info = process.memory_full_info()
            kind = "API process" if process.pid == me.pid else process_kind(process.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += info.pss
        by_kind[kind] = by_kind.get(kind, 0.0) + info.pss / 2**20
        count[kind] = count.get(kind, 0) + 1
    return {
        "rss_mb": rss / 2**20,
        "pss_mb": pss / 2**20,
        "pss_by_kind_mb": {k: round(v, 1) for k, v in sorted(by_kind.items())},
        "processes": dict(sorted(count.items())),
    }


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
        **memory_mb(),
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
            encoder = mode.removeprefix("ray-")  # ray-node: one encoder per node; ray-camera: one per camera
            ray_options = {
                "address": address,
                "node_ip": "127.0.0.1",
                "camera_cpus": cpus,
                "encoder": encoder,
            }
            settings = load_settings(None, **values, engine="ray", ray=ray_options)
            async with cluster_api(settings) as client:
                return await measure(client, args.cameras, args.fps, args.seconds, args.questions)
        finally:
            ray.shutdown()


def coverage_gap(before: dict[str, Any], after: dict[str, Any]) -> tuple[float, float]:
    """(memory lost, coverage gap) in stream seconds around a kill, from a camera's memory listing just before
    it and one after the camera is back: the newest second before the kill the restored memory still covers,
    against the newest the memory held at the kill (what the last memory blob missed), and against the first
    second covered again after it (that plus the frames not ingested while the camera moved)."""
    at_kill = max(i["last_seen_s"] for i in before["items"])
    spans = sorted((a, b) for item in after["items"] for a, b in item["intervals"])
    restored = max((b for _, b in spans if b <= at_kill + 0.5), default=0.0)
    resumed = min((a for a, _ in spans if a > restored + 0.5), default=restored)
    return max(0.0, at_kill - restored), max(0.0, resumed - restored)


async def failover(kills: int, state: Path, out: Path | None = None) -> dict[str, Any]:
    """`kills` times: kill a worker node holding cameras (no graceful stop), time until every camera is online
    on a surviving node, measure the memory lost, then add a fresh node. 3 nodes, 4 cameras at 1 frame/s with
    novelty rules, memory blobs every 2 s; a QoS-1 subscriber counts every alert id the cameras raised
    (the ingress's /events bus) against those the broker delivered."""
    from agent.cluster.engine import ClusterService
    from agent.cluster.ingress import create_cluster_app
    from agent.cluster.raylib import import_ray
    from agent.records import Alert
    from agent.settings import load_settings
    from harness.mqtt import PersistentSubscriber
    from harness.servers import MosquittoServer

    ray = import_ray("127.0.0.1")  # before anything imports Ray: keeps the driver on loopback
    from ray.cluster_utils import Cluster

    node: dict[str, Any] = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 100 * 2**20}
    health = {"health_check_period_ms": 1000, "health_check_failure_threshold": 10}
    cluster = Cluster(
        initialize_head=True, head_node_args={**node, "include_dashboard": False, "_system_config": health}
    )
    workers = [cluster.add_node(**node) for _ in range(2)]
    results: list[dict[str, Any]] = []
    report: dict[str, Any] = {"failover": results}
    try:
        with RedisServer() as redis, MosquittoServer() as broker:
            sub = PersistentSubscriber(broker.host, broker.port, "scissor/+/alerts/#", "bench-failover")
            listening = asyncio.create_task(sub.run())
            await asyncio.wait_for(sub.subscribed.wait(), 10)
            ray_options = {"address": cluster.address, "node_ip": "127.0.0.1", "camera_cpus": 0.5}
            settings = load_settings(
                None,
                backend="embedded",
                device="cpu",
                redis_url=redis.url,
                mqtt_url=broker.url,
                allow_file_urls=True,
                engine="ray",
                ray=ray_options,
                state={"dir": str(state / "failover"), "snapshot_interval_s": 2.0},
                camera={"allow_nets": ["127.0.0.0/8"]},
            )
            service = ClusterService(settings)
            await service.start()
            raised = service.bus.subscribe(maxsize=100_000, accept=lambda r: isinstance(r, Alert))
            transport = httpx.ASGITransport(app=create_cluster_app(service, manage_service=False))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://localhost", timeout=120
            ) as client:
                ids = [f"cam{i}" for i in range(4)]
                for i in range(4):
                    assert (await client.post("/cameras", json=camera(i, 1.0))).status_code == 201
                    rule = {"camera_id": f"cam{i}", "kind": "novelty", "params": {"threshold": 0.2}}
                    assert (await client.post("/rules", json=rule | {"cooldown_s": 0})).status_code == 201

                async def statuses() -> dict[str, dict[str, Any]]:
                    return {c: (await client.get(f"/cameras/{c}")).json() for c in ids}

                async def listing(c: str) -> dict[str, Any]:
                    found: dict[str, Any] = (
                        await client.get(f"/cameras/{c}/memory", params={"limit": 4096})
                    ).json()
                    return found

                while not all(s["state"] == "online" for s in (await statuses()).values()):
                    await asyncio.sleep(0.5)
                for k in range(kills):
                    await asyncio.sleep(5)
                    placement = {c: s["node"] for c, s in (await statuses()).items()}
                    victim = next(w for w in workers if w.node_id in placement.values())
                    moved = [c for c, n in placement.items() if n == victim.node_id]
                    before = {c: await listing(c) for c in moved}
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
                    await asyncio.sleep(5)  # frames after the move, so coverage resumes
                    gaps = [coverage_gap(before[c], await listing(c)) for c in moved]
                    results.append(
                        {
                            "kill": k + 1,
                            "cameras_moved": len(moved),
                            "failover_s": took,
                            "memory_lost_s": max(g[0] for g in gaps),
                            "coverage_gap_s": max(g[1] for g in gaps),
                        }
                    )
                    last = results[-1]
                    print(
                        f"kill {k + 1}: {len(moved)} camera(s) online elsewhere after {took:.1f} s; memory "
                        f"lost {last['memory_lost_s']:.1f} s, coverage gap {last['coverage_gap_s']:.1f} s",
                        flush=True,
                    )
                    if out is not None:  # after every kill: a run cut short keeps what it measured
                        out.write_text(json.dumps(report, indent=2))
                    workers.append(cluster.add_node(**node))
                await asyncio.sleep(10)  # the outbox drains: every alert raised reaches the broker
            raised_ids = {str(getattr(r, "id", "")) for r in raised.drain()}
            received = sub.ids()
            report["alerts"] = {
                "raised_seen_at_ingress": len(raised_ids),
                "received": len(received),
                "unique_received": len(set(received)),
                "duplicates": len(received) - len(set(received)),
                "lost": len(raised_ids - set(received)),
            }
            print(f"alerts: {report['alerts']}", flush=True)
            if out is not None:
                out.write_text(json.dumps(report, indent=2))
            listening.cancel()
            for remote in service.cameras.remotes():
                ray.kill(remote.handle, no_restart=True)
            await asyncio.wait_for(service.stop(), 60)
    finally:
        ray.shutdown()
        cluster.shutdown()  # type: ignore[no-untyped-call]  # ray.cluster_utils is untyped
    return report


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
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["local", "ray-camera", "ray-node"],
        choices=["local", "ray-camera", "ray-node"],
        help="local first: the others are compared with it",
    )
    args = parser.parse_args(argv)
    if args.only_failover:
        with tempfile.TemporaryDirectory() as state:
            asyncio.run(failover(args.kills, Path(state), args.json))
        return 0
    modes = args.modes
    with tempfile.TemporaryDirectory() as state:
        results = {mode: asyncio.run(run_mode(mode, args, Path(state))) for mode in modes}
    local = results["local"]
    print(f"{'':<18}" + "".join(f"{m:>12}{'vs local':>10}" for m in modes))
    for key in ("fps_encoded", "question_p50_ms", "question_p95_ms", "rss_mb", "pss_mb"):
        line = f"{key:<18}"
        for mode in modes:
            value = results[mode][key]
            worse = (local[key] / value - 1) if key == "fps_encoded" else (value / local[key] - 1)
            line += f"{value:>12.1f}{100 * worse:>9.1f}%"
        print(line)
    for mode in modes:
        print(
            f"{mode}: PSS MB by process {results[mode]['pss_by_kind_mb']}, count {results[mode]['processes']}"
        )
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, **results}, indent=2))
    return 0
