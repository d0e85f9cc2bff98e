"""The service on the LLM path (the `tiny` LLaVA-OneVision twin): questions and prompt rules reach
generate()."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.models import Backend, load_backend
from tests.agent.service_harness import running_service, video_camera, wait_until


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Backend:
    directory: Path = tmp_path_factory.mktemp("tiny")
    return load_backend("tiny", device="cpu", directory=str(directory))


async def test_questions_feed_exactly_the_memory_tokens_to_the_language_model(tiny: Backend) -> None:
    async with running_service(tiny, allow_file_urls=True) as run:
        await run.client.post("/cameras", json=video_camera(fps=4))
        camera = run.service.cameras["cam1"]
        await wait_until(lambda: camera.frames_processed >= 4, what="frames")
        r = await run.client.post(
            "/cameras/cam1/ask", json={"question": "what happened?", "max_new_tokens": 4}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        k = body["tokens_used"]
        assert 0 < k <= len(camera.memory)
        assert body["prefill_tokens"] > k, "the prompt holds the K memory tokens plus the question"
        capped = await run.client.post(
            "/cameras/cam1/ask",
            json={"question": "what happened?", "max_new_tokens": 4, "max_memory_tokens": 3},
        )
        assert capped.status_code == 200, capped.text
        assert capped.json()["tokens_used"] == min(3, k)
        if k > 3:
            assert capped.json()["prefill_tokens"] < body["prefill_tokens"], (
                "fewer memory tokens, shorter prefill"
            )


async def test_a_prompt_rule_asks_the_answerer_on_its_schedule(tiny: Backend) -> None:
    async with running_service(tiny, allow_file_urls=True) as run:
        await run.client.post("/cameras", json=video_camera(fps=4))
        rule = await run.client.post(
            "/rules",
            json={
                "camera_id": "cam1",
                "kind": "prompt",
                "params": {"question": "is a bicycle visible?", "every_s": 1, "window_s": 5},
            },
        )
        assert rule.status_code == 201, rule.text
        rule_id = rule.json()["id"]
        engine = run.service.alerts.engine
        await wait_until(lambda: engine.state(rule_id).last_asked is not None, what="the prompt rule to ask")
        first = engine.state(rule_id).last_asked
        await wait_until(
            lambda: engine.state(rule_id).last_asked != first, what="a second, scheduled question"
        )
        metrics = (await run.client.get("/metrics")).text
        assert 'scissor_answers_total{camera="cam1",outcome="ok"}' in metrics
