"""Bad input never gets a 5xx or a stack trace: schemathesis over our OpenAPI, NaN, huge bodies, traversal,
schemes."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
import torch
from hypothesis import HealthCheck, settings

from agent.models import Backend
from harness.ports import free_port
from harness.rtsp import RtspServer
from harness.serve import ServeProcess
from tests.agent.service_harness import running_service, wait_until
from tests.reliability.conftest import metric_value

EXAMPLES_PER_OPERATION = 20  # 13 operations: a few hundred cases in total
TRACE_MARKERS = ("Traceback", 'File "/', "site-packages", "Exception:")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """A real `scissor serve` (embedded model, in-process state) with one real RTSP camera and one rule."""
    from agent.demo import sample_video

    camera = RtspServer().start(sample_video("carphone_pristine.mp4"))
    env = {"SCISSOR_BACKEND": "embedded", "SCISSOR_DEVICE": "cpu", "SCISSOR_PORT": str(free_port())}
    server = ServeProcess(env, tmp_path_factory.mktemp("serve") / "serve.log").start()
    try:
        with server.client() as api:
            assert api.post("/cameras", json={"id": "cam1", "url": camera.url, "fps": 1}).status_code == 201
            rule = {"camera_id": "cam1", "kind": "novelty", "params": {"threshold": 0.5}}
            assert api.post("/rules", json=rule).status_code == 201
        yield server
    finally:
        server.stop()
        camera.stop()
    assert "Traceback" not in server.log(), server.log()[-3000:]


@pytest.fixture(scope="module")
def api_schema(served: ServeProcess) -> schemathesis.BaseSchema:
    # /events streams forever (server-sent events); it is checked on its own below.
    return schemathesis.openapi.from_url(f"{served.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/events")


def no_stack_trace(ctx: object, response: schemathesis.Response, case: schemathesis.Case[Any]) -> bool:
    """A response body never carries a Python stack trace or server file paths."""
    for marker in TRACE_MARKERS:
        if marker in response.text:
            raise AssertionError(f"{marker!r} in the response body of {case.method} {case.path}")
    return True


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_generated_input_without_a_5xx_or_a_stack_trace(
    case: schemathesis.Case[Any],
) -> None:
    response = case.call(timeout=60)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: "
        f"{response.text[:300]}\n{case.as_curl_command()}"
    )
    no_stack_trace(None, response, case)
    if response.status_code >= 400:
        body = response.json()
        assert body["error"] and body["detail"], "errors are JSON {error, detail}"


def test_the_event_stream_opens_with_its_content_type(served: ServeProcess) -> None:
    with served.client() as api, api.stream("GET", "/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert next(response.iter_text()).startswith(": connected")


BAD_BODIES = [
    ("POST", "/cameras", b'{"id": "c", "url": "rtsp://h/s", "fps": NaN}'),
    ("POST", "/cameras", b'{"id": "c", "url": "rtsp://h/s", "fps": Infinity}'),
    ("POST", "/cameras", b'{"id": "c", "url": "rtsp://h/s", "options": {"tau": NaN}}'),
    ("POST", "/cameras/cam1/ask", b'{"question": "hi", "since_s": NaN}'),
    ("POST", "/cameras/cam1/ask", b'{"question": "hi", "from": -Infinity}'),
    ("POST", "/rules", b'{"camera_id": "cam1", "kind": "novelty", "params": {"threshold": NaN}}'),
    (
        "POST",
        "/rules",
        b'{"camera_id": "cam1", "kind": "prompt", "params": {"question": "q", "every_s": 1e999}}',
    ),
    ("POST", "/cameras", b"[" * 10_000 + b"]" * 10_000),
    ("POST", "/cameras", b"\xff\xfe\x00garbage"),
    ("PATCH", "/cameras/cam1", b'{"options": {"capacity": -5}}'),
    ("POST", "/cameras", b'{"id": "c", "url": "rtsp://h/s", "options": {"capacity": 1000000000}}'),
    ("POST", "/cameras", b'{"id": "c", "url": "rtsp://h/s", "options": {"window_s": "nan"}}'),
    ("POST", "/cameras", b'{"id": "c", "url": "rtsp://h/s", "options": {"decode_threads": 100000}}'),
    ("POST", "/cameras", b'{"id": "c", "url": "rtsp://h/s", "options": {"queue_size": 1000000000}}'),
    ("POST", "/cameras", b'{"id": "c", "url": "rtsp://h/s", "options": {"read_timeout_s": -1}}'),
    ("POST", "/cameras", b'{"id": "c", "url": "rtsp://h/s", "options": {"transport": "http"}}'),
]


@pytest.mark.parametrize(
    ("method", "path", "body"), BAD_BODIES, ids=[f"{m} {p} {b[:30]!r}" for m, p, b in BAD_BODIES]
)
def test_nan_infinite_and_malformed_json_bodies_get_a_clear_4xx(
    served: ServeProcess, method: str, path: str, body: bytes
) -> None:
    with served.client() as api:
        response = api.request(method, path, content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"] and "Traceback" not in response.text


def test_huge_bodies_are_refused_with_413_whether_declared_or_streamed(served: ServeProcess) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b" " * 65_536

    with served.client() as api:
        declared = api.post(
            "/cameras", content=b"x" * 5_000_000, headers={"content-type": "application/json"}
        )
        streamed = api.post(
            "/cameras/cam1/ask", content=chunks(), headers={"content-type": "application/json"}
        )
        long_question = api.post("/cameras/cam1/ask", json={"question": "why? " * 20_000})
    assert declared.status_code == 413 and declared.json()["error"] == "PayloadTooLarge"
    assert streamed.status_code == 413 and streamed.json()["error"] == "PayloadTooLarge"
    assert long_question.status_code == 422, long_question.text


TRAVERSALS = [
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "cam1%00",
    "cam1%2F..%2Fcam1",
    "....//....//etc",
    "%252e%252e%252f",
    "a" * 65,
]


@pytest.mark.parametrize("camera_id", TRAVERSALS)
def test_path_traversal_in_ids_never_reaches_anything_but_a_4xx(served: ServeProcess, camera_id: str) -> None:
    with served.client() as api:
        responses = [
            api.get(f"/cameras/{camera_id}"),
            api.get(f"/cameras/{camera_id}/snapshot"),
            api.get(f"/rules/{camera_id}"),
            api.delete(f"/cameras/{camera_id}"),
            api.post("/cameras", json={"id": camera_id, "url": "rtsp://127.0.0.1:1/cam"}),
        ]
        still_there = api.get("/cameras/cam1")
    for r in responses:
        assert 400 <= r.status_code < 500 or (r.status_code == 200 and r.json()["id"] == "cam1"), (
            r.request.method,
            str(r.request.url),
            r.status_code,
            r.text[:200],
        )
        assert "root:" not in r.text
    assert still_there.status_code == 200, "no traversal deleted or replaced the real camera"


URLS = [
    "file:///etc/passwd",
    "/etc/passwd",
    "FILE:///etc/hostname",
    "file://localhost/etc/passwd",
    "ftp://h/cam",
    "gopher://h:70/x",
    "javascript:alert(1)",
    "data:video/mp4;base64,AAAA",
    "rtsp://",
    "rtsp:///cam",
    "rtsp://h:99999/cam",
    "rtsp://h/cam\r\nX-Injected: 1",
    " rtsp://h/cam",
    "unix:///var/run/docker.sock",
    "http://[::1/cam",
    "~/video.mp4",
]


@pytest.mark.parametrize("url", URLS)
def test_unlisted_url_schemes_and_local_files_are_refused_by_the_api(served: ServeProcess, url: str) -> None:
    with served.client() as api:
        response = api.post("/cameras", json={"id": "bad", "url": url})
        patched = api.patch("/cameras/cam1", json={"url": url})
    assert response.status_code == 422, response.text
    assert patched.status_code == 422, patched.text
    assert "root:" not in response.text and "Traceback" not in response.text


async def test_local_files_are_accepted_only_when_enabled(embedded: Backend) -> None:
    from agent.demo import sample_video

    url = f"file://{sample_video('carphone_pristine.mp4')}"
    async with running_service(embedded, allow_file_urls=True) as run:
        assert (
            await run.client.post("/cameras", json={"id": "f", "url": url, "options": {"loop": True}})
        ).status_code == 201


@dataclasses.dataclass
class NaNEvery:
    """Wraps a real encoder; every `n`-th call returns tokens with a NaN (a numerically broken frame)."""

    encode_fn: Callable[[list[np.ndarray]], torch.Tensor]
    n: int = 3
    calls: int = 0

    def encode(self, frames: list[np.ndarray]) -> torch.Tensor:
        tokens = self.encode_fn(frames)
        self.calls += 1
        if self.calls % self.n == 0:
            tokens = tokens.clone()
            tokens[:, 0, 0] = float("nan")
        return tokens


async def test_frames_whose_tokens_are_nan_are_skipped_and_counted_without_restarting_the_camera(
    embedded: Backend, tmp_path: Path
) -> None:
    from agent.demo import sample_video

    poisoned = NaNEvery(embedded.encoder.encode)
    backend = dataclasses.replace(embedded, encoder=_EncoderShim(embedded.encoder, poisoned))
    url = str(sample_video("carphone_pristine.mp4"))
    async with running_service(backend, allow_file_urls=True) as run:
        await run.client.post("/cameras", json={"id": "cam", "url": url, "fps": 4, "options": {"loop": True}})
        cam = run.service.cameras.get("cam").runtime
        await wait_until(
            lambda: cam.frames_rejected >= 2 and cam.frames_processed >= 4, 60, "good and bad frames"
        )
        tokens, _ = cam.memory.tokens(None, None)
        assert bool(torch.isfinite(tokens).all()), "memory holds no NaN"
        assert cam.errors == 0 and cam.state == "up", "a bad frame does not restart the camera"
        metrics = (await run.client.get("/metrics")).text
        assert metric_value(metrics, "scissor_frames_dropped_total", camera="cam", reason="bad_tokens") >= 2
        answer = await run.client.post("/cameras/cam/ask", json={"question": "what did you see?"})
        assert answer.status_code == 200


class _EncoderShim:
    """The real encoder with its `encode` routed through a fault injector; every other attribute is the real
    one's."""

    def __init__(self, real: object, injector: NaNEvery) -> None:
        self._real, self._injector = real, injector

    def encode(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        return self._injector.encode(list(frames))

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)


