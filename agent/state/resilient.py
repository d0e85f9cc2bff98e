"""The store the service uses: RAM first, Redis write-through, a local write-ahead file for what Redis has not
confirmed, resync after an outage.

Never blocks on Redis. What an API answer or an alert acknowledged is on disk before it returns: in Redis, or,
while Redis cannot take it, in the write-ahead file (`state.wal`), which the next start replays.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from agent.errors import InvalidStateUrl, StateUnavailable
from agent.records import Alert
from agent.settings import Settings
from agent.state.crypt import Undecryptable, UrlCipher, ensure_private_dir, state_dir
from agent.state.store import _CASCADE, KINDS, REDIS_DOWN, MemoryStore, RedisStore, decode, encode
from agent.state.wal import Change, WriteAheadFile
from agent.tasks import cancel_and_wait

log = logging.getLogger(__name__)
# What the write-ahead file keeps while Redis is down: what the API acknowledged (cameras, rules), the alert
# outbox, and retained topics still to clear. Rule state, sessions and memory blobs are not journaled: a crash
# during an outage loses their latest changes (see ops/README.md, "State and durability").
JOURNALED = frozenset({"camera", "rule", "retained_clear", "outbox"})
COMPACT_LINES = 2000  # past this many lines (and 4x the changes pending) the file is rewritten shorter


class StateDirInUse(RuntimeError):
    """Another process holds this state directory's write-ahead file."""


