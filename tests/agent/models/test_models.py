"""agent.models: the embedded encoder really sees, labels resolve, tiny runs the real LLaVA-OneVision
path."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import skimage.data
import torch

from agent.models import Backend, BackendNotFound, WeightsNotFound, load_backend
from agent.models.embedded import EfficientNetLite, load_lite0
from agent.models.labels import LabelNotSeen
from agent.models.llava_onevision import LlavaAnswerer
from agent.models.preprocess import FrameError
from compress import compress_video, compress_video_with_stats
from compress.memory import EntryInfo

CATS = set(range(281, 286))


@pytest.fixture(scope="module")
def embedded() -> Backend:
    return load_backend("embedded", device="cpu")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from agent.models.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> Backend:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return load_backend("tiny", device="cpu", directory=str(tiny_dir))


@pytest.fixture(scope="module")
def photos(embedded: Backend) -> torch.Tensor:
    """Tokens [2, 196, 1280] of skimage's chelsea (a cat) and coffee (an espresso cup), encoded once."""
    # skimage ships without type hints: say what its sample-image loaders return.
    chelsea = cast(Callable[[], np.ndarray], skimage.data.chelsea)
    coffee = cast(Callable[[], np.ndarray], skimage.data.coffee)
    return embedded.encoder.encode([chelsea(), coffee()])


@pytest.fixture(scope="module")
def photo_memory(embedded: Backend, photos: torch.Tensor) -> tuple[torch.Tensor, list[EntryInfo]]:
    """Entries of the chelsea frame seen at 10-12 s and the coffee frame seen at 100-104 s."""
    cat, cat_stats = compress_video_with_stats(photos[:1], embedded.default_tau)
    cup, cup_stats = compress_video_with_stats(photos[1:], embedded.default_tau)
    cat_counts = torch.bincount(cat_stats.assignment, minlength=cat.shape[0]).tolist()
    cup_counts = torch.bincount(cup_stats.assignment, minlength=cup.shape[0]).tolist()
    entries = [EntryInfo(i, 10.0, 12.0, c, 3, (1,)) for i, c in enumerate(cat_counts)]
    entries += [EntryInfo(100 + i, 100.0, 104.0, c, 5, (9,)) for i, c in enumerate(cup_counts)]
    return torch.cat([cat, cup]), entries


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    return [np.roll(base, 8 * i, axis=1) for i in range(n)]


def _entries(k: int, t0: float = 0.0, step: float = 1.0) -> list[EntryInfo]:
    return [EntryInfo(i, t0 + i * step, t0 + i * step + step, 3, 2, (i,)) for i in range(k)]


def test_embedded_weights_load_key_for_key_and_a_missing_key_is_named() -> None:
    state = torch.load(
        __import__("agent.models.embedded", fromlist=["weights_path"]).weights_path(), weights_only=True
    )
    assert len(state) == len(EfficientNetLite().state_dict())
    broken = dict(state)
    del broken["_blocks.3._bn0.running_mean"]
    with pytest.raises(ValueError, match="missing"):
        EfficientNetLite.from_state_dict(broken)
    broken = dict(state)
    broken["_fc.bias"] = torch.zeros(10)
    with pytest.raises(ValueError, match=r"_fc.bias"):
        EfficientNetLite.from_state_dict(broken)


def test_embedded_encoder_gives_196_tokens_of_1280_per_448px_frame(
    embedded: Backend, photos: torch.Tensor
) -> None:
    tokens = photos
    assert tokens.shape == (2, 196, 1280) and tokens.dtype == torch.float32
    assert (embedded.token_dim, embedded.tokens_per_frame, embedded.frame_size) == (1280, 196, (448, 448))
    assert float(tokens.min()) >= 0.0 and float(tokens.max()) <= 6.0  # ReLU6 features


def test_embedded_labels_chelsea_as_a_cat_and_coffee_as_espresso_or_cup(
    embedded: Backend, photos: torch.Tensor
) -> None:
    assert embedded.labeler is not None
    tokens = photos
    per_token = embedded.labeler.class_logits(tokens).mean(
        dim=1
    )  # [2, 1000] averaged over the frame's tokens
    assert int(per_token[0].argmax()) in CATS
    assert int(per_token[1].argmax()) in {967, 968}
    # The head is linear: the mean of per-token logits is the logits of the mean token (entries are means).
    assert torch.allclose(per_token, embedded.labeler.class_logits(tokens.mean(dim=1)), atol=1e-4)
    top = embedded.labeler.label(tokens.mean(dim=1), top_k=3)
    assert top[0][0][0] in {embedded.labeler.class_names[i] for i in CATS}
    assert top[0][0][1] >= top[0][1][1] >= top[0][2][1]


