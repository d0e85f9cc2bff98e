"""A camera's alert budget (SCISSOR_LIMITS__ALERTS_PER_CAMERA_PER_MIN): always-firing rules raise at most
`count` alerts in any window; an alert held back fires later while its condition holds, and is counted."""

from __future__ import annotations

import pytest

from agent.records import Rule
from agent.rules.engine import Observation, RuleEngine


def always(camera: str = "cam1") -> Rule:
    """A rule that fires on every observation: novelty >= 0, no cooldown, a repeat every 10 ms."""
    return Rule(camera_id=camera, kind="novelty", params={"threshold": 0.0}, cooldown_s=0.0, repeat_s=0.01)


def alerts(engine: RuleEngine, camera: str, seconds: range) -> int:
    return sum(len(engine.evaluate(Observation(camera, now=float(t), novelty=0.5))) for t in seconds)


def test_without_a_budget_every_always_firing_rule_fires_on_every_observation() -> None:
    engine = RuleEngine()
    for _ in range(10):
        engine.set_rule(always())
    assert alerts(engine, "cam1", range(30)) == 300


def test_a_budget_caps_a_cameras_alerts_in_any_window_and_counts_those_held_back() -> None:
    engine = RuleEngine()
    engine.limit_alerts(5, per_s=10.0)
    rules = [always() for _ in range(10)]
    for rule in rules:
        engine.set_rule(rule)
    assert alerts(engine, "cam1", range(10)) == 5  # the first 5 at t=0, then nothing until t=10
    assert alerts(engine, "cam1", range(10, 20)) == 5
    assert sum(engine.state(r.id).suppressed for r in rules) == 200 - 10


def test_a_held_back_alert_fires_once_the_window_has_room() -> None:
    engine = RuleEngine()
    engine.limit_alerts(1, per_s=60.0)
    first, second = Rule(camera_id="cam1", kind="novelty", params={"threshold": 0.5}), always()
    engine.set_rule(first)
    engine.set_rule(second)
    fired = [
        a.rule for t in range(0, 130, 10) for a in engine.evaluate(Observation("cam1", now=t, novelty=0.9))
    ]
    assert fired[:2] == [first.id, second.id] and len(fired) == 3  # t=0, t=60, t=120 (one per 60 s)


def test_each_camera_has_its_own_budget() -> None:
    engine = RuleEngine()
    engine.limit_alerts(3, per_s=60.0)
    engine.set_rule(always("cam1"))
    engine.set_rule(always("cam2"))
    assert alerts(engine, "cam1", range(10)) == 3 and alerts(engine, "cam2", range(10)) == 3


def test_a_budget_needs_a_positive_count_and_window() -> None:
    with pytest.raises(ValueError, match="count >= 1"):
        RuleEngine().limit_alerts(0, per_s=60.0)