BAD_SETTINGS = [
    ({"SCISSOR_MQTT_URL": "ftp://broker:1883"}, "mqtt_url", None),
    ({"SCISSOR_MQTT_URL": "mqtt://user:hunter2-mqtt@broker:notaport"}, "mqtt_url", "hunter2-mqtt"),
    ({"SCISSOR_MQTT__KEEPALIVE_S": "soon"}, "mqtt.keepalive_s", None),
    ({"SCISSOR_MQTT__HOSTNAME": "broker"}, "SCISSOR_MQTT__HOSTNAME", None),
    ({"SCISSOR_MQTT": "{not json"}, "mqtt", None),
    (
        {"SCISSOR_MQTT__TLS_CA_FILE": "/nonexistent/ca.pem", "SCISSOR_MQTT_URL": "mqtts://b:8883"},
        "TLS file",
        None,
    ),
    (
        {"SCISSOR_MQTT__PASSWORD": "pw-without-user-42", "SCISSOR_MQTT_URL": "mqtt://b:1883"},
        "username",
        "pw-without",
    ),
    ({"SCISSOR_REDIS_URL": "redis://:hunter2-redis@h:port/0"}, "redis_url", "hunter2-redis"),
    ({"SCISSOR_API_TOKEN": "short"}, "api_token", "short"),
    ({"SCISSOR_CAMERA__FPS": "nan"}, "camera.fps", None),
    ({"SCISSOR_PORT": "99999"}, "port", None),
]


@pytest.mark.parametrize(
    ("env", "mentions", "secret"), BAD_SETTINGS, ids=[next(iter(e)) for e, _, _ in BAD_SETTINGS]
)
def test_malformed_settings_stop_start_up_with_a_clear_line_and_no_secret(
    env: dict[str, str],
    mentions: str,
    secret: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from agent.cli import main

    for name in [k for k in os.environ if k.startswith("SCISSOR_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        main(["serve"])  # the real entry point: settings are checked before anything starts
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    assert "invalid settings" in err and mentions in err, err
    assert "Traceback" not in err
    if secret:
        assert secret not in err, "the secret was echoed"


def test_a_malformed_config_file_stops_start_up_with_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "scissor.yaml"
    broken.write_text("mqtt:\n  outbox_max_alerts: [1, 2\n")
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "serve", "--config", str(broken)],
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "does not parse" in proc.stderr and "Traceback" not in proc.stderr
