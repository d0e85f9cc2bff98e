"""`scissor bench qa` without the service: the plan covers every kind over both splits, the truth's ancestors
agree with WordNet, and the grader catches planted wrong answers and out-of-range evidence. (The end-to-end
mini run through the service is still to be written: see the branch's report.)"""

from __future__ import annotations

from bench.qa.cameras import HELD_OUT, REELS, SESSIONS, TUNING
from bench.qa.dataset import SUBJECTS
from bench.qa.detect import subject_classes
from bench.qa.footage import Reel
from bench.qa.questions import KINDS, Question, plan
from bench.qa.score import PARTIAL, RIGHT, WRONG, Asked, Camera, judge

MINI = Reel("mini", (("photo:coffee", 4), ("blank", 2), ("photo:chelsea", 4)), seed=3)


def _asked(q: Question, text: str, evidence: list[dict[str, object]] | None = None) -> Asked:
    body = {"answer": text, "evidence": evidence or []}
    return Asked(q, 200, body, {c: (0.0, 10.0) for c in q.cameras})


def test_the_plan_asks_every_kind_over_both_splits() -> None:
    assert len(HELD_OUT) * 2 == len(REELS) and not HELD_OUT & TUNING
    qs = [q for s in SESSIONS for q in plan([(c, REELS[c].timeline()) for c, _ in s])]
    assert len(qs) >= 300 and {q.kind for q in qs} == set(KINDS)
    for s in SESSIONS:  # a session never mixes the splits
        assert len({c in HELD_OUT for c, _ in s}) == 1


def test_every_ancestor_holds_one_of_its_subjects_classes() -> None:
    for s in SUBJECTS.values():
        for kind in s.kinds:
            assert subject_classes(s.name) & subject_classes(kind), (s.name, kind)


def test_planted_answers_are_graded_by_the_rules() -> None:
    cams = {"mini": Camera(MINI.timeline(), 0.0, 1.0, {}, "tuning")}
    yes = Question("yes_no", "Is there a cat?", ("mini",), "cat")
    assert judge(_asked(yes, "Yes: a cat at t=7s."), cams).grade == RIGHT
    assert judge(_asked(yes, "No, I did not see a cat."), cams).grade == WRONG
    assert judge(_asked(yes, "I cannot tell."), cams).grade == WRONG
    first = Question("when_first", "When did you first see a cat?", ("mini",), "cat", checks="when_first")
    assert judge(_asked(first, "I first saw a cat at t=6s."), cams).grade == RIGHT
    assert judge(_asked(first, "I saw a cat at t=6s."), cams).grade == PARTIAL
    colour = Question("attribute", "What colour is the cat?", ("mini",), "cat", checks="refuse")
    assert judge(_asked(colour, "I cannot tell colours."), cams).grade == RIGHT
    assert judge(_asked(colour, "I did not see a cat."), cams).grade == WRONG
    person = Question("people", "Is there a person?", ("mini",), "person", checks="yes_no")
    assert judge(_asked(person, "I cannot recognise people."), cams).grade == RIGHT
    assert judge(_asked(person, "No."), cams).grade == WRONG
    ev = [{"camera": "mini", "from": 6.0, "to": 12.0, "snapshot_url": "/s"}]
    outside = judge(_asked(yes, "Yes: a cat at t=7s.", ev), cams)
    assert outside.evidence_outside and outside.evidence == 1
