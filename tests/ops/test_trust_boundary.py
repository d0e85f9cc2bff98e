"""The trust boundary as a hostile probe meets it, against the real `scissor serve` on loopback: camera
passwords never reach the log, a refused camera's 422 says what to set, SDP over HTTP is refused, and one
client's idle sockets cannot hold /healthz for everyone."""

from __future__ import annotations

import contextlib
import http.server
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.demo import sample_video
from harness.ports import free_port
from harness.serve import ServeProcess
from tests.streamer.helpers import remux_to_mpegts, serve_http, stop_http

CAMERA_PASSWORD = "cam-pw-4b3c2d1e"
QUERY_PASSWORD = "query-pw-8f7e6d5c"


class VideoSite:
    """A real HTTP server on 127.0.0.1 serving one MPEG-TS clip at any path (queries ignored), a redirect
    at /hop, and whatever else a test puts in `bodies`; it records the paths asked for."""

    def __init__(self, clip: bytes) -> None:
        self.hits: list[str] = []
        self.bodies: dict[str, tuple[str, bytes]] = {}
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.hits.append(self.path)
                path = self.path.split("?")[0]
                if path == "/hop":
                    self.send_response(302)
                    self.send_header("Location", "/clip.ts?password=" + QUERY_PASSWORD)
                    self.end_headers()
                    return
                kind, body = site.bodies.get(path, ("video/mp2t", clip))
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the camera reader left early (probing, or deleted)
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = serve_http(Handler)
        self.base = f"127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        stop_http(self.server)


def mpegts(source: Path, target: Path) -> bytes:
    """The clip remuxed to MPEG-TS (plays over HTTP without range requests)."""
    remux_to_mpegts(source, target)
    return target.read_bytes()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VideoSite]:
    folder = tmp_path_factory.mktemp("site")
    server = VideoSite(mpegts(sample_video("carphone_pristine.mp4"), folder / "clip.ts"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """`scissor serve` (embedded model) at DEBUG, cameras allowed on 127.0.0.1 only, written the way users
    type it (no JSON list)."""
    env = {
        "SCISSOR_BACKEND": "embedded",
        "SCISSOR_DEVICE": "cpu",
        "SCISSOR_PORT": str(free_port()),
        "SCISSOR_LOG_LEVEL": "DEBUG",
        "SCISSOR_CAMERA__ALLOW_NETS": '["127.0.0.1/32"]',
    }
    server = ServeProcess(env, tmp_path_factory.mktemp("serve") / "serve.log").start()
    yield server
    server.stop()


def wait_state(api: httpx.Client, camera: str, states: set[str], timeout_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = api.get(f"/cameras/{camera}").json()
        if body.get("state") in states or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_an_http_cameras_password_never_reaches_the_service_log(
    served: ServeProcess, site: VideoSite
) -> None:
    url = f"http://viewer:{CAMERA_PASSWORD}@{site.base}/hop?user=viewer&password={QUERY_PASSWORD}"
    with served.client() as api:
        assert api.post("/cameras", json={"id": "web", "url": url, "fps": 2}).status_code == 201
        assert wait_state(api, "web", {"online"})["state"] == "online"
        time.sleep(8)  # the clip (4 s) ends: the camera reconnects, pre-flight and redirect walk again
        assert api.delete("/cameras/web").status_code in (200, 204)
    assert len([h for h in site.hits if h.startswith("/hop")]) >= 2, "the camera reconnected at least once"
    log = served.log()
    assert "camera web" in log and "DEBUG" in log, "the run logged the camera at DEBUG"
    assert CAMERA_PASSWORD not in log, "the camera's password (userinfo) is in the service log"
    assert QUERY_PASSWORD not in log, "the camera's ?password= is in the service log"


def test_nothing_in_the_log_could_carry_a_url_unredacted(served: ServeProcess) -> None:
    assert "HTTP Request:" not in served.log(), "httpx logs whole request URLs at INFO"
