"""Time ranges said in a question: found, taken out of the text, combined with since_s / from-to (the narrower
wins, disjoint ones are a 422), and the English answers are written in (articles, plurals, times)."""

from __future__ import annotations

import pytest

from agent.english import Clock, article, occasions, plural, singular
from agent.errors import InvalidRequest
from agent.phrases import RangePhrase, find_range
from agent.questions import TimeRange, time_range
from agent.records import AskBody
from tests.agent.answer_kit import BICYCLE, CAR, Camera, Cameras, embedded_questions, seen


@pytest.mark.parametrize(
    ("question", "rest", "last_s", "since", "until"),
    [
        ("what did you see in the last 10 seconds?", "what did you see?", 10.0, None, None),
        ("In the past 2 minutes, was there a car?", "was there a car?", 120.0, None, None),
        ("anything in the last minute?", "anything?", 60.0, None, None),
        ("what in the last 10s", "what", 10.0, None, None),
        ("how many bikes in the last ten minutes?", "how many bikes?", 600.0, None, None),
        ("what did you see between t=30 and t=60?", "what did you see?", None, 30.0, 60.0),
        ("between 30 and 60 seconds, what?", "what?", None, 30.0, 60.0),
        ("from t=1 min to t=2 min?", "?", None, 60.0, 120.0),
        ("cars at t=30s-60s", "cars at", None, 30.0, 60.0),
        ("since t=20 was there a cab?", "was there a cab?", None, 20.0, None),
        ("was there a cab after 20 s?", "was there a cab?", None, 20.0, None),
        ("a dog before t=40?", "a dog?", None, None, 40.0),
        ("a car since t=20 and before t=40?", "a car?", None, 20.0, 40.0),
        ("what happened in the first 10 s?", "what happened?", None, 0.0, 10.0),
    ],
)
def test_range_phrases_are_found_and_taken_out(
    question: str, rest: str, last_s: float | None, since: float | None, until: float | None
) -> None:
    text, phrase = find_range(question)
    assert text == rest
    assert phrase is not None and (phrase.last_s, phrase.since, phrase.until) == (last_s, since, until)


@pytest.mark.parametrize(
    "question",
    ["when did you last see a car?", "when did a car first appear?", "how long was it there?", "is it 5 pm?"],
)
def test_first_and_last_as_in_first_seen_are_not_ranges(question: str) -> None:
    assert find_range(question) == (question, None)


def test_a_range_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        find_range("what between t=60 and t=30?")


def test_the_question_range_narrows_the_request_range_and_the_narrower_side_wins() -> None:
    camera = Camera("gate", 1000.0, 100.0, [])
    last10 = RangePhrase("in the last 10 seconds", last_s=10.0)
    assert time_range(camera, AskBody(question="q"), last10) == TimeRange(90.0, None)
    assert time_range(camera, AskBody(question="q", since_s=5), last10) == TimeRange(95.0, None)
    between = RangePhrase("between t=30 and t=60", since=30.0, until=60.0)
    body = AskBody.model_validate({"question": "q", "from": 40, "to": 80})
    assert time_range(camera, body, between) == TimeRange(40.0, 60.0)
    with pytest.raises(InvalidRequest, match="do not overlap"):
        time_range(camera, AskBody(question="q", since_s=10), between)


def _cameras() -> Cameras:
    rows = [seen(1, BICYCLE, (5.0, 8.0), (40.0, 45.0), (92.0, 95.0)), seen(2, CAR, (20.0, 25.0))]
    return Cameras(Camera("gate", 1_700_000_000.0, 100.0, rows))


async def test_a_question_range_bounds_what_is_read_and_what_is_reported() -> None:
    q = embedded_questions()
    answer = await q.ask(
        AskBody(question="when was a bicycle seen in the last 10 seconds?"), ["gate"], _cameras()
    )
    assert "t=92s-95s" in answer.answer and "t=5s" not in answer.answer and "t=40s" not in answer.answer
    assert [(e.from_s, e.to_s) for e in answer.evidence] == [(92.0, 95.0)]
    car = await q.ask(AskBody(question="was there a car between t=30 and t=60?"), ["gate"], _cameras())
    assert car.answer.startswith("No: I did not see a car between t=30s and t=60s") and car.evidence == []
    q.close()


async def test_a_question_range_disjoint_from_the_request_range_is_a_422() -> None:
    q = embedded_questions()
    body = AskBody.model_validate({"question": "a bicycle before t=10?", "from": 50, "to": 60})
    with pytest.raises(InvalidRequest, match="do not overlap"):
        await q.ask(body, ["gate"], _cameras())
    with pytest.raises(InvalidRequest, match="ends before it starts"):
        await q.ask(AskBody(question="a car between t=9 and t=3?"), ["gate"], _cameras())
    q.close()


def test_articles_and_plurals_read_as_english() -> None:
    assert [article(w) for w in ("bicycle", "espresso", "cab", "unicycle", "hour", "umbrella")] == [
        "a bicycle", "an espresso", "a cab", "a unicycle", "an hour", "an umbrella",
    ]  # fmt: skip
    assert [plural(w) for w in ("bicycle", "bus", "person", "lorry", "sports car", "taxi", "sheep")] == [
        "bicycles", "buses", "people", "lorries", "sports cars", "taxis", "sheep",
    ]  # fmt: skip
    assert [singular(w) for w in ("bicycles", "bikes", "people", "buses", "glass", "bus", "taxis")] == [
        "bicycle", "bike", "person", "bus", "glass", "bus", "taxi",
    ]  # fmt: skip
    assert [occasions(n) for n in (1, 2, 3)] == ["once", "twice", "on 3 separate occasions"]


def test_times_are_rounded_inward_never_naming_a_second_outside_the_range() -> None:
    clock = Clock(5.63, 14.73, 1_700_000_000.0)
    assert clock.t(5.63) == "t=6s" and clock.t(14.73) == "t=14s" and clock.t(9.2) == "t=9s"
    narrow = Clock(4.96, 4.99)
    value = float(narrow.t(4.97)[2:-1])
    assert 4.96 <= value <= 4.99
    assert clock.at(10.0) == "at 22:13:30 (t=10s)"  # 1_700_000_000 is 22:13:20 UTC
