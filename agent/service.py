"""The composition root: `Service.start()` builds every subsystem in dependency order and `stop()` takes them
down in reverse; it owns every task it starts.

No application logic: cameras and rules are `cameras` (the registry), questions are `questions`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from agent.camera.batcher import EncodeBatcher
from agent.camera.detections import PeopleSetup
from agent.camera.pipeline import Collaborators, encoder_device
from agent.camera.registry import CameraRegistry
from agent.models import Backend, backend_from_settings
from agent.models.people import WorkerDetector, detector_from_settings
from agent.outputs.dispatch import Dispatcher
from agent.outputs.events import EventBus
from agent.outputs.metrics import Metrics
from agent.outputs.scrape import ServiceScrape
from agent.questions import Questions
from agent.settings import Settings
from agent.state.resilient import ResilientStore
from agent.tasks import cancel_and_wait

log = logging.getLogger(__name__)


class Service:
    """The running agent: state, models, event bus and dispatcher, encoder, questions, cameras."""

    store: ResilientStore
    bus: EventBus
    dispatcher: Dispatcher
    batcher: EncodeBatcher
    questions: Questions
    cameras: CameraRegistry

    def __init__(self, settings: Settings, *, backend: Backend | None = None, metrics: Metrics | None = None):
        self.settings, self.backend = settings, backend
        self.metrics = metrics or Metrics()
        self.started = False
        self._tasks: list[asyncio.Task[None]] = []
        self.people: WorkerDetector | None = None

    async def start(self) -> None:
        """Start every subsystem in dependency order, then restore cameras, rules and memory from state."""
        settings = self.settings
        self.store = ResilientStore.from_settings(settings)
        await self.store.start()
        if self.backend is None:
            self.backend = await asyncio.to_thread(backend_from_settings, settings)
        backend = self.backend
        self.metrics.set_backend(backend.name, settings.device, backend.token_dim)
        self.people = detector_from_settings(settings.people)  # its worker process starts on a first frame
        self.bus = EventBus()
        self.dispatcher = Dispatcher.from_settings(
            settings, store=self.store, bus=self.bus, metrics=self.metrics
        )
        await self.dispatcher.start()
        self.batcher = EncodeBatcher(backend.encoder.encode)
        await self.batcher.start()
        self.questions = Questions.from_settings(
            settings, answerer=backend.answerer, store=self.store, metrics=self.metrics
        )
        self.cameras = self._registry(settings, backend)
        self.metrics.set_scrape_source(self._scrape)
        await self.cameras.restore()
        if not self.store.healthy:
            self._tasks.append(asyncio.create_task(self._restore_when_reachable(), name="state-restore"))
        self._tasks.append(asyncio.create_task(self._save_memory_loop(), name="memory-snapshots"))
        self.started = True
        log.info(
            "service started: backend %s, %d camera(s), %d rule(s)",
            backend.name,
            len(self.cameras.ids()),
            len(self.cameras.rules()),
        )

    async def stop(self) -> None:
        """Stop everything `start` started, in reverse order; memory is saved first."""
        if not self.started:
            return
        self.started = False
        await cancel_and_wait(*self._tasks)
        self._tasks.clear()
        await self.cameras.save_all()
        await self.cameras.stop()
        await self.batcher.stop()
        self.metrics.set_scrape_source(None)
        await self.dispatcher.stop()
        await self.store.close()
        self.questions.close()
        if self.people is not None:
            await asyncio.to_thread(self.people.close)  # waits up to seconds for the worker process

    def _registry(self, settings: Settings, backend: Backend) -> CameraRegistry:
        """The camera registry (a cluster camera actor's service restores its one camera only)."""
        return CameraRegistry(settings, backend=backend, collaborators=self._collaborators(backend))

    def _collaborators(self, backend: Backend) -> Collaborators:
        return Collaborators(
            encoder=self.batcher,
            store=self.store,
            dispatcher=self.dispatcher,
            metrics=self.metrics,
            questions=self.questions,
            labeler=backend.labeler,
            backend_name=backend.name,
            frame_size=backend.frame_size,
            device=encoder_device(backend.encoder, self.settings.device),
            people=None
            if self.people is None
            else PeopleSetup(self.people, self.settings.people.fps, self.settings.people.detections_kept),
        )

    async def _restore_when_reachable(self) -> None:
        # Started while Redis was unreachable: once it answers (and is loaded into RAM), restore its contents.
        while not self.store.healthy:
            await asyncio.sleep(self.settings.state.sync_retry_s)
        log.info("state store reachable: restoring cameras and rules saved by an earlier run")
        await self.cameras.restore()

    async def _save_memory_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.state.snapshot_interval_s)
            try:
                await self.cameras.save_all()
            except Exception:  # crash guard: a failed save must not stop the next one
                log.exception("saving memory to the store failed")

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether the model, the state store and the broker (if any) are reachable, and why not."""
        checks = {
            "model": {"ok": self.backend is not None, "backend": getattr(self.backend, "name", None)},
            "state": {"ok": bool(self.store.healthy), "reason": self.store.reason},
            "mqtt": {
                "ok": self.dispatcher.ready,
                "reason": None if self.dispatcher.ready else "broker not connected",
            },
        }
        return all(c["ok"] for c in checks.values()), checks

    def _scrape(self) -> ServiceScrape:
        stats = self.dispatcher.stats
        return ServiceScrape(
            cameras=[p.scrape() for p in self.cameras.pipelines()],
            mqtt_connected=self.dispatcher.connected,
            redis_connected=self.settings.redis_enabled and bool(self.store.healthy),
            state_backend="redis" if self.settings.redis_enabled else "memory",
            mqtt_enabled=self.settings.mqtt_enabled,
            outbox_length=len(self.store.outbox),
            mqtt_sent=stats.sent,
            mqtt_failed=stats.failed,
            mqtt_dropped=stats.dropped,
            mqtt_reconnects=stats.reconnects,
        )
