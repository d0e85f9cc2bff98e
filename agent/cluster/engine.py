"""The cluster service: the API's `Service` surface over camera actors on a Ray cluster.

`ClusterService` holds what the API needs at the ingress (the state store for sessions and the camera list,
the answerer, the metrics) and `ClusterCameras`, the registry's surface over one `CameraActor` per camera.
Reads, changes and rules go to the actor that owns the camera; a question reads every camera it names from
its owner concurrently, then answers at the ingress. A supervisor task reads every actor's report each
second: that keeps the cached status, rules and counters fresh, and starts a camera Ray has just restarted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import torch

from agent.camera.keyframes import Keyframe
from agent.cluster.actors import ActorAgentError, CameraActor, CameraReport, MemoryRead, ReportCursor
from agent.cluster.encoders import on_cuda
from agent.cluster.raylib import connect
from agent.cluster.relay import replay
from agent.errors import AgentError, CameraExists, UnknownCamera, UnknownRule
from agent.models import Backend, load_backend
from agent.models.base import PeopleSeen
from agent.outputs.events import EventBus
from agent.outputs.metrics import Metrics
from agent.outputs.scrape import ServiceScrape
from agent.questions import MemoryReader, Questions
from agent.records import (
    Answer,
    AskBody,
    CameraPatch,
    CameraSpec,
    CameraStatus,
    MemorySaved,
    MemorySummary,
    Rule,
    RuleSpec,
)
from agent.settings import Settings
from agent.state.crypt import UrlCipher, state_dir
from agent.state.resilient import ResilientStore
from agent.tasks import cancel_and_wait
from compress.memory import EntryInfo

log = logging.getLogger(__name__)

SUPERVISE_EVERY_S = 1.0  # seconds between reads of every camera actor's report
ACTOR_PREFIX = "camera:"  # Ray actor name of a camera: camera:<id>, in SCISSOR_RAY__NAMESPACE
T = TypeVar("T")


class CameraUnavailable(AgentError):
    """The camera's actor did not answer in time (its node died and Ray is restarting it elsewhere)."""

    status = 503

    def __init__(self, camera_id: str) -> None:
        super().__init__(
            f"camera {camera_id!r} is moving to another node or restarting; retry shortly",
            camera_id=camera_id,
        )


class ForwardedError(AgentError):
    """An AgentError a camera actor raised: the same HTTP status and JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(str(body.get("detail", "")))
        self.status, self._body = status, dict(body)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._body)


def cluster_settings(settings: Settings) -> Settings:
    """Settings every process of the cluster shares: one URL encryption key (a key generated here, in the
    state directory, when none is set) so any actor opens any camera URL stored in Redis."""
    if settings.redis.encryption_key is not None or not settings.redis_enabled:
        return settings
    from pydantic import SecretStr

    from agent.state.crypt import KEY_FILE, ensure_private_dir, load_or_create_key

    UrlCipher.from_settings(settings)  # validates or creates the key file
    key = load_or_create_key(ensure_private_dir(state_dir(settings)) / KEY_FILE).decode()
    redis = settings.redis.model_copy(update={"encryption_key": SecretStr(key)})
    return settings.model_copy(update={"redis": redis})


def ingress_settings(settings: Settings) -> Settings:
    """The ingress's own state directory (its write-ahead file is locked per process)."""
    state = settings.state.model_copy(update={"dir": state_dir(settings) / "ray" / "_ingress"})
    return settings.model_copy(update={"state": state})


def actor_options(settings: Settings, cluster_gpus: float) -> dict[str, Any]:
    """Ray options of a camera actor: restarted forever, spread over nodes, its declared resources (GPU
    fractions only when the backend runs on CUDA: `cuda*`, or `auto` on a cluster with GPUs)."""
    options: dict[str, Any] = {
        "namespace": settings.ray.namespace,
        "lifetime": "detached",
        "max_restarts": -1,
        "max_task_retries": 0,
        "num_cpus": settings.ray.camera_cpus,
        "scheduling_strategy": "SPREAD",
    }
    if on_cuda(settings, cluster_gpus) and settings.ray.camera_gpus > 0:
        options["num_gpus"] = settings.ray.camera_gpus
    return options


