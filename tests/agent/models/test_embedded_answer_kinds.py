"""The embedded answerer asked every kind of question through `Questions`: yes/no (and only then Yes:/No:),
when first / last / every time, how long (the sum of the intervals), how many (separate appearances, said
so), follow-ups in a session (it/that refer back, a new subject switches), and several cameras (each named, in
its own seconds, only the ones that saw it)."""

from __future__ import annotations

import re

import pytest

from agent.models import load_backend
from agent.models.embedded_answer import EmbeddedAnswerer
from agent.records import AskBody
from tests.agent.answer_kit import (
    BICYCLE,
    CAR,
    CAT,
    LABELER,
    SWITCH,
    Camera,
    Cameras,
    embedded_questions,
    seen,
    token,
)

T0 = 1_700_000_000.0  # 22:13:20 UTC


def street() -> Cameras:
    rows = [
        seen(1, BICYCLE, (4.0, 6.0), (20.0, 23.0)),
        seen(2, BICYCLE, (40.0, 41.0)),
        seen(3, CAR, (10.0, 12.0)),
    ]
    return Cameras(Camera("front", T0, 60.0, rows))


async def ask(
    question: str, cameras: Cameras | None = None, **body: object
) -> tuple[str, list[tuple[float, float]]]:
    q = embedded_questions()
    try:
        cams = cameras or street()
        answer = await q.ask(AskBody.model_validate({"question": question, **body}), list(cams.by_id), cams)
    finally:
        q.close()
    return answer.answer, [(e.from_s, e.to_s) for e in answer.evidence]


async def test_when_did_it_first_appear_says_the_first_time_with_the_wall_clock() -> None:
    text, evidence = await ask("when did a bicycle first appear?")
    assert text == "I first saw a bicycle (mountain bike, p=1.00) at 22:13:24 (t=4s)."
    assert evidence == [(4.0, 6.0), (20.0, 23.0), (40.0, 41.0)]


async def test_when_did_you_last_see_says_the_last_time() -> None:
    text, _ = await ask("when did you last see a bike?")
    assert text == "I last saw a bike (mountain bike, p=1.00) at 22:14:01 (t=41s)."


async def test_when_was_it_seen_lists_every_appearance() -> None:
    text, _ = await ask("when was a bicycle seen?")
    assert text.startswith("I saw a bicycle (mountain bike, p=1.00) on 3 separate occasions: ")
    assert "t=4s-6s (22:13:24-22:13:26), t=20s-23s (22:13:40-22:13:43) and t=40s-41s" in text


async def test_how_long_is_the_time_on_screen_not_first_to_last() -> None:
    text, _ = await ask("how long was the bicycle there?")
    assert "for about 6 s in total, on 3 separate occasions" in text  # 2 + 3 + 1, not 41 - 4


async def test_how_many_counts_separate_appearances_and_says_it_cannot_count_individuals() -> None:
    text, _ = await ask("how many bicycles did you see?")
    assert text.startswith("I saw a bicycle (mountain bike, p=1.00) on 3 separate occasions")
    assert "I cannot count individuals" in text and "a bicycles" not in text and "Yes" not in text


async def test_yes_and_no_only_answer_yes_no_questions() -> None:
    yes, _ = await ask("is there a car?")
    assert yes.startswith("Yes: I saw a car (station wagon, p=1.00) once, last at 22:13:32 (t=12s)")
    no, evidence = await ask("did you see a cat?")
    assert no.startswith("No: I did not see a cat between t=4s and t=60s") and evidence == []
    plain, _ = await ask("when did you see a cat?")
    assert plain.startswith("I did not see a cat") and not plain.startswith(("Yes", "No"))


async def test_a_follow_up_refers_back_and_a_new_subject_switches() -> None:
    q, cams = embedded_questions(), street()
    said = []
    for question in (
        "is there a bicycle?",
        "how long was it there?",
        "and a car?",
        "is there a cat?",
        "when did you last see it?",
        "and a bicycle?",
    ):
        answer = await q.ask(AskBody(question=question, session_id="s1"), ["front"], cams)
        said.append(answer.answer)
    q.close()
    assert said[0].startswith("Yes: I saw a bicycle")
    assert said[1].startswith("A bicycle (mountain bike, p=1.00) was on camera for about 6 s")
    assert said[2].startswith("Yes: a car (station wagon, p=1.00) was on camera for about 2 s")  # new subject
    assert said[3].startswith("No: I did not see a cat")
    assert said[4].startswith("I did not see a cat")  # "it" is the cat now
    assert said[5].startswith("Yes: I last saw a bicycle")  # "and a bicycle?" keeps asking "when last"


