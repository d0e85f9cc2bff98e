"""Running `scissor bench qa`'s cameras through a real Service: its HTTP API over ASGI, file cameras paced at
their own rate, the backend's encoder and memory, then every question, recorded with the range it asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from agent.api import create_app
from agent.outputs.metrics import Metrics
from agent.service import Service
from agent.settings import load_settings
from bench.qa.dataset import Interval
from bench.qa.questions import Question
from bench.qa.score import Asked

log = logging.getLogger("bench.qa")
QUEUE = 64  # the largest source hand-off queue a camera may ask for


@dataclass(frozen=True)
class Feed:
    """A camera to register: its id, video file, when to add it (seconds after the first), sampling rate."""

    camera: str
    video: Path
    start_after_s: float
    fps: float


@asynccontextmanager
async def serve(backend: str, **settings: Any) -> AsyncIterator[tuple[Service, httpx.AsyncClient]]:
    """A started Service (memory:// state, no MQTT, file cameras allowed) and a client of its API."""
    config = load_settings(
        None,
        backend=backend,
        device="cpu",
        redis_url="memory://",
        mqtt_url="none",
        allow_file_urls=True,
        **settings,
    )
    service = Service(config, metrics=Metrics(CollectorRegistry()))
    await service.start()
    # A question that crashes the service is a 500 to score, not an exception in the bench.
    transport = httpx.ASGITransport(app=create_app(service, manage_service=False), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=120) as client:
            yield service, client
    finally:
        await service.stop()


async def play(
    service: Service, client: httpx.AsyncClient, feeds: Sequence[Feed], timeout_s: float
) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """Add the cameras on their schedule, wait until every file has ended; per camera the stream second of
    its first frame (the memory's earliest entry: the offset of its timeline) and its end status (drops,
    memory entries)."""
    began = time.monotonic()
    for feed in sorted(feeds, key=lambda f: f.start_after_s):
        await asyncio.sleep(max(0.0, began + feed.start_after_s - time.monotonic()))
        # A deep hand-off queue: on a CPU-starved box frames wait for the encoder (their stream seconds are
        # taken at decode) instead of being dropped, so the memory sees every sampled frame of the truth.
        spec = {"id": feed.camera, "url": str(feed.video), "fps": feed.fps, "options": {"queue_size": QUEUE}}
        r = await client.post("/cameras", json=spec)
        r.raise_for_status()
        log.info("camera %s added at +%.1f s", feed.camera, time.monotonic() - began)
    states: dict[str, str] = {}
    while time.monotonic() - began < timeout_s:
        states = {f.camera: (await client.get(f"/cameras/{f.camera}")).json()["state"] for f in feeds}
        if all(s in {"ended", "failed"} for s in states.values()):
            break
        await asyncio.sleep(0.5)
    else:
        raise TimeoutError(f"cameras not ended after {timeout_s:.0f} s: {states}")
    if "failed" in states.values():
        raise RuntimeError(f"a camera failed: {states}")
    offsets, seen = {}, {}
    for feed in feeds:
        # what a question reads: every entry of the memory, the earliest first (MemoryReader.read)
        _, entries = service.cameras.readers([feed.camera])[0].read(None, None)
        offsets[feed.camera] = min(e.first_seen for e in entries)
        status = (await client.get(f"/cameras/{feed.camera}")).json()
        seen[feed.camera] = {k: status[k] for k in ("frames_dropped", "memory_entries", "compression_ratio")}
    log.info("cameras ended: %s", seen)
    return offsets, seen


def _range(question: Question, now_before: float, now_after: float) -> Interval:
    r = question.range
    if r.how in {"since", "last"}:
        return (max(0.0, now_before - r.a), now_after)
    if r.how in {"from_to", "between"}:
        return (r.a, now_after if r.b is None else r.b)
    return (0.0, now_after)


async def ask_all(service: Service, client: httpx.AsyncClient, questions: Sequence[Question]) -> list[Asked]:
    """Ask every question in order (a session's turns in their order); each with its range per camera."""
    out = []
    for q in questions:
        readers = service.cameras.readers(list(q.cameras))
        before = {r.id: r.stream_seconds() for r in readers}
        span, text = q.range.at(before[q.cameras[0]], q.text)
        q = dataclasses.replace(q, text=text, range=span)
        ask: dict[str, Any] = {"question": q.text, **q.range.body()}
        if q.session:
            ask["session_id"] = q.session
        if len(q.cameras) == 1:
            r = await client.post(f"/cameras/{q.cameras[0]}/ask", json=ask)
        else:
            r = await client.post("/ask", json=ask | {"cameras": list(q.cameras)})
        after = {x.id: x.stream_seconds() for x in readers}
        ranges = {c: _range(q, before[c], after[c]) for c in q.cameras}
        try:
            body = r.json()
        except ValueError:  # not JSON (an unhandled error's plain-text 500)
            body = {"error": r.text[:500]}
        if not isinstance(body, dict):
            body = {"error": str(body)[:500]}
        links, shots = await _snapshots(client, body if r.status_code == 200 else {})
        bases = {x.id: x.added_at for x in readers}
        out.append(Asked(q, r.status_code, body, ranges, bases, links, shots, r.elapsed.total_seconds()))
    return out


async def _snapshots(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> tuple[dict[str, int], dict[str, float]]:
    """Every evidence snapshot fetched: its HTTP status, and the stream second of its frame."""
    links, shots = {}, {}
    for ev in body.get("evidence", []):
        url = ev.get("snapshot_url")
        if url and url not in links:
            got = await client.get(url)
            links[url] = got.status_code
            if got.status_code == 200 and "X-Stream-Seconds" in got.headers:
                shots[url] = float(got.headers["X-Stream-Seconds"])
    return links, shots


LIVE_QUESTIONS = (
    "Is there a cat?",
    "What did you see in the last 10 seconds?",
    "When did you last see a clock?",
)
LIVE_EVERY_S = 2.0  # one timed question this often while the cameras play


async def time_live(client: httpx.AsyncClient, cameras: Sequence[str], until: asyncio.Event) -> list[float]:
    """Seconds per question asked while the cameras play (all of them live), until `until` is set: the
    latency a user sees with the encoder busy. Unscored: the footage is not over yet."""
    out: list[float] = []
    k = 0
    while not until.is_set():
        cam = cameras[k % len(cameras)]
        began = time.perf_counter()
        r = await client.post(
            f"/cameras/{cam}/ask", json={"question": LIVE_QUESTIONS[k % len(LIVE_QUESTIONS)]}
        )
        if r.status_code == 200:
            out.append(time.perf_counter() - began)
        k += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(until.wait(), LIVE_EVERY_S)
    return out


def people_detector(service: Service) -> bool:
    """Whether the service can see people: its labeler resolves "person" (today's ImageNet labeler refuses
    it; a people detector writing `person` labels would not)."""
    labeler = service.backend.labeler if service.backend is not None else None
    if labeler is None:
        return False
    try:
        labeler.resolve("person")
    except ValueError:  # UnknownLabel / LabelNotSeen
        return False
    return True