class FetchedCamera:
    """A `MemoryReader` over what one actor returned for a question (all its entries since the request's
    range start: `gather` clips them to the exact range)."""

    def __init__(self, read: MemoryRead) -> None:
        self._read = read

    @property
    def id(self) -> str:
        return self._read.camera

    @property
    def added_at(self) -> float:
        return self._read.added_at

    @property
    def token_dim(self) -> int:
        return self._read.token_dim

    def stream_seconds(self) -> float:
        return time.time() - self._read.added_at

    def read(self, since: float | None, until: float | None) -> tuple[torch.Tensor, list[EntryInfo]]:
        return self._read.tokens, self._read.entries

    def keyframe_time(self, frame: int) -> float | None:
        return self._read.keyframes.get(frame)

    def people(self, since: float | None, until: float | None) -> PeopleSeen | None:
        return None  # cluster mode does not run the person detector yet (docs/limits)


class _Fetched:
    """A `CameraLookup` over fetched cameras."""

    def __init__(self, reads: Sequence[MemoryRead]) -> None:
        self._by_id = {r.camera: FetchedCamera(r) for r in reads}

    def readers(self, camera_ids: Sequence[str]) -> list[MemoryReader]:
        try:
            return [self._by_id[c] for c in camera_ids]
        except KeyError as exc:
            raise UnknownCamera(str(exc.args[0])) from None


class RemoteCamera:
    """One camera as the API routes see it: the supervisor's latest report, calls to the owning actor."""

    def __init__(self, camera_id: str, handle: Any, timeout_s: float) -> None:
        self.id, self.handle, self._timeout_s = camera_id, handle, timeout_s
        self.report: CameraReport | None = None
        self.reported_at = 0.0
        self.misses = 0  # reports in a row that failed
        self.seen = ReportCursor()  # what the ingress has of the actor's records and metric events

    def status(self) -> CameraStatus:
        """The camera's status as last reported (at most about a second old), `node` included; while its actor
        (re)starts: `starting` with the reason."""
        if self.report is not None and self.misses == 0:
            return self.report.status
        url = self.report.status.url if self.report else ""
        return CameraStatus(
            id=self.id, url=url, state="starting", reason="camera actor (re)starting", node=None
        )

    def memory_summary(self, *, since_s: float | None, limit: int) -> MemorySummary:
        result: MemorySummary = self._get(self.handle.memory_summary.remote(since_s, limit))
        return result

    def keyframe(self, *, frame: int | None = None, t: float | None = None) -> Keyframe:
        result: Keyframe = self._get(self.handle.keyframe.remote(frame, t))
        return result

    async def save_memory(self) -> MemorySaved:
        result: MemorySaved = await call(self.id, self.handle.save_memory.remote(), self._timeout_s)
        return result

    def _get(self, ref: Any) -> Any:
        # The routes read these synchronously: a blocking wait, bounded, on the ingress's event loop.
        import ray

        try:
            return ray.get(ref, timeout=self._timeout_s)
        except Exception as exc:
            raise _agent_error(self.id, exc) from None


