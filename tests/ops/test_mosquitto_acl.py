"""The shipped mosquitto config and ACL on a real broker: only the service's user writes scissor/#; another
broker user can read the service's topics but cannot forge alerts or a retained `scissor/availability`."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
import yaml

from harness.servers import MosquittoServer

ROOT = Path(__file__).resolve().parents[2]
SERVICE_USER, SERVICE_PW = "alerts-svc", "svc-pw-123"  # not the template's `scissor`: compose's sed fills it
OTHER_USER, OTHER_PW = "viewer", "viewer-pw-456"


def compose_acl_line() -> str:
    """The line of the compose mosquitto command that writes the ACL, as the shell will run it."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    script = compose["services"]["mosquitto"]["command"][-1]
    line = next(ln for ln in script.splitlines() if "/mosquitto/auth/acl" in ln and ln.startswith("sed"))
    return str(line).replace("$$", "$")


@pytest.fixture
def shipped_broker() -> Iterator[MosquittoServer]:
    """mosquitto with ops/mosquitto/mosquitto.conf and the ACL compose installs, on a loopback port."""
    broker = MosquittoServer()
    broker.dir.chmod(0o755)  # run as root, mosquitto drops to its own user, which must read these files
    passwd, data, acl = broker.dir / "passwd", broker.dir / "data", broker.dir / "acl"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), SERVICE_USER, SERVICE_PW], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), OTHER_USER, OTHER_PW], check=True)
    passwd.chmod(0o644)
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(data, "mosquitto")
    line = compose_acl_line().replace("/mosquitto/config/acl", str(ROOT / "ops" / "mosquitto" / "acl"))
    line = line.replace("/mosquitto/auth/acl", str(acl))
    subprocess.run(["sh", "-c", line], env={**os.environ, "MQTT_USERNAME": SERVICE_USER}, check=True)
    acl.chmod(0o644)
    assert re.search(rf"^user {SERVICE_USER}$", acl.read_text(), flags=re.MULTILINE), acl.read_text()
    conf = (ROOT / "ops" / "mosquitto" / "mosquitto.conf").read_text()
    assert "acl_file /mosquitto/auth/acl" in conf, "the shipped config must load the ACL"
    conf = conf.replace("listener 1883 0.0.0.0", f"listener {broker.port} 127.0.0.1")
    conf = conf.replace("/mosquitto/auth/passwd", str(passwd)).replace("/mosquitto/data/", f"{data}/")
    conf = conf.replace("/mosquitto/auth/acl", str(acl))
    (broker.dir / "shipped.conf").write_text(conf)
    broker.command = lambda: ["mosquitto", "-c", str(broker.dir / "shipped.conf")]  # type: ignore[method-assign]
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


def client(broker: MosquittoServer, user: str, password: str) -> aiomqtt.Client:
    return aiomqtt.Client(broker.host, broker.port, username=user, password=password, timeout=5)


async def received(
    broker: MosquittoServer, user: str, password: str, wait_s: float
) -> list[tuple[str, bytes]]:
    """What a fresh subscriber to scissor/# gets within `wait_s` (retained messages included)."""
    got: list[tuple[str, bytes]] = []
    async with client(broker, user, password) as sub:
        await sub.subscribe("scissor/#", qos=1)
        try:
            async with asyncio.timeout(wait_s):
                async for message in sub.messages:
                    got.append((message.topic.value, bytes(message.payload)))
        except TimeoutError:
            pass
    return got


async def test_another_broker_user_cannot_publish_under_scissor_but_the_service_can(
    shipped_broker: MosquittoServer,
) -> None:
    async with client(shipped_broker, OTHER_USER, OTHER_PW) as other:
        # MQTT 3.1.1 has no way to refuse a PUBLISH: the broker acknowledges it and drops it.
        await other.publish("scissor/availability", "offline", qos=1, retain=True)
        await other.publish("scissor/door/alerts/intruder", '{"id": "forged"}', qos=1, retain=True)
        await other.publish("scissor/door/status", '{"state": "online"}', qos=1, retain=True)
    assert await received(shipped_broker, SERVICE_USER, SERVICE_PW, 1.0) == [], "a forged message got through"

    async with client(shipped_broker, SERVICE_USER, SERVICE_PW) as service:
        await service.publish("scissor/availability", "online", qos=1, retain=True)
    for user, password in ((SERVICE_USER, SERVICE_PW), (OTHER_USER, OTHER_PW)):
        got = await received(shipped_broker, user, password, 1.0)
        assert got == [("scissor/availability", b"online")], (user, got)  # everyone may read


async def test_anonymous_clients_are_refused(shipped_broker: MosquittoServer) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(shipped_broker.host, shipped_broker.port, timeout=5) as anonymous:
            await anonymous.publish("scissor/availability", "offline", qos=1, retain=True)
