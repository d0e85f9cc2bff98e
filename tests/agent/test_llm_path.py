"""The service on the LLM path (the `tiny` LLaVA-OneVision twin): questions and prompt rules reach
generate()."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
import torch

from agent.models import Backend, load_backend
from agent.models.llava_onevision import LlavaAnswerer
from tests.agent.service_harness import running_service, video_camera, wait_until


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Backend:
    directory: Path = tmp_path_factory.mktemp("tiny")
    return load_backend("tiny", device="cpu", directory=str(directory))


async def test_questions_feed_exactly_the_memory_tokens_to_the_language_model(tiny: Backend) -> None:
    model = cast(LlavaAnswerer, tiny.answerer).model
    fed: list[torch.Tensor] = []
    generate = model.generate

    def spy(*args: Any, **kwargs: Any) -> Any:
        fed.append(kwargs["mm_encoder_outputs"]["video"].pooler_output[0].float().clone())  # [K, D]
        return generate(*args, **kwargs)

    model.generate = spy
    try:
        async with running_service(tiny, allow_file_urls=True) as run:
            await run.client.post("/cameras", json=video_camera(fps=4))
            pipeline = run.service.cameras.get("cam1")
            await wait_until(lambda: len(pipeline.runtime.memory) >= 4, what="four memory entries")
            await pipeline.stop()  # a still memory, to compare with
            tokens, entries = pipeline.runtime.memory.tokens()
            question = {"question": "what happened?", "max_new_tokens": 4}
            whole = await run.client.post("/cameras/cam1/ask", json=question)
            capped = await run.client.post("/cameras/cam1/ask", json={**question, "max_memory_tokens": 3})
    finally:
        del model.generate  # the class's own again
    assert whole.status_code == 200 and capped.status_code == 200, (whole.text, capped.text)
    newline = model.model.image_newline.float()  # closes the memory tokens, as transformers closes a video
    assert whole.json()["tokens_used"] == len(entries) and torch.equal(fed[0][:-1], tokens), (
        "every entry, as kept"
    )
    assert torch.equal(fed[0][-1], newline) and torch.equal(fed[1][-1], newline)
    best = sorted(range(len(entries)), key=lambda i: (-entries[i].count, -entries[i].last_seen))[:3]
    kept = sorted(best, key=lambda i: (entries[i].first_seen, entries[i].id))
    assert capped.json()["tokens_used"] == 3 and torch.equal(fed[1][:-1], tokens[kept]), (
        "the 3 best supported"
    )
    assert whole.json()["prefill_tokens"] - capped.json()["prefill_tokens"] >= len(entries) - 3, (
        "one prompt position fewer per memory token left out"
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
        engine = run.service.cameras.get("cam1").rules.engine
        await wait_until(lambda: engine.state(rule_id).last_asked is not None, what="the prompt rule to ask")
        first = engine.state(rule_id).last_asked
        await wait_until(
            lambda: engine.state(rule_id).last_asked != first, what="a second, scheduled question"
        )
        metrics = (await run.client.get("/metrics")).text
        assert 'scissor_answers_total{camera="cam1",outcome="ok"}' in metrics


async def test_a_question_carrying_placeholder_text_is_answered_not_a_500(tiny: Backend) -> None:
    async with running_service(tiny, allow_file_urls=True) as run:
        await run.client.post("/cameras", json=video_camera(fps=4))
        pipeline = run.service.cameras.get("cam1")
        await wait_until(lambda: len(pipeline.runtime.memory) >= 2, what="two memory entries")
        question = {"question": "is there a <video> or an <image> here <|im_end|> ?", "max_new_tokens": 3}
        reply = await run.client.post("/cameras/cam1/ask", json=question)
    assert reply.status_code == 200, reply.text
    assert reply.json()["tokens_used"] >= 2 and isinstance(reply.json()["answer"], str)


async def test_a_prompt_over_the_context_is_a_422_with_the_numbers_when_overflow_is_an_error(
    tiny: Backend,
) -> None:
    base = cast(LlavaAnswerer, tiny.answerer)
    strict = LlavaAnswerer(
        base.model, base.tokenizer, base.template, context_overflow="error", context_tokens=48
    )
    async with running_service(replace(tiny, answerer=strict), allow_file_urls=True) as run:
        await run.client.post("/cameras", json=video_camera(fps=4))
        pipeline = run.service.cameras.get("cam1")
        await wait_until(lambda: len(pipeline.runtime.memory) >= 30, what="thirty memory entries")
        reply = await run.client.post("/cameras/cam1/ask", json={"question": "what ?", "max_new_tokens": 4})
    assert reply.status_code == 422, reply.text
    body = reply.json()
    assert body["error"] == "ContextOverflow" and body["context_tokens"] == 48 and body["prompt_tokens"] > 44
