"""A real `scissor serve` process: server-sent events, one question across cameras, and the `scissor ask`
CLI."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.demo import sample_video
from harness.ports import free_port
from harness.serve import ServeProcess

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServeProcess]:
    env = {
        "SCISSOR_BACKEND": "embedded",
        "SCISSOR_DEVICE": "cpu",
        "SCISSOR_PORT": str(free_port()),
        "SCISSOR_ALLOW_FILE_URLS": "true",
        "SCISSOR_REDIS_URL": "memory://",
        "SCISSOR_MQTT_URL": "none",
    }
    process = ServeProcess(env, tmp_path / "serve.log").start()
    yield process
    process.stop()


async def _events(url: str, seen: list[tuple[str, dict[str, object]]], want: set[str]) -> None:
    async with httpx.AsyncClient(timeout=None) as client, client.stream("GET", f"{url}/events") as stream:
        event = ""
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                seen.append((event, json.loads(line.removeprefix("data: "))))
                if want <= {name for name, _ in seen}:
                    return


def test_events_stream_cameras_and_alerts_and_one_question_spans_two_cameras(server: ServeProcess) -> None:
    seen: list[tuple[str, dict[str, object]]] = []

    async def scenario() -> None:
        listener = asyncio.create_task(_events(server.url, seen, {"camera_added", "alert", "stream_up"}))
        await asyncio.sleep(0.5)
        async with server.async_client() as api:
            for cid, video in (("street", "bikes.mp4"), ("car", "carphone_pristine.mp4")):
                r = await api.post(
                    "/cameras",
                    json={"id": cid, "url": str(sample_video(video)), "fps": 2, "options": {"loop": True}},
                )
                assert r.status_code == 201, r.text
            rule = await api.post(
                "/rules", json={"camera_id": "street", "kind": "novelty", "params": {"threshold": 0.2}}
            )
            assert rule.status_code == 201, rule.text
            await asyncio.wait_for(listener, 90)
            for _ in range(120):
                statuses = [(await api.get(f"/cameras/{c}")).json() for c in ("street", "car")]
                if all(s["memory_entries"] > 0 for s in statuses):
                    break
                await asyncio.sleep(0.5)
            both = await api.post(
                "/ask", json={"cameras": ["street", "car"], "question": "what did you see?"}
            )
            assert both.status_code == 200, both.text
            cameras = {span["camera"] for span in both.json()["evidence"]}
            assert cameras == {"street", "car"}, both.json()

    asyncio.run(scenario())
    alerts = [data for name, data in seen if name == "alert"]
    assert alerts and alerts[0]["camera"] == "street" and alerts[0]["kind"] == "novelty"

    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "ask",
            "street",
            "what did you see?",
            "--since",
            "60",
            "--url",
            server.url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    assert "evidence: street" in cli.stdout and "memory tokens" in cli.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "agent.cli", "ask", "nope", "hi", "--url", server.url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert missing.returncode == 1 and "404 UnknownCamera" in missing.stderr
