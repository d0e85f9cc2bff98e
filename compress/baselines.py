"""Token-reduction peers SCC is measured against, each `(frames [F, N, D], budget) -> [K, D]`, K <= budget.

Pure tensor code in float32 (cast back to the input dtype); never I/O. Selections keep temporal order
(frame, then position). `with_merge(peer)` adds the paper's final merge step (Table 4b: selection + merge).
A budget at or above F * N is clamped (documented): every peer then returns all tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from compress.scc import check_finite, final_merge, normalize

Peer = Callable[[Tensor, int], Tensor]


def _flat(frames: Tensor, budget: int) -> tuple[Tensor, int]:
    """Validate `[F, N, D]` and the budget; return (`[F*N, D]` tokens, budget clamped to F*N)."""
    if frames.dim() != 3:
        raise ValueError(f"frames must be [F, N, D], got shape {tuple(frames.shape)}")
    if isinstance(budget, bool) or int(budget) != budget or budget < 0:
        raise ValueError(f"budget must be an integer >= 0 tokens, got {budget!r}")
    check_finite(frames, "frames")
    f, n, d = frames.shape
    return frames.reshape(f * n, d), min(int(budget), f * n)


def uniform_frames(frames: Tensor, budget: int) -> Tensor:
    """Uniform frame sampling: ceil(budget / N) evenly spaced whole frames, then evenly spaced tokens of them.

    With budget a multiple of N this keeps exactly budget / N whole frames (PLLaVA-style temporal sampling).
    """
    flat, k = _flat(frames, budget)
    f, n, _ = frames.shape
    if k == 0:
        return flat[:0]
    q = math.ceil(k / n)
    chosen = torch.linspace(0, f - 1, q, device=frames.device).round().long()  # [q] frame indices
    pool = frames[chosen].reshape(q * n, -1)  # [q*N, D]
    return pool[torch.linspace(0, q * n - 1, k, device=frames.device).round().long()]


def random_drop(frames: Tensor, budget: int, *, seed: int = 0) -> Tensor:
    """Keep `budget` tokens drawn uniformly without replacement (seeded: deterministic), in temporal order."""
    flat, k = _flat(frames, budget)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    keep = torch.randperm(flat.shape[0], generator=gen)[:k].sort().values.to(flat.device)
    return flat[keep]


def l2norm_topk(frames: Tensor, budget: int) -> Tensor:
    """Keep the `budget` tokens of largest L2 norm (VisionZip-like saliency proxy), in temporal order."""
    flat, k = _flat(frames, budget)
    norms = torch.linalg.vector_norm(flat.float(), dim=-1)
    return flat[norms.topk(k).indices.sort().values]


def tome_merge(frames: Tensor, budget: int) -> Tensor:
    """ToMe bipartite soft matching over all F*N tokens, repeated until `budget` tokens remain, in temporal
    order between rounds (PEERS "tome").

    Each round splits the tokens alternately into A and B, matches every A token to its most similar B token,
    and merges the r = min(T - budget, T // 2) most similar pairs with size-weighted means (sums and sizes,
    as ToMe's `merge_wavg`); then the merged tokens are put back in order of their earliest member, so the
    next alternate split pairs temporal neighbours again. Output in that order. This equals repeating
    facebookresearch/ToMe's `bipartite_soft_matching` + `merge_wavg` with that re-sort between rounds
    (checked against the real code); without it see `tome_plain`. Zero-norm tokens score 0 (the real code
    divides by their norm).
    """
    flat, k = _flat(frames, budget)
    if k == 0:
        return flat[:0]
    x = flat.float()  # [T, D] running size-weighted sums
    size = torch.ones(x.shape[0], device=x.device)  # [T]
    first = torch.arange(x.shape[0], device=x.device)  # [T] earliest original index, for ordering
    while x.shape[0] > k:
        r = min(x.shape[0] - k, x.shape[0] // 2)
        a, b = slice(0, None, 2), slice(1, None, 2)
        sim = normalize(x[a])[0] @ normalize(x[b])[0].T  # [A, B]; zero rows score 0
        best, match = sim.max(dim=1)  # [A]
        merged = best.argsort(descending=True, stable=True)[:r]  # A tokens that go into B
        kept_a = torch.ones(best.shape[0], dtype=torch.bool, device=x.device)
        kept_a[merged] = False
        xb, sb, fb = x[b].clone(), size[b].clone(), first[b].clone()
        xb.index_add_(0, match[merged], x[a][merged])
        sb.index_add_(0, match[merged], size[a][merged])
        fb.scatter_reduce_(0, match[merged], first[a][merged], reduce="amin")
        x, size, first = (
            torch.cat([x[a][kept_a], xb]),
            torch.cat([size[a][kept_a], sb]),
            torch.cat([first[a][kept_a], fb]),
        )
        order = first.argsort()  # restore temporal order before the next alternate split
        x, size, first = x[order], size[order], first[order]
    return (x / size[:, None]).to(frames.dtype)


def tome_plain(frames: Tensor, budget: int) -> Tensor:
    """Plain repeated ToMe (PEERS "tome-plain"): facebookresearch/ToMe's `bipartite_soft_matching` +
    `merge_wavg` applied to its own output, round after round, until `budget` tokens remain.

    Each round's output is ToMe's: the unmerged A tokens in order of their best score (most similar first),
    then every B token; the next round splits that order alternately, so after the first round A and B are
    no longer temporal neighbours (on camera-like tokens at 35 % retention about 40 % of the kept tokens equal
    `tome_merge`'s, 2 % at 3 %). Output in the last round's order. Zero-norm tokens score 0 (the real code
    divides by their norm)."""
    flat, k = _flat(frames, budget)
    if k == 0:
        return flat[:0]
    x = flat.float()  # [T, D] size-weighted means
    size = x.new_ones(x.shape[0], 1)  # [T, 1]
    while x.shape[0] > k:
        r = min(x.shape[0] - k, x.shape[0] // 2)
        unit = x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(1e-12)  # as ToMe divides
        best, match = (unit[0::2] @ unit[1::2].T).max(dim=1)  # [A] each A token's most similar B token
        order = best.argsort(descending=True)  # as ToMe: the r best edges merge, the rest stay in this order
        kept, moved, into = order[r:], order[:r], match[order[:r]]

        def merged(values: Tensor, kept: Tensor = kept, moved: Tensor = moved, into: Tensor = into) -> Tensor:
            src, dst = values[0::2], values[1::2]
            index = into[:, None].expand(-1, values.shape[1])
            return torch.cat([src[kept], dst.scatter_reduce(0, index, src[moved], reduce="sum")])

        sums, size = merged(x * size), merged(size)
        x = sums / size
    return x.to(frames.dtype)


def with_merge(peer: Peer) -> Peer:
    """`peer` followed by the paper's final merge (Eqs. 7-8) of all original tokens into its selection."""

    def merged(frames: Tensor, budget: int) -> Tensor:
        reps = peer(frames, budget)
        if reps.shape[0] == 0:
            return reps
        return final_merge(frames.reshape(-1, frames.shape[-1]), reps).to(frames.dtype)

    merged.__name__ = f"{peer.__name__}_merge"
    merged.__doc__ = f"{peer.__name__} followed by the paper's final merge step (Table 4b)."
    return merged


uniform_frames_merge = with_merge(uniform_frames)
random_drop_merge = with_merge(random_drop)
l2norm_topk_merge = with_merge(l2norm_topk)
tome_merge_merge = with_merge(tome_merge)
tome_plain_merge = with_merge(tome_plain)

PEERS: dict[str, Peer] = {
    "uniform": uniform_frames,
    "random": random_drop,
    "l2norm": l2norm_topk,
    "tome": tome_merge,
    "tome-plain": tome_plain,
    "uniform+merge": uniform_frames_merge,
    "random+merge": random_drop_merge,
    "l2norm+merge": l2norm_topk_merge,
    "tome+merge": tome_merge_merge,
    "tome-plain+merge": tome_plain_merge,
}
