"""LLaVA-OneVision through transformers' public surface: frames -> post-projector pooled video tokens, and
answers generated from memory tokens handed in as `mm_encoder_outputs` (never re-encoded, never model
surgery).

docs/design.md (Models): tokens are `get_video_features(...).pooler_output` minus the trailing newline
(bilinear 2x2 pooling: 196 tokens per 384 px frame); the prompt carries exactly K `<video>` placeholders.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from agent.models.base import Reply, WeightsNotFound, evidence_spans
from agent.models.preprocess import pick_device, pick_dtype, to_pixels

if TYPE_CHECKING:
    from compress.memory import EntryInfo

DEFAULT_MODEL_ID = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
# SigLIP checkpoints normalise with 0.5 / 0.5; used only when the checkpoint ships no preprocessor config.
_FALLBACK_MEAN = (0.5, 0.5, 0.5)
_FALLBACK_STD = (0.5, 0.5, 0.5)
_SYSTEM = "You watch a camera. Visual tokens from its memory follow, with stream times."


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

    Honours `HF_HUB_OFFLINE`: with it set, only local directories and the hub cache are used.

    Args:
        source: model directory or id.
        device: "auto" (CUDA when present), "cpu", "cuda:N".
        dtype: None (float16 on CUDA, float32 on CPU), "float32", "float16", "bfloat16".

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
        """Encode F RGB frames into `Tensor[F, N, D]` float32 on CPU."""
        p = self.model.parameters().__next__()
        pixels = to_pixels(
            frames, self.frame_size, self.pre.mean, self.pre.std, device=p.device, dtype=p.dtype
        )
        out = self.model.get_video_features(pixel_values_videos=pixels[None])  # pooler [1, F*N + 1, D]
        pooled: Tensor = out.pooler_output[0, :-1]  # drop the one newline token appended per video
        return pooled.reshape(len(frames), self.tokens_per_frame, -1).float().cpu().contiguous()


def _marker(t: float) -> str:
    return f"t={round(t)}s"


class LlavaAnswerer:
    """Question + K memory tokens -> generated answer; the K tokens fill K `<video>` placeholders.

    Args:
        model: a LlavaOnevisionForConditionalGeneration.
        tokenizer: its tokenizer (with a chat template, else a plain USER/ASSISTANT prompt is used).
        time_markers: interleave "t=12s" text before each group of entries first seen in the same bucket.
        marker_bucket_s: width of a time-marker group in stream seconds.
    """

    def __init__(
        self, model: Any, tokenizer: Any, *, time_markers: bool = True, marker_bucket_s: float = 10.0
    ):
        if marker_bucket_s <= 0:
            raise ValueError(f"marker_bucket_s must be > 0, got {marker_bucket_s}")
        self.model = model
        self.tokenizer = tokenizer
        self.time_markers = time_markers
        self.marker_bucket_s = marker_bucket_s
        self.video_token = str(getattr(tokenizer, "video_token", None) or "<video>")
        self.last_prefill_embeds: int | None = None

    def _visual_text(self, entries: Sequence[EntryInfo], k: int) -> str:
        if not self.time_markers or not entries:
            return self.video_token * k
        parts, bucket = [], None
        for e in entries:
            b = math.floor(e.first_seen / self.marker_bucket_s)
            if b != bucket:
                parts.append(f" {_marker(e.first_seen)} ")
                bucket = b
            parts.append(self.video_token)
        return "".join(parts)

    def prompt(self, question: str, entries: Sequence[EntryInfo], k: int) -> str:
        """The full prompt: chat template around the visual span (exactly K placeholders) and question."""
        content = f"{self._visual_text(entries, k)}\n{question}"
        messages = [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": content}]
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return str(text)
        return f"{_SYSTEM}\nUSER: {content}\nASSISTANT:"

    @torch.inference_mode()
    def answer(
        self, question: str, tokens: Tensor, entries: Sequence[EntryInfo], *, max_new_tokens: int = 64
    ) -> Reply:
        """Generate an answer from tokens `[K, D]` (row i belongs to entries[i] when entries are given).

        Raises:
            ValueError: when tokens are not `[K, D]` with the model's D, or entries do not match K.
        """
        start = time.perf_counter()
        k = self._check(tokens, entries)
        if entries:  # time markers need entries in time order; keep rows aligned with them
            order = sorted(range(k), key=lambda i: (entries[i].first_seen, i))
            entries = [entries[i] for i in order]
            tokens = tokens[torch.tensor(order, dtype=torch.long)] if k else tokens
        text = self.prompt(question, entries, k)
        p = next(self.model.parameters())
        ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"].to(p.device)
        kwargs: dict[str, Any] = {}
        if k:
            from transformers.modeling_outputs import BaseModelOutputWithPooling

            visual = tokens.to(device=p.device, dtype=p.dtype)[None]  # [1, K, D]
            kwargs["mm_encoder_outputs"] = {"video": BaseModelOutputWithPooling(pooler_output=visual)}
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
            tokens_used=k,
            prefill_tokens=int(ids.shape[1]),
            latency_s=time.perf_counter() - start,
        )

    def _check(self, tokens: Tensor, entries: Sequence[EntryInfo]) -> int:
        d = int(self.model.config.text_config.hidden_size)
        if tokens.ndim != 2 or (tokens.shape[0] and tokens.shape[1] != d):
            raise ValueError(f"tokens must be [K, {d}], got shape {tuple(tokens.shape)}")
        k = int(tokens.shape[0])
        if entries and len(entries) != k:
            raise ValueError(f"got {k} token rows but {len(entries)} entries: one row per entry")
        return k
