"""Fixtures for the reliability suite: real RTSP/Redis/Mosquitto servers, the embedded model, leak
counters."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.demo import sample_video
from agent.models import Backend, load_backend
from harness.rtsp import RtspServer

# bigbuckbunny.mp4 is 1280x720, bikes.mp4 640x272, carphone_pristine.mp4 176x144 (all H.264, looped by the
# server).
SMALL_VIDEO = "carphone_pristine.mp4"


@pytest.fixture(scope="session")
def embedded() -> Backend:
    """The real embedded backend (EfficientNet-Lite0 on CPU), loaded once for the whole suite."""
    return load_backend("embedded", device="cpu")


@pytest.fixture
def rtsp_camera() -> Iterator[Callable[..., RtspServer]]:
    """A factory: `rtsp_camera("bikes.mp4", user=..., password=...)` starts a real RTSP server looping a
    sample."""
    started: list[RtspServer] = []

    def start(video: str = SMALL_VIDEO, **kwargs: str) -> RtspServer:
        server = RtspServer(**kwargs).start(sample_video(video))  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@dataclass(frozen=True)
class Census:
    """Threads and asyncio tasks alive at one moment (leak checks compare two of these)."""

    threads: tuple[str, ...]
    tasks: tuple[str, ...]

    @classmethod
    def take(cls) -> Census:
        """Count the live threads (by name) and the current loop's unfinished tasks (by name)."""
        current = asyncio.current_task()
        tasks = sorted(t.get_name() for t in asyncio.all_tasks() if t is not current and not t.done())
        return cls(tuple(sorted(t.name for t in threading.enumerate())), tuple(tasks))

    def camera_threads(self) -> list[str]:
        """Decode threads (one per connected camera, named camera-<id>)."""
        return [t for t in self.threads if t.startswith("camera-")]


def video_path(name: str) -> Path:
    """A bundled sample video."""
    return sample_video(name)


def metric_value(exposition: str, sample: str, **labels: str) -> float:
    """The value of one sample (e.g. `scissor_alerts_total`) with exactly these labels in a /metrics body; 0
    if absent."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            if s.name == sample and s.labels == labels:
                return float(s.value)
    return 0.0
