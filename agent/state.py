"""Service state (cameras, rules, rule state, sessions, memory snapshots, alert outbox) in RAM and Redis; no decisions."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError

from agent.errors import InvalidStateUrl, StateUnavailable
from agent.records import Alert, CameraSpec, Rule, Turn
from agent.settings import Settings

log = logging.getLogger(__name__)
RuleState = dict[str, Any]
KINDS = ("camera", "rule", "rule_state", "snapshot")  # the keyed kinds; sessions and the outbox are special
_CASCADE = {"camera": "snapshot", "rule": "rule_state"}  # deleting a camera deletes its snapshot, etc.
_DOWN = (RedisError, OSError, TimeoutError, StateUnavailable)  # what "Redis is unreachable" looks like


@dataclass
class Session:
    """A Q&A session: turns (oldest first), idle lifetime, and expiry (monotonic seconds)."""

    turns: list[Turn]
    ttl_s: float
    expires: float


class Store(Protocol):
    """What the service keeps across restarts; every method is async and writes are idempotent per key.

    Implementations provide `put`/`all` for the keyed kinds (`KINDS`), sessions and the outbox; the named
    camera / rule / snapshot methods below are built on `put`/`all` and inherited.
    """

    async def ping(self) -> None:
        """Return when the store is reachable; raise StateUnavailable (with a reason) when not."""

    async def close(self) -> None:
        """Release connections (a no-op in RAM)."""

    async def put(self, kind: str, key: str, value: Any) -> None:
        """Set one value of a keyed kind; None deletes it, and a camera's snapshot or a rule's state with it."""
        ...

    async def all(self, kind: str) -> dict[str, Any]:
        """Return every value of a keyed kind, by id."""
        ...

    async def append_turn(self, session_id: str, turn: Turn, ttl_s: float) -> None: ...
    async def turns(self, session_id: str) -> list[Turn]: ...
    async def outbox_append(self, alert: Alert) -> list[str]: ...
    async def outbox_peek(self, n: int) -> list[Alert]: ...
    async def outbox_ack(self, alert_id: str) -> bool: ...
    async def outbox_len(self) -> int: ...
    async def outbox_dropped(self) -> int: ...

    async def put_camera(self, spec: CameraSpec) -> None:
        await self.put("camera", spec.id, spec)

    async def delete_camera(self, camera_id: str) -> None:
        """Forget the camera and its memory snapshot."""
        await self.put("camera", camera_id, None)

    async def cameras(self) -> list[CameraSpec]:
        return list((await self.all("camera")).values())

    async def put_rule(self, rule: Rule) -> None:
        await self.put("rule", rule.id, rule)

    async def delete_rule(self, rule_id: str) -> None:
        """Forget the rule and its runtime state."""
        await self.put("rule", rule_id, None)

    async def rules(self) -> list[Rule]:
        return list((await self.all("rule")).values())

    async def put_rule_state(self, rule_id: str, state: RuleState) -> None:
        await self.put("rule_state", rule_id, dict(state))

    async def rule_states(self) -> dict[str, RuleState]:
        return await self.all("rule_state")

    async def put_snapshot(self, camera_id: str, blob: bytes) -> None:
        await self.put("snapshot", camera_id, bytes(blob))

    async def snapshot(self, camera_id: str) -> bytes | None:
        return (await self.all("snapshot")).get(camera_id)


class MemoryStore(Store):
    """`memory://`: everything in process RAM. Also the RAM layer under `ResilientStore`.

    Args:
        outbox_max: alerts the outbox holds; appending past it drops the oldest and counts them.
        session_max_turns: turns kept per session (oldest forgotten first).
    """

    def __init__(self, *, outbox_max: int = 10_000, session_max_turns: int = 50) -> None:
        if outbox_max < 1 or session_max_turns < 1:
            raise ValueError("outbox_max and session_max_turns must be >= 1")
        self.outbox_max, self.session_max_turns = outbox_max, session_max_turns
        self.maps: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        self.sessions: dict[str, Session] = {}
        self.outbox: OrderedDict[str, tuple[int, Alert]] = OrderedDict()  # id -> (sequence number, alert)
        self.seq = self.dropped = 0

    async def _changed(self, kind: str, key: str = "") -> None:
        """Hook called after every change (ResilientStore writes it through to Redis)."""

    async def put(self, kind: str, key: str, value: Any) -> None:
        if value is not None:
            self.maps[kind][key] = value
        else:
            self.maps[kind].pop(key, None)
            if kind in _CASCADE:
                self.maps[_CASCADE[kind]].pop(key, None)
        await self._changed(kind, key)

    async def all(self, kind: str) -> dict[str, Any]:
        return dict(self.maps[kind])

    async def append_turn(self, session_id: str, turn: Turn, ttl_s: float) -> None:
        """Append a turn and restart the session's idle TTL."""
        session = self.live_session(session_id) or Session([], ttl_s, 0.0)
        session.turns = [*session.turns, turn][-self.session_max_turns :]
        session.ttl_s, session.expires = ttl_s, time.monotonic() + ttl_s
        self.sessions[session_id] = session
        await self._changed("session", session_id)

    async def turns(self, session_id: str) -> list[Turn]:
        """Return the session's turns (oldest first) and restart its idle TTL; [] if unknown or expired."""
        session = self.live_session(session_id)
        if session is None:
            return []
        session.expires = time.monotonic() + session.ttl_s
        await self._changed("session", session_id)
        return list(session.turns)

    def live_session(self, session_id: str) -> Session | None:
        """Return the session unless unknown or expired (expired sessions are forgotten on the way)."""
        now = time.monotonic()
        for sid in [s for s, v in self.sessions.items() if v.expires <= now]:
            del self.sessions[sid]
        return self.sessions.get(session_id)

    async def outbox_append(self, alert: Alert) -> list[str]:
        """Append at the tail; return the ids of the oldest alerts dropped to respect the bound."""
        self.seq += 1
        self.outbox[alert.id] = (self.seq, alert)
        dropped = []
        while len(self.outbox) > self.outbox_max:
            dropped.append(self.outbox.popitem(last=False)[0])
        self.dropped += len(dropped)
        for alert_id in (alert.id, *dropped):
            await self._changed("outbox", alert_id)
        return dropped

    async def outbox_peek(self, n: int) -> list[Alert]:
        """Return up to `n` oldest alerts, oldest first, without removing them."""
        return [alert for _, (_, alert) in zip(range(n), self.outbox.values(), strict=False)]

    async def outbox_ack(self, alert_id: str) -> bool:
        """Remove a delivered alert; False if it was not queued."""
        found = self.outbox.pop(alert_id, None) is not None
        await self._changed("outbox", alert_id)
        return found

    async def outbox_len(self) -> int:
        return len(self.outbox)

    def outbox_list(self) -> list[Alert]:
        """Every queued alert, oldest first (synchronous, for metrics and status)."""
        return [alert for _, alert in self.outbox.values()]

    async def outbox_dropped(self) -> int:
        return self.dropped


