"""A real Ray cluster of several nodes on this machine, every process on 127.0.0.1, and the cluster service
in front of it (its API over ASGI, as the Serve ingress runs it)."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client import CollectorRegistry

from agent.cluster.engine import ClusterService
from agent.cluster.ingress import create_cluster_app
from agent.cluster.raylib import import_ray
from agent.outputs.metrics import Metrics
from agent.settings import Settings, load_settings
from harness.mqtt import PersistentSubscriber

NODE_IP = "127.0.0.1"
NODE_ARGS: dict[str, Any] = {
    "num_cpus": 1,
    "node_ip_address": NODE_IP,
    "object_store_memory": 100 * 1024 * 1024,
}

# The GCS declares a node dead after this many missed health checks, this far apart (Ray's defaults: 5 x 3 s).
FAST_DEATH = {"health_check_period_ms": 1000, "health_check_failure_threshold": 10}


class LocalCluster:
    """`ray.cluster_utils.Cluster` on loopback: a head (where the test's driver joins) and worker nodes."""

    def __init__(self, workers: int) -> None:
        import_ray(NODE_IP)  # before Ray is imported: keeps a loopback driver on loopback
        from ray.cluster_utils import Cluster

        head = {**NODE_ARGS, "include_dashboard": False, "_system_config": FAST_DEATH}
        self.cluster = Cluster(initialize_head=True, head_node_args=head)
        self.workers = [self.cluster.add_node(**NODE_ARGS) for _ in range(workers)]

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def add_node(self) -> Any:
        node = self.cluster.add_node(**NODE_ARGS)
        self.workers.append(node)
        return node

    def kill(self, node: Any) -> None:
        """Kill a node's processes at once, as a crash does."""
        self.workers.remove(node)
        self.cluster.remove_node(node, allow_graceful=False)

    def shutdown(self) -> None:
        import ray

        ray.shutdown()
        self.cluster.shutdown()  # type: ignore[no-untyped-call]  # ray.cluster_utils is untyped


@pytest.fixture
def local_cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    """A head and `workers` worker nodes (default 2; `@pytest.mark.parametrize("local_cluster", [n],
    indirect=True)` for n)."""
    cluster = LocalCluster(getattr(request, "param", 2))
    try:
        yield cluster
    finally:
        cluster.shutdown()


def cluster_settings(
    cluster: LocalCluster, tmp_path: Path, *, camera_cpus: float = 0.25, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "engine": "ray",
        "ray": {
            "address": cluster.address,
            "node_ip": NODE_IP,
            "camera_cpus": camera_cpus,
            "failover_timeout_s": 5,
        },
        "backend": "embedded",
        "device": "cpu",
        "allow_file_urls": True,
        "mqtt_url": "none",
        "state": {"dir": str(tmp_path / "state"), "snapshot_interval_s": 2.0},
        **overrides,
    }
    return load_settings(None, **values)


@dataclass
class RunningCluster:
    service: ClusterService
    client: httpx.AsyncClient


@asynccontextmanager
async def cluster_service(settings: Settings) -> AsyncIterator[RunningCluster]:
    service = ClusterService(settings, metrics=Metrics(CollectorRegistry()))
    await service.start()
    app = create_cluster_app(service, manage_service=False)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=120) as c:
            yield RunningCluster(service, c)
    finally:
        await service.stop()


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is 127.0.0.1 on a dual-stack socket
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def non_loopback_sockets() -> list[str]:
    """Every socket of this process and its descendants (the Ray nodes, their workers, the actors) that
    listens on, or connects to, an address outside loopback."""
    me = psutil.Process()
    found = []
    for process in [me, *me.children(recursive=True)]:
        try:
            connections = process.net_connections(kind="inet")
            name = process.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for c in connections:
            ends = [c.laddr.ip] + ([c.raddr.ip] if c.raddr else [])
            if any(not _loopback(ip) for ip in ends):
                found.append(f"{name} (pid {process.pid}) {c.status}: {c.laddr} -> {c.raddr or '-'}")
    return found


class AlertSubscriber(PersistentSubscriber):
    """The cluster tests' QoS-1 alert subscriber (a persistent session, id `cluster-sub`)."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        super().__init__(host, port, topic, "cluster-sub")
