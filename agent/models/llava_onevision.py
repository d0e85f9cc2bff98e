"""LLaVA-OneVision through transformers' public surface: frames -> post-projector pooled video tokens, and
answers generated from memory tokens handed in as `mm_encoder_outputs` (never re-encoded, never model
surgery).

docs/design.md (Models): tokens are `get_video_features(...).pooler_output` minus the trailing newline
(bilinear 2x2 pooling: 196 tokens per 384 px frame). The prompt is the checkpoint's own chat template over
typed content parts (agent/models/chat_prompt.py) with exactly K `<video>` placeholders for the memory rows,
plus one for the `image_newline` row transformers appends per video (`video_newline`, on by default).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

from agent.errors import AgentError
from agent.models.base import ModelError, Reply, WeightsNotFound, evidence_spans
from agent.models.chat_prompt import ChatTemplate, ChatTemplateError, classify, encode_prompt, video_token
from agent.models.preprocess import pick_device, pick_dtype, to_pixels

if TYPE_CHECKING:
    from compress.memory import EntryInfo

log = logging.getLogger(__name__)

DEFAULT_MODEL_ID = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
# SigLIP checkpoints normalise with 0.5 / 0.5; used only when the checkpoint ships no preprocessor config.
_FALLBACK_MEAN = (0.5, 0.5, 0.5)
_FALLBACK_STD = (0.5, 0.5, 0.5)
SYSTEM_PROMPT = "You watch a camera. Visual tokens from its memory follow, with stream times."
Overflow = Literal["drop_oldest", "error"]


class ContextOverflow(ModelError, AgentError, ValueError):
    """The prompt (text + memory tokens + answer room) does not fit the language model's context: the API
    answers 422 with the numbers."""

    status = 422


@dataclass(frozen=True)
class Preprocessing:
    """What frames must look like for the vision tower: square side in pixels, mean and std."""

    image_px: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def _read_preprocessing(source: str, image_px: int) -> Preprocessing:
    from transformers.utils.hub import cached_file

    for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
        try:
            path = cached_file(source, name, _raise_exceptions_for_missing_entries=False)
        except OSError:
            path = None
        if path:
            cfg = json.loads(Path(path).read_text(encoding="utf-8"))
            mean, std = cfg.get("image_mean", _FALLBACK_MEAN), cfg.get("image_std", _FALLBACK_STD)
            return Preprocessing(image_px, (mean[0], mean[1], mean[2]), (std[0], std[1], std[2]))
    return Preprocessing(image_px, _FALLBACK_MEAN, _FALLBACK_STD)


def load_model(
    source: str, *, device: str = "auto", dtype: str | None = None
) -> tuple[Any, Any, Preprocessing]:
    """Load a LLaVA-OneVision checkpoint (local directory or Hugging Face id) with its tokenizer.

    Honours `HF_HUB_OFFLINE`: with it set, only local directories and the hub cache (`HF_HUB_CACHE`,
    `HF_HOME`) are used.

    Args:
        source: model directory or id.
        device: "auto" (CUDA when present), "cpu", "cuda:N".
        dtype: None or "auto" (float16 on CUDA, float32 on CPU), "float32", "float16", "bfloat16".

    Returns:
        (model in eval mode, tokenizer, preprocessing).

    Raises:
        WeightsNotFound: when the directory does not exist or the weights are not available offline.
    """
    from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

    local = Path(source).expanduser()
    if local.exists():
        if not local.is_dir():
            raise WeightsNotFound(f"model path {source!r} is not a directory")
        source = str(local)
    elif source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise WeightsNotFound(f"model directory {source!r} does not exist (and it is no Hugging Face id)")
    dev = pick_device(device)
    torch_dtype = pick_dtype(dtype, dev)
    try:
        model = LlavaOnevisionForConditionalGeneration.from_pretrained(source, dtype=torch_dtype)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        hint = " (HF_HUB_OFFLINE is set: download it beforehand or give a local directory)" if offline else ""
        raise WeightsNotFound(
            f"LLaVA-OneVision weights for {source!r} are not available{hint}: {exc}"
        ) from exc
    model = model.to(dev).eval()  # type: ignore[arg-type]
    vision = model.config.vision_config
    return model, tokenizer, _read_preprocessing(source, int(vision.image_size))


class LlavaEncoder:
    """Frames -> LLaVA-OneVision video tokens `[F, N, D]` (vision tower, projector, bilinear 2x2 pooling)."""

    def __init__(self, model: Any, pre: Preprocessing) -> None:
        self.model = model
        self.pre = pre
        vision = model.config.vision_config
        grid = int(vision.image_size) // int(vision.patch_size)
        self.tokens_per_frame = math.ceil(grid / 2) ** 2
        self.token_dim = int(model.config.text_config.hidden_size)
        self.frame_size = (pre.image_px, pre.image_px)

    @torch.inference_mode()
    def encode(self, frames: Sequence[np.ndarray]) -> Tensor:
        """Encode F RGB frames into `Tensor[F, N, D]` float32 on the model's device (the pipeline moves
        them to the memory's)."""
        p = self.model.parameters().__next__()
        pixels = to_pixels(
            frames, self.frame_size, self.pre.mean, self.pre.std, device=p.device, dtype=p.dtype
        )
        out = self.model.get_video_features(pixel_values_videos=pixels[None])  # pooler [1, F*N + 1, D]
        pooled: Tensor = out.pooler_output[0, :-1]  # drop the one newline token appended per video
        return pooled.reshape(len(frames), self.tokens_per_frame, -1).float().contiguous()


