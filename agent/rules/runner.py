"""One camera's rules at work: each memory update becomes an observation for the engine, prompt rules ask
their question when due, what fires goes to the dispatcher, changed rule state to the store.

No rule logic (that is `rules.engine`) and no camera internals: the camera is read through `WatchedCamera`,
and every collaborator is handed in.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from torch import Tensor

from agent.errors import InvalidRequest
from agent.models.labels import Labeler
from agent.outputs.dispatch import Dispatcher
from agent.questions import PromptDropped
from agent.records import Alert, Evidence, LabelParams, PromptParams, Rule, RuleSpec
from agent.rules.engine import Observation, RuleEngine, RuleState
from agent.state.store import Store
from compress.memory import EntryInfo, MemoryUpdate

log = logging.getLogger(__name__)

YES_WORDS = ("yes", "true", "yeah", "yep", "correct")
Ask = Callable[[str, float], Awaitable[str]]  # (question, since stream second) -> answer text from memory


class WatchedCamera(Protocol):
    """What a rule runner reads of its camera (the camera pipeline is one)."""

    @property
    def id(self) -> str: ...

    def read(self, since: float | None, until: float | None) -> tuple[Tensor, list[EntryInfo]]:
        """Memory tokens `[K, D]` and their entries present in the range (stream seconds)."""
        ...

    def evidence(self, t: float, frame: int | None) -> tuple[list[Evidence], str | None]:
        """An alert's evidence at stream second `t` and the keyframe link of `frame`, pinned."""
        ...


def label_ids(rule: RuleSpec, labeler: Labeler | None, backend_name: str) -> set[int] | None:
    """The ImageNet class ids a label rule scores (None for other kinds).

    Raises:
        InvalidRequest: the backend cannot label frames, or does not know the label.
    """
    if not isinstance(rule.params, LabelParams):
        return None
    if labeler is None:
        raise InvalidRequest("kind", f"backend {backend_name} cannot label frames; use novelty or prompt")
    try:
        return labeler.resolve(rule.params.label)
    except ValueError as exc:
        raise InvalidRequest("params.label", str(exc)) from None


