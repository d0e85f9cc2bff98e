"""What the service keeps across restarts (cameras, rules, rule state, sessions, memory blobs, the alert
outbox, retained MQTT topics still to clear), in RAM or in Redis.

No decisions. The memory blobs live under the kind `snapshot`, the name Redis has held them by from the start.
Camera URLs are sealed (`state.crypt`) before they reach Redis.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from agent.errors import StateUnavailable
from agent.records import Alert, CameraSpec, Rule, Turn
from agent.state.crypt import Undecryptable, UrlCipher, is_sealed

log = logging.getLogger(__name__)
SavedRuleState = dict[str, Any]  # `rules.engine.RuleState.to_dict()`: the store never looks inside
# The keyed kinds; sessions and the outbox are special. `retained_clear`: camera id -> True for a removed
# camera whose retained MQTT status the broker may still hold (cleared once it answers).
KINDS = ("camera", "rule", "rule_state", "snapshot", "retained_clear")
_CASCADE = {"camera": "snapshot", "rule": "rule_state"}  # deleting a camera deletes its memory blob, etc.
REDIS_DOWN = (RedisError, OSError, TimeoutError, StateUnavailable)  # what "Redis is unreachable" looks like


@dataclass
class Session:
    """A Q&A session: turns (oldest first), idle lifetime, and expiry (monotonic seconds)."""

    turns: list[Turn]
    ttl_s: float
    expires: float


class Store(Protocol):
    """What the service keeps across restarts; every method is async and writes are idempotent per key.

    Implementations provide `put`/`all` for the keyed kinds (`KINDS`), sessions and the outbox; the named
    camera / rule / memory blob methods below are built on `put`/`all` and inherited.
    """

    async def ping(self) -> None:
        """Return when the store is reachable; raise StateUnavailable (with a reason) when not."""

    async def close(self) -> None:
        """Release connections (a no-op in RAM)."""

    async def put(self, kind: str, key: str, value: Any) -> None:
        """Set one value of a keyed kind.

        None deletes it, and a camera's memory blob or a rule's state with it.
        """
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
        """Forget the camera and its memory blob."""
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

    async def put_rule_state(self, rule_id: str, state: SavedRuleState) -> None:
        await self.put("rule_state", rule_id, dict(state))

    async def rule_states(self) -> dict[str, SavedRuleState]:
        return await self.all("rule_state")

    async def put_memory_blob(self, camera_id: str, blob: bytes) -> None:
        """Keep a camera's memory blob (`state.memory_blobs.to_blob`), replacing the previous one."""
        await self.put("snapshot", camera_id, bytes(blob))

    async def memory_blob(self, camera_id: str) -> bytes | None:
        """The camera's latest memory blob, or None."""
        return (await self.all("snapshot")).get(camera_id)

    async def put_retained_clear(self, camera_id: str, pending: bool) -> None:
        """Remember (True) or forget (False) that a removed camera's retained topics are still to clear."""
        await self.put("retained_clear", camera_id, True if pending else None)

    async def retained_clears(self) -> list[str]:
        """Removed cameras whose retained MQTT topics are still to clear."""
        return sorted(await self.all("retained_clear"))


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

    async def ping(self) -> None:
        """RAM is always reachable."""

    async def close(self) -> None:
        """Nothing to release."""

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

    async def outbox_dropped(self) -> int:
        return self.dropped


