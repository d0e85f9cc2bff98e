"""Camera URLs at rest, against a real redis-server: never in clear in Redis or the state directory, older
plain records migrated on read, a wrong key refused without losing the record, the key file private."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from cryptography.fernet import Fernet

from agent.models import load_backend
from agent.records import CameraSpec
from agent.settings import Settings, SettingsError, load_settings
from agent.state.crypt import KEY_FILE, KeyFileError, UrlCipher, load_or_create_key
from agent.state.resilient import ResilientStore
from harness.ports import free_port
from harness.servers import RedisServer
from tests.agent.service_harness import running_service

PASSWORD = "Zq9-s3cr3t-Kx7"  # in the userinfo and in a query parameter


async def everything_in_redis(url: str) -> bytes:
    """Every key and every value Redis holds, whatever its type, concatenated."""
    client = aioredis.from_url(url)
    dump = b""
    try:
        async for key in client.scan_iter(match="*"):
            found = await client.type(key)
            kind = found.decode() if isinstance(found, bytes) else found
            if kind == "string":
                value: object = await client.get(key)
            elif kind == "hash":
                value = await client.hgetall(key)
            elif kind == "list":
                value = await client.lrange(key, 0, -1)
            elif kind == "zset":
                value = await client.zrange(key, 0, -1, withscores=True)
            elif kind == "set":
                value = await client.smembers(key)
            else:
                raise AssertionError(f"unexpected Redis type {kind} at {key!r}")
            dump += key + b"\0" + repr(value).encode() + b"\n"
    finally:
        await client.aclose()
    return dump


def everything_in(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def store_for(server: RedisServer, prefix: str, **redis: object) -> ResilientStore:
    return ResilientStore.from_settings(
        Settings(redis_url=server.url, redis={"key_prefix": prefix, **redis}, state={"sync_retry_s": 0.1})
    )


async def test_a_camera_password_is_nowhere_in_clear_in_redis_or_the_state_dir(
    redis_server: RedisServer, prefix: str, state_dir: Path
) -> None:
    url = f"rtsp://admin:{PASSWORD}@127.0.0.1:{free_port()}/stream?pw={PASSWORD}"
    settings = {"redis_url": redis_server.url, "redis": {"key_prefix": prefix}}
    backend = load_backend("tiny", device="cpu")
    async with running_service(backend, **settings) as run:
        added = await run.client.post("/cameras", json={"id": "door", "url": url, "fps": 1})
        assert added.status_code == 201, added.text
        rule = {"camera_id": "door", "kind": "novelty", "params": {"threshold": 0.5}}
        assert (await run.client.post("/rules", json=rule)).status_code == 201
        patched = await run.client.patch("/cameras/door", json={"url": url.replace("stream", "main")})
        assert patched.status_code == 200, patched.text
    dump = await everything_in_redis(redis_server.url)
    assert f"{prefix}:camera".encode() in dump and b"fernet:" in dump, "the camera is stored, sealed"
    assert PASSWORD.encode() not in dump
    assert PASSWORD.encode() not in everything_in(state_dir)
    assert stat.S_IMODE((state_dir / KEY_FILE).stat().st_mode) == 0o600

    async with running_service(backend, **settings) as again:  # the next process opens what this one sealed
        assert [c.url for c in await again.service.store.cameras()] == [url.replace("stream", "main")]


async def test_a_camera_stored_in_clear_by_an_older_version_loads_and_is_rewritten_sealed(
    redis_server: RedisServer, prefix: str
) -> None:
    url = f"rtsp://admin:{PASSWORD}@cam.lan/s"
    client = aioredis.from_url(redis_server.url)
    await client.hset(f"{prefix}:camera", "old", json.dumps({"id": "old", "url": url, "fps": 2.0}))
    store = store_for(redis_server, prefix)
    await store.start()
    try:
        assert [(c.id, c.url, c.fps) for c in await store.cameras()] == [("old", url, 2.0)]
        raw = await client.hget(f"{prefix}:camera", "old")
        assert raw is not None and PASSWORD.encode() not in raw and b"fernet:" in raw
    finally:
        await store.close()
        await client.aclose()
    assert PASSWORD.encode() not in await everything_in_redis(redis_server.url)


async def test_a_camera_sealed_with_another_key_is_left_out_and_kept_in_redis(
    redis_server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    first = store_for(redis_server, prefix, encryption_key=Fernet.generate_key().decode())
    await first.start()
    await first.put_camera(CameraSpec(id="door", url=f"rtsp://u:{PASSWORD}@cam.lan/s"))
    await first.close()
    client = aioredis.from_url(redis_server.url)
    sealed = await client.hget(f"{prefix}:camera", "door")

    second = store_for(redis_server, prefix, encryption_key=Fernet.generate_key().decode())
    await second.start()
    try:
        assert await second.cameras() == []
        assert "SCISSOR_REDIS__ENCRYPTION_KEY" in caplog.text and PASSWORD not in caplog.text
        await second.put_camera(CameraSpec(id="yard", url="rtsp://cam.lan/y"))
        await asyncio.sleep(0.3)  # a few sync ticks: nothing rewrites the record it could not read
        assert await client.hget(f"{prefix}:camera", "door") == sealed
    finally:
        await second.close()
        await client.aclose()


def test_the_generated_key_file_is_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    key = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(path) == key
    assert UrlCipher(key).open(UrlCipher(key).seal("rtsp://u:p@h/s")) == "rtsp://u:p@h/s"
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_or_create_key(path)
    path.chmod(0o600)
    path.write_text("not a key\n")
    with pytest.raises(KeyFileError, match="Fernet key"):
        load_or_create_key(path)


def test_a_malformed_encryption_key_is_refused_naming_the_setting_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCISSOR_REDIS__ENCRYPTION_KEY", "hunter2-not-a-fernet-key")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "SCISSOR_REDIS__ENCRYPTION_KEY" in str(refused.value)
    assert "hunter2" not in str(refused.value)
