"""One camera as a Ray actor: `CameraActor` runs a `CameraService` (the service's composition, restoring
that one camera, encoding on its node's encoder) and answers what the API asks of the camera; its report
carries the records and metric events since the ingress last read them (`relay.py`).

State lives in Redis, so when Ray restarts the actor on another node (`max_restarts=-1`) it restores the
camera's memory from the latest memory blob, its rules and rule state, and the alert outbox; nothing is
re-added. The actor starts its camera on the first call after each (re)start: the cluster service's
supervisor calls every actor each second.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import torch
from pydantic import BaseModel

from agent.camera.keyframes import Keyframe
from agent.camera.pipeline import CameraPipeline, Collaborators
from agent.camera.registry import CameraRegistry
from agent.cluster.encoders import RemoteEncoder
from agent.cluster.relay import MetricCall, RecordingMetrics, RecordTap
from agent.errors import AgentError, UnknownCamera
from agent.models import Backend
from agent.outputs.mqtt import MqttStats
from agent.outputs.scrape import CameraScrape
from agent.records import CameraPatch, CameraSpec, CameraStatus, MemorySaved, MemorySummary, Rule, RuleSpec
from agent.service import Service
from agent.settings import Settings
from agent.state.crypt import state_dir
from compress.memory import EntryInfo

P = ParamSpec("P")
R = TypeVar("R")


class ActorAgentError(Exception):
    """An `AgentError` raised in a camera actor, as Ray can carry it back: its HTTP status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status, self.body = status, body