def several() -> Cameras:
    front = Camera("front", T0, 60.0, [seen(1, BICYCLE, (4.0, 6.0)), seen(2, CAR, (30.0, 33.0))])
    yard = Camera("yard", T0 + 20.0, 40.0, [seen(7, BICYCLE, (10.0, 12.0)), seen(8, CAR, (1.0, 2.0))])
    back = Camera("back", T0 + 50.0, 10.0, [seen(9, CAT, (0.0, 10.0))])  # never sees a bicycle
    return Cameras(front, yard, back)


async def test_several_cameras_name_each_camera_in_its_own_seconds_and_only_those_that_saw_it() -> None:
    q, cams = embedded_questions(), several()
    answer = await q.ask(AskBody(question="when was a bicycle seen?"), ["front", "yard", "back"], cams)
    q.close()
    assert answer.answer.startswith(
        "On camera front I saw a bicycle (mountain bike, p=1.00) once: t=4s-6s (22:13:24-22:13:26); "
    )
    assert (
        "on camera yard I saw a bicycle (mountain bike, p=1.00) once: t=10s-12s (22:13:50-22:13:52)"
        in answer.answer
    )
    assert "back" not in answer.answer
    found = [(e.camera, e.from_s, e.to_s, e.snapshot_url) for e in answer.evidence]
    assert found == [
        ("front", 4.0, 6.0, "/cameras/front/snapshot?frame=40"),
        ("yard", 10.0, 12.0, "/cameras/yard/snapshot?frame=100"),
    ]
    assert all(e.from_s >= 0 for e in answer.evidence)


async def test_a_range_with_several_cameras_is_each_cameras_own_last_seconds() -> None:
    q, cams = embedded_questions(), several()
    answer = await q.ask(AskBody(question="was there a car in the last 30 seconds?"), ["front", "yard"], cams)
    q.close()
    # front: 30-60 holds its car at 30-33; yard: 10-40 does not hold its car at 1-2.
    assert (
        answer.answer
        == "Yes: on camera front I saw a car (station wagon, p=1.00) once, last at 22:13:53 (t=33s)."
    )
    assert "yard" not in answer.answer
    assert [(e.camera, e.from_s, e.to_s) for e in answer.evidence] == [("front", 30.0, 33.0)]
    assert not re.search(r"t=(?:[0-9]|1[0-9]|2[0-9])s", answer.answer)


async def test_what_did_you_see_names_only_confident_whole_frame_predictions() -> None:
    flat = token(SWITCH, 0.5)  # a frame the classifier has no idea about: p ~ 0.002
    rows = [seen(1, BICYCLE, (4.0, 6.0)), (seen(2, SWITCH, (20.0, 30.0))[0], flat)]
    cameras = Cameras(Camera("front", T0, 60.0, rows))
    text, evidence = await ask("what did you see?", cameras)
    assert text.startswith(
        "Between t=4s and t=60s (22:13:24-22:14:20) I saw a mountain bike (p=1.00; t=4s-6s"
    )
    assert "switch" not in text and evidence == [(4.0, 6.0)]
    nothing, looked_at = await ask("what did you see in the last 35 seconds?", cameras)
    assert "nothing held still long enough to name" in nothing
    assert looked_at == [(25.0, 30.0)]  # what was looked at, inside the last 35 s


def test_the_whole_frame_thresholds_are_backend_settings_and_checked() -> None:
    backend = load_backend("embedded", device="cpu", frame_min_prob=0.2, frame_min_margin=5)
    assert isinstance(backend.answerer, EmbeddedAnswerer)
    assert (backend.answerer.frame_min_prob, backend.answerer.frame_min_margin) == (0.2, 5.0)
    with pytest.raises(ValueError, match="frame_min_margin must be >= 1"):
        EmbeddedAnswerer(LABELER, frame_min_margin=0.5)
    with pytest.raises(ValueError, match=r"frame_min_prob must be in \(0, 1\]"):
        EmbeddedAnswerer(LABELER, frame_min_prob=0.0)
