"""`scissor bench qa` on a tiny subset end to end (a 6 s slideshow through the real service), and its scoring
against planted answers: a right one passes, wrong ones and out-of-range times are caught."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.qa import Collected, collect, report
from bench.qa.footage import Slideshow
from bench.qa.parse import article_errors, clock_pairs, count, duration, plural_errors, read, verdict
from bench.qa.questions import Question, Range
from bench.qa.score import Asked, judge, out_of_range

MINI = Slideshow("mini", (("coffee", 3), ("chelsea", 3)), seed=3)
QUESTIONS = [
    Question("yes_no", "Is there a cat?", ("mini",), "cat"),
    Question("when_first", "When did you first see a cat?", ("mini",), "cat"),
    Question("yes_no", "Was there a cat?", ("mini",), "cat", Range("from_to", 0, 3)),
    Question("out_of_scope", "Is there a person?", ("mini",), "person"),
]


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> Collected:
    return collect([(MINI, 0.0)], QUESTIONS, tmp_path_factory.mktemp("qa"))


def _planted(asked: Asked, text: str, evidence: list[dict[str, object]] | None = None) -> Asked:
    body = {
        **asked.answer,
        "answer": text,
        "evidence": asked.answer["evidence"] if evidence is None else evidence,
    }
    return dataclasses.replace(asked, answer=body)


def test_every_question_is_asked_through_the_service_and_scored(mini: Collected) -> None:
    assert [a.question.text for a in mini.asked] == [q.text for q in QUESTIONS]
    assert all(a.status == 200 and isinstance(a.answer["answer"], str) for a in mini.asked)
    records = report.rows(mini.asked, [judge(a, mini.cameras) for a in mini.asked])
    kinds = {k["kind"]: k for k in report.by_kind(records)}
    assert {"yes_no", "when_first", "out_of_scope"} <= set(kinds)
    assert kinds["yes_no"]["questions"] + kinds["yes_no"]["beyond_model"] == 2
    cam = mini.cameras["mini"]
    assert 0.0 <= cam.offset < 3.0  # the first frame's stream second: the file started promptly
    assert cam.seeable["cat"]["answerable"] and cam.seeable["coffee"]["answerable"]
    assert not cam.seeable["person"]["answerable"]


def test_a_right_answer_passes_and_wrong_ones_fail(mini: Collected) -> None:
    first = mini.asked[1]
    t = mini.cameras["mini"].offset + 3.0  # the cat's first second on camera
    right = _planted(first, f"I first saw a cat at 12:00:04 (t={t:.0f}s).", [])
    assert judge(right, mini.cameras).right is True
    late = _planted(first, f"I last saw a cat at t={t + 3:.0f}s.", [])
    assert judge(late, mini.cameras).right is False  # a 'last' answer to a 'first' question
    no = _planted(mini.asked[0], "No, I did not see a cat.", [])
    assert judge(no, mini.cameras).right is False
    confident = _planted(mini.asked[3], "No: I did not see a person between t=0s and t=6s.", [])
    assert judge(confident, mini.cameras).right is False  # out of scope: a confident No is wrong


def test_out_of_range_times_and_negative_evidence_are_counted(mini: Collected) -> None:
    ranged = mini.asked[2]  # asked for t=0..3
    assert ranged.ranges["mini"] == (0, 3)
    ev = {"camera": "mini", "from": -115.7, "to": 2.0}
    planted = _planted(ranged, "Yes: I saw a cat at t=6s (and t=1s).", [ev])
    bad = out_of_range(planted)
    assert any("t=6s" in b for b in bad) and any("-115.7" in b for b in bad)
    assert not any("t=1s" in b for b in bad)
    verdict_ = judge(planted, mini.cameras)
    assert verdict_.right is False and len(verdict_.out_of_range) == 2
    other = _planted(ranged, "No.", [{**ev, "camera": "elsewhere", "from": 1.0}])
    assert out_of_range(other) == ["evidence from camera 'elsewhere', not asked"]
    records = report.rows([planted], [verdict_])
    assert report.goals(records)["answers_out_of_range"] == 1


def test_the_answer_parser_reads_times_durations_counts_and_verdicts() -> None:
    said = read("I saw a cat twice: t=20s-29s (17:41:27-17:41:36) and t=60s to t=69s; last at t=69s.")
    assert said.spans == ((20.0, 29.0), (60.0, 69.0), (69.0, 69.0))
    assert said.clocks == ("17:41:27", "17:41:36") and said.verdict == "other"
    assert duration("A cat was on camera for about 18 s in total (t=20s-29s).") == 18.0
    assert duration("on screen for 2 minutes") == 120.0
    assert count("I saw a rocket twice: t=10s-19s and t=30s-39s") == 2
    assert count("It appeared 3 separate times, for 30s in all.") == 3
    assert verdict("I cannot tell: the embedded model cannot recognise 'person'") == "refusal"
    assert verdict("No, I did not see a person.") == "no" and verdict("Yes: at t=3s") == "yes"
    assert article_errors("I saw a espresso and an cat, an hour, a unicycle.") == ["a espresso", "an cat"]
    assert plural_errors("Yes: I last saw a bicycles, then cats.", ("bicycles", "cats")) == ["a bicycles"]
    pairs = clock_pairs("at 17:41:31 (t=4s); seen t=20s-29s (17:41:47-17:41:56)")
    assert pairs == [("17:41:31", 4.0), ("17:41:47", 20.0), ("17:41:56", 29.0)]
    assert clock_pairs("between t=1s and t=86s (17:40:00-17:41:25)") == [("17:41:25", 86.0)]


def test_a_wall_clock_that_is_not_the_stream_second_is_an_english_issue(mini: Collected) -> None:
    first = mini.asked[1]
    base = first.bases["mini"]
    clock = datetime.fromtimestamp(base + 5, UTC).strftime("%H:%M:%S")
    wrong = datetime.fromtimestamp(base + 65, UTC).strftime("%H:%M:%S")
    assert judge(_planted(first, f"I first saw a cat at {clock} (t=5s)."), mini.cameras).format_issues == []
    issues = judge(_planted(first, f"I first saw a cat at {wrong} (t=5s)."), mini.cameras).format_issues
    assert issues == [f"wall clock {wrong} is not stream second t=5s"]


def test_a_range_counted_back_to_a_stream_second_is_filled_in_when_asked() -> None:
    span, text = Range("last", back_to=55).at(80.4, "Was there a cat in the last {n} seconds?")
    assert (span.a, text) == (25.0, "Was there a cat in the last 25 seconds?")
    span, text = Range("last", back_to=0).at(130.0, "What did you see in the past {m} minutes?")
    assert (span.a, text) == (180.0, "What did you see in the past 3 minutes?")
    assert Range("since", 10).at(99.0, "Is there a dog?") == (Range("since", 10), "Is there a dog?")


def test_the_qa_block_replaces_only_its_own_section(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        f"# top\n\n<!-- other:begin -->\nkeep\n<!-- other:end -->\n\n{report.BEGIN}\nold\n{report.END}\n"
    )
    report.write_section(doc, f"{report.BEGIN}\nnew\n{report.END}")
    text = doc.read_text()
    assert "keep" in text and "new" in text and "old" not in text and text.startswith("# top")
