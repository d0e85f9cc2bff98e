"""Property: over random memories, cameras, question kinds and ranges (since_s, from/to, phrases in the
question), no answer text and no evidence ever names a time outside the range asked for, stream seconds or
wall clock, and evidence is never negative."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import InvalidRequest
from agent.phrases import find_range
from agent.questions import Questions, time_range
from agent.records import AskBody
from tests.agent.answer_kit import BICYCLE, CAR, CAT, SWITCH, Camera, Cameras, embedded_questions, seen

T0 = 1_700_000_000.0  # 22:13:20 UTC: an hour of stream never crosses midnight
QUESTIONS = (
    "is there a bicycle?", "when did a car first appear?", "when did you last see a cat?",
    "when was a bicycle seen?", "how long was the car there?", "how many bicycles?", "what did you see?",
    "did you see a dog?",
)  # fmt: skip
PHRASES = ("", " in the last {a} seconds", " between t={a} and t={b}", " since t={a}", " before t={b}")
QUESTIONS_ONCE = embedded_questions()


@st.composite
def memories(draw: st.DrawFn, camera_id: str) -> Camera:
    now = draw(st.floats(20.0, 400.0))
    rows = []
    for i in range(draw(st.integers(0, 6))):
        cls = draw(st.sampled_from((BICYCLE, CAR, CAT, SWITCH)))
        starts = sorted(draw(st.lists(st.floats(0.0, now - 1.0), min_size=1, max_size=3, unique=True)))
        intervals = []
        for j, a in enumerate(starts):
            end_limit = starts[j + 1] - 0.01 if j + 1 < len(starts) else now
            intervals.append((a, min(end_limit, a + draw(st.floats(0.0, 8.0)))))
        rows.append(seen(i, cls, *intervals, count=draw(st.integers(5, 60))))
    return Camera(camera_id, T0 + draw(st.floats(0.0, 100.0)), now, rows)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, object]:
    a = draw(st.integers(0, 300))
    b = a + draw(st.integers(0, 200))
    question = (
        draw(st.sampled_from(QUESTIONS)).rstrip("?") + draw(st.sampled_from(PHRASES)).format(a=a, b=b) + "?"
    )
    body: dict[str, object] = {"question": question}
    extra = draw(st.sampled_from(("none", "since", "from_to")))
    if extra == "since":
        body["since_s"] = draw(st.floats(1.0, 300.0))
    elif extra == "from_to":
        lo = draw(st.floats(0.0, 300.0))
        body["from"], body["to"] = lo, lo + draw(st.floats(0.0, 200.0))
    return body


def _check_camera_text(text: str, lo: float, hi: float, wall0: float) -> None:
    for value in re.findall(r"t=(\d+(?:\.\d+)?)s", text) + re.findall(r"-(\d+(?:\.\d+)?)s\b", text):
        assert lo - 1e-6 <= float(value) <= hi + 1e-6, (value, lo, hi, text)
    day = datetime.fromtimestamp(wall0, UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    for h, m, s in re.findall(r"\b(\d\d):(\d\d):(\d\d)\b", text):
        wall = day + int(h) * 3600 + int(m) * 60 + int(s)
        assert wall0 + lo - 1.0 <= wall <= wall0 + hi + 1.0, (f"{h}:{m}:{s}", lo, hi, text)


async def _ask(q: Questions, body: AskBody, cameras: Cameras) -> None:
    ids = list(cameras.by_id)
    try:
        answer = await q.ask(body, ids, cameras)
    except InvalidRequest:  # the question's range and the request's do not overlap: refused, not answered
        return
    _, phrase = find_range(body.question)
    bounds = {}
    for camera in cameras.by_id.values():
        span = time_range(camera, body, phrase)
        lo = 0.0 if span.since is None else span.since
        hi = max(lo, camera.now if span.until is None else min(span.until, camera.now))
        bounds[camera.id] = (lo, hi, camera.added_at)
    for e in answer.evidence:
        assert e.camera is not None
        lo, hi, _ = bounds[e.camera]
        assert e.from_s >= 0.0 and lo - 1e-6 <= e.from_s <= e.to_s <= hi + 1e-6, (e, lo, hi, answer.answer)
    text = answer.answer
    if len(ids) == 1:
        _check_camera_text(text, *bounds[ids[0]])
        return
    for camera_id, part in re.findall(
        r"(?:^|\W)on camera (\w+)(.*?)(?=on camera \w+|$)", text, re.IGNORECASE
    ):
        _check_camera_text(part, *bounds[camera_id])


@settings(max_examples=250, deadline=None)
@given(st.lists(st.sampled_from(("front", "yard")), min_size=1, max_size=2, unique=True).flatmap(
    lambda ids: st.tuples(*(memories(i) for i in ids))
), requests())  # fmt: skip
def test_no_answer_or_evidence_names_a_time_outside_the_range(
    cameras: tuple[Camera, ...], body: dict[str, object]
) -> None:
    asyncio.run(_ask(QUESTIONS_ONCE, AskBody.model_validate(body), Cameras(*cameras)))
