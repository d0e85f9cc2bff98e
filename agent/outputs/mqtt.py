"""The only MQTT speaker: in-order QoS-1 alerts from the outbox, retained status, last will.

MQTT only: the event bus and the metrics hear of records from the dispatcher, not from here. Never logs
secrets.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt

from agent.records import Alert, CameraStatus, Event
from agent.settings import Settings
from agent.state.store import Store
from streamer.urls import redact

log = logging.getLogger(__name__)
OnDelivered = Callable[[Alert, float], None]  # (alert, wall time of the PUBACK)
OnDropped = Callable[[str], None]  # alert id dropped from the full outbox


@dataclass
class MqttStats:
    """Plain metric counters: alerts sent (PUBACK received) / dropped (outbox full), failures, reconnects,
    and how often a foreign value on our availability topic was overwritten with `online`."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0
    reconnects: int = 0
    events_dropped: int = 0
    availability_reasserted: int = 0


def default_client_id() -> str:
    """`scissor-<host>-<6 random hex>`: unique per process, so two instances never take each other's session
    (a broker disconnects the older of two clients with one id)."""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:40] or "host"
    return f"scissor-{host}-{secrets.token_hex(3)}"


class MqttPublisher:
    """One long-lived task owning the broker connection (aiomqtt's documented reconnect loop).

    Alerts are written to the store's outbox first (in Redis when configured), then published in order with
    QoS 1 and removed only after the broker's PUBACK, so a broker outage loses nothing up to the outbox bound.
    On every (re)connect it republishes retained `<root>/availability = online` and every camera's status; the
    last will sets it `offline` (retained, QoS 1) and `stop()` publishes `offline` itself. It listens on its
    availability topic and puts `online` back whenever anything else appears there while it runs (a forged
    `offline`, another instance's last will). A removed camera's retained status is cleared (empty retained
    payload), and remembered in the store until the broker has taken the clear, so a camera removed during
    an outage is cleared when the broker returns, even after a restart. Delivery is at least once: a
    subscriber drops duplicates by the alert's unique `id`.

    Args:
        url: `mqtt://[user[:password]@]host[:port]` or `mqtts://...` (TLS).
        store: where the outbox and the pending clears live.
        client_id: MQTT client identifier (None: `default_client_id()`).
        topic_root: first topic level.
        username, password: override the URL's credentials.
        tls_ca_file, tls_cert_file, tls_key_file, tls_insecure: TLS options for mqtts.
        on_delivered: called with (alert, wall time) after each PUBACK (cooldowns count from it).
        on_dropped: called with the id of each alert dropped because the outbox was full.
    """

    def __init__(
        self,
        url: str,
        *,
        store: Store,
        client_id: str | None = None,
        topic_root: str = "scissor",
        username: str | None = None,
        password: str | None = None,
        tls_ca_file: Path | None = None,
        tls_cert_file: Path | None = None,
        tls_key_file: Path | None = None,
        tls_insecure: bool = False,
        keepalive_s: int = 30,
        timeout_s: float = 10.0,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
        on_delivered: OnDelivered | None = None,
        on_dropped: OnDropped | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
            raise ValueError(f"not an MQTT URL: {redact(url)}")
        self.safe_url = redact(url)
        self.host, self.tls = parts.hostname, parts.scheme == "mqtts"
        self.port = parts.port or (8883 if self.tls else 1883)
        self.username = username or parts.username
        self.password = password or parts.password
        self.tls_files, self.tls_insecure = (tls_ca_file, tls_cert_file, tls_key_file), tls_insecure
        self.store, self.client_id, self.root = store, client_id or default_client_id(), topic_root
        self.availability_topic = f"{topic_root}/availability"
        self.keepalive_s, self.timeout_s = keepalive_s, timeout_s
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.on_delivered, self.on_dropped = on_delivered, on_dropped
        self.stats = MqttStats()
        self._statuses: dict[str, CameraStatus] = {}
        self._clears: set[str] = set()  # removed cameras whose retained status the broker may still hold
        self._client: aiomqtt.Client | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        store: Store,
        on_delivered: OnDelivered | None = None,
        on_dropped: OnDropped | None = None,
    ) -> MqttPublisher:
        """Build the publisher `settings.mqtt_url` and `settings.mqtt` describe."""
        m = settings.mqtt
        return cls(
            settings.mqtt_url,
            store=store,
            client_id=m.client_id,
            topic_root=m.topic_root,
            username=m.username,
            password=m.password.get_secret_value() if m.password else None,
            tls_ca_file=m.tls_ca_file,
            tls_cert_file=m.tls_cert_file,
            tls_key_file=m.tls_key_file,
            tls_insecure=m.tls_insecure,
            keepalive_s=m.keepalive_s,
            backoff_max_s=m.backoff_max_s,
            on_delivered=on_delivered,
            on_dropped=on_dropped,
        )

    @property
    def connected(self) -> bool:
        """True while a broker connection is up."""
        return self._client is not None

    @property
    def ready(self) -> bool:
        """Same as `connected` (what `/readyz` reports)."""
        return self.connected

    def alert_topic(self, alert: Alert) -> str:
        """`<root>/<camera>/alerts/<rule topic or rule id>`."""
        return f"{self.root}/{alert.camera}/alerts/{alert.topic or alert.rule}"

    async def start(self) -> None:
        """Start the connection task (it keeps reconnecting until `stop()`); returns at once."""
        if self._task is None:
            self._stopping.clear()
            self._clears.update(await self.store.retained_clears())
            self._task = asyncio.create_task(self._run(), name="mqtt-publisher")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Publish `offline`, disconnect cleanly and end the task (cancelled after `timeout_s`)."""
        if self._task is None:
            return
        self._stopping.set()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    async def enqueue_alert(self, alert: Alert) -> None:
        """Queue an alert in the outbox (never blocks on the broker); when full, the oldest are dropped."""
        dropped = await self.store.outbox_append(alert)
        for alert_id in dropped:
            log.warning("mqtt outbox full: dropped the oldest alert %s", alert_id)
            if self.on_dropped is not None:
                self.on_dropped(alert_id)
        self.stats.dropped += len(dropped)
        self._wake.set()

    async def set_status(self, status: CameraStatus) -> None:
        """Publish a camera's status retained (again on every reconnect)."""
        self._statuses[status.id] = status
        if status.id in self._clears:  # the id is in use again: its status replaces the pending clear
            self._clears.discard(status.id)
            await self.store.put_retained_clear(status.id, False)
        await self._try_publish(
            f"{self.root}/{status.id}/status", status.model_dump_json(), qos=1, retain=True
        )

    async def clear_status(self, camera_id: str) -> None:
        """Forget a removed camera: clear its retained status on the broker, now or when it returns."""
        self._statuses.pop(camera_id, None)
        self._clears.add(camera_id)
        await self.store.put_retained_clear(camera_id, True)
        if await self._try_publish(self._status_topic(camera_id), b"", qos=1, retain=True):
            await self._cleared(camera_id)

    def _status_topic(self, camera_id: str) -> str:
        return f"{self.root}/{camera_id}/status"

    async def _cleared(self, camera_id: str) -> None:
        if camera_id in self._clears and camera_id not in self._statuses:
            self._clears.discard(camera_id)
            await self.store.put_retained_clear(camera_id, False)

    async def publish_event(self, event: Event) -> None:
        """Publish an event on `<root>/<camera>/events` (QoS 0; counted and skipped while disconnected)."""
        topic = f"{self.root}/{event.camera}/events" if event.camera else f"{self.root}/events"
        if not await self._try_publish(topic, event.model_dump_json(), qos=0, retain=False):
            self.stats.events_dropped += 1

    async def _try_publish(self, topic: str, payload: str | bytes, *, qos: int, retain: bool) -> bool:
        client = self._client
        if client is None:
            return False
        try:
            await client.publish(topic, payload, qos=qos, retain=retain, timeout=self.timeout_s)
        except aiomqtt.MqttError as exc:
            self.stats.failed += 1
            log.debug("mqtt publish to %s failed: %s", topic, exc)
            return False
        return True

    def _make_client(self) -> aiomqtt.Client:
        # A fresh client per connection: paho must not replay half-sent messages of an old session on its own.
        will = aiomqtt.Will(self.availability_topic, "offline", qos=1, retain=True)
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=self.client_id,
            will=will,
            keepalive=self.keepalive_s,
            timeout=self.timeout_s,
            tls_context=self._tls_context(),
            tls_insecure=self.tls_insecure if self.tls else None,
            max_queued_outgoing_messages=1000,
        )

    def _tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        ca, cert, key = self.tls_files
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
        if cert is not None:
            context.load_cert_chain(str(cert), str(key) if key else None)
        if self.tls_insecure:
            context.check_hostname = False
        return context

    async def _run(self) -> None:
        """Connect, announce, drain; on any broker error back off (capped, with jitter) and connect again."""
        backoff = self.backoff_initial_s
        while not self._stopping.is_set():
            try:
                async with self._make_client() as client:
                    backoff = self.backoff_initial_s
                    await self._connected(client)
            except aiomqtt.MqttError as exc:
                self.stats.failed += 1
                delay = backoff * random.uniform(0.5, 1.0)  # jitter, not security
                log.warning("mqtt broker %s: %s; reconnecting in %.1f s", self.safe_url, exc, delay)
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                backoff = min(backoff * 2, self.backoff_max_s)
                self.stats.reconnects += 1
            finally:
                self._client = None

    async def _connected(self, client: aiomqtt.Client) -> None:
        self._client = client
        await client.publish(self.availability_topic, "online", qos=1, retain=True, timeout=self.timeout_s)
        await client.subscribe(self.availability_topic, qos=1, timeout=self.timeout_s)
        for camera_id in sorted(self._clears):
            await client.publish(
                self._status_topic(camera_id), b"", qos=1, retain=True, timeout=self.timeout_s
            )
            await self._cleared(camera_id)
        for status in list(self._statuses.values()):
            await client.publish(
                f"{self.root}/{status.id}/status",
                status.model_dump_json(),
                qos=1,
                retain=True,
                timeout=self.timeout_s,
            )
        log.info("mqtt connected to %s", self.safe_url)
        drain = asyncio.create_task(self._drain(client), name="mqtt-drain")
        watch = asyncio.create_task(self._watch(client), name="mqtt-watch")
        done, pending = await asyncio.wait({drain, watch}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()  # re-raises the MqttError that ended the connection
        if self._stopping.is_set():
            self._client = None
            await client.publish(
                self.availability_topic, "offline", qos=1, retain=True, timeout=self.timeout_s
            )

    async def _watch(self, client: aiomqtt.Client) -> None:
        # The message iterator raises MqttError as soon as the broker drops us,
        # even while nothing is published.
        async for message in client.messages:
            if message.topic.matches(self.availability_topic) and message.payload != b"online":
                if self._stopping.is_set():
                    continue
                log.warning(
                    "mqtt: %s was set to something else; publishing online again", self.availability_topic
                )
                await client.publish(
                    self.availability_topic, "online", qos=1, retain=True, timeout=self.timeout_s
                )
                self.stats.availability_reasserted += 1

    async def _drain(self, client: aiomqtt.Client) -> None:
        while not self._stopping.is_set():
            batch = await self.store.outbox_peek(64)
            if not batch:
                self._wake.clear()
                if await self.store.outbox_len() == 0:
                    with suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), 1.0)
                continue
            for alert in batch:
                if self._stopping.is_set():
                    return
                await client.publish(
                    self.alert_topic(alert), alert.model_dump_json(), qos=1, timeout=self.timeout_s
                )
                # PUBACK received: only now may the alert leave the outbox.
                await self.store.outbox_ack(alert.id)
                self.stats.sent += 1
                if self.on_delivered is not None:
                    self.on_delivered(alert, time.time())