def _agent_error(camera_id: str, exc: BaseException) -> BaseException:
    """The AgentError an actor raised (Ray wraps it), or CameraUnavailable for a dead or late actor."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, ActorAgentError):
        return ForwardedError(cause.status, cause.body)
    if isinstance(exc, AgentError):
        return exc
    import ray.exceptions

    if isinstance(exc, ray.exceptions.RayActorError | ray.exceptions.GetTimeoutError | TimeoutError):
        return CameraUnavailable(camera_id)
    return exc


async def call(camera_id: str, ref: Awaitable[T], timeout_s: float) -> T:
    """Await an actor call within `timeout_s`; errors as the API maps them."""
    try:
        return await asyncio.wait_for(ref, timeout_s)
    except Exception as exc:
        raise _agent_error(camera_id, exc) from None


class ClusterCameras:
    """The camera registry's surface over one actor per camera."""

    def __init__(
        self, settings: Settings, store: ResilientStore, ray: Any, *, bus: EventBus, metrics: Metrics
    ) -> None:
        self._settings, self._store, self._ray = settings, store, ray
        self._bus, self._metrics = bus, metrics
        self._timeout_s = settings.ray.failover_timeout_s
        self._actor_class = ray.remote(CameraActor)
        self._cameras: dict[str, RemoteCamera] = {}
        gpus = float(ray.cluster_resources().get("GPU", 0.0))
        self._options = actor_options(settings, gpus)

    # ------------------------------------------------------------------------------------------ cameras
    def ids(self) -> list[str]:
        return sorted(self._cameras)

    def get(self, camera_id: str) -> RemoteCamera:
        try:
            return self._cameras[camera_id]
        except KeyError:
            raise UnknownCamera(camera_id) from None

    def remotes(self) -> list[RemoteCamera]:
        return list(self._cameras.values())

    def _actor(self, camera_id: str, spec: CameraSpec | None) -> Any:
        options = {**self._options, "name": ACTOR_PREFIX + camera_id, "get_if_exists": True}
        return self._actor_class.options(**options).remote(camera_id, self._settings, spec)

    async def add(self, spec: CameraSpec) -> CameraStatus:
        """Start the camera's actor, which validates, persists and starts the camera; its status."""
        if spec.id in self._cameras:
            raise CameraExists(spec.id)
        remote = RemoteCamera(spec.id, self._actor(spec.id, spec), self._timeout_s)
        try:
            # The first start loads the backend in the actor's process: allow it more than a call.
            await self._read_report(remote, 10 * self._timeout_s)
        except BaseException:
            self._ray.kill(remote.handle, no_restart=True)
            raise
        self._cameras[spec.id] = remote
        return remote.status()

    async def update(self, camera_id: str, patch: CameraPatch) -> CameraStatus:
        remote = self.get(camera_id)
        status: CameraStatus = await call(camera_id, remote.handle.update.remote(patch), self._timeout_s)
        return status

    async def remove(self, camera_id: str) -> None:
        remote = self.get(camera_id)
        await call(camera_id, remote.handle.remove.remote(), self._timeout_s)
        self._ray.kill(remote.handle, no_restart=True)
        del self._cameras[camera_id]
        self._metrics.forget_camera(camera_id)

    async def restore(self) -> None:
        """Find (or start) the actor of every camera stored in Redis: an ingress that restarts finds the
        cameras that kept running."""
        for spec in await self._store.cameras():
            if spec.id not in self._cameras:
                self._cameras[spec.id] = RemoteCamera(spec.id, self._actor(spec.id, None), self._timeout_s)

    async def refresh(self) -> None:
        """Read every actor's report (concurrently, each within the call timeout)."""
        remotes = self.remotes()
        results = await asyncio.gather(
            *(self._read_report(r, self._timeout_s) for r in remotes), return_exceptions=True
        )
        for remote, result in zip(remotes, results, strict=True):
            if isinstance(result, BaseException):
                remote.misses += 1

    async def _read_report(self, remote: RemoteCamera, timeout_s: float) -> None:
        """Read a camera's report; publish its records on the ingress's bus, replay its metric events."""
        report: CameraReport = await call(remote.id, remote.handle.report.remote(remote.seen), timeout_s)
        remote.report, remote.reported_at, remote.misses = report, time.monotonic(), 0
        remote.seen = report.cursor
        for record in report.records:
            self._bus.publish(record)
        replay(self._metrics, report.metric_calls)

    async def fetch(self, camera_ids: Sequence[str], body: AskBody) -> list[MemoryRead]:
        """Each named camera's memory from its owner, concurrently."""
        remotes = [self.get(c) for c in camera_ids]
        return list(
            await asyncio.gather(
                *(
                    call(r.id, r.handle.read.remote(body.since_s, body.from_s), self._timeout_s)
                    for r in remotes
                )
            )
        )

    # ------------------------------------------------------------------------------------------ rules
    async def add_rule(self, spec: RuleSpec) -> Rule:
        remote = self.get(spec.camera_id)
        rule: Rule = await call(spec.camera_id, remote.handle.add_rule.remote(spec), self._timeout_s)
        await self._refresh_one(remote)
        return rule

    def rules(self, camera_id: str | None = None) -> list[Rule]:
        found = [r for c in self.remotes() if c.report is not None for r in c.report.rules]
        return sorted(
            (r for r in found if camera_id is None or r.camera_id == camera_id), key=lambda r: r.created
        )

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules():
            if rule.id == rule_id:
                return rule
        raise UnknownRule(rule_id)

    async def remove_rule(self, rule_id: str) -> None:
        rule = self.rule(rule_id)
        remote = self.get(rule.camera_id)
        await call(rule.camera_id, remote.handle.remove_rule.remote(rule_id), self._timeout_s)
        await self._refresh_one(remote)

    async def _refresh_one(self, remote: RemoteCamera) -> None:
        await self._read_report(remote, self._timeout_s)