class RuleRunner:
    """The rules of one camera, their engine and their prompt questions in flight.

    Args:
        camera: the camera the rules watch.
        labeler: scores label rules (None: the backend cannot label, and label rules are refused).
        backend_name: named when a label rule is refused.
        dispatcher: where alerts go; it reports deliveries and drops back to `delivered` / `dropped`.
        store: where rule state is kept across restarts.
        ask: answers a prompt rule's question over this camera's memory since a stream second; raises
            `PromptDropped` when the answer slots rules may take are full (the check is skipped and counted,
            as is a rule due again while its previous question is unanswered).
    """

    def __init__(
        self,
        camera: WatchedCamera,
        *,
        labeler: Labeler | None,
        dispatcher: Dispatcher,
        store: Store,
        ask: Ask,
        backend_name: str,
    ) -> None:
        self._camera, self._labeler, self._backend_name = camera, labeler, backend_name
        self._dispatcher, self._store, self._ask = dispatcher, store, ask
        self.engine = RuleEngine()
        self._ids: dict[str, set[int]] = {}  # label (lower-case) -> ImageNet class ids
        self._prompt_tasks: dict[str, asyncio.Task[None]] = {}

    # ------------------------------------------------------------------------------------------ rule set
    def rules(self) -> list[Rule]:
        """The camera's rules, in the order they were set."""
        return self.engine.rules()

    def check(self, rule: RuleSpec) -> None:
        """Raise InvalidRequest unless the backend can evaluate `rule`."""
        ids = label_ids(rule, self._labeler, self._backend_name)
        if ids is not None:
            assert isinstance(rule.params, LabelParams)
            self._ids[rule.params.label.lower()] = ids

    def add(self, spec: RuleSpec) -> Rule:
        """Validate a new rule against the backend and register it."""
        self.check(spec)
        rule = Rule.from_spec(spec)
        self.load(rule)
        return rule

    def load(self, rule: Rule, state: dict[str, Any] | None = None) -> bool:
        """Register a rule (with its persisted state, if any); one that no longer fits the backend is logged
        and skipped (False)."""
        try:
            self.check(rule)
        except InvalidRequest as exc:
            log.error("rule %r (id %s) not loaded: %s", rule.title, rule.id, exc.detail)
            return False
        self.engine.set_rule(rule, state)
        self._dispatcher.watch_rule(rule.camera_id, rule.id)
        return True

    def remove(self, rule_id: str) -> None:
        """Forget a rule and cancel its question in flight."""
        self.engine.remove_rule(rule_id)
        task = self._prompt_tasks.pop(rule_id, None)
        if task is not None:
            task.cancel()

    def start(self) -> None:
        """Hear from the dispatcher what becomes of this camera's alerts."""
        self._dispatcher.own(self._camera.id, self)

    async def stop(self) -> None:
        """Cancel the questions in flight and stop hearing of alerts."""
        self._dispatcher.disown(self._camera.id)
        tasks = list(self._prompt_tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------------------------------ outcomes
    def delivered(self, alert: Alert, t: float) -> None:
        """A broker acknowledgement: the rule's cooldown restarts from `t`."""
        self.engine.mark_delivered(alert.rule, alert.id, t)

    def dropped(self, rule_id: str, alert_id: str) -> None:
        """The outbox lost an alert: it no longer holds its rule's cooldown."""
        self.engine.mark_dropped(rule_id, alert_id)

    # ------------------------------------------------------------------------------------------ updates
    async def on_update(self, frame: int, update: MemoryUpdate) -> None:
        """Evaluate the camera's rules for one memory update (of frame index `frame`) and send what fires."""
        if not self.engine.rules():
            return
        evidence, url = self._camera.evidence(update.t, frame)
        obs = Observation(
            camera_id=self._camera.id,
            now=time.time(),
            stream_s=update.t,
            novelty=update.novelty,
            labels=self._label_scores(update),
            evidence=evidence,
            snapshot_url=url,
        )
        for alert in self.engine.evaluate(obs):
            await self._dispatcher.alert(alert)
        for rule in self.engine.prompts_due(self._camera.id, obs.now, update.novelty):
            if rule.id in self._prompt_tasks:  # its previous question is still unanswered: skip this one
                self._dispatcher.metrics.rule_prompt_dropped(self._camera.id, rule.id, "in_flight")
                continue
            self.engine.mark_asked(rule.id, obs.now)
            task = asyncio.create_task(self._prompt(rule, update.t), name=f"prompt-{rule.id}")
            self._prompt_tasks[rule.id] = task
            task.add_done_callback(functools.partial(self._prompt_done, rule.id))
        for rule_id, state in self.engine.changed().items():
            await self._store.put_rule_state(rule_id, state)

    def _label_scores(self, update: MemoryUpdate) -> dict[str, float]:
        wanted = self.engine.labels_wanted(self._camera.id)
        if not wanted or self._labeler is None:
            return {}
        # The entries this frame touched, i.e. its components: an object covering a few tokens still scores.
        tokens, entries = self._camera.read(update.t, None)
        if not entries:
            return {label: 0.0 for label in wanted}
        return {label: float(self._labeler.group_probs(tokens, self._ids[label]).max()) for label in wanted}

    def _prompt_done(self, rule_id: str, _: asyncio.Task[None]) -> None:
        self._prompt_tasks.pop(rule_id, None)

    async def _prompt(self, rule: Rule, t: float) -> None:
        params = rule.params
        assert isinstance(params, PromptParams)
        try:
            answer = await self._ask(f"{params.question} Answer yes or no.", max(0.0, t - params.window_s))
        except PromptDropped:  # the answer slots rules may take were full: this check is skipped, counted
            self._dispatcher.metrics.rule_prompt_dropped(self._camera.id, rule.id, "busy")
            return
        except Exception:  # crash guard: a failed check is a skipped check
            log.exception("prompt rule %r (id %s) failed", rule.title, rule.id)
            return
        evidence, url = self._camera.evidence(t, None)
        obs = Observation(
            camera_id=self._camera.id,
            now=time.time(),
            stream_s=t,
            answers={rule.id: answer.strip().lower().startswith(YES_WORDS)},
            evidence=evidence,
            snapshot_url=url,
        )
        # Only this rule: the other rules of the camera have nothing to learn from a prompt answer.
        state: RuleState = self.engine.state(rule.id)
        alert = self.engine.step(rule, obs)  # within the camera's alert budget, as label and novelty rules
        if alert is not None:
            await self._dispatcher.alert(alert.model_copy(update={"answer": answer}))
        await self._store.put_rule_state(rule.id, state.to_dict())
