"""State stores against a real redis-server: RAM and Redis agree, Redis outages lose nothing, restarts
reload."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from agent.errors import StateUnavailable
from agent.records import Alert, CameraSpec, Rule, Turn
from agent.settings import Settings
from agent.state.crypt import UrlCipher
from agent.state.resilient import ResilientStore
from agent.state.store import MemoryStore, RedisStore, Store
from harness.servers import RedisServer


def alert(n: int) -> Alert:
    return Alert(camera="cam1", rule="r1", kind="novelty", score=n / 100, stream_s=float(n))


def resilient(server: RedisServer, prefix: str) -> ResilientStore:
    settings = Settings(redis_url=server.url, redis={"key_prefix": prefix}, state={"sync_retry_s": 0.1})
    return ResilientStore.from_settings(settings)


def redis_store(server: RedisServer, prefix: str, outbox_max: int = 10_000) -> RedisStore:
    # The key the service uses (the one generated in this test's SCISSOR_STATE__DIR), so sealed URLs read.
    cipher = UrlCipher.from_settings(Settings(redis_url=server.url))
    return RedisStore(aioredis.from_url(server.url), prefix=prefix, outbox_max=outbox_max, cipher=cipher)


@pytest.fixture(params=["memory", "redis", "resilient"])
async def store(
    request: pytest.FixtureRequest, redis_server: RedisServer, prefix: str
) -> AsyncIterator[Store]:
    if request.param == "memory":
        made: Store = MemoryStore(outbox_max=3, session_max_turns=2)
    elif request.param == "redis":
        made = RedisStore(
            aioredis.from_url(redis_server.url), prefix=prefix, outbox_max=3, session_max_turns=2
        )
    else:
        made = ResilientStore.from_settings(
            Settings(
                redis_url=redis_server.url,
                redis={"key_prefix": prefix},
                mqtt={"outbox_max_alerts": 3},
                state={"session_max_turns": 2},
            )
        )
        await made.start()
    yield made
    await made.close()


async def test_every_store_keeps_cameras_rules_and_rule_state_until_deleted(store: Store) -> None:
    await store.put_camera(CameraSpec(id="cam1", url="rtsp://u:pw@host/s"))
    rule = Rule(camera_id="cam1", kind="novelty", params={"threshold": 0.4})
    await store.put_rule(rule)
    await store.put_rule_state(rule.id, {"active": True, "yes_run": 2})
    await store.put_memory_blob("cam1", b"\x00\x01blob")
    assert [c.id for c in await store.cameras()] == ["cam1"]
    assert await store.rules() == [rule]
    assert await store.rule_states() == {rule.id: {"active": True, "yes_run": 2}}
    assert await store.memory_blob("cam1") == b"\x00\x01blob"
    await store.delete_rule(rule.id)
    await store.delete_camera("cam1")
    assert await store.rules() == [] and await store.rule_states() == {}
    assert await store.cameras() == [] and await store.memory_blob("cam1") is None


async def test_every_store_outbox_is_fifo_acks_by_id_and_drops_the_oldest_past_its_bound(
    store: Store,
) -> None:
    alerts = [alert(i) for i in range(5)]
    dropped = [await store.outbox_append(a) for a in alerts]
    assert dropped == [[], [], [], [alerts[0].id], [alerts[1].id]]
    assert await store.outbox_dropped() == 2
    assert [a.id for a in await store.outbox_peek(10)] == [a.id for a in alerts[2:]]
    assert await store.outbox_ack(alerts[3].id) is True
    assert await store.outbox_ack(alerts[3].id) is False
    assert [a.id for a in await store.outbox_peek(1)] == [alerts[2].id]
    assert await store.outbox_len() == 2


async def test_every_store_keeps_the_last_turns_of_a_session(store: Store) -> None:
    for i in range(3):
        await store.append_turn("s1", Turn(question=f"q{i}", answer=f"a{i}"), ttl_s=60)
    assert [t.question for t in await store.turns("s1")] == ["q1", "q2"]
    assert await store.turns("unknown") == []


async def test_memory_session_expires_after_its_idle_ttl_and_reading_it_slides_the_ttl() -> None:
    store = MemoryStore()
    await store.append_turn("s1", Turn(question="q", answer="a"), ttl_s=0.3)
    await asyncio.sleep(0.2)
    assert len(await store.turns("s1")) == 1  # read at 0.2 s: expires at 0.5 s now
    await asyncio.sleep(0.2)
    assert len(await store.turns("s1")) == 1
    await asyncio.sleep(0.4)
    assert await store.turns("s1") == []


async def test_redis_session_key_carries_the_ttl(redis_server: RedisServer, prefix: str) -> None:
    store = redis_store(redis_server, prefix)
    await store.append_turn("s1", Turn(question="q", answer="a"), ttl_s=30)
    assert 0 < await store.client.pttl(store.key("session", "s1")) <= 30_000
    await store.close()


async def test_resilient_store_keeps_working_while_redis_is_down_and_writes_back_when_it_returns(
    redis_server: RedisServer, prefix: str
) -> None:
    store = resilient(redis_server, prefix)
    await store.start()
    assert store.healthy
    await store.put_camera(CameraSpec(id="before", url="rtsp://h/s"))
    redis_server.kill()
    await store.put_camera(CameraSpec(id="during", url="rtsp://h/s"))
    await store.put_memory_blob("during", b"memory")
    first = alert(1)
    await store.outbox_append(first)
    assert not store.healthy and store.reason
    with pytest.raises(StateUnavailable):
        await store.ping()
    assert {c.id for c in await store.cameras()} == {"before", "during"}  # reads come from RAM
    redis_server.start()
    for _ in range(100):
        if store.healthy and not store.dirty:
            break
        await asyncio.sleep(0.05)
    assert store.healthy and not store.dirty
    direct = redis_store(redis_server, prefix)
    assert {c.id for c in await direct.cameras()} == {"before", "during"}  # RAM rewritten in full
    assert await direct.memory_blob("during") == b"memory"
    assert [a.id for a in await direct.outbox_peek(10)] == [first.id]
    await direct.close()
    await store.close()


async def test_a_redis_that_restarted_empty_unnoticed_gets_all_of_ram_written_back(
    redis_server: RedisServer, prefix: str
) -> None:
    store = resilient(redis_server, prefix)
    await store.start()
    await store.put_camera(CameraSpec(id="kept", url="rtsp://h/s"))
    redis_server.restart()  # no call of the store fails in between: only the missing marker tells
    direct = redis_store(redis_server, prefix)
    for _ in range(100):
        if {c.id for c in await direct.cameras()} == {"kept"}:
            break
        await asyncio.sleep(0.05)
    assert {c.id for c in await direct.cameras()} == {"kept"}
    await direct.close()
    await store.close()


async def test_a_new_resilient_store_reloads_what_an_earlier_process_wrote(
    redis_server: RedisServer, prefix: str
) -> None:
    first = resilient(redis_server, prefix)
    await first.start()
    rule = Rule(camera_id="cam1", kind="label", params={"label": "cat"})
    await first.put_camera(CameraSpec(id="cam1", url="rtsp://h/s"))
    await first.put_rule(rule)
    await first.put_rule_state(rule.id, {"delivered_t": 12.5})
    await first.put_memory_blob("cam1", b"state-dict")
    await first.append_turn("s1", Turn(question="what?", answer="a cat"), ttl_s=60)
    queued = [alert(i) for i in range(3)]
    for a in queued:
        await first.outbox_append(a)
    await first.outbox_ack(queued[0].id)
    await first.close()

    second = resilient(redis_server, prefix)
    await second.start()
    assert [c.id for c in await second.cameras()] == ["cam1"]
    assert await second.rules() == [rule]
    assert await second.rule_states() == {rule.id: {"delivered_t": 12.5}}
    assert await second.memory_blob("cam1") == b"state-dict"
    assert [t.answer for t in await second.turns("s1")] == ["a cat"]
    assert [a.id for a in await second.outbox_peek(10)] == [a.id for a in queued[1:]]
    later = alert(9)
    await second.outbox_append(later)
    assert [a.id for a in await second.outbox_peek(10)] == [*(a.id for a in queued[1:]), later.id]
    await second.close()


async def test_a_resilient_store_started_without_redis_merges_older_saved_alerts_first(
    redis_server: RedisServer, prefix: str
) -> None:
    earlier = redis_store(redis_server, prefix)
    saved = alert(1)
    await earlier.outbox_append(saved)
    await earlier.close()
    redis_server.kill()
    store = resilient(redis_server, prefix)
    await store.start()
    assert not store.healthy
    mine = alert(2)
    await store.outbox_append(mine)
    redis_server.start()  # a fresh, empty server: the saved alert is gone with the old one
    await earlier_again(redis_server, prefix, saved)
    for _ in range(100):
        if store.healthy and not store.dirty:
            break
        await asyncio.sleep(0.05)
    assert [a.id for a in await store.outbox_peek(10)] == [saved.id, mine.id]
    direct = redis_store(redis_server, prefix)
    assert [a.id for a in await direct.outbox_peek(10)] == [saved.id, mine.id]
    await direct.close()
    await store.close()


async def earlier_again(server: RedisServer, prefix: str, saved: Alert) -> None:
    store = redis_store(server, prefix)
    await store.outbox_append(saved)
    await store.close()


async def test_memory_url_gives_a_store_that_is_always_healthy() -> None:
    store = ResilientStore.from_settings(Settings())
    await store.start()
    await store.ping()
    assert store.healthy and store.backend is None
    await store.close()


async def test_closing_ends_a_sync_loop_that_lost_its_cancel(redis_server: RedisServer, prefix: str) -> None:
    # Python 3.11's wait_for can drop a cancel that lands as the call it guards completes, and a Redis call in
    # sync_now is one. The store's close cancelled its sync loop once and then waited forever for it.
    store = resilient(redis_server, prefix)
    store.sync_retry_s = 0.05
    await store.start()
    real_sync, entered = store.sync_now, asyncio.Event()

    async def sync_that_loses_a_cancel() -> bool:
        entered.set()
        try:
            await asyncio.Event().wait()  # a Redis call in flight
        except asyncio.CancelledError:
            store.sync_now = real_sync  # type: ignore[method-assign]  # the next syncs are real ones
        return True  # the cancel is gone, as in the race

    store.sync_now = sync_that_loses_a_cancel  # type: ignore[method-assign]
    await asyncio.wait_for(entered.wait(), 5)
    await asyncio.wait_for(store.close(), 10)