class RedisStore(Store):
    """Redis (redis-py asyncio) under one key prefix `<p>`. Methods raise redis errors when Redis is down.

    Keys: hashes `<p>:camera`, `<p>:rule`, `<p>:rule_state`, `<p>:snapshot` (memory blobs),
    `<p>:retained_clear`, id -> JSON or bytes (a camera's `url` sealed by `cipher`: `fernet:...`; without a
    cipher, tests only, in clear); `<p>:session:<id>` (list of JSON turns, with a TTL); the outbox
    `<p>:outbox:ids` (sorted set id -> sequence number), `<p>:outbox:items` (hash id -> JSON),
    `<p>:outbox:seq` and `<p>:outbox:dropped` (ints).
    """

    # Append and trim atomically, so the set and the hash never disagree on what the outbox holds.
    _APPEND = """
    local seq = redis.call('INCR', KEYS[3])
    redis.call('ZADD', KEYS[1], seq, ARGV[1]); redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
    local dropped = {}
    while redis.call('ZCARD', KEYS[1]) > tonumber(ARGV[3]) do
      local old = redis.call('ZPOPMIN', KEYS[1])[1]
      redis.call('HDEL', KEYS[2], old); table.insert(dropped, old)
    end
    redis.call('INCRBY', KEYS[4], #dropped)
    return dropped
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "scissor",
        outbox_max: int = 10_000,
        session_max_turns: int = 50,
        cipher: UrlCipher | None = None,
    ) -> None:
        self.client, self.prefix, self.cipher = client, prefix, cipher
        self.plain_cameras: set[str] = set()  # camera ids last read with their URL in clear (to rewrite)
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
        except REDIS_DOWN as exc:
            raise StateUnavailable(f"{type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        await self.client.aclose()

    async def put(self, kind: str, key: str, value: Any) -> None:
        if value is not None:
            await self.client.hset(self.key(kind), key, encode(kind, value, self.cipher))
        else:
            await self.client.hdel(self.key(kind), key)
            if kind in _CASCADE:
                await self.client.hdel(self.key(_CASCADE[kind]), key)

    async def all(self, kind: str) -> dict[str, Any]:
        """Every value of the kind; a camera that does not decrypt with this key is left out (logged) and
        left in Redis as it is."""
        raw = cast(dict[bytes, bytes], await self.client.hgetall(self.key(kind)))
        found = {}
        for k, v in raw.items():
            key = k.decode()
            try:
                found[key] = decode(kind, v, self.cipher)
            except Undecryptable as exc:
                log.error("camera %s not loaded from Redis: %s", key, exc)
                continue
            if kind == "camera" and self.cipher is not None and not _url_sealed(v):
                self.plain_cameras.add(key)
        return found

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
        return [
            Turn.model_validate_json(v)
            for v in await self.client.lrange(self.key("session", session_id), 0, -1)
        ]

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
        return [
            d.decode()
            for d in await self._append(keys=keys, args=[alert.id, alert.model_dump_json(), self.outbox_max])
        ]

    async def outbox_peek(self, n: int) -> list[Alert]:
        return [alert for _, alert in await self.outbox_entries(n)]

    async def outbox_entries(self, n: int) -> list[tuple[int, Alert]]:
        """Return up to `n` oldest (sequence number, alert) pairs, oldest first."""
        pairs = cast(
            list[tuple[bytes, float]], await self.client.zrange(self._ids, 0, n - 1, withscores=True)
        )
        items = await self.client.hmget(self._items, [i for i, _ in pairs]) if pairs else []
        return [
            (int(seq), Alert.model_validate_json(v)) for (_, seq), v in zip(pairs, items, strict=True) if v
        ]

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


def encode(kind: str, value: Any, cipher: UrlCipher | None) -> bytes | str:
    """A keyed kind's value as Redis (and the write-ahead file) holds it: JSON, bytes for memory blobs, a
    camera's URL sealed when there is a cipher."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, CameraSpec) and cipher is not None:
        return json.dumps({**value.model_dump(mode="json"), "url": cipher.seal(value.url)})
    return value.model_dump_json() if isinstance(value, CameraSpec | Rule) else json.dumps(value)


def decode(kind: str, raw: bytes | str, cipher: UrlCipher | None) -> Any:
    """The inverse of `encode`; a camera URL in clear (an older version's record) is accepted.

    Raises:
        Undecryptable: a sealed camera URL this cipher cannot open (or there is no cipher).
    """
    if kind == "snapshot":
        return bytes(raw) if isinstance(raw, bytes) else raw.encode()
    if kind == "camera":
        fields = json.loads(raw)
        if isinstance(fields, dict) and isinstance(fields.get("url"), str) and is_sealed(fields["url"]):
            if cipher is None:
                raise Undecryptable("a stored camera URL is encrypted and no key was given")
            fields["url"] = cipher.open(fields["url"])
        return CameraSpec.model_validate(fields)
    return Rule.model_validate_json(raw) if kind == "rule" else json.loads(raw)


def _url_sealed(raw: bytes) -> bool:
    try:
        url = json.loads(raw).get("url", "")
    except (ValueError, AttributeError):
        return False
    return isinstance(url, str) and is_sealed(url)
