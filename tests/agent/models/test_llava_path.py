"""The LLaVA-OneVision path as a real checkpoint meets it: the chat-template forms llava-hf ships, user text
that carries placeholders, the newline row, hub ids from an offline cache, dtype, the context length, and
keep-all equal to transformers' native `pixel_values_videos` path (tiny seeded model, no downloads)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
import torch

from agent.models import backend_from_settings, load_backend
from agent.models.chat_prompt import ChatTemplateError, classify, find_chat_template, messages
from agent.models.keep_all import keep_all
from agent.models.llava_onevision import (
    SYSTEM_PROMPT,
    ContextOverflow,
    LlavaAnswerer,
    LlavaEncoder,
    Preprocessing,
)
from agent.models.preprocess import to_pixels
from agent.settings import SettingsError, load_settings
from compress import compress_video
from compress.memory import EntryInfo

REPO = Path(__file__).resolve().parents[3]
VIDEO_ID, IMAGE_ID = 127, 126
# A processor-style template in the form llava-hf's LLaVA-OneVision checkpoints ship (ChatML turns whose
# content is typed parts: images, then videos, then the text after a newline; assistant text inside
# `{% generation %}` for assistant masks), written for these tests.
TYPED_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }} "
    "{% for part in message['content'] if part['type'] == 'image' %}<image>{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'video' %}<video>{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}"
    "{% if message['role'] == 'assistant' %}{% generation %}\n{{ part['text'] }}{% endgeneration %}"
    "{% else %}\n{{ part['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# The older form: one string per message (Qwen2's ChatML), as some tokenizer_config.json files carry it.
STRING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module", autouse=True)
def offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from agent.models.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny"))


def _variant(tiny_dir: Path, tmp_path: Path, form: str, template: str | None) -> Path:
    """A copy of the tiny checkpoint whose only chat template is `template` in file form `form`."""
    target = tmp_path / "ckpt"
    shutil.copytree(tiny_dir, target)
    (target / "chat_template.jinja").unlink()
    config = json.loads((target / "tokenizer_config.json").read_text(encoding="utf-8"))
    config.pop("chat_template", None)
    if template is not None and form == "tokenizer_config.json":
        config["chat_template"] = template
    (target / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    if template is not None and form == "chat_template.jinja":
        (target / form).write_text(template, encoding="utf-8")
    if template is not None and form == "chat_template.json":
        (target / form).write_text(json.dumps({"chat_template": template}), encoding="utf-8")
    return target


def _processor_ids(tokenizer: Any, template: str, question: str, n: int, *, typed: bool) -> list[int]:
    """What LlavaOnevisionProcessor makes of the prompt: the rendering, its one `<video>` as n copies."""
    conversation = messages(SYSTEM_PROMPT, question, typed=typed, video="<video>")
    text = tokenizer.apply_chat_template(
        conversation, chat_template=template, tokenize=False, add_generation_prompt=True
    )
    assert str(text).count("<video>") == 1
    return list(tokenizer(str(text).replace("<video>", "<video>" * n), add_special_tokens=False)["input_ids"])


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (384, 384, 3), dtype=np.uint8) for _ in range(n)]


def _entries(k: int) -> list[EntryInfo]:
    return [EntryInfo(i, float(i), float(i) + 1.0, 3, 2, (i,)) for i in range(k)]


@pytest.mark.parametrize(
    ("form", "template", "typed"),
    [
        ("chat_template.jinja", TYPED_TEMPLATE, True),
        ("chat_template.json", TYPED_TEMPLATE, True),
        ("tokenizer_config.json", TYPED_TEMPLATE, True),
        ("tokenizer_config.json", STRING_TEMPLATE, False),
    ],
)
def test_every_template_form_renders_the_processor_prompt_and_answers(
    tiny_dir: Path, tmp_path: Path, form: str, template: str, typed: bool
) -> None:
    backend = load_backend(
        str(_variant(tiny_dir, tmp_path, form, template)), device="cpu", time_markers=False
    )
    answerer = cast(LlavaAnswerer, backend.answerer)
    assert (answerer.template.origin, answerer.template.typed) == (form, typed)
    ids = answerer.prompt_ids("what is on the street ?", [], 5)
    assert ids == _processor_ids(answerer.tokenizer, template, "what is on the street ?", 6, typed=typed)
    tokens = backend.encoder.encode(_frames(1)).reshape(-1, backend.token_dim)[:5]
    reply = answerer.answer("what is on the street ?", tokens, [], max_new_tokens=2)
    assert reply.tokens_used == 5 and reply.prefill_tokens == len(ids)


def test_a_checkpoint_without_a_chat_template_is_refused_never_given_a_made_up_prompt(
    tiny_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ChatTemplateError, match="ships no chat template"):
        load_backend(str(_variant(tiny_dir, tmp_path, "none", None)), device="cpu")


def test_a_template_that_places_no_video_or_cannot_render_is_refused_at_load(tiny_dir: Path) -> None:
    answerer = cast(LlavaAnswerer, load_backend(str(tiny_dir), device="cpu").answerer)
    tokenizer = answerer.tokenizer
    with pytest.raises(ChatTemplateError, match="places no single <video>"):
        classify("{% for m in messages %}{{ m['role'] }}{% endfor %}", "test", tokenizer)
    assert find_chat_template(str(tiny_dir), tokenizer).origin == "chat_template.jinja"
    no_system = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system turn') }}{% endif %}"
    template = classify(no_system + TYPED_TEMPLATE, "test", tokenizer)  # the probe has no system turn
    with pytest.raises(ChatTemplateError, match="no system turn"):
        LlavaAnswerer(answerer.model, tokenizer, template)


@pytest.mark.parametrize("question", ["what is <video> here ?", "<image> <video><video> <|im_end|> ?"])
def test_placeholders_typed_in_a_question_are_plain_text_and_it_is_answered(
    tiny_dir: Path, tmp_path: Path, question: str
) -> None:
    backend = load_backend(
        str(_variant(tiny_dir, tmp_path, "chat_template.jinja", TYPED_TEMPLATE)), device="cpu"
    )
    answerer = cast(LlavaAnswerer, backend.answerer)
    ids = answerer.prompt_ids(question, _entries(4), 4)
    plain = answerer.prompt_ids("what is here ?", _entries(4), 4)
    assert ids.count(VIDEO_ID) == plain.count(VIDEO_ID) == 5 and IMAGE_ID not in ids  # 4 rows + newline
    assert ids.count(3) == plain.count(3), "<|im_end|> only where the template writes it"
    tokens = backend.encoder.encode(_frames(1)).reshape(-1, backend.token_dim)[:4]
    reply = answerer.answer(question, tokens, _entries(4), max_new_tokens=2)
    assert reply.tokens_used == 4 and isinstance(reply.text, str)


def _prefill(answerer: LlavaAnswerer, call: Any) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Run `call`, capturing the language model's first inputs_embeds and the first logits row."""
    seen: list[torch.Tensor] = []
    logits: list[torch.Tensor] = []

    def pre(_m: Any, _a: Any, kwargs: dict[str, Any]) -> None:
        if kwargs.get("inputs_embeds") is not None:
            seen.append(kwargs["inputs_embeds"].detach().clone())

    def post(_m: Any, _a: Any, out: torch.Tensor) -> None:
        logits.append(out[0, -1].detach().clone())

    model = answerer.model
    hooks = [
        model.model.language_model.register_forward_pre_hook(pre, with_kwargs=True),
        model.lm_head.register_forward_hook(post),
    ]
    try:
        result = call()
    finally:
        for hook in hooks:
            hook.remove()
    return seen[0], logits[0], result


