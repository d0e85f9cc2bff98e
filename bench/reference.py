"""A faithful re-expression of LLaVA-Scissor's reference algorithm from docs/method.md, for benchmarks only.

Written from docs/method.md §1 and D1-D8 (not copied from HumanMLLM/LLaVA-Scissor): NumPy boolean adjacency
moved off the device, a Python union-find with path halving and union by rank, vertex sampling with
N' = min(N, ceil(ln N / eps^2)), members collected from the raw parent array (D1, so members get dropped), the
highest-degree sort key, plain means, and the final merge (Eqs. 7-8) with no norm epsilon. It must never be
used by the product: it exists to time the paper's implementation strategy and to count the members it drops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


class UnionFind:
    """Union-find over 0..n-1 with path halving in `find` and union by rank (Alg. 1)."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)
        self.rank = np.zeros(n, dtype=np.int64)

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving: one pass, grandparent links
            x = parent[x]
        return int(x)

    def union(self, x: int, y: int) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx == ry:
            return
        if self.rank[rx] < self.rank[ry]:
            rx, ry = ry, rx
        self.parent[ry] = rx
        if self.rank[rx] == self.rank[ry]:
            self.rank[rx] += 1


@dataclass
class RefCounts:
    """Running tallies of one reference compression."""

    spatial_tokens: int = 0
    output_tokens: int = 0
    dropped: int = 0  # members that belong to no component (D1), summed over both steps


def approximate_components(
    adj: np.ndarray, eps: float, rng: np.random.RandomState
) -> tuple[list[np.ndarray], int]:
    """Components as the reference collects them (Alg. 2 + D1) -> (sorted member lists, dropped count)."""
    n = adj.shape[0]
    n_sample = min(n, math.ceil(math.log(n) / eps**2)) if n else 0
    sampled = rng.choice(n, n_sample, replace=False)
    uf, covered = UnionFind(n), np.zeros(n, dtype=bool)
    for v in sampled:
        covered[v] = True
        for u in np.nonzero(adj[v])[0]:
            uf.union(int(v), int(u))
            covered[u] = True
    roots = sorted({uf.find(int(v)) for v in sampled})
    components = [np.nonzero(uf.parent == r)[0] for r in roots]  # D1: direct parent only
    components += [np.array([i]) for i in np.nonzero(~covered)[0]]  # never touched: singletons
    degree = adj.sum(axis=1)  # self-loop included
    components.sort(key=lambda m: int(m[np.argmax(degree[m])]))  # highest-degree member, ties to lower index
    return components, n - sum(len(m) for m in components)


def _scc(tokens: Tensor, adj: np.ndarray, eps: float, rng: np.random.RandomState) -> tuple[Tensor, int]:
    """One SCC pass: components from the boolean adjacency, unweighted mean representatives (Eq. 4)."""
    components, dropped = approximate_components(adj, eps, rng)
    reps = [tokens[torch.from_numpy(m)].mean(dim=0) for m in components]  # one small gather per component
    return torch.stack(reps) if reps else tokens[:0], dropped


def _adjacency(x: Tensor, tau: float) -> Tensor:
    """Cosine > tau with the reference's plain norm division (no epsilon: D4)."""
    unit = x / x.norm(dim=-1, keepdim=True)
    adj: Tensor = (unit @ unit.transpose(-1, -2)) > tau
    return adj


def reference_compress(
    frames: Tensor, tau: float = 0.9, eps: float = 0.05, *, seed: int = 0, merge: bool = True
) -> tuple[Tensor, RefCounts]:
    """The reference two-step compression with its final merge; `[F, N, D]` -> (`[K, D]`, RefCounts).

    The reference uses the global NumPy RNG (D2); here a seeded RandomState makes runs repeatable.
    """
    rng, counts = np.random.RandomState(seed), RefCounts()
    spatial_adj = _adjacency(frames, tau)  # [F, N, N] batched, as the reference does
    spatial: list[Tensor] = []
    for i in range(frames.shape[0]):
        reps, dropped = _scc(frames[i], spatial_adj[i].cpu().numpy(), eps, rng)  # one device sync per frame
        spatial.append(reps)
        counts.dropped += dropped
    t_prime = torch.cat(spatial)  # [K1, D]
    counts.spatial_tokens = t_prime.shape[0]
    reps, dropped = _scc(t_prime, _adjacency(t_prime, tau).cpu().numpy(), eps, rng)
    counts.dropped += dropped
    counts.output_tokens = reps.shape[0]
    if not merge:
        return reps, counts
    sources = frames.reshape(-1, frames.shape[-1])  # [F*N, D]
    sim = (sources / sources.norm(dim=-1, keepdim=True)) @ (reps / reps.norm(dim=-1, keepdim=True)).T
    assign = sim.argmax(dim=1)
    merged = torch.zeros_like(reps).scatter_add_(0, assign[:, None].expand_as(sources), sources)
    total = torch.bincount(assign, minlength=reps.shape[0]).to(reps.dtype) + 1
    return (merged + reps) / total[:, None], counts