class ResilientStore(MemoryStore):
    """What the service uses: RAM first (reads never touch Redis), writes go through to Redis when it is up.

    When Redis is down it keeps working from RAM, reports `healthy = False` with a `reason`, remembers which
    keys changed, and a background task writes them back once Redis answers. Every change of a journaled kind
    (`JOURNALED`) Redis has not confirmed is appended to `wal` (fsync'd) before the change returns; `start()`
    replays that file, then loads everything else from Redis (restart recovery), and the file is emptied once
    Redis holds it all. Without a backend (`memory://`) it is a MemoryStore that is always healthy.
    """

    def __init__(
        self,
        backend: RedisStore | None = None,
        *,
        outbox_max: int = 10_000,
        session_max_turns: int = 50,
        sync_retry_s: float = 1.0,
        wal: WriteAheadFile | None = None,
    ) -> None:
        super().__init__(outbox_max=outbox_max, session_max_turns=session_max_turns)
        self.backend, self.sync_retry_s, self.wal = backend, sync_retry_s, wal
        self.healthy, self.reason = backend is None, None if backend is None else "not connected yet"
        self.write_failures = 0
        self._loaded = backend is None
        self.dirty: set[tuple[str, str]] = set()  # (kind, key) changed in RAM, not yet in Redis
        self._lock = asyncio.Lock()  # one Redis writer at a time keeps write order equal to change order
        self._task: asyncio.Task[None] | None = None
        self._journaled_alerts: set[str] = set()  # alert ids Redis cannot hold: never sent to it
        self._compact_at = COMPACT_LINES  # lines in the write-ahead file before it is compacted

    @classmethod
    def from_settings(cls, settings: Settings) -> ResilientStore:
        """Build the store `settings.redis_url` names (`memory://` gives no backend)."""
        sizes: dict[str, Any] = {
            "outbox_max": settings.mqtt.outbox_max_alerts,
            "session_max_turns": settings.state.session_max_turns,
        }
        if not settings.redis_enabled:
            return cls(None, **sizes)
        r, scheme = settings.redis, urlsplit(settings.redis_url).scheme
        if scheme not in {"redis", "rediss", "unix"}:
            raise InvalidStateUrl(scheme)
        ssl = {"ssl_ca_certs": r.tls_ca_file, "ssl_certfile": r.tls_cert_file, "ssl_keyfile": r.tls_key_file}
        # Few, short retries: a down Redis must turn into "degraded" quickly, never stall the service.
        client = aioredis.from_url(
            settings.redis_url,
            password=r.password.get_secret_value() if r.password else None,
            socket_timeout=r.socket_timeout_s,
            socket_connect_timeout=r.socket_timeout_s,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=1),
            **{k: str(v) for k, v in ssl.items() if v is not None},
        )
        backend = RedisStore(client, prefix=r.key_prefix, **sizes, cipher=UrlCipher.from_settings(settings))
        wal = open_wal(ensure_private_dir(state_dir(settings)) / f"{r.key_prefix}.wal")
        return cls(backend, **sizes, sync_retry_s=settings.state.sync_retry_s, wal=wal)

    async def start(self) -> None:
        """Replay the write-ahead file, load state from Redis if it answers (else start degraded), then start
        the background sync task."""
        if self.backend is not None and self._task is None:
            self._replay()
            await self.sync_now()
            self._task = asyncio.create_task(self._sync_loop(), name="state-sync")

    async def close(self) -> None:
        """Stop the sync task, try one last write-back, and close the Redis connection."""
        if self._task is not None:
            await cancel_and_wait(self._task)  # a cancel can be lost inside a Redis call
            self._task = None
        if self.backend is not None:
            await self.sync_now()
            await self.backend.close()
        if self.wal is not None:
            self.wal.close()

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
            # Redis may have come back empty (restarted without persistence):
            # write all of RAM, not just changes.
            self._mark_all_dirty()
        if not await self._redis(
            lambda b: b.ping(), self._load, self._check_epoch, self._write_dirty, self._set_epoch
        ):
            return False
        self.healthy, self.reason = True, None
        self._clear_wal_if_synced()
        if not was_healthy:
            log.info("state store: Redis reachable, state loaded and written back")
        return True

    async def _check_epoch(self, backend: RedisStore) -> None:
        # A Redis that restarted empty between two ticks may never have failed a call of ours: the marker we
        # set is gone then, and all of RAM is written again.
        if self._loaded and not await backend.client.exists(backend.key("epoch")):
            self._mark_all_dirty()

    async def _set_epoch(self, backend: RedisStore) -> None:
        await backend.client.set(backend.key("epoch"), "1")

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
        except REDIS_DOWN as exc:
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
        # Saved alerts are older than any queued here before Redis was reached:
        # they go first, ours are renumbered.
        saved = [
            (seq, a)
            for seq, a in await backend.outbox_entries(self.outbox_max)
            if a.id not in self.outbox and ("outbox", a.id) not in self.dirty  # not delivered meanwhile
        ]
        base = saved[-1][0] if saved else 0
        mine = [(base + i, a) for i, (_, a) in enumerate(self.outbox.values(), start=1)]
        self.dirty.update(("outbox", a.id) for _, a in mine)
        self.outbox = OrderedDict((a.id, (seq, a)) for seq, a in saved + mine)
        self.seq, self.dropped = (
            max(self.seq, base + len(mine)),
            self.dropped + await backend.outbox_dropped(),
        )
        while len(self.outbox) > self.outbox_max:
            self.dirty.add(("outbox", self.outbox.popitem(last=False)[0]))
            self.dropped += 1
        # Cameras an older version wrote with their URL in clear are written back sealed.
        self.dirty.update(("camera", key) for key in backend.plain_cameras if key in self.maps["camera"])
        backend.plain_cameras.clear()
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
        if kind in JOURNALED:
            self._clear_wal_if_synced()

    async def _changed(self, kind: str, key: str = "") -> None:
        # Write-through when healthy; otherwise (or on failure) the key stays dirty for the sync task, and a
        # journaled kind goes to the write-ahead file before this returns. While the file holds anything,
        # every journaled change goes there too, so its last line for a key is never older than Redis's.
        if self.backend is None:
            return
        # A deleted camera or rule also deletes its memory blob or state in Redis (RedisStore.put cascades).
        self.dirty.add((kind, key))
        journaled = self.wal is not None and kind in JOURNALED and (not self.healthy or self.wal.pending)
        if journaled:
            self._journal(kind, key, unsent=not self.healthy)
        if self.healthy:
            await self._redis(partial(self._write, kind_key=(kind, key)))
        if not journaled and kind in JOURNALED and (kind, key) in self.dirty:
            self._journal(kind, key)  # the write-through failed

    # ------------------------------------------------------------------------------------ write-ahead file
    def _journal(self, kind: str, key: str, *, unsent: bool = False) -> None:
        """Append RAM's current value of one key to the write-ahead file (fsync'd); compact the file when it
        has grown long (a long outage with alerts delivered meanwhile). `unsent`: no write of it was tried.
        """
        if self.wal is None:
            return
        change = self._change(kind, key)
        self.wal.append(change)
        if kind == "outbox" and change.value is not None and unsent:
            self._journaled_alerts.add(key)
        if self.wal.lines > self._compact_at:
            self._compact()

    def _compact(self) -> None:
        assert self.wal is not None, "callers check for a file"
        pending = [kk for kk in self.dirty if kk[0] in JOURNALED]
        others = sorted(kk for kk in pending if kk[0] != "outbox")
        # A delivered alert's removal matters only if Redis may hold it (a write timed out may still land).
        gone = sorted(
            kk
            for kk in pending
            if kk[0] == "outbox" and kk[1] not in self.outbox and kk[1] not in self._journaled_alerts
        )
        queued = [("outbox", a) for a in self.outbox if ("outbox", a) in self.dirty]  # in queue order
        self.wal.compact([self._change(k, key) for k, key in [*others, *gone, *queued]], lock=True)
        self._journaled_alerts &= set(self.outbox)
        self._compact_at = max(COMPACT_LINES, 4 * self.wal.lines)

    def _change(self, kind: str, key: str) -> Change:
        """RAM's current value of one key, encoded as the write-ahead file holds it."""
        if kind == "outbox":
            seq, alert = self.outbox.get(key, (0, None))
            value = (
                None if alert is None else json.dumps({"seq": seq, "alert": alert.model_dump(mode="json")})
            )
        else:
            found = self.maps[kind].get(key)
            cipher = self.backend.cipher if self.backend else None
            value = None if found is None else str(encode(kind, found, cipher))
        return Change(kind, key, value)

    def _replay(self) -> None:
        """Apply the write-ahead file to RAM; every key in it stays dirty until Redis has it."""
        if self.wal is None or not self.wal.pending:
            return
        cipher = self.backend.cipher if self.backend is not None else None
        changes = self.wal.replay()
        for change in changes:
            kind, key = change.kind, change.key
            try:
                if kind == "outbox":
                    self._replay_alert(key, change.value)
                elif kind in KINDS and change.value is None:
                    self.maps[kind].pop(key, None)
                    if kind in _CASCADE:
                        self.maps[_CASCADE[kind]].pop(key, None)
                        self.dirty.add((_CASCADE[kind], key))
                elif kind in KINDS:
                    self.maps[kind][key] = decode(kind, change.value or "null", cipher)
                else:
                    continue
            except (Undecryptable, ValueError) as exc:
                log.error("write-ahead file: %s %s not replayed: %s", kind, key, exc)
                continue
            self.dirty.add((kind, key))
        log.warning(
            "replayed %d change(s) Redis had not confirmed from %s",
            len(changes),
            self.wal.path,
        )

    def _replay_alert(self, alert_id: str, value: str | None) -> None:
        if value is None:
            self.outbox.pop(alert_id, None)
            return
        item = json.loads(value)
        seq = int(item["seq"])
        self.outbox[alert_id] = (seq, Alert.model_validate(item["alert"]))
        self.seq = max(self.seq, seq)

    def _clear_wal_if_synced(self) -> None:
        if self.wal is not None and self.wal.pending and not any(k in JOURNALED for k, _ in self.dirty):
            self.wal.clear()
            self._journaled_alerts.clear()
            self._compact_at = COMPACT_LINES


def open_wal(path: Path) -> WriteAheadFile:
    """Open the write-ahead file at `path`, holding an exclusive lock on it for this process's lifetime.

    Raises:
        StateDirInUse: another process holds it (two instances must not share a state directory).
    """
    wal = WriteAheadFile(path)
    try:
        fcntl.flock(wal.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        wal.close()
        raise StateDirInUse(
            f"{path} is in use by another process: give each instance its own SCISSOR_STATE__DIR"
        ) from None
    return wal
