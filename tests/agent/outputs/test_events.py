"""The in-process event bus: fan-out, bounded queues that drop the oldest, filtering, closing, and the recent
alerts it keeps (`GET /alerts`)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI

from agent.outputs.events import EventBus
from agent.records import Alert, Event


def event(n: int, camera: str = "cam1") -> Event:
    return Event(kind="info", camera=camera, message=str(n))


async def test_every_subscriber_receives_every_record_in_order() -> None:
    bus = EventBus()
    a, b = bus.subscribe(), bus.subscribe()
    for i in range(3):
        bus.publish(event(i))
    assert [(await a.get(1)).message for _ in range(3)] == ["0", "1", "2"]  # type: ignore[attr-defined]
    assert [(await b.get(1)).message for _ in range(3)] == ["0", "1", "2"]  # type: ignore[attr-defined]


async def test_a_slow_subscriber_drops_and_counts_its_oldest_records_without_blocking_the_publisher() -> None:
    bus = EventBus()
    slow, fast = bus.subscribe(maxsize=2), bus.subscribe(maxsize=100)
    for i in range(5):
        bus.publish(event(i))  # returns at once although nobody reads
    assert slow.dropped == 3 and fast.dropped == 0 and bus.dropped == 3
    assert [(await slow.get(1)).message for _ in range(2)] == ["3", "4"]  # type: ignore[attr-defined]
    assert fast.pending() == 5


async def test_a_waiting_subscriber_wakes_when_a_record_is_published() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    waiter = asyncio.create_task(sub.get(2))
    await asyncio.sleep(0.01)
    bus.publish(event(7))
    assert (await waiter).message == "7"  # type: ignore[attr-defined]


async def test_get_times_out_when_nothing_arrives() -> None:
    sub = EventBus().subscribe()
    with pytest.raises(TimeoutError):
        await sub.get(0.05)


async def test_a_filtered_subscription_sees_only_the_records_it_accepts() -> None:
    bus = EventBus()
    sub = bus.subscribe(accept=lambda r: getattr(r, "camera", None) == "cam2")
    bus.publish(event(1, "cam1"))
    bus.publish(event(2, "cam2"))
    assert (await sub.get(1)).message == "2"  # type: ignore[attr-defined]
    assert sub.pending() == 0


async def test_closing_a_subscription_ends_its_iteration_and_removes_it_from_the_bus() -> None:
    bus = EventBus()
    received = []
    async with bus.subscribe() as sub:
        bus.publish(event(1))

        async def read() -> None:
            async for record in sub:
                received.append(record)

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.01)
    await asyncio.wait_for(reader, 1)
    assert len(received) == 1 and bus.subscribers == 0
    bus.publish(event(2))
    assert sub.pending() == 0


async def test_the_event_stream_filters_by_camera_and_kind() -> None:
    from agent.api.system import event_stream

    bus = EventBus()
    stream = event_stream(bus, keepalive_s=5.0, camera="cam2", kinds=frozenset({"novelty"}))
    assert await anext(stream) == b": connected\n\n"
    bus.publish(Event(kind="novelty", camera="cam1", message="other camera"))
    bus.publish(Event(kind="info", camera="cam2", message="other kind"))
    bus.publish(Event(kind="novelty", camera="cam2", message="wanted"))
    chunk = (await asyncio.wait_for(anext(stream), 2.0)).decode()
    assert chunk.startswith("event: novelty\n") and '"message":"wanted"' in chunk
    await stream.aclose()


def alert(n: int, camera: str = "cam1") -> Alert:
    return Alert(camera=camera, rule="r1", kind="novelty", score=n / 100, stream_s=float(n))


def test_the_bus_keeps_the_last_alerts_newest_first_for_a_reader_that_comes_later() -> None:
    bus = EventBus(recent_alerts=3)
    for n in range(5):
        bus.publish(alert(n, camera="cam2" if n == 3 else "cam1"))
        bus.publish(event(n))  # only alerts are kept
    assert [a.stream_s for a in bus.recent_alerts()] == [4.0, 3.0, 2.0]
    assert [a.stream_s for a in bus.recent_alerts("cam1")] == [4.0, 2.0]
    assert [a.stream_s for a in bus.recent_alerts(limit=1)] == [4.0]
    assert bus.recent_alerts("cam9") == []


async def test_get_alerts_lists_the_kept_alerts_newest_first_filtered_by_camera() -> None:
    from agent.api import alerts

    bus = EventBus()
    for n in range(3):
        bus.publish(alert(n, camera=f"cam{n % 2}"))
    app = FastAPI()
    app.include_router(alerts.router)
    app.state.service = SimpleNamespace(bus=bus, settings=SimpleNamespace(api_token=None))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        every = (await client.get("/alerts")).json()
        assert [a["stream_s"] for a in every] == [2.0, 1.0, 0.0]
        assert every[0] == json.loads(bus.recent_alerts()[0].model_dump_json())  # as /events has it
        one = (await client.get("/alerts", params={"camera": "cam1", "limit": 5})).json()
        assert [a["stream_s"] for a in one] == [1.0]
        assert (await client.get("/alerts", params={"limit": 0})).status_code == 422
