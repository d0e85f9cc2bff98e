"""Hit a token budget or retention ratio with the paper's compressor by searching tau; never I/O.

The final count of the two-step method is NOT monotone in tau (PAPER.md D7), so the search never trusts
monotonicity: it keeps the bracket invariant count(lo) <= budget < count(hi), remembers every tau it tried,
and returns the feasible tau (count <= budget) whose count came closest to the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from compress.scc import SccStats, compress_video_with_stats


@dataclass(frozen=True)
class BudgetStats:
    """What `compress_to_budget_with_stats` chose.

    Attributes:
        tau: the threshold used for the returned tokens.
        budget: the token budget after clamping to F * N.
        steps: compressor runs spent searching (without the merge, which keeps the count).
        scc: the statistics of the returned compression.
    """

    tau: float
    budget: int
    steps: int
    scc: SccStats


def _budget(frames: Tensor, retention: float | None, max_tokens: int | None) -> int:
    """Exactly one of retention / max_tokens -> token budget clamped to F * N."""
    if frames.dim() != 3:
        raise ValueError(f"frames must be [F, N, D], got shape {tuple(frames.shape)}")
    total = frames.shape[0] * frames.shape[1]
    if (retention is None) == (max_tokens is None):
        raise ValueError("give exactly one of retention= or max_tokens=")
    if retention is not None:
        if not 0.0 < retention <= 1.0:  # also rejects NaN
            raise ValueError(f"retention must be in (0, 1], got {retention}")
        return min(total, max(1, math.floor(retention * total)))
    if max_tokens is None or isinstance(max_tokens, bool) or int(max_tokens) != max_tokens or max_tokens < 1:
        raise ValueError(f"max_tokens must be an integer >= 1, got {max_tokens!r}")
    return min(total, int(max_tokens))


def compress_to_budget_with_stats(
    frames: Tensor,
    *,
    retention: float | None = None,
    max_tokens: int | None = None,
    merge: bool = True,
    tau_tolerance: float = 1e-4,
    max_steps: int = 24,
) -> tuple[Tensor, BudgetStats]:
    """`compress_to_budget` that also reports the chosen tau and the search cost.

    See `compress_to_budget`; returns `(tokens [K, D], BudgetStats)`.
    """
    budget = _budget(frames, retention, max_tokens)
    if budget == 0:  # F * N == 0
        out, stats = compress_video_with_stats(frames, 1.0, merge)
        return out, BudgetStats(1.0, 0, 1, stats)
    tried: dict[float, int] = {}

    def count(tau: float) -> int:
        tried[tau] = compress_video_with_stats(frames, tau, merge=False)[1].output_tokens
        return tried[tau]

    lo, hi = -1.0, 1.0
    if count(lo) > budget:  # zero-norm tokens are singletons at every tau
        raise ValueError(f"budget {budget} is below the fewest tokens reachable ({tried[lo]}) at any tau")
    if count(hi) > budget:
        while hi - lo > tau_tolerance and len(tried) < max_steps:
            mid = (lo + hi) / 2
            if count(mid) == budget:
                break
            lo, hi = (mid, hi) if tried[mid] < budget else (lo, mid)
    best = max((t for t, c in tried.items() if c <= budget), key=lambda t: (tried[t], t))
    out, stats = compress_video_with_stats(frames, best, merge)
    return out, BudgetStats(best, budget, len(tried), stats)


def compress_to_budget(
    frames: Tensor,
    *,
    retention: float | None = None,
    max_tokens: int | None = None,
    merge: bool = True,
    tau_tolerance: float = 1e-4,
    max_steps: int = 24,
) -> Tensor:
    """The paper's compressor at the tau whose output fits the budget, as close to it as the search finds.

    Args:
        frames: `[F, N, D]` tokens, any float dtype.
        retention: target share of the F * N tokens in (0, 1]; budget = max(1, floor(retention * F * N)).
        max_tokens: target token count >= 1. Give exactly one of retention / max_tokens. A budget above
            F * N is clamped to F * N (documented, not an error).
        merge: apply the final merge step (it never changes the count).
        tau_tolerance: stop bisecting when the tau bracket is this narrow.
        max_steps: cap on compressor runs spent searching.

    Returns:
        `[K, D]`, K <= budget, in the input dtype and earliest-token order. The count is never above the
        budget, even where count(tau) is not monotone (D7); it can be below it when no tried tau lands exactly
        on it.

    Raises:
        ValueError: bad arguments, NaN/inf tokens, or a budget below the fewest tokens any tau reaches
            (e.g. fewer than the number of zero-norm tokens plus one).
    """
    return compress_to_budget_with_stats(
        frames,
        retention=retention,
        max_tokens=max_tokens,
        merge=merge,
        tau_tolerance=tau_tolerance,
        max_steps=max_steps,
    )[0]


__all__ = ["BudgetStats", "compress_to_budget", "compress_to_budget_with_stats"]