def carried(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """An actor method whose AgentError reaches the API as the same status and body (an AgentError's own
    constructor arguments do not survive Ray's exception serialization)."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except AgentError as exc:
            raise ActorAgentError(exc.status, exc.to_dict()) from None

    return wrapper


class CameraService(Service):
    """The service's composition (store, backend, dispatcher, questions, registry) for one camera, its
    frames encoded by its node's encoder (`SCISSOR_RAY__ENCODER=node`) or its own."""

    metrics: RecordingMetrics

    def __init__(self, settings: Settings, camera_id: str) -> None:
        super().__init__(settings, metrics=RecordingMetrics())
        self.camera_id = camera_id

    def _registry(self, settings: Settings, backend: Backend) -> CameraRegistry:
        return CameraRegistry(
            settings, backend=backend, collaborators=self._collaborators(backend), only=self.camera_id
        )

    def _collaborators(self, backend: Backend) -> Collaborators:
        collaborators = super()._collaborators(backend)
        if self.settings.ray.encoder != "node":
            return collaborators
        wait_s = 3 * self.settings.ray.failover_timeout_s  # a node's encoder restarting after a crash
        encoder = RemoteEncoder(self.settings, collaborators.device, wait_s)
        return dataclasses.replace(collaborators, encoder=encoder)


@dataclass(frozen=True)
class MemoryRead:
    """What a question needs of one camera, read in one call: its time base, its memory tokens and entries
    since a stream second, and which of their frames still have a keyframe."""

    camera: str
    added_at: float
    token_dim: int
    tokens: torch.Tensor
    entries: list[EntryInfo]
    keyframes: dict[int, float]  # kept evidence frame -> its stream second


@dataclass(frozen=True)
class ReportCursor:
    """What the ingress has of an actor's relays: the actor start they count from, and the last record and
    metric event it received."""

    started_at: float = 0.0
    records: int = 0
    metrics: int = 0


@dataclass(frozen=True)
class CameraReport:
    """What the supervisor reads of a camera each second: its state, and what happened since `cursor`."""

    status: CameraStatus
    rules: list[Rule]
    scrape: CameraScrape
    node: str
    started_at: float
    mqtt_connected: bool
    mqtt: MqttStats
    records: list[BaseModel]
    metric_calls: list[MetricCall]
    cursor: ReportCursor


def actor_settings(settings: Settings, camera_id: str) -> Settings:
    """The camera actor's settings: its own state directory (the write-ahead file is locked per process) and
    MQTT client id (a broker keeps one session per id)."""
    base = state_dir(settings)
    mqtt = settings.mqtt
    client_id = f"{mqtt.client_id}-{camera_id}" if mqtt.client_id else None
    return settings.model_copy(
        update={
            "state": settings.state.model_copy(update={"dir": base / "ray" / camera_id}),
            "mqtt": mqtt.model_copy(update={"client_id": client_id}),
        }
    )


class CameraActor:
    """One camera's pipeline in a Ray actor (decorated with `ray.remote` by the engine, not here).

    Args:
        camera_id: the camera it owns.
        settings: the service's settings (secrets included: they travel in Ray's task specification).
        spec: the camera to add on the first start; None to restore it from the store.
    """

    def __init__(self, camera_id: str, settings: Settings, spec: CameraSpec | None) -> None:
        import ray

        self._id, self._spec = camera_id, spec
        self._settings = actor_settings(settings, camera_id)
        self._service: CameraService | None = None
        self._tap: RecordTap | None = None
        self._lock = asyncio.Lock()
        self._node = str(ray.get_runtime_context().get_node_id())
        self._started_at = time.time()
        torch.set_num_threads(max(1, int(settings.ray.camera_cpus)))  # its declared CPUs, not every core

    async def _ready(self) -> CameraPipeline:
        async with self._lock:
            if self._service is None:
                service = CameraService(self._settings, self._id)
                await service.start()
                try:
                    if self._id not in service.cameras.ids():
                        if self._spec is None:
                            raise UnknownCamera(self._id)
                        await service.cameras.add(self._spec)
                except BaseException:
                    await service.stop()
                    raise
                self._service = service
                if self._tap is None:
                    self._tap = RecordTap(service.bus)
                else:  # started again after a stop: what the ingress has not read stays
                    self._tap.follow(service.bus)
            return self._service.cameras.get(self._id)

    @property
    def _cameras(self) -> CameraRegistry:
        assert self._service is not None
        return self._service.cameras

    # ------------------------------------------------------------------------------------------ reads
    @carried
    async def report(self, seen: ReportCursor) -> CameraReport:
        """The camera's status (with its node), rules and counters, and the records and metric events after
        `seen` (all of them when `seen` counts from another start of this actor); starts the camera after a
        restart."""
        pipeline = await self._ready()
        assert self._service is not None and self._tap is not None
        if seen.started_at != self._started_at:
            seen = ReportCursor(self._started_at)
        records = self._tap.since(seen.records)
        calls = self._service.metrics.calls.since(seen.metrics)
        dispatcher = self._service.dispatcher
        return CameraReport(
            status=pipeline.status().model_copy(update={"node": self._node}),
            rules=self._cameras.rules(self._id),
            scrape=pipeline.scrape(),
            node=self._node,
            started_at=self._started_at,
            mqtt_connected=dispatcher.connected,
            mqtt=dataclasses.replace(dispatcher.stats),
            records=records.items,
            metric_calls=calls.items,
            cursor=ReportCursor(self._started_at, records.cursor, calls.cursor),
        )

    @carried
    async def read(self, since_s: float | None, from_s: float | None) -> MemoryRead:
        """The memory a question's range may need (the last `since_s` seconds, or from stream second
        `from_s`, else all; a second of slack: the asker clips to the exact range)."""
        pipeline = await self._ready()
        since = from_s if since_s is None else max(0.0, pipeline.stream_seconds() - since_s - 1.0)
        tokens, entries = await asyncio.to_thread(pipeline.read, since, None)
        frames = {f for e in entries for f in (*e.interval_frames, *e.evidence) if f >= 0}
        kept = {f: t for f in frames if (t := pipeline.keyframe_time(f)) is not None}
        return MemoryRead(self._id, pipeline.added_at, pipeline.token_dim, tokens, entries, kept)

    @carried
    async def memory_summary(self, since_s: float | None, limit: int) -> MemorySummary:
        pipeline = await self._ready()
        return await asyncio.to_thread(lambda: pipeline.memory_summary(since_s=since_s, limit=limit))

    @carried
    async def keyframe(self, frame: int | None, t: float | None) -> Keyframe:
        return (await self._ready()).keyframe(frame=frame, t=t)

    # ------------------------------------------------------------------------------------------ changes
    @carried
    async def save_memory(self) -> MemorySaved:
        return await (await self._ready()).save_memory()

    @carried
    async def update(self, patch: CameraPatch) -> CameraStatus:
        await self._ready()
        status = await self._cameras.update(self._id, patch)
        return status.model_copy(update={"node": self._node})

    @carried
    async def add_rule(self, spec: RuleSpec) -> Rule:
        await self._ready()
        return await self._cameras.add_rule(spec)

    @carried
    async def remove_rule(self, rule_id: str) -> None:
        await self._ready()
        await self._cameras.remove_rule(rule_id)

    @carried
    async def remove(self) -> None:
        """Forget the camera (its rules, memory and stored spec go); the engine kills the actor next."""
        await self._ready()
        await self._cameras.remove(self._id)
        await self.stop()

    @carried
    async def stop(self) -> None:
        """Save the memory and stop the service (the camera stays stored)."""
        async with self._lock:
            if self._service is not None:
                service, self._service = self._service, None
                await service.stop()

    @carried
    async def node(self) -> str:
        """The Ray node id this actor runs on (no camera start)."""
        return self._node