def test_embedded_encoder_resizes_frames_of_any_size_and_rejects_non_rgb(embedded: Backend) -> None:
    odd = np.zeros((37, 61, 3), dtype=np.uint8)
    assert embedded.encoder.encode([odd]).shape == (1, 196, 1280)
    with pytest.raises(FrameError, match="uint8"):
        embedded.encoder.encode([odd.astype(np.float32)])
    with pytest.raises(FrameError, match="H x W x 3"):
        embedded.encoder.encode([np.zeros((10, 10), dtype=np.uint8)])


@pytest.mark.parametrize(
    ("query", "must_hold", "size"),
    [("cat", CATS, None), ("cats", CATS, None), ("dog", {151, 207, 268}, 118),
     ("car", {511, 817, 436}, None), ("bird", {7, 8, 24, 94, 146}, None), ("bike", {671, 444}, 2),
     ("taxi", {468}, 1), ("cab", {468}, 1),
     ("Tabby", {281}, 1), ("crane", {134, 517}, 2)],
)  # fmt: skip
def test_label_queries_resolve_names_synonyms_and_wordnet_groups(
    embedded: Backend, query: str, must_hold: set[int], size: int | None
) -> None:
    assert embedded.labeler is not None
    ids = embedded.labeler.resolve(query)
    assert must_hold <= ids
    if size is not None:
        assert len(ids) == size
    assert not ids & {967, 968}  # never drifts into unrelated classes


@pytest.mark.parametrize("query", ["person", "people", "man", "pedestrians"])
def test_words_for_people_are_refused_with_what_the_model_can_see(embedded: Backend, query: str) -> None:
    assert embedded.labeler is not None
    with pytest.raises(LabelNotSeen, match=f"cannot recognise '{query}'.*it can see e.g. 'bicycle'"):
        embedded.labeler.resolve(query)


def test_the_embedded_answerer_says_it_cannot_tell_about_people_never_no(
    embedded: Backend, photo_memory: tuple[torch.Tensor, list[EntryInfo]]
) -> None:
    tokens, entries = photo_memory
    reply = embedded.answerer.answer("is there a person?", tokens, entries)
    assert reply.text.startswith("I cannot tell: the embedded model cannot recognise 'person'")
    assert reply.evidence == []


def test_unknown_label_raises_a_value_error_with_suggestions(embedded: Backend) -> None:
    assert embedded.labeler is not None
    with pytest.raises(ValueError, match="did you mean 'cat'"):
        embedded.labeler.resolve("catt")


def test_embedded_answerer_says_when_it_last_saw_a_cat(
    embedded: Backend, photo_memory: tuple[torch.Tensor, list[EntryInfo]]
) -> None:
    tokens, entries = photo_memory
    answer = embedded.answerer.answer("When did you last see a cat?", tokens, entries)
    assert "cat" in answer.text and "t=12s" in answer.text
    assert answer.evidence == [(10.0, 12.0)]
    assert answer.tokens_used == tokens.shape[0] and answer.prefill_tokens == 0


def test_embedded_answerer_says_no_for_what_it_did_not_see(
    embedded: Backend, photo_memory: tuple[torch.Tensor, list[EntryInfo]]
) -> None:
    tokens, entries = photo_memory
    answer = embedded.answerer.answer("Did you see a dog?", tokens, entries)
    assert answer.text.startswith("No") and answer.evidence == []


def test_embedded_answerer_lists_what_was_seen_in_a_recent_window(
    embedded: Backend, photo_memory: tuple[torch.Tensor, list[EntryInfo]]
) -> None:
    tokens, entries = photo_memory
    # Whole-frame predictions at 448 px: the cat frame's Egyptian Mau (p=0.17 >= frame_min_prob 0.1) and the
    # coffee frame's espresso (p=0.05, 4.8x the runner-up >= frame_min_margin 3) are named, each at its time.
    recent = embedded.answerer.answer("What was seen in the last 2 minutes?", tokens, entries)
    assert "Egyptian Mau" in recent.text and "an espresso" in recent.text
    assert recent.evidence == [(10.0, 12.0), (100.0, 104.0)]
    short = embedded.answerer.answer("What was seen in the last 30 seconds?", tokens, entries)
    assert "espresso" in short.text and "Mau" not in short.text
    assert short.text.startswith("Between t=74s and t=104s")  # the range: 30 s back from the newest entry


