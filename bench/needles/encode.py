"""Encoding for `scissor bench needles`: the stream's tokens through the embedded encoder, cached on disk.

Tokens are stored as float16 (ReLU6 features in [0, 6]: about 3 significant digits) in chunks of CHUNK frames
under the cache directory, keyed by the recipe's hash and the encoder's input size, so an interrupted run
resumes and re-runs at other capacities skip the encoder. Every run reads the float16 values back, so a run
that encodes and a run that loads see the same tokens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from agent.models.embedded import EmbeddedEncoder
from bench.needles.stream import Recipe, photo_view, render

log = logging.getLogger("bench.needles")
CHUNK = 300


def _chunk_path(cache_dir: Path, recipe: Recipe, start: int) -> Path:
    """Cache file of the chunk starting at frame `start`."""
    stop = min(start + CHUNK, recipe.frames)
    return cache_dir / f"tokens-{recipe.key()}-{start:06d}-{stop:06d}.pt"


def cached_chunks(recipe: Recipe, cache_dir: Path) -> tuple[int, int]:
    """(chunks of the stream already in the cache, chunks in all)."""
    starts = range(0, recipe.frames, CHUNK)
    return sum(_chunk_path(cache_dir, recipe, s).is_file() for s in starts), len(starts)


def _encode_range(encoder: EmbeddedEncoder, recipe: Recipe, start: int, stop: int, batch: int) -> Tensor:
    """Render and encode frames start..stop-1 in batches -> float16 `[stop - start, N, D]`."""
    parts = []
    for b in range(start, stop, batch):
        frames = [render(recipe, i) for i in range(b, min(b + batch, stop))]
        parts.append(encoder.encode(frames).half())
    return torch.cat(parts)


def stream_tokens(encoder: EmbeddedEncoder, recipe: Recipe, cache_dir: Path, *, batch: int = 8) -> Tensor:
    """Tokens of every stream frame, float16 `[F, N, D]`, from the cache or encoded (and cached) now.

    Args:
        encoder: the embedded encoder; its input size must be the recipe's frame size.
        recipe: the stream.
        cache_dir: where the chunks are kept (created when missing).
        batch: frames per encoder call.

    Returns:
        `Tensor[F, N, D]` float16 on CPU.
    """
    if encoder.image_px != recipe.size:
        raise ValueError(f"encoder input {encoder.image_px} px but the stream is {recipe.size} px")
    cache_dir.mkdir(parents=True, exist_ok=True)
    chunks, began = [], time.perf_counter()
    for start in range(0, recipe.frames, CHUNK):
        path = _chunk_path(cache_dir, recipe, start)
        if path.is_file():
            chunks.append(torch.load(path, weights_only=True))
            continue
        stop = min(start + CHUNK, recipe.frames)
        tokens = _encode_range(encoder, recipe, start, stop, batch)
        torch.save(tokens, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)  # a complete chunk or none
        chunks.append(tokens)
        elapsed = time.perf_counter() - began
        log.info("encoded frames %d-%d of %d (%.0f s so far)", start, stop - 1, recipe.frames, elapsed)
    return torch.cat(chunks)


def photo_labels(encoder: EmbeddedEncoder, photos: Sequence[str]) -> dict[str, int]:
    """Each photo's own label: the top-1 ImageNet class of its whole view (the mean token, as trained)."""
    tokens = encoder.encode([photo_view(p, encoder.image_px) for p in photos])  # [P, N, D]
    top = encoder.class_logits(tokens.mean(dim=1)).argmax(dim=-1)
    return {p: int(c) for p, c in zip(photos, top.tolist(), strict=True)}


def shown_labels(encoder: EmbeddedEncoder, tokens: Tensor, recipe: Recipe) -> dict[str, int]:
    """Each needle photo's label as shown: the top-1 class of the mean token over all its frames on camera."""
    out = {}
    for p in recipe.photos():
        frames = torch.cat(
            [torch.arange(round(a * recipe.fps), round(b * recipe.fps) + 1) for a, b in recipe.truth(p)]
        )
        out[p] = int(encoder.class_logits(tokens[frames].float().mean(dim=(0, 1))).argmax())
    return out


def unit_labels(encoder: EmbeddedEncoder, tokens: Tensor, batch: int = 4096) -> Tensor:
    """Top-1 ImageNet class `[K]` of each kept token or entry mean `[K, D]` (the head applied to it)."""
    if tokens.shape[0] == 0:
        return torch.empty(0, dtype=torch.long)
    parts = [encoder.class_logits(tokens[i : i + batch]).argmax(dim=-1) for i in range(0, len(tokens), batch)]
    return torch.cat(parts)
