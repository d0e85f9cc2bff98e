"""Questions about people answered from a camera's person / face detector (`PeopleSeen`), and the honest
refusal without one."""

from __future__ import annotations

import random

from agent.models.base import PeopleSeen
from agent.records import AskBody
from tests.agent.answer_kit import BICYCLE, Camera, Cameras, embedded_questions, seen

T0 = 1_700_000_000.0
SAMPLES = tuple((float(t), (1 if 10 <= t <= 20 else 0), (2 if 10 <= t <= 14 else 0)) for t in range(0, 41, 2))
PEOPLE = PeopleSeen("mediapipe", ((10.0, 20.0, 2),), ((10.0, 14.0, 2),), (0.0, 40.0), SAMPLES)


async def ask(question: str, people: PeopleSeen | None) -> str:
    q = embedded_questions()
    cams = Cameras(Camera("gate", T0, 40.0, [seen(1, BICYCLE, (0.0, 40.0))], people))
    answer = await q.ask(AskBody(question=question), ["gate"], cams)
    q.close()
    return answer.answer


async def test_is_there_a_person_is_answered_from_the_detector_with_its_times() -> None:
    text = await ask("is there a person?", PEOPLE)
    assert text.startswith("Yes: I saw a person once, last at") and "(t=20s)" in text


async def test_when_did_someone_appear_names_the_first_time() -> None:
    text = await ask("when did someone first appear?", PEOPLE)
    assert text.startswith("I first saw a person at") and "t=10s" in text


async def test_how_many_faces_at_a_moment_reads_the_nearest_sample() -> None:
    assert "I saw 2 faces" in await ask("how many faces at t=12?", PEOPLE)
    assert "I saw 0 faces" in await ask("how many faces at t=30?", PEOPLE)


async def test_no_person_in_range_says_how_many_frames_were_checked() -> None:
    text = await ask("was there a person between t=25 and t=40?", PEOPLE)
    assert text.startswith("No: I saw no person in the 8 frames the mediapipe detector checked")


async def test_without_a_detector_people_are_refused_honestly() -> None:
    text = await ask("is there a person?", None)
    assert text.startswith("I cannot tell: the embedded model cannot recognise 'person'")


async def test_a_last_answer_lists_its_evidence_newest_first() -> None:
    q = embedded_questions()
    rows = [seen(1, BICYCLE, (2.0, 4.0)), seen(2, BICYCLE, (20.0, 22.0)), seen(3, BICYCLE, (30.0, 33.0))]
    cams = Cameras(Camera("gate", T0, 40.0, rows))
    answer = await q.ask(AskBody(question="when did you last see a bicycle?"), ["gate"], cams)
    q.close()
    assert answer.kind == "last"
    assert [e.from_s for e in answer.evidence] == sorted((e.from_s for e in answer.evidence), reverse=True)
    assert answer.evidence[0].from_s == 30.0


async def test_every_evidence_snapshot_lies_inside_the_range_asked_over_random_ranges() -> None:
    rng = random.Random(7)
    rows = [seen(i, BICYCLE, (float(a), float(a + rng.randint(1, 6)))) for i, a in enumerate(range(0, 90, 9))]
    cams = Cameras(Camera("gate", T0, 100.0, rows))
    q = embedded_questions()
    checked = 0
    for _ in range(60):
        lo = rng.uniform(0, 90)
        hi = lo + rng.uniform(0.5, 30)
        answer = await q.ask(
            AskBody(question="when did you see a bicycle?", **{"from": lo, "to": hi}), ["gate"], cams
        )
        for e in answer.evidence:
            assert lo - 1e-6 <= e.from_s <= e.to_s <= hi + 1e-6
            if e.snapshot_url is not None:
                frame = int(e.snapshot_url.rsplit("=", 1)[1])
                assert lo - 1e-6 <= frame / 10 <= hi + 1e-6, (lo, hi, e)  # the kit's frame i is second i / 10
                checked += 1
    q.close()
    assert checked > 10
