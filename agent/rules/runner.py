"""Runs each camera's rules on every memory update: observations in, alerts out to MQTT and /events.

No rule logic.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any, Protocol

import torch

from agent import rules as rule_logic
from agent.answer import TimeRange
from agent.errors import InvalidRequest
from agent.models import Backend
from agent.records import Alert, Event, Evidence, LabelParams, PromptParams, Rule, RuleSpec
from agent.watcher import CameraRuntime
from compress.memory import MemoryUpdate
from streamer import Frame


class AlertHost(Protocol):
    """What the router needs from the service that owns it (the Service satisfies it)."""

    metrics: Any
    publisher: Any
    store: Any

    async def answer(
        self,
        cameras: list[CameraRuntime],
        question: str,
        ranges: list[TimeRange],
        *,
        max_memory_tokens: int | None = None,
        max_new_tokens: int = 64,
    ) -> Any: ...


log = logging.getLogger(__name__)

YES_WORDS = ("yes", "true", "yeah", "yep", "correct")
NOVELTY_EVENT_AT = 0.5  # novelty at or above which a "novelty" event goes to /events and MQTT


class AlertRouter:
    """Feeds the rule engine observations from memory updates (and prompt answers) and sends its alerts."""

    def __init__(self, service: AlertHost, backend: Backend):
        self._service = service
        self._backend = backend
        self.engine = rule_logic.RuleEngine()
        self._ids: dict[str, set[int]] = {}  # label (lower-case) -> ImageNet class ids
        self._prompt_tasks: dict[str, asyncio.Task[None]] = {}
        self._pending: dict[
            str, tuple[str, str]
        ] = {}  # alert id -> (camera, rule) until delivered or dropped

    @property
    def rules(self) -> dict[str, Rule]:
        return {r.id: r for r in self.engine.rules()}

    # --------------------------------------------------------------------------- rule set
    def _check(self, rule: RuleSpec) -> None:
        if isinstance(rule.params, LabelParams):
            if self._backend.labeler is None:
                raise InvalidRequest(
                    "kind", f"backend {self._backend.name} cannot label frames; use novelty or prompt"
                )
            try:
                self._ids[rule.params.label.lower()] = self._backend.labeler.resolve(rule.params.label)
            except ValueError as exc:
                raise InvalidRequest("params.label", str(exc)) from None

    def load(self, rule: Rule) -> None:
        """Register a stored rule (at start-up); one that no longer fits the backend is logged and skipped."""
        try:
            self._check(rule)
        except InvalidRequest as exc:
            log.error("rule %s not loaded: %s", rule.id, exc.detail)
            return
        self.engine.set_rule(rule)
        self._service.metrics.watch_rule(rule.camera_id, rule.id)

    def load_states(self, states: dict[str, Any]) -> None:
        """Restore cooldowns and counters persisted by a previous process."""
        self.engine.load_states(states.items())

    def add(self, spec: RuleSpec) -> Rule:
        """Validate a new rule against the backend and register it."""
        self._check(spec)
        rule = Rule.from_spec(spec)
        self.load(rule)
        return rule

    def remove(self, rule_id: str) -> None:
        self.engine.remove_rule(rule_id)
        task = self._prompt_tasks.pop(rule_id, None)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        tasks = list(self._prompt_tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def delivered(self, alert: Alert, t: float) -> None:
        """The publisher reports a broker acknowledgement: the rule's cooldown restarts from now."""
        self._pending.pop(alert.id, None)
        self.engine.mark_delivered(alert.rule, alert.id, t)
        self._service.metrics.alert(alert.camera, alert.rule, "sent")

    def dropped(self, alert_id: str) -> None:
        """The outbox overflowed and lost an alert: it no longer holds its rule's cooldown."""
        owner = self._pending.pop(alert_id, None)
        if owner is not None:
            self.engine.mark_dropped(owner[1], alert_id)
            self._service.metrics.alert(owner[0], owner[1], "dropped")

    # --------------------------------------------------------------------------- observations
    def top_labels(self, tokens: torch.Tensor, k: int) -> list[list[tuple[str, float]]]:
        """Top-k labels of memory tokens, or [] when the backend cannot label."""
        if self._backend.labeler is None or tokens.shape[0] == 0:
            return []
        return self._backend.labeler.label(tokens, k)

    def _label_scores(self, camera: CameraRuntime, update: MemoryUpdate) -> dict[str, float]:
        wanted = self.engine.labels_wanted(camera.id)
        if not wanted or self._backend.labeler is None:
            return {}
        # The entries this frame touched, i.e. its components: an object covering a few tokens still scores.
        with camera.memory_lock:
            tokens, entries = camera.memory.tokens(update.t, None)
        if not entries:
            return {label: 0.0 for label in wanted}
        return {
            label: float(self._backend.labeler.group_probs(tokens, self._ids[label]).max())
            for label in wanted
        }

    def _evidence(
        self, camera: CameraRuntime, t: float, frame: int | None
    ) -> tuple[list[Evidence], str | None]:
        """The alert's evidence: the moment it fired and the keyframe of that frame, pinned so the alert's
        link stays valid after the memory stops naming the frame (no link when the frame was not kept)."""
        if frame is None:
            latest = camera.keyframes.latest()
            frame = None if latest is None else latest.frame
        kept = frame is not None and camera.keyframes.pin(frame)
        url = f"/cameras/{camera.id}/snapshot?frame={frame}" if kept else None
        span = Evidence.model_validate(
            {"camera": camera.id, "from": max(0.0, t - 2.0), "to": t, "snapshot_url": url}
        )
        return [span], url

    async def on_update(self, camera: CameraRuntime, frame: Frame, update: MemoryUpdate) -> None:
        """Evaluate the camera's rules for one memory update and send what fires."""
        if update.novelty >= NOVELTY_EVENT_AT:
            await self._service.publisher.publish_event(
                Event(
                    kind="novelty",
                    camera=camera.id,
                    message="scene changed",
                    data={"novelty": round(update.novelty, 3), "t": round(update.t, 2)},
                )
            )
        if not self.engine.rules(camera.id):
            return
        evidence, url = self._evidence(camera, update.t, frame.index)
        obs = rule_logic.Observation(
            camera_id=camera.id,
            now=time.time(),
            stream_s=update.t,
            novelty=update.novelty,
            labels=self._label_scores(camera, update),
            evidence=evidence,
            snapshot_url=url,
        )
        for alert in self.engine.evaluate(obs):
            await self._send(alert)
        for rule in self.engine.prompts_due(camera.id, obs.now, update.novelty):
            if rule.id not in self._prompt_tasks:
                self.engine.mark_asked(rule.id, obs.now)
                task = asyncio.create_task(self._prompt(rule, camera, update.t), name=f"prompt-{rule.id}")
                self._prompt_tasks[rule.id] = task
                task.add_done_callback(functools.partial(self._prompt_done, rule.id))
        await self._persist()

    def _prompt_done(self, rule_id: str, _: asyncio.Task[None]) -> None:
        self._prompt_tasks.pop(rule_id, None)

    async def _prompt(self, rule: Rule, camera: CameraRuntime, t: float) -> None:
        params = rule.params
        assert isinstance(params, PromptParams)
        try:
            result = await self._service.answer(
                [camera],
                f"{params.question} Answer yes or no.",
                [TimeRange(max(0.0, t - params.window_s), None)],
                max_new_tokens=8,
            )
        except Exception:  # crash guard: a failed check is a skipped check
            log.exception("prompt rule %s failed", rule.id)
            return
        yes = result.answer.strip().lower().startswith(YES_WORDS)
        evidence, url = self._evidence(camera, t, None)
        obs = rule_logic.Observation(
            camera_id=camera.id,
            now=time.time(),
            stream_s=t,
            answers={rule.id: yes},
            evidence=evidence,
            snapshot_url=url,
        )
        # Only this rule: the other rules of the camera have nothing to learn from a prompt answer.
        alert = rule_logic.step(rule, self.engine.state(rule.id), obs)
        if alert is not None:
            await self._send(alert.model_copy(update={"answer": result.answer}))
        await self._service.store.put_rule_state(rule.id, self.engine.state(rule.id).to_dict())

    async def _send(self, alert: Alert) -> None:
        if len(self._pending) < 100_000:  # bounded like the outbox it mirrors
            self._pending[alert.id] = (alert.camera, alert.rule)
        self._service.metrics.alert(alert.camera, alert.rule, "queued")
        await self._service.publisher.enqueue_alert(alert)

    async def _persist(self) -> None:
        for rule_id, state in self.engine.changed().items():
            await self._service.store.put_rule_state(rule_id, state)
