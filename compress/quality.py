"""Fidelity measures of a compressed token set against the original tokens (for bench/ and memory novelty).

Pure tensor code in float32; never I/O, never Prometheus (that is agent/metrics.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from compress.scc import normalize


def _rows(tokens: Tensor, what: str) -> Tensor:
    """`[..., D]` -> `[S, D]` (frames flatten to their tokens)."""
    if tokens.dim() < 2:
        raise ValueError(f"{what} must be [..., D], got shape {tuple(tokens.shape)}")
    return tokens.reshape(-1, tokens.shape[-1])


def nearest_cosine(original: Tensor, retained: Tensor, *, block: int = 4096) -> Tensor:
    """For every original token, its highest cosine similarity to any retained token.

    Args:
        original: `[..., D]` tokens (e.g. frames `[F, N, D]`), any float dtype.
        retained: `[K, D]` tokens of the same width.

    Returns:
        `[S]` float32 in [-1, 1], S = number of original tokens. Zero-norm tokens have similarity 0 with
        everything; with K = 0 every value is 0.
    """
    src, kept = _rows(original, "original"), _rows(retained, "retained")
    if src.shape[1] != kept.shape[1]:
        raise ValueError(f"original width {src.shape[1]} != retained width {kept.shape[1]}")
    out = torch.zeros(src.shape[0], dtype=torch.float32, device=src.device)
    if kept.shape[0] == 0:
        return out
    unit_k = normalize(kept)[0]
    for start in range(0, src.shape[0], block):  # bounds the [s, K] similarity
        out[start : start + block] = (normalize(src[start : start + block])[0] @ unit_k.T).amax(dim=1)
    return out


def coverage(original: Tensor, retained: Tensor) -> float:
    """Mean over original tokens of the max cosine similarity to the retained set (1.0 = every token kept).

    Args:
        original: `[..., D]` original tokens; retained: `[K, D]`.

    Returns:
        float in [-1, 1].

    Raises:
        ValueError: no original tokens, or widths disagree.
    """
    best = nearest_cosine(original, retained)
    if best.numel() == 0:
        raise ValueError("coverage of an empty original token set is undefined")
    return float(best.mean())


def worst_coverage(original: Tensor, retained: Tensor, *, quantile: float = 0.05) -> float:
    """The `quantile` of the per-token max cosine: how badly the least-covered tokens (small objects) fare.

    Args:
        original: `[..., D]`; retained: `[K, D]`; quantile: in [0, 1] (0.05 = the worst 5 % boundary).

    Returns:
        float in [-1, 1].
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    best = nearest_cosine(original, retained)
    if best.numel() == 0:
        raise ValueError("coverage of an empty original token set is undefined")
    return float(torch.quantile(best, quantile))


def retention(original: Tensor, retained: Tensor) -> float:
    """Retained tokens as a share of the original tokens (K / S), the paper's retention ratio."""
    s = _rows(original, "original").shape[0]
    if s == 0:
        raise ValueError("retention of an empty original token set is undefined")
    return _rows(retained, "retained").shape[0] / s