def _marker(t: float) -> str:
    return f"t={round(t)}s"


class LlavaAnswerer:
    """Question + K memory tokens -> generated answer; the K tokens fill K `<video>` placeholders, and the
    checkpoint's `image_newline` row one more after them (as transformers' native video path puts it).

    Args:
        model: a LlavaOnevisionForConditionalGeneration.
        tokenizer: its tokenizer.
        template: the checkpoint's chat template (`chat_prompt.find_chat_template`); None: the tokenizer's
            own, and a `ChatTemplateError` when it has none (no made-up prompt format).
        time_markers: interleave "t=12s" text before each group of entries first seen in the same bucket.
        marker_bucket_s: width of a time-marker group in stream seconds.
        video_newline: append the `image_newline` row after the memory tokens (the checkpoint was trained
            with it closing every video); False leaves it out.
        context_overflow: when text + tokens + `max_new_tokens` exceed the model's context
            (`text_config.max_position_embeddings`): "drop_oldest" leaves out the earliest-seen rows until
            it fits (logged), "error" raises `ContextOverflow`.
        context_tokens: the context length to fit in; None: the model's own.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        template: ChatTemplate | None = None,
        *,
        time_markers: bool = True,
        marker_bucket_s: float = 10.0,
        video_newline: bool = True,
        context_overflow: Overflow = "drop_oldest",
        context_tokens: int | None = None,
    ):
        if marker_bucket_s <= 0:
            raise ValueError(f"marker_bucket_s must be > 0, got {marker_bucket_s}")
        if context_overflow not in ("drop_oldest", "error"):
            raise ValueError(f"context_overflow must be drop_oldest or error, got {context_overflow!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.template = template or _own_template(tokenizer)
        self.time_markers = time_markers
        self.marker_bucket_s = marker_bucket_s
        self.video_newline = video_newline
        self.context_overflow = context_overflow
        self.video_token = video_token(tokenizer)
        self.video_token_id = int(model.config.video_token_id)
        own = int(model.config.text_config.max_position_embeddings)
        self.context_tokens = own if context_tokens is None else min(int(context_tokens), own)
        self.prompt_ids("is the template usable ?", [], 1)  # a template that cannot render fails at load

    def _visual_text(self, entries: Sequence[EntryInfo], k: int) -> str:
        newline = self.video_token if self.video_newline and k else ""  # nothing to close without rows
        if not self.time_markers or not entries:
            return self.video_token * k + newline
        parts, bucket = [], None
        for e in entries:
            b = math.floor(e.first_seen / self.marker_bucket_s)
            if b != bucket:
                parts.append(f" {_marker(e.first_seen)} ")
                bucket = b
            parts.append(self.video_token)
        return "".join(parts) + newline

    def prompt_ids(self, question: str, entries: Sequence[EntryInfo], k: int) -> list[int]:
        """The prompt's ids: the chat template around the visual span (K placeholders, plus the newline
        row's) and the question, whose control tokens are plain text."""
        visual = self._visual_text(entries, k)
        return encode_prompt(
            self.template, self.tokenizer, system=SYSTEM_PROMPT, question=question, visual=visual
        )

    def _fit(
        self, question: str, tokens: Tensor, entries: Sequence[EntryInfo], max_new_tokens: int
    ) -> tuple[list[int], Tensor, Sequence[EntryInfo]]:
        """Prompt ids, tokens and entries that fit the context with room for `max_new_tokens`."""
        k = int(tokens.shape[0])
        ids = self.prompt_ids(question, entries, k)
        limit = self.context_tokens - max_new_tokens
        if len(ids) <= limit:
            return ids, tokens, entries
        over = len(ids) - limit
        if self.context_overflow == "error" or over > k:
            raise ContextOverflow(
                f"the prompt needs {len(ids)} positions + {max_new_tokens} new tokens, over the model's "
                f"context of {self.context_tokens} ({k} memory tokens; context_overflow="
                f"{self.context_overflow}; ask over a shorter range or cap max_memory_tokens)",
                prompt_tokens=len(ids),
                context_tokens=self.context_tokens,
            )
        # Dropping a row removes its placeholder and never adds a marker, so `over` rows always suffice.
        log.warning(
            "prompt over the context by %d positions: the %d oldest memory tokens left out", over, over
        )
        tokens, entries = tokens[over:], list(entries)[over:] if entries else entries
        return self.prompt_ids(question, entries, k - over), tokens, entries

    @torch.inference_mode()
    def answer(
        self, question: str, tokens: Tensor, entries: Sequence[EntryInfo], *, max_new_tokens: int = 64
    ) -> Reply:
        """Generate an answer from tokens `[K, D]` (row i belongs to entries[i] when entries are given).

        Raises:
            ValueError: when tokens are not `[K, D]` with the model's D, or entries do not match K.
            ContextOverflow: the prompt cannot fit the model's context (see `context_overflow`).
        """
        start = time.perf_counter()
        k = self._check(tokens, entries)
        if entries:  # time markers need entries in time order; keep rows aligned with them
            order = sorted(range(k), key=lambda i: (entries[i].first_seen, i))
            entries = [entries[i] for i in order]
            tokens = tokens[torch.tensor(order, dtype=torch.long, device=tokens.device)] if k else tokens
        ids_list, tokens, entries = self._fit(question, tokens, entries, max_new_tokens)
        p = next(self.model.parameters())
        ids = torch.tensor([ids_list], dtype=torch.long, device=p.device)
        visual = self._visual_rows(tokens.to(device=p.device, dtype=p.dtype))
        rows, placeholders = int(visual.shape[0]), ids_list.count(self.video_token_id)
        if placeholders != rows:  # named here, before generate's bare "features and tokens do not match"
            raise ChatTemplateError(
                f"the prompt holds {placeholders} {self.video_token} ids for {rows} visual rows: the "
                f"tokenizer's {self.video_token} is not the model's video_token_id {self.video_token_id}"
            )
        kwargs: dict[str, Any] = {}
        if visual.shape[0]:
            from transformers.modeling_outputs import BaseModelOutputWithPooling

            kwargs["mm_encoder_outputs"] = {"video": BaseModelOutputWithPooling(pooler_output=visual[None])}
        out = self.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
            **kwargs,
        )
        new = out[0, ids.shape[1] :]
        answer = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        return Reply(
            text=answer,
            evidence=evidence_spans(entries),
            tokens_used=int(tokens.shape[0]),
            prefill_tokens=int(ids.shape[1]),
            latency_s=time.perf_counter() - start,
        )

    def _visual_rows(self, tokens: Tensor) -> Tensor:
        """`[K, D]` memory rows, then the `image_newline` row when `video_newline` is on: `[K (+1), D]`."""
        if not self.video_newline or not tokens.shape[0]:
            return tokens
        newline = self.model.model.image_newline.to(device=tokens.device, dtype=tokens.dtype)
        return torch.cat([tokens, newline[None]])

    def _check(self, tokens: Tensor, entries: Sequence[EntryInfo]) -> int:
        d = int(self.model.config.text_config.hidden_size)
        if tokens.ndim != 2 or (tokens.shape[0] and tokens.shape[1] != d):
            raise ValueError(f"tokens must be [K, {d}], got shape {tuple(tokens.shape)}")
        k = int(tokens.shape[0])
        if entries and len(entries) != k:
            raise ValueError(f"got {k} token rows but {len(entries)} entries: one row per entry")
        return k


def _own_template(tokenizer: Any) -> ChatTemplate:
    text = getattr(tokenizer, "chat_template", None)
    if isinstance(text, dict):
        text = text.get("default")
    if not isinstance(text, str) or not text.strip():
        raise ChatTemplateError(
            "the tokenizer has no chat template; pass the checkpoint's (find_chat_template)"
        )
    return classify(text, "tokenizer", tokenizer)
