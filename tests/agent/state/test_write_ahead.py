"""The write-ahead file against a real redis-server: what the store acknowledged while Redis was down is on
disk, comes back at the next start (Redis restarted empty), reaches Redis, and the file empties."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.records import Alert, CameraSpec, Rule
from agent.settings import Settings
from agent.state.resilient import ResilientStore, StateDirInUse
from agent.state.wal import Change, WriteAheadFile
from harness.servers import RedisServer
from tests.agent.state.test_store import redis_store

PASSWORD = "Wq3-hidden-8Lp"


def alert(n: int) -> Alert:
    return Alert(camera="door", rule="r1", kind="novelty", score=n / 100, stream_s=float(n))


def store_for(server: RedisServer, prefix: str) -> ResilientStore:
    settings = Settings(
        redis_url=server.url,
        redis={"key_prefix": prefix, "socket_timeout_s": 0.5},
        state={"sync_retry_s": 0.1},
    )
    return ResilientStore.from_settings(settings)


async def until(ok: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not ok():
            await asyncio.sleep(0.05)


def crash(store: ResilientStore) -> None:
    """What a SIGKILL leaves: the write-ahead file as it is on disk, nothing flushed or synced."""
    assert store.wal is not None
    store.wal.close()
    if store._task is not None:
        store._task.cancel()


async def test_changes_acknowledged_while_redis_is_down_survive_a_crash_and_reach_redis(
    redis_server: RedisServer, prefix: str, state_dir: Path
) -> None:
    first = store_for(redis_server, prefix)
    await first.start()
    rule = Rule(camera_id="door", kind="novelty", params={"threshold": 0.4})
    await first.put_camera(CameraSpec(id="gone", url="rtsp://cam.lan/g"))
    assert first.wal is not None and not first.wal.pending, "nothing is journaled while Redis answers"
    redis_server.kill()
    await first.put_camera(CameraSpec(id="door", url=f"rtsp://u:{PASSWORD}@cam.lan/s"))
    await first.put_rule(rule)
    await first.delete_camera("gone")
    alerts = [alert(i) for i in range(5)]
    for a in alerts:
        await first.outbox_append(a)
    await first.outbox_ack(alerts[0].id)  # delivered while Redis was down
    assert not first.healthy and first.wal.pending
    wal_bytes = first.wal.path.read_bytes()
    assert PASSWORD.encode() not in wal_bytes and b"fernet:" in wal_bytes
    crash(first)

    redis_server.start()  # empty: without persistence, Redis lost what it had as well
    second = store_for(redis_server, prefix)
    await second.start()
    try:
        assert [c.id for c in await second.cameras()] == ["door"]
        assert (await second.cameras())[0].url == f"rtsp://u:{PASSWORD}@cam.lan/s"
        assert [r.id for r in await second.rules()] == [rule.id]
        assert [a.id for a in await second.outbox_peek(10)] == [a.id for a in alerts[1:]], "in order, once"
        await until(lambda: second.healthy and not second.dirty)
        direct = redis_store(redis_server, prefix)
        assert [c.id for c in await direct.cameras()] == ["door"]
        assert [a.id for a in await direct.outbox_peek(10)] == [a.id for a in alerts[1:]]
        await direct.close()
        assert second.wal is not None and not second.wal.pending and second.wal.path.stat().st_size == 0
    finally:
        await second.close()


async def test_a_change_whose_write_through_fails_is_journaled_before_it_returns(
    redis_server: RedisServer, prefix: str
) -> None:
    store = store_for(redis_server, prefix)
    await store.start()
    try:
        assert store.healthy
        redis_server.kill()  # the store still believes Redis is up: the write itself fails
        await store.put_camera(CameraSpec(id="door", url="rtsp://cam.lan/s"))
        assert not store.healthy
        assert store.wal is not None
        lines = [json.loads(line) for line in store.wal.path.read_text().splitlines()]
        assert [(line["k"], line["id"]) for line in lines] == [("camera", "door")]
    finally:
        crash(store)


async def test_a_key_changed_after_redis_returns_is_never_replayed_stale(
    redis_server: RedisServer, prefix: str
) -> None:
    first = store_for(redis_server, prefix)
    await first.start()
    redis_server.process.send_signal(19)  # type: ignore[union-attr]  # SIGSTOP: unreachable, data kept
    try:
        await first.put_camera(CameraSpec(id="door", url="rtsp://cam.lan/old"))
    finally:
        redis_server.process.send_signal(18)  # type: ignore[union-attr]
    await first.put_camera(CameraSpec(id="door", url="rtsp://cam.lan/new"))
    crash(first)
    second = store_for(redis_server, prefix)
    await second.start()
    try:
        assert [c.url for c in await second.cameras()] == ["rtsp://cam.lan/new"]
    finally:
        await second.close()


def test_a_torn_last_line_is_skipped_and_the_lines_before_it_kept(tmp_path: Path) -> None:
    wal = WriteAheadFile(tmp_path / "x.wal")
    wal.append(Change("camera", "a", '{"id": "a"}'))
    wal.append(Change("rule", "r", None))
    wal.close()
    with (tmp_path / "x.wal").open("ab") as f:
        f.write(b'{"k":"camera","id":"b","v":"{\\"id')  # the crash hit mid-line
    again = WriteAheadFile(tmp_path / "x.wal")
    assert again.pending
    assert again.replay() == [Change("camera", "a", '{"id": "a"}'), Change("rule", "r", None)]
    again.close()


async def test_two_processes_cannot_share_one_state_directory(redis_server: RedisServer, prefix: str) -> None:
    first = store_for(redis_server, prefix)
    try:
        with pytest.raises(StateDirInUse, match="SCISSOR_STATE__DIR"):
            store_for(redis_server, prefix)
    finally:
        await first.close()


async def test_a_long_outage_compacts_the_file_and_the_queue_order_survives(
    redis_server: RedisServer, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agent.state.resilient.COMPACT_LINES", 10)
    first = store_for(redis_server, prefix)
    await first.start()
    await first.outbox_append(alert(0))  # in Redis before the outage, delivered during it
    redis_server.process.send_signal(19)  # type: ignore[union-attr]  # SIGSTOP: unreachable, data kept
    try:
        alerts = [alert(i) for i in range(1, 31)]
        for a in alerts:
            await first.outbox_append(a)
        saved = (await first.outbox_peek(1))[0]
        await first.outbox_ack(saved.id)
        for a in alerts[:25]:
            await first.outbox_ack(a.id)
        assert first.wal is not None
        assert first.wal.lines <= 4 * 10, f"the file was compacted ({first.wal.lines} lines)"
        crash(first)
    finally:
        redis_server.process.send_signal(18)  # type: ignore[union-attr]
    second = store_for(redis_server, prefix)
    await second.start()
    try:
        assert [a.id for a in await second.outbox_peek(50)] == [a.id for a in alerts[25:]]
    finally:
        await second.close()