def test_embedded_answerer_says_plainly_when_a_question_is_beyond_it(
    embedded: Backend, photo_memory: tuple[torch.Tensor, list[EntryInfo]]
) -> None:
    tokens, entries = photo_memory
    answer = embedded.answerer.answer("Why is the sky blue?", tokens, entries)
    assert answer.text.startswith("I cannot tell colours") and answer.evidence == []
    answer = embedded.answerer.answer("what colour is the cat?", tokens, entries)
    assert answer.text.startswith("I cannot tell colours") and "'when did you see a cat?'" in answer.text
    answer = embedded.answerer.answer("Tell me a joke", tokens, entries)
    assert answer.text.startswith("I can't answer that") and answer.evidence == []


def _capture_prefill(backend: Backend) -> tuple[list[torch.Tensor], Any]:
    lm = backend.answerer.model.model.language_model  # type: ignore[attr-defined]
    seen: list[torch.Tensor] = []

    def hook(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        if kwargs.get("inputs_embeds") is not None:
            seen.append(kwargs["inputs_embeds"].detach().clone())

    return seen, lm.register_forward_pre_hook(hook, with_kwargs=True)


def test_tiny_runs_frames_to_compressed_tokens_to_an_answer_with_exactly_k_visual_embeddings(
    tiny: Backend,
) -> None:
    frames = _frames(6)
    tokens = tiny.encoder.encode(frames)
    assert tokens.shape == (6, 196, tiny.token_dim) == (6, tiny.tokens_per_frame, 64)
    memory = compress_video(tokens, 0.9)
    k = memory.shape[0]
    assert 0 < k < 6 * 196
    entries = _entries(k)
    seen, handle = _capture_prefill(tiny)
    try:
        answer = tiny.answerer.answer("what did you see ?", memory, entries, max_new_tokens=5)
    finally:
        handle.remove()
    prefill = seen[0]  # [1, prompt + K, D]: the first language-model call is the prefill
    assert prefill.shape[1] == answer.prefill_tokens
    answerer = cast(LlavaAnswerer, tiny.answerer)
    video = torch.tensor(answerer.prompt_ids("what did you see ?", entries, k)) == 127
    assert int(video.sum()) == k + 1 and k == answer.tokens_used  # K memory rows, then the newline row
    # The memory rows themselves, not re-encoded.
    assert torch.allclose(prefill[0, video][:k], memory, atol=1e-6)
    assert torch.equal(prefill[0, video][k], answerer.model.model.image_newline)
    assert answer.prefill_tokens > k and len(seen) <= 5 and isinstance(answer.text, str)
    assert answer.evidence == [(0.0, float(k))]


def test_tiny_answers_are_deterministic(tiny: Backend) -> None:
    memory = compress_video(tiny.encoder.encode(_frames(2)), 0.9)
    a = tiny.answerer.answer("when did you see a cat ?", memory, _entries(memory.shape[0]), max_new_tokens=6)
    b = tiny.answerer.answer("when did you see a cat ?", memory, _entries(memory.shape[0]), max_new_tokens=6)
    assert a.text == b.text and a.prefill_tokens == b.prefill_tokens


def test_llava_onevision_loads_the_tiny_directory_by_path_through_the_same_code(
    tiny: Backend, tiny_dir: Path
) -> None:
    by_path = load_backend(str(tiny_dir), device="cpu")
    named = load_backend(f"llava_onevision:{tiny_dir}", device="cpu")
    assert by_path.name == named.name == "llava_onevision"
    frames = _frames(2, seed=3)
    assert torch.equal(by_path.encoder.encode(frames), tiny.encoder.encode(frames))
    assert torch.equal(named.encoder.encode(frames), tiny.encoder.encode(frames))


def test_llava_answerer_rejects_tokens_of_the_wrong_width(tiny: Backend) -> None:
    with pytest.raises(ValueError, match=r"\[K, 64\]"):
        tiny.answerer.answer("what ?", torch.zeros(3, 65), _entries(3))


def test_unknown_backend_names_list_what_exists() -> None:
    with pytest.raises(BackendNotFound, match="embedded, tiny, llava_onevision"):
        load_backend("resnet")


def test_missing_model_directory_fails_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFound, match="does not exist"):
        load_backend(str(tmp_path / "nope"))


def test_default_llava_weights_missing_offline_fail_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-scissor-hf-home")
    with pytest.raises(WeightsNotFound, match="HF_HUB_OFFLINE"):
        load_backend("llava_onevision", device="cpu")


def test_lite0_loader_checks_the_shipped_file() -> None:
    net = load_lite0()
    assert not net.training and net._fc.out_features == 1000
