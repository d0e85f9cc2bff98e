"""The one fan-out of records: every alert, camera status and event goes to the event bus (`/events`), to MQTT
when a broker is configured, and its outcome to the metrics.

Knows no camera internals and no rule logic: a rule runner registers as the owner of its camera's alerts and
hears back when one is delivered or dropped.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from agent.outputs.events import EventBus
from agent.outputs.metrics import Metrics
from agent.outputs.mqtt import MqttPublisher, MqttStats
from agent.records import Alert, CameraStatus, Event
from agent.settings import Settings
from agent.state.store import Store

log = logging.getLogger(__name__)

PENDING_MAX = 100_000  # alerts remembered until delivered or dropped: bounded like the outbox they mirror


class AlertOwner(Protocol):
    """Who raised a camera's alerts (its rule runner): told of each one's fate."""

    def delivered(self, alert: Alert, t: float) -> None:
        """The alert reached the broker (PUBACK) at wall time `t`, or the bus when there is no broker."""

    def dropped(self, rule_id: str, alert_id: str) -> None:
        """The alert left the full outbox undelivered."""


class Dispatcher:
    """Records out: `event`, `status` and `alert` fan out to the bus, MQTT and the metrics, in that order.

    Without a broker (`mqtt` None) an alert counts as delivered once it is on the bus, and `stats.sent` counts
    it, as MQTT's would.

    Args:
        bus: the in-process event bus `/events` reads.
        metrics: alert outcomes (queued, sent, dropped) are counted here.
        mqtt: the broker connection, or None.
    """

    def __init__(self, *, bus: EventBus, metrics: Metrics, mqtt: MqttPublisher | None = None) -> None:
        self.bus, self.metrics, self.mqtt = bus, metrics, mqtt
        self.stats = mqtt.stats if mqtt is not None else MqttStats()
        self._owners: dict[str, AlertOwner] = {}
        self._pending: dict[
            str, tuple[str, str]
        ] = {}  # alert id -> (camera, rule) until delivered or dropped

    @classmethod
    def from_settings(
        cls, settings: Settings, *, store: Store, bus: EventBus, metrics: Metrics
    ) -> Dispatcher:
        """The dispatcher `settings.mqtt_url` asks for; MQTT reports deliveries and drops back to it."""
        dispatcher = cls(bus=bus, metrics=metrics)
        if settings.mqtt_enabled:
            dispatcher.mqtt = MqttPublisher.from_settings(
                settings, store=store, on_delivered=dispatcher.delivered, on_dropped=dispatcher.dropped
            )
            dispatcher.stats = dispatcher.mqtt.stats
        return dispatcher

    async def start(self) -> None:
        """Start the broker connection (it keeps reconnecting by itself); returns at once."""
        if self.mqtt is not None:
            await self.mqtt.start()

    async def stop(self) -> None:
        """Publish `offline` and disconnect."""
        if self.mqtt is not None:
            await self.mqtt.stop()

    @property
    def ready(self) -> bool:
        """True when records can leave: a connected broker, or none configured."""
        return self.mqtt is None or self.mqtt.connected

    @property
    def connected(self) -> bool:
        """True while a broker connection is up (False without a broker)."""
        return self.mqtt is not None and self.mqtt.connected

    # ------------------------------------------------------------------------------------------ records out
    async def event(self, event: Event) -> None:
        """A camera or service event: `/events`, then `<root>/<camera>/events` (QoS 0)."""
        self.bus.publish(event)
        if self.mqtt is not None:
            await self.mqtt.publish_event(event)

    async def status(self, status: CameraStatus) -> None:
        """A camera's status: `/events`, then retained `<root>/<camera>/status`."""
        self.bus.publish(status)
        if self.mqtt is not None:
            await self.mqtt.set_status(status)

    async def clear_status(self, camera_id: str) -> None:
        """A removed camera: its retained status is cleared on the broker."""
        if self.mqtt is not None:
            await self.mqtt.clear_status(camera_id)

    async def alert(self, alert: Alert) -> None:
        """An alert: counted queued, into the outbox (QoS 1, in order) when there is a broker, `/events`."""
        if len(self._pending) < PENDING_MAX:
            self._pending[alert.id] = (alert.camera, alert.rule)
        self.metrics.alert(alert.camera, alert.rule, "queued")
        if self.mqtt is not None:
            await self.mqtt.enqueue_alert(alert)
            self.bus.publish(alert)
            return
        log.info(
            "alert %s camera=%s rule=%r (id %s) kind=%s score=%.3f",
            alert.id,
            alert.camera,
            alert.rule_title or alert.rule,  # an alert restored from before titles has only the id
            alert.rule,
            alert.kind,
            alert.score,
        )
        self.bus.publish(alert)
        self.stats.sent += 1
        self.delivered(alert, time.time())

    # ------------------------------------------------------------------------------------------ outcomes
    def own(self, camera_id: str, owner: AlertOwner) -> None:
        """Tell `owner` the fate of the camera's alerts from now on."""
        self._owners[camera_id] = owner

    def disown(self, camera_id: str) -> None:
        """Stop telling anyone of the camera's alerts."""
        self._owners.pop(camera_id, None)

    def watch_rule(self, camera_id: str, rule_id: str) -> None:
        """Create a rule's alert series at zero, so dashboards show 0 before its first alert."""
        self.metrics.watch_rule(camera_id, rule_id)

    def delivered(self, alert: Alert, t: float) -> None:
        """An alert reached its destination at wall time `t`: counted sent, its owner told (cooldowns)."""
        self._pending.pop(alert.id, None)
        owner = self._owners.get(alert.camera)
        if owner is not None:
            owner.delivered(alert, t)
        self.metrics.alert(alert.camera, alert.rule, "sent")

    def dropped(self, alert_id: str) -> None:
        """The outbox overflowed and lost an alert: counted dropped, its owner told."""
        found = self._pending.pop(alert_id, None)
        if found is None:
            return
        camera_id, rule_id = found
        owner = self._owners.get(camera_id)
        if owner is not None:
            owner.dropped(rule_id, alert_id)
        self.metrics.alert(camera_id, rule_id, "dropped")
