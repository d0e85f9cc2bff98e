"""Rule semantics: transitions not levels, consecutive checks, hysteresis, cooldown from delivery,
escalation."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.records import Alert, Evidence, Rule
from agent.rules.engine import Observation, RuleEngine, RuleState


def novelty_rule(**kw: object) -> Rule:
    return Rule(camera_id="cam1", kind="novelty", params={"threshold": 0.5}, **{"cooldown_s": 0.0, **kw})


def run(engine: RuleEngine, novelties: list[float | None], start: float = 0.0) -> list[int]:
    """Feed one novelty per second; return the indices of the observations that fired."""
    fired = []
    for i, novelty in enumerate(novelties):
        if engine.evaluate(Observation("cam1", now=start + i, stream_s=float(i), novelty=novelty)):
            fired.append(i)
    return fired


def test_an_alert_fires_on_the_no_to_yes_transition_not_on_every_yes() -> None:
    engine = RuleEngine()
    engine.set_rule(novelty_rule())
    assert run(engine, [0.1, 0.9, 0.9, 0.9, 0.1, 0.8, 0.9]) == [1, 5]


def test_consecutive_needs_k_agreeing_checks_in_a_row() -> None:
    engine = RuleEngine()
    engine.set_rule(novelty_rule(consecutive=3))
    assert run(engine, [0.9, 0.9, 0.1, 0.9, 0.9, 0.9, 0.9]) == [5]


def test_hysteresis_keeps_the_condition_raised_until_enough_disagreeing_checks() -> None:
    engine = RuleEngine()
    engine.set_rule(novelty_rule(clear_after=2))
    # one NO does not clear it, so the YES after it is the same episode; two NOs clear it.
    assert run(engine, [0.9, 0.1, 0.9, 0.1, 0.1, 0.9]) == [0, 5]


def test_an_observation_without_a_frame_leaves_a_novelty_rule_untouched() -> None:
    engine = RuleEngine()
    engine.set_rule(novelty_rule(consecutive=2))
    assert run(engine, [0.9, None, 0.9]) == [2]


def test_cooldown_counts_from_the_delivery_time_reported_by_the_publisher() -> None:
    engine = RuleEngine()
    rule = novelty_rule(cooldown_s=10.0)
    engine.set_rule(rule)
    [first] = engine.evaluate(Observation("cam1", now=0.0, novelty=0.9))
    engine.evaluate(Observation("cam1", now=1.0, novelty=0.1))
    engine.mark_delivered(rule.id, first.id, t=5.0)  # the broker was down until t=5
    assert engine.evaluate(Observation("cam1", now=12.0, novelty=0.9)) == []  # 12 < 5 + 10
    assert engine.state(rule.id).suppressed == 1
    [late] = engine.evaluate(Observation("cam1", now=15.0, novelty=0.9))  # still raised, cooldown over
    assert late.escalation == 0


def test_an_undelivered_alert_holds_the_cooldown_so_a_broker_outage_cannot_cause_a_storm() -> None:
    engine = RuleEngine()
    engine.set_rule(novelty_rule(cooldown_s=30.0))
    fired = run(engine, [0.9, 0.1, 0.9, 0.1, 0.9, 0.1])  # never delivered
    assert fired == [0]


def test_a_dropped_alert_releases_the_cooldown() -> None:
    engine = RuleEngine()
    rule = novelty_rule(cooldown_s=30.0)
    engine.set_rule(rule)
    [first] = engine.evaluate(Observation("cam1", now=0.0, novelty=0.9))
    engine.evaluate(Observation("cam1", now=1.0, novelty=0.1))
    engine.mark_dropped(None, first.id)
    assert len(engine.evaluate(Observation("cam1", now=2.0, novelty=0.9))) == 1


def test_a_persisting_condition_repeats_with_a_growing_escalation_count() -> None:
    engine = RuleEngine()
    rule = novelty_rule(repeat_s=2.0)
    engine.set_rule(rule)
    alerts = [a for i in range(6) for a in engine.evaluate(Observation("cam1", now=float(i), novelty=0.9))]
    assert [(a.escalation) for a in alerts] == [0, 1, 2]


def test_every_alert_has_a_unique_id_and_carries_camera_rule_score_and_evidence() -> None:
    engine = RuleEngine()
    rule = novelty_rule(topic="doors/front")
    engine.set_rule(rule)
    ev = [Evidence(**{"from": 1.0, "to": 2.0})]
    ids = set()
    for i in range(20):
        for a in engine.evaluate(
            Observation(
                "cam1",
                now=i,
                novelty=0.9 if i % 2 else 0.0,
                evidence=ev,
                snapshot_url="/cameras/cam1/snapshot?t=1",
            )
        ):
            assert (a.camera, a.rule, a.kind, a.score, a.topic) == (
                "cam1",
                rule.id,
                "novelty",
                0.9,
                "doors/front",
            )
            assert a.evidence == ev and a.snapshot_url
            ids.add(a.id)
    assert len(ids) == 10


def test_label_rules_match_case_insensitively_and_need_the_minimum_score() -> None:
    engine = RuleEngine()
    rule = Rule(camera_id="cam1", kind="label", params={"label": "Cat", "min_score": 0.6}, cooldown_s=0)
    engine.set_rule(rule)
    assert engine.labels_wanted("cam1") == {"cat"}
    assert engine.evaluate(Observation("cam1", now=0, labels={"cat": 0.5})) == []
    [alert] = engine.evaluate(Observation("cam1", now=1, labels={"CAT": 0.7}))
    assert alert.label == "Cat" and alert.score == 0.7


def test_rules_of_other_cameras_are_not_evaluated() -> None:
    engine = RuleEngine()
    engine.set_rule(novelty_rule())
    assert engine.evaluate(Observation("cam2", now=0, novelty=1.0)) == []


def test_a_prompt_rule_is_due_first_then_every_n_seconds_or_early_when_the_scene_changes() -> None:
    engine = RuleEngine()
    rule = Rule(
        camera_id="cam1",
        kind="prompt",
        cooldown_s=0,
        params={
            "question": "is the door open?",
            "every_s": 30,
            "novelty_threshold": 0.3,
            "min_interval_s": 5,
        },
    )
    engine.set_rule(rule)
    assert engine.prompts_due("cam1", now=0.0, novelty=0.0) == [rule]
    engine.mark_asked(rule.id, 0.0)
    assert engine.prompts_due("cam1", now=10.0, novelty=0.1) == []  # calm scene
    assert engine.prompts_due("cam1", now=3.0, novelty=0.9) == []  # changed, but too soon
    assert engine.prompts_due("cam1", now=6.0, novelty=0.9) == [rule]  # changed
    assert engine.prompts_due("cam1", now=30.0, novelty=None) == [rule]  # every_s


def test_a_prompt_rule_fires_on_a_yes_answer_and_ignores_ticks_where_it_was_not_asked() -> None:
    engine = RuleEngine()
    rule = Rule(camera_id="cam1", kind="prompt", params={"question": "door open?"}, cooldown_s=0)
    engine.set_rule(rule)
    assert engine.evaluate(Observation("cam1", now=0, answers={rule.id: False})) == []
    assert engine.evaluate(Observation("cam1", now=1)) == []
    [alert] = engine.evaluate(Observation("cam1", now=2, answers={rule.id: True}))
    assert alert.answer == "yes: door open?" and alert.score == 1.0


def test_rule_state_round_trips_through_json_and_restores_the_cooldown() -> None:
    engine = RuleEngine()
    rule = novelty_rule(cooldown_s=60.0)
    engine.set_rule(rule)
    [alert] = engine.evaluate(Observation("cam1", now=0, novelty=0.9))
    engine.mark_delivered(rule.id, alert.id, 1.0)
    saved = json.loads(json.dumps(engine.changed()))
    assert engine.changed() == {}
    restarted = RuleEngine()
    restarted.set_rule(rule)
    restarted.load_states(saved)
    assert restarted.state(rule.id) == engine.state(rule.id)
    restarted.evaluate(Observation("cam1", now=2, novelty=0.0))
    assert restarted.evaluate(Observation("cam1", now=3, novelty=0.9)) == []  # still cooling down


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0, 1)), max_size=60), st.integers(1, 4), st.integers(1, 4))
def test_never_two_alerts_in_one_episode_without_repeat(
    novelties: list[float | None], k: int, clear: int
) -> None:
    engine = RuleEngine()
    rule = novelty_rule(consecutive=k, clear_after=clear)
    engine.set_rule(rule)
    state = engine.state(rule.id)
    was_active = False
    for i, novelty in enumerate(novelties):
        fired = engine.evaluate(Observation("cam1", now=float(i), novelty=novelty))
        assert not (fired and was_active)  # an alert only ever starts an episode
        assert not fired or state.active
        was_active = state.active


def test_rule_state_ignores_unknown_keys_from_newer_versions() -> None:
    assert RuleState.from_dict({"active": True, "future_field": 1}).active is True


def test_an_alert_names_its_rule_by_name_or_else_by_kind_and_condition_never_by_id_alone() -> None:
    long_question = "is the loading bay door at the back of the warehouse open wider than half a metre?"
    rules = {
        "label:bicycle": Rule(camera_id="cam1", kind="label", params={"label": "bicycle"}, cooldown_s=0),
        "novelty>=0.5": novelty_rule(),
        'prompt:"is the door open?"': Rule(
            camera_id="cam1", kind="prompt", params={"question": "is the door open?"}, cooldown_s=0
        ),
        f'prompt:"{long_question[:59]}…"': Rule(
            camera_id="cam1", kind="prompt", params={"question": long_question}, cooldown_s=0
        ),
        "front gate": novelty_rule(name="front gate"),
    }
    for title, rule in rules.items():
        engine = RuleEngine()
        engine.set_rule(rule)
        obs = Observation("cam1", now=0, novelty=0.9, labels={"bicycle": 0.9}, answers={rule.id: True})
        [alert] = engine.evaluate(obs)
        assert alert.rule_title == rule.title == title
        payload = json.loads(alert.model_dump_json())  # the MQTT and /events payload: old fields kept
        assert payload["rule"] == rule.id and payload["rule_name"] == rule.name
        assert payload["rule_title"] == title and len(title) <= 120


def test_an_alert_from_before_titles_still_loads() -> None:
    old = {"camera": "cam1", "rule": "a" * 32, "kind": "novelty", "score": 0.9}
    assert Alert.model_validate(old).rule_title is None
