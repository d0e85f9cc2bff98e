"""Shared fixtures: real redis-server, mosquitto and Prometheus per test, and a per-test key/topic prefix."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.servers import MosquittoServer, PrometheusServer, RedisServer

# The tests' cameras (RTSP and HTTP servers they start) live on loopback, which the default camera-target
# policy refuses (it suits a camera LAN): allow it for every service the tests start, in process or not.
TEST_CAMERA_NETS = '["127.0.0.0/8", "::1/128"]'
os.environ.setdefault("SCISSOR_CAMERA__ALLOW_NETS", TEST_CAMERA_NETS)
# Every service the tests start keeps its write-ahead file and generated key in a temporary directory: one per
# test (the fixture below), one for the session for module-scoped services; never the user's ~/.local/state.
os.environ.setdefault("SCISSOR_STATE__DIR", tempfile.mkdtemp(prefix="scissor-state-"))


@pytest.fixture(autouse=True)
def state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own `SCISSOR_STATE__DIR` (a service started twice in one test finds its file again)."""
    path = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("SCISSOR_STATE__DIR", str(path))
    return path


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server on a free loopback port (about 50 ms to start); kill()/restart() for faults."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def mosquitto_server() -> Iterator[MosquittoServer]:
    """A fresh anonymous mosquitto on a free loopback port; kill()/restart() for faults."""
    with MosquittoServer() as server:
        yield server


@pytest.fixture
def prometheus_server() -> Iterator[Callable[[list[str]], PrometheusServer]]:
    """A factory: `prometheus_server(["127.0.0.1:PORT"])` starts Prometheus scraping those targets."""
    started: list[PrometheusServer] = []

    def start(targets: list[str]) -> PrometheusServer:
        server = PrometheusServer(targets)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def prefix() -> str:
    """A unique key / topic prefix for one test, so tests never see each other's data."""
    return f"t{uuid.uuid4().hex[:10]}"
