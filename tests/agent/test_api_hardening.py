"""The API as an attacker meets it, on a real server on loopback: foreign Host headers (DNS rebinding), no
redirect before auth, security headers on every answer, memory listings off the event loop, parallel changes
of one camera, and rules that leave no metric series behind."""

from __future__ import annotations

import re
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import torch

from agent.models import Backend, load_backend
from harness.ports import free_port
from tests.agent.live_server import HealthProbe, LiveServer, baseline_healthz_s, live_server

TOKEN = "tok-3b9d1f7a5c2e4d6f8a0b"


@pytest.fixture(scope="module")
def embedded() -> Backend:
    return load_backend("embedded", device="cpu")


def dead_camera(camera_id: str) -> dict[str, Any]:
    """A camera on a loopback port nobody listens on: registered and retried, never decoded (cheap)."""
    return {"id": camera_id, "url": f"rtsp://127.0.0.1:{free_port()}/cam", "fps": 1}


def raw_get(server: LiveServer, path: str, host: str, **headers: str) -> httpx.Response:
    with httpx.Client(timeout=30) as client:
        return client.get(server.url + path, headers={"Host": host, **headers})


def test_a_foreign_host_header_is_a_400_before_routing_and_auth(embedded: Backend) -> None:
    with live_server(embedded, api_token=TOKEN) as server:
        port = server.url.rsplit(":", 1)[1]
        for host in ("evil.example", f"evil.example:{port}", "rebind.attacker.test", "127.0.0.2"):
            for path in ("/cameras", "/healthz", "/", "/metrics"):
                r = raw_get(server, path, host, Authorization=f"Bearer {TOKEN}")
                assert r.status_code == 400, (host, path, r.status_code)
                assert (
                    r.json()["error"] == "UntrustedHost"
                    and "SCISSOR_API__TRUSTED_HOSTS" in r.json()["detail"]
                )
                assert r.headers["x-content-type-options"] == "nosniff"
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}"):
            assert raw_get(server, "/healthz", host).status_code == 200, host


def test_listed_trusted_hosts_replace_the_defaults(embedded: Backend) -> None:
    api = {"trusted_hosts": ["scissor.lan", "10.0.0.5"]}
    with live_server(embedded, api=api) as server:
        assert raw_get(server, "/cameras", "scissor.lan:8080").status_code == 200
        assert raw_get(server, "/cameras", "10.0.0.5").status_code == 200
        assert raw_get(server, "/cameras", "127.0.0.1").status_code == 400
    with live_server(embedded, api={"trusted_hosts": ["*"]}) as server:
        assert raw_get(server, "/cameras", "anything.example").status_code == 200


def test_a_trailing_slash_is_not_redirected_and_the_host_never_reflected(embedded: Backend) -> None:
    with live_server(embedded, api_token=TOKEN) as server, httpx.Client(timeout=30) as client:
        for path in ("/cameras/", "/rules/", "/cameras/x/"):
            r = client.get(server.url + path)
            assert r.status_code in (401, 404), (path, r.status_code)
            assert "location" not in r.headers
            assert server.url.split("//")[1] not in r.text


SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def test_every_answer_carries_the_security_headers_and_api_json_is_never_cached(embedded: Backend) -> None:
    with live_server(embedded, api_token=TOKEN) as server, server.client() as api:
        answers = {
            "ok": api.get("/cameras"),
            "healthz": api.get("/healthz"),
            "401": httpx.get(server.url + "/cameras", timeout=30),
            "404": api.get("/cameras/nope"),
            "422": api.post("/cameras", json={"id": "x"}),
            "413": api.post(
                "/cameras", content=b"x" * 2_000_000, headers={"Content-Type": "application/json"}
            ),
            "metrics": api.get("/metrics"),
        }
        for name, r in answers.items():
            for header, value in SECURITY.items():
                assert r.headers.get(header) == value, (name, header, dict(r.headers))
            assert r.headers["cache-control"] == "no-store", name
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"], name
        page = httpx.get(server.url + "/", timeout=30)
        assert page.status_code == 200
        assert page.headers["content-security-policy"].startswith("default-src 'none'; script-src 'self'")
        assert page.headers["cache-control"] == "no-cache"  # the console's own: revalidated on every load
        assert page.headers["x-frame-options"] == "DENY"


