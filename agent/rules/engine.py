"""Standing queries as pure logic: observations + per-rule state -> alerts.

Never does I/O or reads a clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from agent.records import Alert, Evidence, LabelParams, NoveltyParams, PromptParams, Rule


@dataclass(frozen=True)
class Observation:
    """What one camera update tells the rules. Times are passed in, so the logic is testable without clocks.

    Attributes:
        camera_id: the camera this update belongs to.
        now: wall-clock seconds (epoch) of the update; cooldowns and intervals use it.
        stream_s: stream seconds of the frame (for the alert's evidence).
        novelty: share of the frame's tokens new to memory in [0, 1]; None when no frame was added.
        labels: probability per label (lower-case class name, synonym or group), computed by the caller.
        answers: yes/no per prompt rule id, for the prompt rules asked this tick (see `RuleEngine.due`).
        evidence: time spans the alert should carry.
        snapshot_url: keyframe URL for the alert.
    """

    camera_id: str
    now: float
    stream_s: float = 0.0
    novelty: float | None = None
    labels: Mapping[str, float] = field(default_factory=dict)
    answers: Mapping[str, bool] = field(default_factory=dict)
    evidence: Sequence[Evidence] = ()
    snapshot_url: str | None = None


@dataclass
class RuleState:
    """Runtime state of one (camera, rule); `to_dict`/`from_dict` round-trip it through the store.

    An *episode* is the time the condition is raised: from `consecutive` agreeing checks until `clear_after`
    disagreeing ones. One alert fires per episode (plus repeats when the rule sets `repeat_s`).
    """

    yes_run: int = 0
    no_run: int = 0
    active: bool = False
    alerted: bool = False
    escalation: int = 0
    last_fired: float | None = None
    pending_id: str | None = None
    pending_t: float | None = None
    delivered_t: float | None = None
    last_asked: float | None = None
    suppressed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleState:
        """Rebuild from `to_dict` output; unknown keys (from newer versions) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def check(rule: Rule, obs: Observation) -> tuple[bool | None, float]:
    """Evaluate a rule's condition on one observation.

    Returns:
        (agrees, score): agrees is None when this observation says nothing about the rule (no frame for a
        novelty rule, prompt not asked this tick); score is the novelty, label probability or 1/0 answer.
    """
    params = rule.params
    if isinstance(params, NoveltyParams):
        if obs.novelty is None:
            return None, 0.0
        return obs.novelty >= params.threshold, obs.novelty
    if isinstance(params, LabelParams):
        score = obs.labels.get(params.label.lower(), 0.0)
        return score >= params.min_score, score
    answer = obs.answers.get(rule.id)
    return (None, 0.0) if answer is None else (answer, 1.0 if answer else 0.0)


def in_cooldown(rule: Rule, state: RuleState, now: float) -> bool:
    """True while `cooldown_s` has not passed since the last delivered alert or the one awaiting delivery.

    An alert still in the outbox holds the cooldown from when it fired, so a broker outage cannot cause an
    alert storm; once delivered, the cooldown restarts from the delivery time.
    """
    anchors = [t for t in (state.delivered_t, state.pending_t) if t is not None]
    return any(now < t + rule.cooldown_s for t in anchors)


def step(rule: Rule, state: RuleState, obs: Observation, *, may_fire: bool = True) -> Alert | None:
    """Advance one rule's state by one observation; return the alert to send, if any (state is mutated).

    `may_fire` False (the camera's alert budget is spent): an alert due now is held back and counted in
    `suppressed`, as in a cooldown; it fires on a later observation while the condition still holds.
    """
    agrees, score = check(rule, obs)
    if agrees is None:
        return None
    if agrees:
        state.yes_run, state.no_run = state.yes_run + 1, 0
        if not state.active and state.yes_run >= rule.consecutive:
            state.active, state.alerted, state.escalation = True, False, 0
    else:
        state.yes_run, state.no_run = 0, state.no_run + 1
        if state.active and state.no_run >= rule.clear_checks:
            state.active = False
    if not state.active:
        return None
    repeat_due = (
        state.alerted
        and rule.repeat_s is not None
        and state.last_fired is not None
        and obs.now - state.last_fired >= rule.repeat_s
    )
    if state.alerted and not repeat_due:
        return None
    if in_cooldown(rule, state, obs.now) or not may_fire:
        state.suppressed += 1
        return None
    if repeat_due:
        state.escalation += 1
    state.alerted, state.last_fired = True, obs.now
    alert = _alert(rule, state, obs, score)
    state.pending_id, state.pending_t = alert.id, obs.now
    return alert


def _alert(rule: Rule, state: RuleState, obs: Observation, score: float) -> Alert:
    params = rule.params
    return Alert(
        camera=rule.camera_id,
        rule=rule.id,
        kind=rule.kind,
        stream_s=obs.stream_s,
        score=score,
        label=params.label if isinstance(params, LabelParams) else None,
        answer=f"yes: {params.question}" if isinstance(params, PromptParams) else None,
        evidence=list(obs.evidence),
        snapshot_url=obs.snapshot_url,
        escalation=state.escalation,
        topic=rule.topic,
        rule_name=rule.name,
        rule_title=rule.title,
    )


def due(rule: Rule, state: RuleState, now: float, novelty: float | None) -> bool:
    """Should a prompt rule ask its question now?

    Yes when it was never asked, when `every_s` has passed, or when novelty says the scene changed and
    `min_interval_s` has passed since the last question. Other kinds are never "due" (they need no answerer).
    """
    params = rule.params
    if not isinstance(params, PromptParams):
        return False
    if state.last_asked is None:
        return True
    since = now - state.last_asked
    changed = novelty is not None and novelty >= params.novelty_threshold
    return since >= params.every_s or (changed and since >= params.min_interval_s)


class RuleEngine:
    """Every camera's rules and their runtime state; rules of one camera are evaluated together per update.

    Pure logic: a rule runner passes observations in, reports deliveries back and persists `changed()`
    states through the store.
    """

    def __init__(self) -> None:
        self._rules: dict[str, Rule] = {}
        self._states: dict[str, RuleState] = {}
        self._changed: set[str] = set()
        self._budget: tuple[int, float] | None = None  # (alerts, per seconds) one camera may raise
        self._fired: dict[str, deque[float]] = {}  # camera id -> times of its alerts within the budget's span

    def limit_alerts(self, count: int, *, per_s: float) -> None:
        """Let each camera's rules raise at most `count` alerts in any `per_s` seconds (of `Observation.now`);
        more wait (see `step`), so always-true rules cannot flood the outputs or starve ingest."""
        if count < 1 or not per_s > 0:
            raise ValueError(f"need count >= 1 and per_s > 0, got {count=}, {per_s=}")
        self._budget = (count, per_s)

    def _may_fire(self, camera_id: str, now: float) -> bool:
        if self._budget is None:
            return True
        count, per_s = self._budget
        fired = self._fired.setdefault(camera_id, deque())
        while fired and fired[0] <= now - per_s:
            fired.popleft()
        return len(fired) < count

    def _count_fired(self, camera_id: str, now: float) -> None:
        if self._budget is not None:
            self._fired.setdefault(camera_id, deque()).append(now)

    def step(self, rule: Rule, obs: Observation) -> Alert | None:
        """`step` of one rule within its camera's alert budget (a prompt rule's answer goes here)."""
        alert = step(rule, self._states[rule.id], obs, may_fire=self._may_fire(rule.camera_id, obs.now))
        if alert is not None:
            self._count_fired(rule.camera_id, obs.now)
        return alert

    def set_rule(self, rule: Rule, state: Mapping[str, Any] | None = None) -> None:
        """Add or replace a rule.

        `state` restores persisted runtime state (else a replaced rule keeps its own).
        """
        self._rules[rule.id] = rule
        if state is not None:
            self._states[rule.id] = RuleState.from_dict(state)
        else:
            self._states.setdefault(rule.id, RuleState())

    def remove_rule(self, rule_id: str) -> Rule | None:
        """Remove a rule and its state; return it, or None if unknown."""
        self._states.pop(rule_id, None)
        self._changed.discard(rule_id)
        return self._rules.pop(rule_id, None)

    def rule(self, rule_id: str) -> Rule | None:
        """Return the rule with this id, or None."""
        return self._rules.get(rule_id)

    def rules(self, camera_id: str | None = None) -> list[Rule]:
        """Return every rule, or one camera's, in insertion order."""
        return [r for r in self._rules.values() if camera_id is None or r.camera_id == camera_id]

    def state(self, rule_id: str) -> RuleState:
        """Return a rule's live runtime state (KeyError if unknown)."""
        return self._states[rule_id]

    def labels_wanted(self, camera_id: str) -> set[str]:
        """Lower-case labels the camera's label rules need scored in `Observation.labels`."""
        return {r.params.label.lower() for r in self.rules(camera_id) if isinstance(r.params, LabelParams)}

    def prompts_due(self, camera_id: str, now: float, novelty: float | None) -> list[Rule]:
        """Prompt rules of the camera that should ask their question now (see `due`)."""
        return [r for r in self.rules(camera_id) if due(r, self._states[r.id], now, novelty)]

    def mark_asked(self, rule_id: str, now: float) -> None:
        """Record that a prompt rule's question was asked at `now` (whatever the answer)."""
        if rule_id in self._states:
            self._states[rule_id].last_asked = now
            self._changed.add(rule_id)

    def evaluate(self, obs: Observation) -> list[Alert]:
        """Advance every rule of `obs.camera_id` by one observation.

        Returns the alerts to send, in rule order.
        """
        labels = {k.lower(): v for k, v in obs.labels.items()}
        lowered = replace(obs, labels=labels)
        alerts = []
        for rule in self.rules(obs.camera_id):
            alert = self.step(rule, lowered)
            if check(rule, lowered)[0] is not None:
                self._changed.add(rule.id)
            if alert is not None:
                alerts.append(alert)
        return alerts

    def mark_delivered(self, rule_id: str, alert_id: str, t: float) -> None:
        """The publisher got the broker's acknowledgement for an alert at wall time `t`.

        The cooldown restarts.
        """
        state = self._states.get(rule_id)
        if state is None:
            return
        state.delivered_t = t if state.delivered_t is None else max(state.delivered_t, t)
        if state.pending_id == alert_id:
            state.pending_id = state.pending_t = None
        self._changed.add(rule_id)

    def mark_dropped(self, rule_id: str | None, alert_id: str) -> None:
        """An alert left the outbox undelivered (past its bound): it no longer holds its rule's cooldown.

        Pass `rule_id=None` when only the alert id is known (the outbox reports ids): the owner is looked up.
        """
        candidates = self._states.items() if rule_id is None else [(rule_id, self._states.get(rule_id))]
        for owner, state in candidates:
            if state is not None and state.pending_id == alert_id:
                state.pending_id = state.pending_t = None
                self._changed.add(owner)

    def changed(self) -> dict[str, dict[str, Any]]:
        """Return and forget the states changed since the last call, by rule id (to persist in the store)."""
        out = {
            rule_id: self._states[rule_id].to_dict() for rule_id in self._changed if rule_id in self._states
        }
        self._changed.clear()
        return out

    def load_states(
        self, states: Mapping[str, Mapping[str, Any]] | Iterable[tuple[str, Mapping[str, Any]]]
    ) -> None:
        """Restore persisted states (by rule id) for rules already set; unknown rule ids are ignored."""
        pairs = states.items() if isinstance(states, Mapping) else states
        for rule_id, data in pairs:
            if rule_id in self._rules:
                self._states[rule_id] = RuleState.from_dict(data)
