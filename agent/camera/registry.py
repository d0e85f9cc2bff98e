"""Every camera of this process, a pipeline each, and the rules each pipeline owns: the cameras and rules
resources of the API.

Validates a spec before it touches a running camera, persists what it changes, and restores the cameras and
rules an earlier process saved. Per-camera work happens in the pipelines.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from agent.camera.keyframes import KeyframeStore
from agent.camera.options import (
    build_memory,
    check_memory_quota,
    memory_bytes,
    memory_capacity,
    split_options,
)
from agent.camera.pipeline import CameraPipeline, Collaborators
from agent.camera.runtime import CameraRuntime
from agent.errors import CameraExists, InvalidRequest, QuotaExceeded, UnknownCamera, UnknownRule
from agent.models import Backend
from agent.questions import MemoryReader
from agent.records import CameraPatch, CameraSpec, CameraStatus, Event, PromptParams, Rule, RuleSpec
from agent.rules.runner import label_ids
from agent.settings import Settings
from agent.state.memory_blobs import SavedMemory, from_blob
from agent.state.store import SavedRuleState
from compress.memory import TokenMemory
from streamer import InvalidCameraURL, redact, validate_url
from streamer.policy import TargetRefused
from streamer.urls import is_file_url

log = logging.getLogger(__name__)


class CameraLocks:
    """One asyncio lock per camera id, held while a request changes that camera (add, patch, delete, its
    rules): parallel changes of one camera run one after the other, and the later one sees the earlier's
    result (a camera deleted meanwhile is a 404, never a KeyError). A lock lives while someone holds or
    awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # camera id -> lock, holders and waiters

    @asynccontextmanager
    async def hold(self, camera_id: str) -> AsyncIterator[None]:
        """Hold the camera's lock for the body of an `async with`."""
        lock, users = self._locks.get(camera_id, (asyncio.Lock(), 0))
        self._locks[camera_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[camera_id]
            if users == 1:
                del self._locks[camera_id]
            else:
                self._locks[camera_id] = (lock, users - 1)


class CameraRegistry:
    """The cameras by id, and their rules.

    A stored rule whose camera is not running (it could not be restored) waits, listed, until that camera
    runs again.

    Args:
        settings: camera defaults and whether file URLs are allowed.
        backend: the model backend (memory width D and its default tau).
        collaborators: what every pipeline is given.
        only: restore this camera alone, and its rules (a cluster camera actor's registry); None: all.
    """

    def __init__(
        self, settings: Settings, *, backend: Backend, collaborators: Collaborators, only: str | None = None
    ) -> None:
        self._settings, self._backend, self._with = settings, backend, collaborators
        self._only = only
        self._policy = settings.camera.target_policy()
        self._pipelines: dict[str, CameraPipeline] = {}
        self._limits = settings.limits
        self._locks = CameraLocks()
        self._adding: dict[str, int] = {}  # camera id being added -> the memory bytes it reserves
        self._waiting: dict[str, tuple[Rule, SavedRuleState | None]] = {}  # rule id -> rule, state

    # ------------------------------------------------------------------------------------------ cameras
    def ids(self) -> list[str]:
        """Camera ids, sorted."""
        return sorted(self._pipelines)

    def pipelines(self) -> list[CameraPipeline]:
        """Every camera's pipeline."""
        return list(self._pipelines.values())

    def get(self, camera_id: str) -> CameraPipeline:
        """The camera's pipeline; UnknownCamera (404) when there is none."""
        try:
            return self._pipelines[camera_id]
        except KeyError:
            raise UnknownCamera(camera_id) from None

    def readers(self, camera_ids: Sequence[str]) -> list[MemoryReader]:
        """The cameras a question reads, in order."""
        return [self.get(camera_id) for camera_id in camera_ids]

    async def add(self, spec: CameraSpec) -> CameraStatus:
        """Validate and register a camera within the quotas, persist it and start watching it."""
        async with self._locks.hold(spec.id):
            if spec.id in self._pipelines:
                raise CameraExists(spec.id)
            if len(self._pipelines) + len(self._adding) >= self._limits.max_cameras:
                raise QuotaExceeded(
                    "SCISSOR_LIMITS__MAX_CAMERAS", self._limits.max_cameras, "no room for another camera"
                )
            self._check_url(spec.url)  # the URL's form first: the policy reads its host and port
            memory_options, _ = self._split(spec)
            needed = self._memory_bytes(memory_options)
            check_memory_quota(needed, others_bytes=self._memory_bytes_held(), limits=self._limits)
            self._adding[spec.id] = needed  # counted against both quotas while this add awaits
            try:
                await self._check_target(spec.url)
                # Preallocated buffers of up to SCISSOR_LIMITS__MEMORY_BYTES_PER_CAMERA: off the event loop.
                memory = await asyncio.to_thread(self._memory, memory_options)
                self._start(spec, memory=memory)
            finally:
                del self._adding[spec.id]
            await self._with.store.put_camera(spec)
        await self._with.dispatcher.event(
            Event(kind="camera_added", camera=spec.id, message=f"camera {spec.id} added")
        )
        return self.get(spec.id).status()

    async def update(self, camera_id: str, patch: CameraPatch) -> CameraStatus:
        """Restart a camera's ingest with a new URL, fps or options; its memory and time base are kept."""
        async with self._locks.hold(camera_id):
            return await self._update(self.get(camera_id), patch)

    async def _update(self, pipeline: CameraPipeline, patch: CameraPatch) -> CameraStatus:
        camera_id = pipeline.id
        camera, changes = pipeline.runtime, patch.model_dump(exclude_none=True)
        spec = CameraSpec.model_validate(
            {
                "id": camera_id,
                "url": camera.url,
                "fps": camera.fps,
                "options": {**camera.spec_options, **changes.get("options", {})},
                **{k: v for k, v in changes.items() if k != "options"},
            }
        )
        # Validate before touching the running camera: out-of-range memory options are a 422 here, not
        # silently kept (the memory itself stays as it is). The quota is checked on the stored capacity (the
        # next restart builds it) before anything is allocated; the other options on a one-entry memory.
        memory_options, source_options = self._split(spec)
        if "capacity" in memory_options:
            others = self._memory_bytes_held() - self._memory_bytes_of(pipeline)
            check_memory_quota(self._memory_bytes(memory_options), others_bytes=others, limits=self._limits)
        self._memory({**memory_options, "capacity": 1})
        self._check_url(spec.url)
        await self._check_target(spec.url)
        await pipeline.restart(url=spec.url, fps=self._fps(spec), options=source_options)
        await self._with.store.put_camera(spec)
        return pipeline.status()

    async def remove(self, camera_id: str) -> None:
        """Stop a camera, forget it, its rules and its memory."""
        async with self._locks.hold(camera_id):
            await self._remove(self.get(camera_id))

    async def _remove(self, pipeline: CameraPipeline) -> None:
        camera_id = pipeline.id
        await pipeline.stop()
        del self._pipelines[camera_id]
        for rule in pipeline.rules.rules():
            pipeline.rules.remove(rule.id)
            await self._with.store.delete_rule(rule.id)
        await self._with.store.delete_camera(camera_id)
        await self._with.dispatcher.clear_status(camera_id)
        self._with.metrics.forget_camera(camera_id)
        await self._with.dispatcher.event(
            Event(kind="camera_removed", camera=camera_id, message=f"camera {camera_id} removed")
        )

    async def stop(self) -> None:
        """Stop every camera (they stay registered and stored)."""
        await asyncio.gather(*(p.stop() for p in self._pipelines.values()), return_exceptions=True)

    async def save_all(self) -> None:
        """Write every camera's memory to the store."""
        for pipeline in self.pipelines():
            if self._pipelines.get(pipeline.id) is pipeline:  # not removed meanwhile
                await pipeline.save_memory()

    async def restore(self) -> None:
        """Start every stored camera and rule not already running (RAM changes made meanwhile win)."""
        store = self._with.store
        known = {rule.id for rule in self.rules()}
        states = await store.rule_states()
        for rule in await store.rules():
            if self._only is not None and rule.camera_id != self._only:
                continue
            if rule.id not in known and self._fits(rule):
                self._waiting[rule.id] = (rule, states.get(rule.id))
        for spec in await store.cameras():
            if spec.id in self._pipelines or (self._only is not None and spec.id != self._only):
                continue
            blob = await store.memory_blob(spec.id)
            try:
                saved = from_blob(blob, device=self._with.device) if blob else None  # on the encoder's device
                self._start(spec, saved=saved)
            except (InvalidRequest, InvalidCameraURL, ValueError) as exc:
                log.error("camera %s not restored: %s", spec.id, exc)
        for pipeline in self.pipelines():
            self._hand_over_rules(pipeline)

    def _start(
        self, spec: CameraSpec, saved: SavedMemory | None = None, memory: TokenMemory | None = None
    ) -> CameraPipeline:
        """Build and start a camera's pipeline: its memory `saved`, else `memory` (built off the event loop),
        else a new one built here."""
        self._check_url(spec.url)
        memory_options, source_options = self._split(spec)
        defaults = self._settings.camera
        camera = CameraRuntime(
            id=spec.id,
            url=spec.url,
            fps=self._fps(spec),
            options=source_options,
            added_at=saved.added_at if saved else time.time(),
            memory=saved.memory if saved else memory if memory is not None else self._memory(memory_options),
            keyframes=KeyframeStore(
                budget_bytes=defaults.keyframe_budget_bytes,
                max_frames=defaults.keyframes_kept,
                max_side=defaults.keyframe_max_side,
            ),
        )
        pipeline = CameraPipeline(camera, self._with)
        pipeline.rules.engine.limit_alerts(self._limits.alerts_per_camera_per_min, per_s=60.0)
        self._pipelines[spec.id] = pipeline
        self._hand_over_rules(pipeline)
        pipeline.start()
        return pipeline

    def _split(self, spec: CameraSpec) -> tuple[dict[str, Any], dict[str, Any]]:
        """(memory options, source options as `open_source` takes them)."""
        allow_files = self._settings.allow_file_urls
        memory_options, source_options = split_options(dict(spec.options), allow_files=allow_files)
        defaults = self._settings.camera
        ca_file = None if defaults.ca_file is None else str(defaults.ca_file)
        server = {
            "allow_files": allow_files,
            "policy": self._policy,
            "ca_file": ca_file,
            "max_pixels": self._limits.max_source_pixels,
        }
        return memory_options, {**source_options, **{k: v for k, v in server.items() if v is not None}}

    def _memory(self, memory_options: dict[str, Any]) -> TokenMemory:
        return build_memory(
            memory_options,
            defaults=self._settings.camera,
            token_dim=self._backend.token_dim,
            backend_tau=self._backend.default_tau,
            device=self._with.device,
        )

    def _memory_bytes(self, memory_options: dict[str, Any]) -> int:
        """What a memory for these options preallocates (`options.memory_bytes`), before building it."""
        capacity = memory_capacity(memory_options, self._settings.camera)
        return memory_bytes(capacity, self._backend.token_dim)

    def _memory_bytes_of(self, pipeline: CameraPipeline) -> int:
        memory = pipeline.runtime.memory
        return memory_bytes(memory.capacity, memory.dim)

    def _memory_bytes_held(self) -> int:
        """Bytes every running camera's memory and every camera being added take."""
        return sum(self._memory_bytes_of(p) for p in self._pipelines.values()) + sum(self._adding.values())

    def _fps(self, spec: CameraSpec) -> float:
        return spec.fps or self._settings.camera.fps

    def _check_url(self, url: str) -> None:
        try:
            local_file = is_file_url(url)
        except ValueError as exc:  # urlsplit's own ValueError ("Invalid IPv6 URL")
            raise InvalidRequest("url", redact(str(exc))) from None
        if local_file and not self._settings.allow_file_urls:
            # streamer knows no settings: the setting that would allow it is named here, where it is read.
            raise InvalidRequest(
                "url",
                f"{redact(url)}: local files are not allowed as camera URLs; use rtsp://, rtsps:// or "
                "http(s)://, or start the service with SCISSOR_ALLOW_FILE_URLS=true (the demo does)",
            )
        try:
            validate_url(url, allow_files=self._settings.allow_file_urls)
        except ValueError as exc:  # InvalidCameraURL, or urlsplit's own ValueError ("Invalid IPv6 URL")
            raise InvalidRequest("url", redact(str(exc))) from None

    async def _check_target(self, url: str) -> None:
        """The camera-target policy on the URL's host (its DNS lookup off the event loop): a 422 naming
        SCISSOR_CAMERA__ALLOW_NETS for a refused network. Every connection is checked again."""
        if is_file_url(url):
            return
        try:
            await asyncio.to_thread(self._policy.check, url)
        except TargetRefused as exc:
            raise InvalidRequest("url", str(exc)) from None

    # ------------------------------------------------------------------------------------------ rules
    async def add_rule(self, spec: RuleSpec) -> Rule:
        """Validate a rule against its camera, the backend and the quotas, start it, persist it."""
        async with self._locks.hold(spec.camera_id):
            rules = self.get(spec.camera_id).rules
            limit = self._limits.max_rules_per_camera
            if len(rules.rules()) >= limit:
                raise QuotaExceeded(
                    "SCISSOR_LIMITS__MAX_RULES_PER_CAMERA", limit, f"camera {spec.camera_id!r} has no room"
                )
            self._check_prompt_interval(spec)
            rule = rules.add(spec)
            await self._with.store.put_rule(rule)
            return rule

    def _check_prompt_interval(self, spec: RuleSpec) -> None:
        """A prompt rule asks the answerer no more often than SCISSOR_LIMITS__PROMPT_RULE_MIN_INTERVAL_S."""
        floor = self._limits.prompt_rule_min_interval_s
        if not isinstance(spec.params, PromptParams):
            return
        for name in ("every_s", "min_interval_s"):
            if getattr(spec.params, name) < floor:
                raise InvalidRequest(
                    f"params.{name}",
                    f"must be at least {floor:g} s (SCISSOR_LIMITS__PROMPT_RULE_MIN_INTERVAL_S)",
                )

    def rules(self, camera_id: str | None = None) -> list[Rule]:
        """Every rule, or one camera's, oldest first."""
        found = [r for p in self._pipelines.values() for r in p.rules.rules()]
        found += [rule for rule, _ in self._waiting.values()]
        return sorted(
            (r for r in found if camera_id is None or r.camera_id == camera_id), key=lambda r: r.created
        )

    def rule(self, rule_id: str) -> Rule:
        """One rule; UnknownRule (404) when there is none."""
        for rule in self.rules():
            if rule.id == rule_id:
                return rule
        raise UnknownRule(rule_id)

    async def remove_rule(self, rule_id: str) -> None:
        """Stop a rule and forget it, its state and its metric series."""
        camera_id = self.rule(rule_id).camera_id
        async with self._locks.hold(camera_id):
            self.rule(rule_id)  # still there: a parallel delete of it (or of its camera) is a 404
            if self._waiting.pop(rule_id, None) is None:
                self.get(camera_id).rules.remove(rule_id)
            await self._with.store.delete_rule(rule_id)
            self._with.metrics.forget_rule(camera_id, rule_id)

    def _fits(self, rule: Rule) -> bool:
        try:
            label_ids(rule, self._with.labeler, self._with.backend_name)
        except InvalidRequest as exc:
            log.error("rule %r (id %s) not loaded: %s", rule.title, rule.id, exc.detail)
            return False
        return True

    def _hand_over_rules(self, pipeline: CameraPipeline) -> None:
        """Start the waiting rules of a camera that runs now."""
        for rule_id, (rule, state) in list(self._waiting.items()):
            if rule.camera_id == pipeline.id:
                del self._waiting[rule_id]
                pipeline.rules.load(rule, state)
