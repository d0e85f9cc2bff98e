"""Consolidation rounds for `TokenMemory`: several most-similar pairs merged with one similarity pass.

Past capacity the memory merges its most similar pair of entries, refreshes every entry's nearest neighbour,
and repeats. Each refresh reads all M x D entry units, so a frame that overflows by k entries would pay k
passes. A round instead takes the next pairs off the neighbour cache, computes the merged units of all of them
against every entry in one pass, and keeps the longest prefix that one-pair-at-a-time merging provably picks
in the same order:

- pair j is the best pair among entries no earlier pair touched: the cache is sorted, and the walk stops at
  the first entry whose cached neighbour an earlier pair merged (its best is then unknown) or at a tie;
- no merged unit l < j is at least as similar to any entry still there, nor to another merged unit, as pair j.

Pure tensor code: M live entries, k candidate pairs.
"""

from __future__ import annotations

import torch
from torch import Tensor

_NEG = float("-inf")


def candidate_pairs(nn_sim: Tensor, nn_idx: Tensor, ids: Tensor, limit: int) -> tuple[Tensor, Tensor, Tensor]:
    """Up to `limit` disjoint pairs (entry, its cached neighbour), most similar first, from `[M]` neighbour
    similarities, neighbour rows and entry ids -> (rows a that survive (older id), rows b merged into them,
    `[k]` pair similarities). The first pair is always the most similar pair."""
    sims, rows = torch.sort(nn_sim, descending=True, stable=True)
    span = min(
        rows.numel(), 4 * limit + 8
    )  # rows read from the top: pairs show up twice, stale rows stop the walk
    top, partner = rows[:span], nn_idx[rows[:span]]
    a: list[int] = []
    b: list[int] = []
    values: list[float] = []
    taken: set[int] = set()
    columns = (sims[:span], top, partner, ids[top], ids[partner])
    walk = zip(*(c.tolist() for c in columns), strict=True)
    for value, i, j, id_i, id_j in walk:
        if i in taken:
            continue  # the other half of a pair already taken
        if j in taken or j < 0 or (values and value >= values[-1]):
            break  # i's best is unknown once its neighbour merges; a tie's order depends on row layout
        older, newer = (i, j) if id_i < id_j else (j, i)
        a.append(older)
        b.append(newer)
        values.append(value)
        taken.update((i, j))
        if len(a) == limit:
            break
    device = nn_sim.device
    return torch.tensor(a, device=device), torch.tensor(b, device=device), torch.tensor(values, device=device)


def safe_pairs(p: Tensor, pq: Tensor, a: Tensor, b: Tensor, value: Tensor) -> int:
    """How many leading candidate pairs one-at-a-time merging would pick in this order (at least one).

    Args: `p` [k, M] merged units x entries before the round, `pq` [k, k] merged x merged, `a`, `b` the pairs'
        rows, `value` [k] their similarities (descending).
    """
    k = a.numel()
    plain = p.clone()
    plain[:, torch.cat([a, b])] = _NEG
    others = plain.max(dim=1).values  # [k] best of each merged unit among entries outside every pair
    separate = torch.maximum(
        p[:, a], p[:, b]
    )  # [k, k]: merged l vs the rows of pair l', still apart before l'
    between = pq.clone().fill_diagonal_(_NEG)
    for j in range(1, k):  # k is a round's few pairs
        v = value[j]
        if (others[:j] >= v).any() or (separate[:j, j:] >= v).any() or (between[:j, :j] >= v).any():
            return j
    return k