class RedisStore(Store):
    """Redis (redis-py asyncio) under one key prefix `<p>`. Methods raise redis errors when Redis is down.

    Keys: hashes `<p>:camera`, `<p>:rule`, `<p>:rule_state`, `<p>:snapshot` (id -> JSON or bytes);
    `<p>:session:<id>` (list of JSON turns, with a TTL); the outbox `<p>:outbox:ids` (sorted set id -> sequence
    number), `<p>:outbox:items` (hash id -> JSON), `<p>:outbox:seq` and `<p>:outbox:dropped` (ints).
    """

    # Append and trim atomically, so the set and the hash never disagree on what the outbox holds.
    _APPEND = """
    local seq = redis.call('INCR', KEYS[3])
    redis.call('ZADD', KEYS[1], seq, ARGV[1]); redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
    local dropped = {}
    while redis.call('ZCARD', KEYS[1]) > tonumber(ARGV[3]) do
      local old = redis.call('ZPOPMIN', KEYS[1])[1]; redis.call('HDEL', KEYS[2], old); table.insert(dropped, old)
    end
    redis.call('INCRBY', KEYS[4], #dropped)
    return dropped
    """

    def __init__(self, client: aioredis.Redis, *, prefix: str = "scissor", outbox_max: int = 10_000,
                 session_max_turns: int = 50) -> None:
        self.client, self.prefix = client, prefix
        self.outbox_max, self.session_max_turns = outbox_max, session_max_turns
        self._append = client.register_script(self._APPEND)
        self._ids, self._items, self._seq, self._dropped = (
            self.key("outbox", k) for k in ("ids", "items", "seq", "dropped")
        )

    def key(self, *parts: str) -> str:
        """Return `<prefix>:<part>:<part>...`."""
        return ":".join((self.prefix, *parts))

    async def ping(self) -> None:
        """Raise StateUnavailable (with a reason, no credentials) unless Redis answers."""
        try:
            await self.client.ping()
        except _DOWN as exc:
            raise StateUnavailable(f"{type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        await self.client.aclose()

    async def put(self, kind: str, key: str, value: Any) -> None:
        if value is not None:
            await self.client.hset(self.key(kind), key, _encode(value))
        else:
            await self.client.hdel(self.key(kind), key)
            if kind in _CASCADE:
                await self.client.hdel(self.key(_CASCADE[kind]), key)

    async def all(self, kind: str) -> dict[str, Any]:
        raw = cast(dict[bytes, bytes], await self.client.hgetall(self.key(kind)))
        return {k.decode(): _decode(kind, v) for k, v in raw.items()}

    async def append_turn(self, session_id: str, turn: Turn, ttl_s: float) -> None:
        key = self.key("session", session_id)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.rpush(key, turn.model_dump_json())
            pipe.ltrim(key, -self.session_max_turns, -1)
            pipe.pexpire(key, int(ttl_s * 1000))
            await pipe.execute()

    async def put_session(self, session_id: str, session: Session | None) -> None:
        """Write a whole session with its remaining TTL (None deletes it)."""
        key = self.key("session", session_id)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if session is not None and session.turns:
                pipe.rpush(key, *[t.model_dump_json() for t in session.turns])
                pipe.pexpire(key, int(session.ttl_s * 1000))
            await pipe.execute()

    async def turns(self, session_id: str) -> list[Turn]:
        return [Turn.model_validate_json(v) for v in await self.client.lrange(self.key("session", session_id), 0, -1)]

    async def sessions(self) -> dict[str, Session]:
        """Every live session with its remaining TTL (for restart recovery)."""
        found = {}
        async for key in self.client.scan_iter(match=self.key("session", "*")):
            sid, ttl_ms = key.decode().rsplit(":", 1)[1], await self.client.pttl(key)
            if ttl_ms > 0:
                found[sid] = Session(await self.turns(sid), ttl_ms / 1000, time.monotonic() + ttl_ms / 1000)
        return found

    async def outbox_append(self, alert: Alert) -> list[str]:
        keys = [self._ids, self._items, self._seq, self._dropped]
        return [d.decode() for d in await self._append(keys=keys, args=[alert.id, alert.model_dump_json(),
                                                                          self.outbox_max])]

    async def outbox_peek(self, n: int) -> list[Alert]:
        return [alert for _, alert in await self.outbox_entries(n)]

    async def outbox_entries(self, n: int) -> list[tuple[int, Alert]]:
        """Return up to `n` oldest (sequence number, alert) pairs, oldest first."""
        pairs = cast(list[tuple[bytes, float]], await self.client.zrange(self._ids, 0, n - 1, withscores=True))
        items = await self.client.hmget(self._items, [i for i, _ in pairs]) if pairs else []
        return [(int(seq), Alert.model_validate_json(v)) for (_, seq), v in zip(pairs, items, strict=True) if v]

    async def outbox_ack(self, alert_id: str) -> bool:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zrem(self._ids, alert_id)
            pipe.hdel(self._items, alert_id)
            removed, _ = await pipe.execute()
        return bool(removed)

    async def outbox_len(self) -> int:
        return int(await self.client.zcard(self._ids))

    async def outbox_dropped(self) -> int:
        return int(await self.client.get(self._dropped) or 0)

    async def put_alert(self, seq: int, alert: Alert | None, alert_id: str, dropped: int) -> None:
        """Write one outbox entry at sequence number `seq` (None removes it) and the drop count."""
        async with self.client.pipeline(transaction=True) as pipe:
            if alert is None:
                pipe.zrem(self._ids, alert_id)
                pipe.hdel(self._items, alert_id)
            else:
                pipe.zadd(self._ids, {alert_id: seq})
                pipe.hset(self._items, alert_id, alert.model_dump_json())
            pipe.set(self._dropped, dropped)
            await pipe.execute()


def _encode(value: Any) -> bytes | str:
    if isinstance(value, bytes):
        return value
    return value.model_dump_json() if isinstance(value, CameraSpec | Rule) else json.dumps(value)


def _decode(kind: str, raw: bytes) -> Any:
    records: dict[str, type[CameraSpec | Rule]] = {"camera": CameraSpec, "rule": Rule}
    if kind == "snapshot":
        return bytes(raw)
    return records[kind].model_validate_json(raw) if kind in records else json.loads(raw)


class ResilientStore(MemoryStore):
    """What the service uses: RAM first (reads never touch Redis), writes go through to Redis when it is up.

    When Redis is down it keeps working from RAM, reports `healthy = False` with a `reason`, remembers which
    keys changed, and a background task writes them back once Redis answers. `start()` loads everything from
    Redis (restart recovery). Without a backend (`memory://`) it is a MemoryStore that is always healthy.
    """

    def __init__(self, backend: RedisStore | None = None, *, outbox_max: int = 10_000, session_max_turns: int = 50,
                 sync_retry_s: float = 1.0) -> None:
        super().__init__(outbox_max=outbox_max, session_max_turns=session_max_turns)
        self.backend, self.sync_retry_s = backend, sync_retry_s
        self.healthy, self.reason = backend is None, None if backend is None else "not connected yet"
        self.write_failures = 0
        self._loaded = backend is None
        self.dirty: set[tuple[str, str]] = set()  # (kind, key) changed in RAM, not yet in Redis
        self._lock = asyncio.Lock()  # one Redis writer at a time keeps write order equal to change order
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ResilientStore:
        """Build the store `settings.redis_url` names (`memory://` gives no backend)."""
        sizes = {"outbox_max": settings.mqtt.outbox_max_alerts, "session_max_turns": settings.state.session_max_turns}
        if not settings.redis_enabled:
            return cls(None, **sizes)
        r, scheme = settings.redis, urlsplit(settings.redis_url).scheme
        if scheme not in {"redis", "rediss", "unix"}:
            raise InvalidStateUrl(scheme)
        ssl = {"ssl_ca_certs": r.tls_ca_file, "ssl_certfile": r.tls_cert_file, "ssl_keyfile": r.tls_key_file}
        # Few, short retries: a down Redis must turn into "degraded" quickly, never stall the service.
        client = aioredis.from_url(
            settings.redis_url, password=r.password.get_secret_value() if r.password else None,
            socket_timeout=r.socket_timeout_s, socket_connect_timeout=r.socket_timeout_s,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=1),
            **{k: str(v) for k, v in ssl.items() if v is not None},
        )
        backend = RedisStore(client, prefix=r.key_prefix, **sizes)
        return cls(backend, **sizes, sync_retry_s=settings.state.sync_retry_s)

    async def start(self) -> None:
        """Load state from Redis if it answers (else start degraded), then start the background sync task."""
        if self.backend is not None and self._task is None:
            await self.sync_now()
            self._task = asyncio.create_task(self._sync_loop(), name="state-sync")

    async def close(self) -> None:
        """Stop the sync task, try one last write-back, and close the Redis connection."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.backend is not None:
            await self.sync_now()
            await self.backend.close()

    async def ping(self) -> None:
        """Raise StateUnavailable with the reason while Redis is unreachable."""
        if not self.healthy:
            raise StateUnavailable(self.reason or "unknown")

    async def sync_now(self) -> bool:
        """Reach Redis, load it on first contact, write every dirty key; return whether Redis is healthy."""
        if self.backend is None:
            return True
        was_healthy = self.healthy
        if not was_healthy and self._loaded:
            # Redis may have come back empty (restarted without persistence): write all of RAM, not just changes.
            self._mark_all_dirty()
        if not await self._redis(lambda b: b.ping(), self._load, self._write_dirty):
            return False
        self.healthy, self.reason = True, None
        if not was_healthy:
            log.info("state store: Redis reachable, state loaded and written back")
        return True

    def _mark_all_dirty(self) -> None:
        self.dirty.update((kind, key) for kind in KINDS for key in self.maps[kind])
        self.dirty.update(("session", sid) for sid in self.sessions)
        self.dirty.update(("outbox", alert_id) for alert_id in self.outbox)

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_retry_s)
            await self.sync_now()

    async def _redis(self, *ops: Callable[[RedisStore], Awaitable[Any]]) -> bool:
        """Run Redis operations in order, one writer at a time; on failure mark the store degraded."""
        assert self.backend is not None, "callers check for a backend"
        try:
            # The lock keeps Redis's write order equal to RAM's change order. Each Redis call is bounded by
            # the client's socket timeout, so no extra wait_for is needed here.
            async with self._lock:
                for op in ops:
                    await op(self.backend)
        except _DOWN as exc:
            reason = exc.reason if isinstance(exc, StateUnavailable) else f"{type(exc).__name__}: {exc}"
            if self.healthy:
                log.warning("state store degraded, working from RAM: %s", reason)
            self.healthy, self.reason = False, reason
            self.write_failures += 1
            return False
        return True

    async def _load(self, backend: RedisStore) -> None:
        # Redis holds what an earlier process wrote; RAM wins for every key changed since this one started.
        if self._loaded:
            return
        for kind in KINDS:
            for key, value in (await backend.all(kind)).items():
                if key not in self.maps[kind] and (kind, key) not in self.dirty:
                    self.maps[kind][key] = value
        for sid, session in (await backend.sessions()).items():
            self.sessions.setdefault(sid, session)
        # Saved alerts are older than any queued here before Redis was reached: they go first, ours are renumbered.
        saved = [(seq, a) for seq, a in await backend.outbox_entries(self.outbox_max) if a.id not in self.outbox]
        base = saved[-1][0] if saved else 0
        mine = [(base + i, a) for i, (_, a) in enumerate(self.outbox.values(), start=1)]
        self.dirty.update(("outbox", a.id) for _, a in mine)
        self.outbox = OrderedDict((a.id, (seq, a)) for seq, a in saved + mine)
        self.seq, self.dropped = max(self.seq, base + len(mine)), self.dropped + await backend.outbox_dropped()
        while len(self.outbox) > self.outbox_max:
            self.dirty.add(("outbox", self.outbox.popitem(last=False)[0]))
            self.dropped += 1
        self._loaded = True

    async def _write_dirty(self, backend: RedisStore) -> None:
        for kind_key in sorted(self.dirty):
            await self._write(backend, kind_key)

    async def _write(self, backend: RedisStore, kind_key: tuple[str, str]) -> None:
        """Write RAM's current value of one key to Redis (deleting it there when RAM no longer has it)."""
        kind, key = kind_key
        if kind in KINDS:
            await backend.put(kind, key, self.maps[kind].get(key))
        elif kind == "session":
            await backend.put_session(key, self.live_session(key))
        elif kind == "outbox":
            seq, alert = self.outbox.get(key, (0, None))
            await backend.put_alert(seq, alert, key, self.dropped)
        self.dirty.discard(kind_key)

    async def _changed(self, kind: str, key: str = "") -> None:
        # Write-through when healthy; otherwise (or on failure) the key stays dirty for the sync task.
        if self.backend is None:
            return
        # A deleted camera or rule also deletes its snapshot or state in Redis (RedisStore.put cascades).
        self.dirty.add((kind, key))
        if self.healthy:
            await self._redis(partial(self._write, kind_key=(kind, key)))
