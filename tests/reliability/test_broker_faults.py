"""Broker faults at the service level: alerts fired by real rules during a Mosquitto outage arrive once, in
order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from agent.models import Backend
from agent.records import Alert
from harness.mqtt import PersistentSubscriber
from harness.rtsp import RtspServer
from harness.servers import MosquittoServer, RedisServer
from tests.agent.service_harness import Running, running_service, wait_until
from tests.reliability.conftest import Census, metric_value

OUTAGE_S = 30.0
# Novelty >= 0 holds on every frame; with no cooldown and repeat_s under the frame period, every frame alerts.
FIRE_ON_EVERY_FRAME = {"kind": "novelty", "params": {"threshold": 0.0}, "cooldown_s": 0, "repeat_s": 0.1}


@asynccontextmanager
async def subscriber(broker: MosquittoServer, topic: str) -> AsyncIterator[PersistentSubscriber]:
    sub = PersistentSubscriber(broker.host, broker.port, topic, "reliability-sub")
    task = asyncio.create_task(sub.run(), name="test-subscriber")
    await asyncio.wait_for(sub.subscribed.wait(), 10)
    await asyncio.sleep(
        3.0
    )  # mosquitto autosaves the subscriber's session every second (slack for a loaded CI)
    try:
        yield sub
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def fired_alerts(run: Running, into: list[Alert]) -> None:
    """Record every alert the service fires, in firing order (the dispatcher offers each to the event bus)."""
    async with run.service.bus.subscribe(maxsize=10_000, accept=lambda r: isinstance(r, Alert)) as alerts:
        async for record in alerts:
            assert isinstance(record, Alert)
            into.append(record)


@asynccontextmanager
async def alerting_service(
    embedded: Backend, broker: MosquittoServer, redis: RedisServer, camera: RtspServer, **overrides: object
) -> AsyncIterator[tuple[Running, list[Alert]]]:
    settings = {"mqtt_url": broker.url, "redis_url": redis.url, "mqtt": {"backoff_max_s": 1.0, **overrides}}
    async with running_service(embedded, **settings) as run:
        fired: list[Alert] = []
        recorder = asyncio.create_task(fired_alerts(run, fired), name="test-recorder")
        added = await run.client.post("/cameras", json={"id": "gate", "url": camera.url, "fps": 2})
        assert added.status_code == 201, added.text
        try:
            yield run, fired
        finally:
            recorder.cancel()
            await asyncio.gather(recorder, return_exceptions=True)


async def add_rule(run: Running) -> str:
    created = await run.client.post("/rules", json={"camera_id": "gate", **FIRE_ON_EVERY_FRAME})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_alerts_fired_during_a_30_s_broker_outage_are_all_delivered_once_in_order(
    embedded: Backend, redis_server: RedisServer, rtsp_camera: Callable[..., RtspServer]
) -> None:
    with MosquittoServer(persistent=True) as broker:
        async with (
            subscriber(broker, "scissor/+/alerts/#") as sub,
            alerting_service(embedded, broker, redis_server, rtsp_camera()) as (run, fired),
        ):
            dispatcher = run.service.dispatcher
            await wait_until(lambda: dispatcher.ready, 10, "the publisher to connect")
            rule_id = await add_rule(run)
            await wait_until(lambda: len(sub.payloads) >= 2, 30, "alerts before the outage")
            before = Census.take()

            broker.kill()
            await wait_until(lambda: not dispatcher.ready, 30, "the publisher to notice the outage")
            fired_before_outage = len(fired)
            ready = (await run.client.get("/readyz")).json()
            assert ready["checks"]["mqtt"]["ok"] is False and ready["checks"]["mqtt"]["reason"]
            await asyncio.sleep(OUTAGE_S)
            queued = await run.service.store.outbox_len()
            assert len(fired) - fired_before_outage >= 20, "alerts kept firing during the outage"
            assert queued >= 20, "they wait in the (Redis) outbox"

            broker.start()
            await wait_until(lambda: dispatcher.ready, 15, "the publisher to reconnect")
            assert (await run.client.delete(f"/rules/{rule_id}")).status_code == 204
            await asyncio.sleep(0.5)  # an update already past the rule check may still send one
            await wait_until(
                lambda: set(sub.ids()) >= {a.id for a in fired}, 30, "every fired alert to arrive"
            )
            assert await run.service.store.outbox_len() == 0
            assert sub.ids() == [a.id for a in fired], "each alert exactly once, in firing order"
            assert dispatcher.stats.dropped == 0 and dispatcher.stats.reconnects >= 1
            assert all(p["camera"] == "gate" and p["kind"] == "novelty" for p in sub.payloads)
            after = Census.take()
            assert len(after.threads) <= len(before.threads) + 2, "no thread leak across the outage"
            assert sorted(t for t in after.tasks if t.startswith("mqtt")) == sorted(
                t for t in before.tasks if t.startswith("mqtt")
            ), "the publisher's tasks were replaced, not leaked"


async def test_past_the_outbox_bound_the_oldest_alerts_are_dropped_counted_and_the_rest_delivered_in_order(
    embedded: Backend, redis_server: RedisServer, rtsp_camera: Callable[..., RtspServer]
) -> None:
    bound = 5
    with MosquittoServer(persistent=True) as broker:
        async with (
            subscriber(broker, "scissor/+/alerts/#") as sub,
            alerting_service(embedded, broker, redis_server, rtsp_camera(), outbox_max_alerts=bound) as (
                run,
                fired,
            ),
        ):
            await wait_until(lambda: run.service.dispatcher.ready, 10, "the publisher to connect")
            broker.kill()
            await wait_until(
                lambda: not run.service.dispatcher.ready, 30, "the publisher to notice the outage"
            )
            rule_id = await add_rule(run)
            await wait_until(lambda: len(fired) >= bound + 4, 30, "more alerts than the outbox holds")
            # /metrics is read while the rule still exists (deleting a rule removes its series); the rule
            # keeps firing, so read until the scrape and the dispatcher's count agree on one moment.
            for _ in range(50):
                metrics = (await run.client.get("/metrics")).text
                dropped = metric_value(
                    metrics, "scissor_alerts_total", camera="gate", rule=rule_id, outcome="dropped"
                )
                if dropped == run.service.dispatcher.stats.dropped:
                    break
            assert dropped == run.service.dispatcher.stats.dropped >= 4, "the drops are counted in /metrics"
            assert (await run.client.delete(f"/rules/{rule_id}")).status_code == 204
            await asyncio.sleep(0.5)
            lost = len(fired) - bound
            assert await run.service.store.outbox_len() == bound
            assert run.service.dispatcher.stats.dropped == lost
            after_delete = (await run.client.get("/metrics")).text
            assert f'rule="{rule_id}"' not in after_delete, "a deleted rule leaves no metric series"

            broker.start()
            await wait_until(lambda: len(sub.payloads) >= bound, 30, "the kept alerts to arrive")
            await asyncio.sleep(1.0)
            assert sub.ids() == [a.id for a in fired[-bound:]], "the newest alerts, once each, in order"