def test_keep_all_prefill_and_first_logits_equal_transformers_native_video_path() -> None:
    from transformers import LlavaOnevisionProcessor

    from agent.models.tiny import build_model, build_tokenizer

    model, tokenizer = cast(Any, build_model(seed=0)), build_tokenizer()
    pre = Preprocessing(384, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    frames = _frames(2, seed=5)
    answerer = LlavaAnswerer(
        model, tokenizer, classify(TYPED_TEMPLATE, "test", tokenizer), time_markers=False
    )
    question = "what did you see ?"
    # Native: the processor's own placeholder count for these pixels, the model encoding them itself.
    pixels = to_pixels(frames, (384, 384), pre.mean, pre.std)[None]  # [1, F, 3, 384, 384]
    fake_processor = SimpleNamespace(num_image_tokens=(384 // 14) ** 2, video_token="<video>")
    span = cast(Any, LlavaOnevisionProcessor).replace_video_token(
        fake_processor, {"pixel_values_videos": pixels}, 0
    )
    native_ids = _processor_ids(tokenizer, TYPED_TEMPLATE, question, span.count("<video>"), typed=True)
    ids = torch.tensor([native_ids])
    with torch.inference_mode():
        native_embeds, native_logits, _ = _prefill(
            answerer, lambda: model(input_ids=ids, pixel_values_videos=pixels)
        )
    # Ours, keep-all: every encoded token of both frames, as memory rows, then the newline row.
    tokens, entries = keep_all(LlavaEncoder(model, pre).encode(frames), [3.0, 4.0])
    assert tokens.shape[0] == len(entries) == 2 * 196 and span.count("<video>") == 2 * 196 + 1
    embeds, logits, reply = _prefill(
        answerer, lambda: answerer.answer(question, tokens, entries, max_new_tokens=1)
    )
    assert answerer.prompt_ids(question, entries, tokens.shape[0]) == native_ids
    assert reply.tokens_used == 2 * 196 and reply.evidence == [(3.0, 4.0)]
    assert reply.prefill_tokens == len(native_ids) and embeds.shape == native_embeds.shape
    embed_diff = float((embeds - native_embeds).abs().max())
    logit_diff = float((logits - native_logits).abs().max())
    print(f"keep-all vs native: prefill embeds max abs diff {embed_diff:.3g}, first logits {logit_diff:.3g}")
    assert embed_diff <= 1e-6 and logit_diff <= 1e-5
    # Without the newline row the prompt is one placeholder shorter and the last visual row is a token's.
    bare = LlavaAnswerer(model, tokenizer, answerer.template, time_markers=False, video_newline=False)
    bare_embeds, _, short = _prefill(bare, lambda: bare.answer(question, tokens, [], max_new_tokens=1))
    assert short.prefill_tokens == len(native_ids) - 1
    video = torch.tensor(bare.prompt_ids(question, [], tokens.shape[0])) == VIDEO_ID
    assert int(video.sum()) == tokens.shape[0] and torch.equal(bare_embeds[0, video], tokens)


def test_keep_all_keeps_every_token_of_identical_frames_where_tau_one_merges(tiny_dir: Path) -> None:
    backend = load_backend(str(tiny_dir), device="cpu")
    frame = backend.encoder.encode(_frames(1, seed=5))[0]
    frames = torch.stack([frame, frame])  # two identical frames: 392 tokens, 196 distinct
    rows, entries = keep_all(frames, [0.0, 0.5], first_index=10)
    assert rows.shape == (392, 64) and torch.equal(rows, frames.reshape(392, 64))
    assert [e.id for e in entries] == list(range(392)) and entries[196].evidence == (11,)
    assert (entries[0].first_seen, entries[391].last_seen) == (0.0, 0.5)
    assert compress_video(frames, 1.0).shape[0] < 392, "tau = 1.0 is no keep-all"
    with pytest.raises(ValueError, match="2 times for 1 frames"):
        keep_all(frames[:1], [0.0, 1.0])


def test_memory_tokens_over_the_context_drop_the_oldest_or_raise(tiny_dir: Path) -> None:
    backend = load_backend(str(tiny_dir), device="cpu")
    base = cast(LlavaAnswerer, backend.answerer)
    tokens = backend.encoder.encode(_frames(1)).reshape(-1, backend.token_dim)[:20]
    room = len(base.prompt_ids("what ?", _entries(20), 20)) - 8 + 4  # 8 positions short, 4 new tokens
    kw: dict[str, Any] = {"time_markers": base.time_markers, "context_tokens": room}
    drop = LlavaAnswerer(base.model, base.tokenizer, base.template, **kw)
    reply = drop.answer("what ?", tokens, _entries(20), max_new_tokens=4)
    assert reply.tokens_used == 12 and reply.prefill_tokens <= room - 4
    assert reply.evidence == [(8.0, 20.0)], "the 8 oldest entries were left out"
    strict = LlavaAnswerer(base.model, base.tokenizer, base.template, context_overflow="error", **kw)
    with pytest.raises(ContextOverflow, match="over the model's context"):
        strict.answer("what ?", tokens, _entries(20), max_new_tokens=4)
    assert base.context_tokens == 8192  # the model's own max_position_embeddings


def test_dtype_and_llava_settings_reach_the_loaded_backend(tiny_dir: Path) -> None:
    settings = load_settings(
        backend=str(tiny_dir), device="cpu", dtype="bfloat16", llava={"video_newline": False}
    )
    backend = backend_from_settings(settings)
    answerer = cast(LlavaAnswerer, backend.answerer)
    assert next(answerer.model.parameters()).dtype == torch.bfloat16 and not answerer.video_newline
    tokens = backend.encoder.encode(_frames(1))
    assert tokens.dtype == torch.float32 and tokens.shape == (1, 196, 64)
    assert answerer.answer("what ?", tokens[0, :3], [], max_new_tokens=2).tokens_used == 3
    assert load_settings(dtype="bfloat16").dtype == "bfloat16" and load_settings().dtype == "auto"
    with pytest.raises(SettingsError, match="dtype"):
        load_settings(dtype="float64")


def test_a_bare_hub_id_backend_loads_from_an_offline_cache(tiny_dir: Path, tmp_path: Path) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--llava-hf--scissor-tiny-ov"
    shutil.copytree(tiny_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    script = (
        "from agent.models import load_backend, WeightsNotFound\n"
        "from agent.settings import load_settings\n"
        "name = load_settings().backend\n"
        "b = load_backend(name, device='cpu', dtype='auto')\n"
        "print(b.name, b.answerer.template.origin, b.tokens_per_frame)\n"
        "try:\n    load_backend('llava-hf/not-in-the-cache', device='cpu')\n"
        "except WeightsNotFound as exc:\n    print('missing:', exc)\n"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "SCISSOR_BACKEND": "llava-hf/scissor-tiny-ov",
    }
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "llava_onevision chat_template.jinja 196" in out.stdout
    assert "missing:" in out.stdout and "HF_HUB_OFFLINE" in out.stdout


def test_a_tokenizer_whose_video_token_is_not_the_models_is_named_before_generate() -> None:
    from agent.models.tiny import build_model, build_tokenizer

    model, tokenizer = cast(Any, build_model(seed=0)), build_tokenizer()
    model.config.video_token_id = IMAGE_ID  # the checkpoint says <image>'s id; the tokenizer's <video> is 127
    answerer = LlavaAnswerer(model, tokenizer, classify(TYPED_TEMPLATE, "test", tokenizer))
    with pytest.raises(ChatTemplateError, match="not the model's video_token_id 126"):
        answerer.answer("what ?", torch.zeros(3, 64), [], max_new_tokens=1)
