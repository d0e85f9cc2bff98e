"""The read path on its own: ranges, gathering several cameras' memories by wall-clock time, the budget,
evidence per camera with its keyframe, admission, the timeout and sessions."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest
import torch
from prometheus_client import CollectorRegistry
from torch import Tensor

from agent.errors import AnswerTimeout, InvalidRequest, TooBusy, UnknownCamera
from agent.models.base import PeopleSeen, Reply, evidence_spans
from agent.outputs.metrics import Metrics
from agent.questions import MemoryReader, Questions, TimeRange, evidence, gather, time_range
from agent.records import AskBody
from agent.state.store import MemoryStore
from compress.memory import EntryInfo


def entry(i: int, first: float, last: float, count: int, frame: int) -> EntryInfo:
    return EntryInfo(i, first, last, count, 1, (frame,), ((first, last),), (frame,))


class Camera:
    """A camera's memory as a question reads it: fixed entries, one token row each ([i, i])."""

    token_dim = 2

    def __init__(self, camera_id: str, added_at: float, entries: list[EntryInfo], kept: set[int]) -> None:
        self.id, self.added_at, self.entries, self.kept = camera_id, added_at, entries, kept
        self.seen_people: PeopleSeen | None = None

    def stream_seconds(self) -> float:
        return 100.0

    def read(self, since: float | None, until: float | None) -> tuple[Tensor, list[EntryInfo]]:
        found = [
            e
            for e in self.entries
            if (since is None or e.last_seen >= since) and (until is None or e.first_seen <= until)
        ]
        return torch.tensor([[float(e.id)] * 2 for e in found]).reshape(-1, 2), found

    def people(self, since: float | None, until: float | None) -> PeopleSeen | None:
        return self.seen_people

    def keyframe_time(self, frame: int) -> float | None:
        """A kept evidence frame shows the middle of the interval it is the evidence of."""
        if frame not in self.kept:
            return None
        return next(
            (a + b) / 2
            for e in self.entries
            for (a, b), f in zip(e.intervals, e.interval_frames, strict=True)
            if f == frame
        )


class Cameras:
    def __init__(self, *cameras: Camera) -> None:
        self.by_id = {c.id: c for c in cameras}

    def readers(self, camera_ids: Sequence[str]) -> list[MemoryReader]:
        if any(c not in self.by_id for c in camera_ids):
            raise UnknownCamera(next(c for c in camera_ids if c not in self.by_id))
        return [self.by_id[c] for c in camera_ids]


