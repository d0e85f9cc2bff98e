"""The cluster-mode deployment files (ops/ray/): the KubeRay RayService and the Ray cluster config for VMs
parse, and name what the service reads (settings that exist, the Serve builder that imports, Ray's pinned
version, a GPU worker group, secrets only by reference)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import yaml

from agent.settings import env_names

ROOT = Path(__file__).resolve().parents[2]
RAYSERVICE = ROOT / "ops" / "ray" / "rayservice.yaml"
CLUSTER = ROOT / "ops" / "ray" / "cluster.yaml"
SECRET_SETTINGS = {"SCISSOR_API_TOKEN", "SCISSOR_REDIS_URL", "SCISSOR_REDIS__ENCRYPTION_KEY"}


def pinned_ray() -> str:
    lock = (ROOT / "requirements" / "test.lock").read_text()
    found = re.search(r"^ray==([0-9.]+)", lock, re.MULTILINE)
    assert found, "ray is not pinned in requirements/test.lock"
    return found.group(1)


def containers(group: dict[str, Any]) -> list[dict[str, Any]]:
    return list(group["template"]["spec"]["containers"])


def test_the_rayservice_runs_the_api_as_a_serve_app_with_cpu_and_gpu_workers() -> None:
    doc = yaml.safe_load(RAYSERVICE.read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("ray.io/v1", "RayService")
    serve = yaml.safe_load(doc["spec"]["serveConfigV2"])
    (application,) = serve["applications"]
    module, _, name = application["import_path"].partition(":")
    builder = getattr(importlib.import_module(module), name)
    assert callable(builder) and application["route_prefix"] == "/"
    cluster = doc["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == pinned_ray()
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    gpu = groups["gpu"]
    assert gpu["rayStartParams"]["num-gpus"] == "1"
    (gpu_container,) = containers(gpu)
    assert gpu_container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert all(g["minReplicas"] <= g["replicas"] <= g["maxReplicas"] for g in groups.values())
    known = {name for name, _, _ in env_names()}
    every = [cluster["headGroupSpec"], *groups.values()]
    for group in every:
        for container in containers(group):
            env = {e["name"]: e for e in container["env"]}
            assert env["SCISSOR_ENGINE"]["value"] == "ray"
            assert env["SCISSOR_RAY__ADDRESS"]["value"] == "auto"
            assert env["SCISSOR_RAY__NODE_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
            assert set(env) <= known, f"unknown settings: {set(env) - known}"
            for name in SECRET_SETTINGS & set(env):
                assert "value" not in env[name] and "secretKeyRef" in env[name]["valueFrom"], name
    assert (
        gpu_container["env"][[e["name"] for e in gpu_container["env"]].index("SCISSOR_DEVICE")]["value"]
        == "cuda"
    )


def test_the_vm_cluster_config_starts_ray_on_every_node_and_the_api_on_the_head() -> None:
    doc = yaml.safe_load(CLUSTER.read_text())
    assert doc["provider"]["type"] == "local"
    assert doc["provider"]["head_ip"] and len(doc["provider"]["worker_ips"]) == doc["min_workers"]
    head = " ".join(doc["head_start_ray_commands"])
    worker = " ".join(doc["worker_start_ray_commands"])
    assert "ray start --head" in head and "--node-ip-address" in head
    assert "SCISSOR_ENGINE=ray" in head and "scissor serve" in head and "SCISSOR_RAY__NODE_IP=" in head
    assert "ray start --address=$RAY_HEAD_IP:6379" in worker and "--node-ip-address" in worker
    assert f"ray[serve]=={pinned_ray()}" in " ".join(doc["setup_commands"])
    assert "--dashboard-host=127.0.0.1" in head  # the dashboard never listens beyond the head itself
