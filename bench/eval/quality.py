"""Quality half of `scissor bench eval`: every method at every retention on one clip's tokens, scored 3 ways.

Benchmark-only; never imported by the product. Definitions (docs/benchmarks.md repeats them):
- represent: every original token is represented by the kept token most similar to it (cosine; the paper's
  Eq. 7 rule applied to the final kept set), the same rule for every method.
- coverage: `compress.quality.coverage` (mean over original tokens of the best cosine to any kept token).
- label recall@5: per frame, top-5 ImageNet classes of the mean of its N tokens vs of the mean of the N kept
  tokens representing them (one per original token, so a kept token weighs by how many it represents).
- temporal recall: each frame's top-1 class (full tokens) is a concept seen there; a kept token carries a
  concept when it is in the token's own top-5; the token's time span is the first..last frame of the tokens it
  represents (the memory: its entries' first_seen..last_seen). Recall = share of (concept, frame) sightings
  inside the spans of kept tokens carrying that concept; IoU = sightings covered / union of sightings and
  spans.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from compress import PEERS
from compress.memory import TokenMemory
from compress.scc import compress_video_with_stats, normalize

SCC, INCREMENTAL = "scc", "scc-incremental"
METHODS = (SCC, INCREMENTAL, *PEERS)
Logits = Callable[[Tensor], Tensor]


class TauSearch:
    """Token count of SCC (no merge) per tau on a clip, cached across budgets (count is not monotone: D7)."""

    def __init__(self, x: Tensor, tolerance: float = 2e-3) -> None:
        self.x, self.tolerance = x, tolerance
        self.tried: dict[float, int] = {}

    def count(self, tau: float) -> int:
        """K at `tau` (computed once per tau)."""
        if tau not in self.tried:
            self.tried[tau] = compress_video_with_stats(self.x, tau, merge=False)[1].output_tokens
        return self.tried[tau]

    def tau_for(self, budget: int) -> float:
        """The tried tau with the largest count <= budget after bisecting the tightest known bracket."""
        self.count(-1.0)
        self.count(1.0)
        while True:
            lo = max((t for t, c in self.tried.items() if c < budget), default=-1.0)
            hi = min((t for t, c in self.tried.items() if c > budget and t > lo), default=None)
            if hi is None or budget in self.tried.values() or hi - lo <= self.tolerance:
                break
            self.count((lo + hi) / 2)
        return max((t for t, c in self.tried.items() if c <= budget), key=lambda t: (self.tried[t], t))


def run_memory(x: Tensor, budget: int, tau: float, tries: int = 3) -> tuple[Tensor, Tensor, float]:
    """Stream the clip through TokenMemory (1 frame/s, no window, capacity = budget).

    Starts at the batch tau; while the memory ends under 90 % of the budget, raises tau halfway to 1.

    Returns:
        (entry means `[M, D]`, spans `[M, 2]` first/last frame, tau used).
    """
    best: tuple[Tensor, Tensor, float] | None = None
    for _ in range(tries):
        memory = TokenMemory(x.shape[2], tau, capacity=budget, window_s=math.inf)
        for f in range(x.shape[0]):
            memory.add_frame(x[f], float(f), f)
        means, infos = memory.tokens()
        spans = torch.tensor([[e.first_seen, e.last_seen] for e in infos], dtype=torch.float32).reshape(-1, 2)
        if best is None or means.shape[0] > best[0].shape[0]:
            best = (means, spans, tau)
        if means.shape[0] >= 0.9 * budget:
            break
        tau = (tau + 1.0) / 2
    assert best is not None
    return best


def represent(flat: Tensor, kept: Tensor, block: int = 2048) -> tuple[Tensor, float]:
    """(`[S]` index of the most similar kept token per original token, coverage), from one similarity pass.

    Coverage equals `compress.quality.coverage(flat, kept)`; computing both here halves the matmuls.
    """
    unit_k = normalize(kept)[0]
    assign = torch.empty(flat.shape[0], dtype=torch.long)
    total = 0.0
    for start in range(0, flat.shape[0], block):
        best, arg = (normalize(flat[start : start + block])[0] @ unit_k.T).max(dim=1)
        assign[start : start + block] = arg
        total += float(best.sum())
    return assign, total / flat.shape[0]


def spans_of(assign: Tensor, frames: int, tokens: int, kept: int) -> Tensor:
    """`[K, 2]` first/last frame of the original tokens each kept token represents (NaN when none)."""
    frame = torch.arange(frames).repeat_interleave(tokens).float()  # [F*N]
    first = torch.full((kept,), math.inf).scatter_reduce(0, assign, frame, "amin")
    last = torch.full((kept,), -math.inf).scatter_reduce(0, assign, frame, "amax")
    spans = torch.stack([first, last], dim=1)
    spans[first > last] = math.nan
    return spans


def label_recall(logits: Logits, x: Tensor, kept: Tensor, assign: Tensor, k: int = 5) -> float:
    """Mean over frames of |top-k(full frame) & top-k(represented frame)| / k."""
    f, n, _ = x.shape
    full = logits(x.mean(dim=1)).topk(k, dim=-1).indices  # [F, k]
    rep = logits(kept[assign].view(f, n, -1).mean(dim=1)).topk(k, dim=-1).indices  # [F, k]
    hits = (full[:, :, None] == rep[:, None, :]).any(dim=2).float()  # [F, k]
    return float(hits.mean())


def temporal_fidelity(
    logits: Logits, x: Tensor, kept: Tensor, spans: Tensor, k: int = 5
) -> tuple[float, float]:
    """(recall, IoU) of concept sightings against the spans of kept tokens carrying the concept."""
    f = x.shape[0]
    seen = logits(x.mean(dim=1)).argmax(dim=-1)  # [F] concept of each frame
    carried = logits(kept).topk(k, dim=-1).indices  # [K, k]
    frame = torch.arange(f, dtype=torch.float32)
    inter = union = 0  # every frame is one sighting, so recall = inter / F
    for concept in torch.unique(seen).tolist():
        sighted = seen == concept  # [F]
        rows = (carried == concept).any(dim=1) & ~spans[:, 0].isnan()
        s = spans[rows]  # [r, 2]
        claimed = ((frame[:, None] >= s[None, :, 0]) & (frame[:, None] <= s[None, :, 1])).any(dim=1)  # [F]
        inter += int((sighted & claimed).sum())
        union += int((sighted | claimed).sum())
    return inter / f, inter / max(union, 1)


def compress_with(
    method: str, x: Tensor, budget: int, search: TauSearch
) -> tuple[Tensor, Tensor | None, float]:
    """Kept tokens of one method at one budget: (`[K, D]`, memory spans or None, tau or NaN)."""
    if method == SCC:
        tau = search.tau_for(budget)
        return compress_video_with_stats(x, tau, merge=True)[0], None, tau
    if method == INCREMENTAL:
        return run_memory(x, budget, search.tau_for(budget))
    return PEERS[method](x, budget), None, math.nan


def evaluate_clip(
    x: Tensor,
    logits: Logits,
    retentions: tuple[float, ...],
    methods: tuple[str, ...] = METHODS,
    clip: str = "",
) -> list[dict[str, Any]]:
    """Score every method at every retention on tokens `[F, N, D]`; one row per (method, retention)."""
    f, n, _ = x.shape
    search, rows = TauSearch(x), []
    flat = x.reshape(f * n, -1)
    for target in sorted(retentions, reverse=True):  # high budgets first: their taus bracket the low ones
        budget = max(1, math.floor(target * f * n))
        for method in methods:
            start = time.perf_counter()
            kept, spans, tau = compress_with(method, x, budget, search)
            seconds = time.perf_counter() - start
            kept = kept.float()
            assign, cover = represent(flat, kept)
            if spans is None:
                spans = spans_of(assign, f, n, kept.shape[0])
            t_recall, t_iou = temporal_fidelity(logits, x, kept, spans)
            rows.append(
                {
                    "clip": clip,
                    "method": method,
                    "target": target,
                    "budget": budget,
                    "kept": kept.shape[0],
                    "retention": kept.shape[0] / (f * n),
                    "tau": tau,
                    "seconds": seconds,
                    "coverage": cover,
                    "label_recall5": label_recall(logits, x, kept, assign),
                    "temporal_recall": t_recall,
                    "temporal_iou": t_iou,
                }
            )
    return rows