class Answerer:
    """Answers with the spans of the entries it was given; can be slowed down."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.questions: list[str] = []
        self.release = threading.Event()

    def answer(
        self, question: str, tokens: Tensor, entries: Sequence[EntryInfo], *, max_new_tokens: int = 64
    ) -> Reply:
        self.questions.append(question)
        if self.delay_s:
            self.release.wait(self.delay_s)
        return Reply(f"seen {len(entries)}", evidence_spans(entries), len(entries), len(entries) + 7)


def gate() -> Camera:
    return Camera("gate", 1000.0, [entry(1, 0.0, 2.0, 50, 10), entry(2, 5.0, 6.0, 5, 20)], kept={10})


def yard() -> Camera:  # added 3 s after the gate: its second 0 is the gate's second 3
    return Camera("yard", 1003.0, [entry(7, 0.5, 1.5, 30, 4)], kept={4})


def test_since_s_looks_at_the_last_seconds_and_from_to_pass_through() -> None:
    camera = gate()
    assert time_range(camera, AskBody(question="q", since_s=30)) == TimeRange(70.0, None)
    assert time_range(camera, AskBody.model_validate({"question": "q", "from": 2, "to": 9})) == TimeRange(
        2, 9
    )
    assert time_range(camera, AskBody(question="q")) == TimeRange(None, None)


def test_several_cameras_are_merged_by_wall_clock_time_on_the_first_cameras_seconds() -> None:
    tokens, entries, owners, raw = gather([gate(), yard()], [TimeRange(None, None)] * 2, None)
    assert [(e.id, e.first_seen) for e in entries] == [(1, 0.0), (7, 3.5), (2, 5.0)]
    assert owners == ["gate", "yard", "gate"] and raw == 85
    assert tokens[:, 0].tolist() == [1.0, 7.0, 2.0], "each token row stays with its entry"


def test_an_entry_that_came_back_is_reported_only_inside_the_range_asked_for() -> None:
    back = EntryInfo(7, 0.0, 110.0, 40, 3, (1, 90), ((0.0, 5.0), (88.0, 95.0), (100.0, 110.0)), (1, 90, 101))
    camera = Camera("gate", 1000.0, [back], kept={90, 101})
    _, entries, _, raw = gather([camera], [TimeRange(90.0, 105.0)], None)
    (only,) = entries
    assert only.intervals == ((90.0, 95.0), (100.0, 105.0)) and only.interval_frames == (90, 101)
    assert (only.first_seen, only.last_seen) == (90.0, 105.0) and raw == 40
    spans = evidence(evidence_spans(entries), entries, ["gate"], [camera])
    assert all(90.0 <= e.from_s <= e.to_s <= 105.0 for e in spans), spans
    assert gather([camera], [TimeRange(20.0, 80.0)], None)[1] == []  # in the gap: not there


def test_a_budget_keeps_the_best_supported_entries_in_first_seen_order() -> None:
    _, entries, owners, raw = gather([gate(), yard()], [TimeRange(None, None)] * 2, 2)
    assert [e.id for e in entries] == [1, 7] and owners == ["gate", "yard"] and raw == 85


def test_evidence_names_each_camera_in_its_own_seconds_with_its_kept_keyframe() -> None:
    cameras = [gate(), yard()]
    _, entries, owners, _ = gather(cameras, [TimeRange(None, None)] * 2, None)
    found = evidence([(3.0, 4.0), (5.0, 6.0)], entries, owners, cameras)
    assert [(e.camera, e.from_s, e.to_s, e.snapshot_url) for e in found] == [
        ("yard", 0.0, 1.0, "/cameras/yard/snapshot?frame=4"),
        ("gate", 5.0, 6.0, None),  # frame 20 is not kept: no link rather than another moment's
    ]
    assert found[0].from_time is not None and found[0].from_time.timestamp() == 1003.0


def questions(
    answerer: Answerer, *, max_question_chars: int = 2000, max_pending: int = 8, timeout_s: float = 60.0
) -> Questions:
    return Questions(
        answerer=answerer,
        store=MemoryStore(),
        metrics=Metrics(CollectorRegistry()),
        max_question_chars=max_question_chars,
        max_pending=max_pending,
        timeout_s=timeout_s,
    )


async def test_an_answer_carries_its_evidence_tokens_and_cameras() -> None:
    answer = await questions(Answerer()).ask(AskBody(question="what?"), ["gate"], Cameras(gate()))
    assert answer.answer == "seen 2" and answer.tokens_used == 2 and answer.prefill_tokens == 9
    assert answer.raw_tokens_in_range == 55 and answer.cameras == ["gate"] and answer.session_id is None
    assert [(e.from_s, e.to_s) for e in answer.evidence] == [(0.0, 2.0), (5.0, 6.0)]


async def test_a_too_long_question_is_refused_before_the_camera_is_looked_up() -> None:
    with pytest.raises(InvalidRequest, match="longer than 5 characters"):
        await questions(Answerer(), max_question_chars=5).ask(AskBody(question="x" * 6), ["nope"], Cameras())
    with pytest.raises(UnknownCamera):
        await questions(Answerer()).ask(AskBody(question="hi"), ["nope"], Cameras())


async def test_past_the_pending_limit_a_question_gets_too_busy() -> None:
    answerer = Answerer(delay_s=10)
    q = questions(answerer, max_pending=1)
    first = asyncio.ensure_future(q.ask(AskBody(question="one"), ["gate"], Cameras(gate())))
    await asyncio.sleep(0.1)
    try:
        with pytest.raises(TooBusy):
            await q.ask(AskBody(question="two"), ["gate"], Cameras(gate()))
    finally:
        answerer.release.set()
    assert (await first).answer == "seen 2"


async def test_an_answer_past_the_timeout_is_an_answer_timeout_counted_as_an_error() -> None:
    answerer = Answerer(delay_s=10)
    q = questions(answerer, timeout_s=0.2)
    started = time.monotonic()
    try:
        with pytest.raises(AnswerTimeout):
            await q.ask(AskBody(question="slow?"), ["gate"], Cameras(gate()))
    finally:
        answerer.release.set()
    assert time.monotonic() - started < 5
    errors = q._metrics.registry.get_sample_value(
        "scissor_answers_total", {"camera": "gate", "outcome": "error"}
    )
    assert errors == 1.0


async def test_a_session_keeps_its_turns_and_a_follow_up_sees_them() -> None:
    answerer = Answerer()
    q = questions(answerer)
    for question in ("what came in?", "and then?"):
        await q.ask(AskBody(question=question, session_id="s1"), ["gate"], Cameras(gate()))
    turns = await q._store.turns("s1")
    assert [t.question for t in turns] == ["what came in?", "and then?"]
    assert turns[0].evidence and turns[0].cameras == ["gate"]
    assert answerer.questions[0] == "what came in?"
    assert answerer.questions[1].startswith("Earlier in this conversation:\nQ: what came in?\nA: seen 2")
    assert answerer.questions[1].endswith("Question: and then?")