def fill_memory(server: LiveServer, camera_id: str, frames: int) -> int:
    """Add `frames` frames of random tokens to a camera's real memory (196 new entries each), as ingest
    would."""
    pipeline = server.service.cameras.get(camera_id)
    memory, gen = pipeline.runtime.memory, torch.Generator().manual_seed(0)

    def add() -> int:
        with pipeline.runtime.memory_lock:
            for i in range(frames):
                memory.add_frame(torch.randn(196, memory.dim, generator=gen), float(i), i)
            return len(memory)

    return int(server.call(add))


def test_listing_a_full_memory_in_a_loop_does_not_hold_healthz_and_the_limit_is_bounded(
    embedded: Backend,
) -> None:
    with live_server(embedded) as server, server.client() as api:
        assert api.post("/cameras", json=dead_camera("gate")).status_code == 201
        assert fill_memory(server, "gate", 12) == 2048
        idle_s = baseline_healthz_s(server.url)
        stop, listed = threading.Event(), []

        def lister() -> None:
            with server.client() as own:
                while not stop.is_set():
                    r = own.get("/cameras/gate/memory", params={"limit": 4096})
                    listed.append(len(r.json()["items"]))

        with ThreadPoolExecutor(2) as pool, HealthProbe(server.url) as probe:
            for _ in range(2):
                pool.submit(lister)
            time.sleep(8)
            stop.set()
        assert listed and set(listed) == {2048}
        during_s = statistics.median(probe.latencies_s)
        # Listing on the event loop made every /healthz wait for a whole listing (median 600 ms measured).
        assert during_s < max(10 * idle_s, 0.15), (during_s, idle_s, len(listed))
        r = api.get("/cameras/gate/memory", params={"limit": 4097})
        assert r.status_code == 422 and "4096" in r.json()["detail"], r.text


def test_parallel_deletes_and_patches_of_one_camera_never_500(embedded: Backend) -> None:
    with live_server(embedded) as server, server.client() as api:
        outcomes: list[int] = []
        for round_ in range(8):
            assert api.post("/cameras", json=dead_camera("gate")).status_code == 201

            def change(i: int) -> int:
                with server.client() as own:
                    if i % 2:
                        return own.patch("/cameras/gate", json={"fps": 1 + i % 3}).status_code
                    return own.delete("/cameras/gate").status_code

            with ThreadPoolExecutor(6) as pool:
                codes = list(pool.map(change, range(6)))
            outcomes += codes
            assert codes.count(204) == 1, (round_, codes)  # one delete wins, the others find no camera
            assert set(codes) <= {200, 204, 404}, (round_, codes)
            assert api.get("/cameras").json() == []
        assert 500 not in outcomes


def _rule_series(metrics: str) -> int:
    """Series naming a rule (counted once: a counter's `_created` twin left out)."""
    return len(re.findall(r'^scissor_\w+_total\{[^}]*rule="[^"]+"', metrics, re.M))


def test_rules_created_and_deleted_leave_no_metric_series(embedded: Backend) -> None:
    with live_server(embedded) as server, server.client() as api:
        assert api.post("/cameras", json=dead_camera("gate")).status_code == 201
        rule = {"camera_id": "gate", "kind": "novelty", "params": {"threshold": 0.5}}
        kept = api.post("/rules", json=rule).json()["id"]
        assert _rule_series(api.get("/metrics").text) == 4  # alerts sent|queued|failed|dropped at zero
        for _ in range(300):  # the hostile probe ran 1,500 cycles: 8,000 series were left behind
            r = api.post("/rules", json=rule)
            assert api.delete(f"/rules/{r.json()['id']}").status_code == 204
        metrics = api.get("/metrics").text
        assert _rule_series(metrics) == 4 and f'rule="{kept}"' in metrics
        assert api.delete("/cameras/gate").status_code == 204
        assert _rule_series(api.get("/metrics").text) == 0
