"""A real MQTT subscriber for tests and benchmarks: QoS 1 with a persistent session, so the broker queues what
arrives while it is away; it reconnects until cancelled and keeps every JSON payload in order."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiomqtt


class PersistentSubscriber:
    """Subscribes `topic` on host:port as `identifier` (clean_session off); run() until cancelled."""

    def __init__(self, host: str, port: int, topic: str, identifier: str) -> None:
        self.host, self.port, self.topic, self.identifier = host, port, topic, identifier
        self.payloads: list[dict[str, Any]] = []
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    self.host, self.port, identifier=self.identifier, clean_session=False
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        self.payloads.append(json.loads(message.payload))
            except aiomqtt.MqttError:
                self.subscribed.clear()
                await asyncio.sleep(0.1)

    def ids(self) -> list[str]:
        """The alert ids received, in order (duplicates kept)."""
        return [str(p["id"]) for p in self.payloads]