class ClusterQuestions:
    """`Questions.ask` over cameras read from their owners first."""

    def __init__(self, questions: Questions, cameras: ClusterCameras) -> None:
        self.inner, self._cameras = questions, cameras

    async def ask(self, body: AskBody, camera_ids: list[str], cameras: Any) -> Answer:
        reads = await self._cameras.fetch(camera_ids, body)
        return await self.inner.ask(body, camera_ids, _Fetched(reads))

    def close(self) -> None:
        self.inner.close()


class ClusterService:
    """What the API routes use of a `Service`, in cluster mode: settings, store, bus, metrics, cameras,
    questions, readiness. Cameras run in actors; this runs where the API does (the Serve ingress)."""

    store: ResilientStore
    cameras: ClusterCameras
    questions: ClusterQuestions

    def __init__(self, settings: Settings, *, backend: Backend | None = None, metrics: Metrics | None = None):
        self.settings = cluster_settings(settings)
        self.backend = backend
        self.metrics = metrics or Metrics()
        self.bus = EventBus()  # every actor's records, as their reports bring them (within about a second)
        self.started = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Join Ray, open the store, load the answerer, find every stored camera's actor, supervise them."""
        settings = self.settings
        ray = await asyncio.to_thread(connect, settings)
        self.ray = ray
        self.store = ResilientStore.from_settings(ingress_settings(settings))
        await self.store.start()
        if self.backend is None:
            self.backend = await asyncio.to_thread(load_backend, settings.backend, device=settings.device)
        backend = self.backend
        self.metrics.set_backend(backend.name, settings.device, backend.token_dim)
        questions = Questions.from_settings(
            settings, answerer=backend.answerer, store=self.store, metrics=self.metrics
        )
        self.cameras = ClusterCameras(settings, self.store, ray, bus=self.bus, metrics=self.metrics)
        self.questions = ClusterQuestions(questions, self.cameras)
        self.metrics.set_scrape_source(self._scrape)
        await self.cameras.restore()
        self._tasks.append(asyncio.create_task(self._supervise(), name="camera-actors"))
        self.started = True
        log.info("cluster service started: %d camera(s) on Ray", len(self.cameras.ids()))

    async def stop(self) -> None:
        """Stop supervising and close the store; the camera actors keep running in the cluster."""
        if not self.started:
            return
        self.started = False
        await cancel_and_wait(*self._tasks)  # the supervisor's calls are wait_for's: a cancel can be lost
        self._tasks.clear()
        self.metrics.set_scrape_source(None)
        await self.store.close()
        self.questions.close()

    async def _supervise(self) -> None:
        while True:
            try:
                await self.cameras.refresh()
            except Exception:  # crash guard: one failed round must not stop the next
                log.exception("reading the camera actors failed")
            await asyncio.sleep(SUPERVISE_EVERY_S)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when the model and the store are, every camera's actor answered its last report, and each
        reaches the broker (when one is configured)."""
        remotes = self.cameras.remotes()
        late = [r.id for r in remotes if r.misses > 0 or r.report is None]
        offline = [
            r.id for r in remotes if self.settings.mqtt_enabled and r.report and not r.report.mqtt_connected
        ]
        checks = {
            "model": {"ok": self.backend is not None, "backend": getattr(self.backend, "name", None)},
            "state": {"ok": bool(self.store.healthy), "reason": self.store.reason},
            "cameras": {"ok": not late, "reason": f"not answering: {', '.join(late)}" if late else None},
            "mqtt": {
                "ok": not offline,
                "reason": f"broker not connected from: {', '.join(offline)}" if offline else None,
            },
        }
        return all(c["ok"] for c in checks.values()), checks

    def _scrape(self) -> ServiceScrape:
        reports = [r.report for r in self.cameras.remotes() if r.report is not None]
        mqtt_enabled = self.settings.mqtt_enabled
        return ServiceScrape(
            cameras=[r.scrape for r in reports],
            mqtt_connected=mqtt_enabled and bool(reports) and all(r.mqtt_connected for r in reports),
            redis_connected=bool(self.store.healthy),
            state_backend="redis" if self.settings.redis_enabled else "memory",
            mqtt_enabled=mqtt_enabled,
            mqtt_sent=sum(r.mqtt.sent for r in reports),
            mqtt_failed=sum(r.mqtt.failed for r in reports),
            mqtt_dropped=sum(r.mqtt.dropped for r in reports),
            mqtt_reconnects=sum(r.mqtt.reconnects for r in reports),
        )
