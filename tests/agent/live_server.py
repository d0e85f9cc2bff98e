"""A real Service behind uvicorn on a loopback port, in a thread of its own (its own event loop), so a test
can time requests from other threads while the server works: a blocked event loop shows as slow /healthz."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from prometheus_client import CollectorRegistry

from agent.api import create_app
from agent.models import Backend
from agent.outputs.metrics import Metrics
from agent.service import Service
from agent.settings import load_settings
from harness.ports import free_port


@dataclass
class LiveServer:
    """The running server: its base URL, its Service (read it only while no request changes it) and the
    loop it runs on."""

    url: str
    service: Service
    loop: asyncio.AbstractEventLoop
    headers: dict[str, str]

    def client(self, timeout_s: float = 60.0, **kwargs: Any) -> httpx.Client:
        """A synchronous client of the API (with the bearer token when the server has one)."""
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout_s, **kwargs)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the server's event loop and return its result (for reading or filling its state)."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(60)


@contextmanager
def live_server(backend: Backend | None = None, **overrides: Any) -> Iterator[LiveServer]:
    """Start a Service with `overrides` (settings fields) under uvicorn on 127.0.0.1:<free port>; stop it."""
    port = free_port()
    fields = {"redis_url": "memory://", "mqtt_url": "none", "host": "127.0.0.1", "port": port, **overrides}
    settings = load_settings(None, **fields)
    service = Service(settings, backend=backend, metrics=Metrics(CollectorRegistry()))
    ready, failed = threading.Event(), []
    holder: dict[str, Any] = {}

    async def main() -> None:
        try:
            await service.start()
            app = create_app(service, manage_service=False)
            config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
            server = holder["server"] = uvicorn.Server(config)
            holder["loop"] = asyncio.get_running_loop()
            serving = asyncio.create_task(server.serve())
            while not server.started and not serving.done():
                await asyncio.sleep(0.02)
            ready.set()
            await serving
        except BaseException as exc:
            failed.append(exc)
            ready.set()
            raise
        finally:
            await service.stop()

    thread = threading.Thread(target=lambda: asyncio.run(main()), name="live-server", daemon=True)
    thread.start()
    ready.wait(120)
    if failed or "loop" not in holder:
        raise RuntimeError(f"the server did not start: {failed}")
    token = settings.api_token
    headers = {} if token is None else {"Authorization": f"Bearer {token.get_secret_value()}"}
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", service, holder["loop"], headers)
    finally:
        holder["server"].should_exit = True
        thread.join(60)


class HealthProbe:
    """Times GET /healthz in a thread of its own, back to back, until stopped: `latencies_s` in order."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies_s: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthz-probe", daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                self.latencies_s.append(time.perf_counter() - started)
                time.sleep(0.01)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    @property
    def median_s(self) -> float:
        return statistics.median(self.latencies_s)

    @property
    def worst_s(self) -> float:
        return max(self.latencies_s)


def baseline_healthz_s(url: str, samples: int = 20) -> float:
    """Median /healthz latency of an idle server (what the probes above are compared with)."""
    with HealthProbe(url) as probe:
        while len(probe.latencies_s) < samples:
            time.sleep(0.02)
    return probe.median_s
