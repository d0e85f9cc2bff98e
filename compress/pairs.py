"""Consolidation rounds for `TokenMemory`: several most-similar pairs merged with one similarity pass.

Past capacity the memory merges its most similar pair of entries, refreshes every entry's nearest neighbour,
and repeats. Each refresh reads all M x D entry units, so a frame that overflows by k entries would pay k
passes. A round instead takes the next pairs off the neighbour cache, computes the merged units of all of them
against every entry in one pass, and keeps the longest prefix that one-pair-at-a-time merging provably picks
in the same order:

- pair j is the best pair among entries no earlier pair touched: the cache is sorted, and the walk stops at
  the first entry whose cached neighbour an earlier pair merged (its best is then unknown) or at a tie;
- no merged unit l < j is at least as similar to any entry still there, nor to another merged unit, as pair j.

Both steps are tensor code of fixed shapes (`walk`, `safe_count`): a round queues without a host sync, its
pair count stays on the device. Pure tensor code: M live entries, k candidate pairs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_NEG = float("-inf")


def _walk_once(
    nn_sim: Tensor, nn_idx: Tensor, limit: int, cap: Tensor | int | None
) -> tuple[Tensor, Tensor, Tensor]:
    """`walk`'s pairs as (`[limit]` rows i, their neighbours j (-1: padding), their similarities)."""
    m = nn_sim.shape[0]
    device = nn_sim.device
    sims, rows = torch.sort(nn_sim, descending=True, stable=True)
    span = min(m, 4 * limit + 8)  # rows read from the top: pairs show up twice, stale rows stop the walk
    top, partner, value = rows[:span], nn_idx[rows[:span]], sims[:span]
    position = torch.empty_like(rows)
    position[rows] = torch.arange(m, device=device)
    p = torch.arange(span, device=device)
    valid = (partner >= 0) & (value > _NEG)
    other = partner.clamp_min(0)
    mutual = valid & (nn_idx[other] == top)
    later = position[other] > p
    first = mutual & later
    first[0] = valid[0]  # the most similar pair, mutual or a tie
    second = mutual & ~later
    previous = torch.cat([p.new_full((1,), -1), torch.cummax(torch.where(first, p, -1), 0).values[:-1]])
    tie = first & (previous >= 0) & (value >= value[previous.clamp_min(0)])
    bad = ~(first | second) | tie
    take = first & (torch.cumsum(bad.long(), 0) == 0)
    if cap is not None:
        take &= torch.cumsum(take.long(), 0) <= cap
    at = torch.nonzero_static(take, size=limit, fill_value=-1).squeeze(1)  # [limit] positions of the pairs
    held = at >= 0
    at = at.clamp_min(0)
    return (
        torch.where(held, top[at], -1),
        torch.where(held, partner[at], -1),
        torch.where(held, value[at], _NEG),
    )


def walk(
    nn_sim: Tensor, nn_idx: Tensor, ids: Tensor, limit: int, cap: Tensor | int | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Up to `limit` (and `cap`, a 0-dim tensor or int) disjoint pairs (entry, its cached neighbour), most
    similar first, from `[M]` neighbour similarities, neighbour rows (-1: unknown) and entry ids -> (`[limit]`
    rows a that survive (older id), rows b merged into them, their similarities, and the count k as a 0-dim
    tensor); slots past k hold -1 and -inf. The first pair is always the most similar pair. No host sync.

    The walk down the sorted cache, in closed form: a pair is taken at the first of its two rows (a mutual
    pair: each row is the other's cached neighbour), skipped at the second; the walk stops at a row whose
    neighbour is unknown or not mutual (its neighbour was merged by an earlier pair, or a tie), or at a pair
    as similar as the previous one (a tie's order depends on row layout). Past the first pair a taken pair is
    always mutual except at exact ties, where stopping early only shortens the round."""
    if limit == 1:  # the most similar pair alone: the first row of the stable descending sort
        top = nn_sim.argmax().view(1)
        value, j = nn_sim[top], nn_idx[top]
        held = (j >= 0) & (value > _NEG)
        if cap is not None:
            held &= torch.as_tensor(cap, device=nn_sim.device) >= 1
        i, j, value = torch.where(held, top, -1), torch.where(held, j, -1), torch.where(held, value, _NEG)
    else:
        i, j, value = _walk_once(nn_sim, nn_idx, limit, cap)
    held = i >= 0
    older = ids[i.clamp_min(0)] < ids[j.clamp_min(0)]
    a = torch.where(held, torch.where(older, i, j), -1)
    b = torch.where(held, torch.where(older, j, i), -1)
    return a, b, value, held.sum()


def candidate_pairs(nn_sim: Tensor, nn_idx: Tensor, ids: Tensor, limit: int) -> tuple[Tensor, Tensor, Tensor]:
    """`walk`'s pairs trimmed to their count (one host sync) -> (rows a that survive (older id), rows b merged
    into them, `[k]` pair similarities). The first pair is always the most similar pair."""
    a, b, values, count = walk(nn_sim, nn_idx, ids, limit)
    k = int(count)  # host sync: the caller wants tensors of the pairs' own length
    return a[:k], b[:k], values[:k]


def safe_count(p: Tensor, pq: Tensor, a: Tensor, b: Tensor, value: Tensor, count: Tensor | int) -> Tensor:
    """How many leading candidate pairs one-at-a-time merging would pick in this order, as a 0-dim tensor (at
    least one when there is a candidate; no host sync).

    Args: `p` [k, M] merged units x entries before the round, `pq` [k, k] merged x merged, `a`, `b` the pairs'
        rows, `value` [k] their similarities (descending), `count` the candidates (slots past it are padding).
    """
    k, m = p.shape
    device = p.device
    if k == 1:  # one candidate: safe whenever there is one
        return torch.as_tensor(count, device=device).long().clamp_max(1)
    held = torch.arange(k, device=device) < count
    spare = torch.cat([p, p.new_full((k, 1), _NEG)], 1)  # column m: where padding slots point
    a_, b_ = torch.where(held, a, m), torch.where(held, b, m)
    plain = spare.clone()
    plain[:, a_], plain[:, b_] = _NEG, _NEG
    others = plain.max(dim=1).values  # [k] best of each merged unit among entries outside every pair
    separate = torch.maximum(spare[:, a_], spare[:, b_])  # [k, k]: merged l vs the rows of pair l'
    between = pq.clone().fill_diagonal_(_NEG)
    idx = torch.arange(k, device=device)
    earlier = idx[:, None] < idx[None, :]  # [l, j]: l < j
    # pair j fails when a merged unit l < j reaches value[j]: with an entry outside every pair, with a row of
    # a pair j' >= j (still apart), or with another merged unit l' < j
    outside = torch.cat([others.new_full((1,), _NEG), torch.cummax(others, 0).values[:-1]])
    apart = torch.where(earlier, separate.flip(1).cummax(1).values.flip(1), _NEG).max(dim=0).values
    within = torch.where(earlier.T, between, _NEG).max(dim=1).values  # [l]: best with a merged l' < l
    within = torch.cat([within.new_full((1,), _NEG), torch.cummax(within, 0).values[:-1]])
    fail = ((outside >= value) | (apart >= value) | (within >= value)) & (idx > 0)
    fail |= ~held
    return torch.where(fail.any(), fail.long().argmax(), k)


def safe_pairs(p: Tensor, pq: Tensor, a: Tensor, b: Tensor, value: Tensor) -> int:
    """How many leading candidate pairs one-at-a-time merging would pick in this order (at least one).

    Args: `p` [k, M] merged units x entries before the round, `pq` [k, k] merged x merged, `a`, `b` the pairs'
        rows, `value` [k] their similarities (descending). One host sync (`safe_count` is the sync-free form).
    """
    return int(safe_count(p, pq, a, b, value, a.numel()))


def mutual_pairs(
    nn_sim: Tensor, nn_idx: Tensor, ids: Tensor, limit: int, cap: Tensor | int | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Up to `limit` (and `cap`) mutual nearest-neighbour pairs, most similar first, from `[M]` neighbour
    similarities, neighbour rows (-1: unknown) and entry ids -> (`[limit]` rows a that survive (older id),
    rows b merged into them, their similarities, the count k as a 0-dim tensor), padded with -1 and -inf as
    `walk`. No host sync.

    Each row has one cached neighbour, so mutual pairs are disjoint: one similarity pass can merge all of
    them (the matching rule). The first pair is always the most similar pair (so k >= 1 whenever any row
    has a known neighbour); a row whose neighbour is unknown (-1) joins no pair this round."""
    m = nn_sim.shape[0]
    device = nn_sim.device
    rows = torch.arange(m, device=device)
    other = nn_idx.clamp_min(0)
    known = (nn_idx >= 0) & (nn_sim > _NEG)
    mutual = known & (nn_idx[other] == rows) & (rows < other)  # each pair counted at its lower row
    # The most similar pair always goes first, mutual or not (cached cosines of a pair can differ in the
    # last bit, so a near-tie may leave no mutual pair): no pair of the pass touches its two rows.
    top = nn_sim.argmax()
    near = (rows == top) | (rows == nn_idx[top]) | (other == top) | (other == nn_idx[top])
    mutual &= ~near
    mutual |= known & (rows == top)
    score = torch.where(mutual, nn_sim, _NEG)
    if m < limit:
        score = torch.cat([score, score.new_full((limit - m,), _NEG)])
    value, at = score.topk(limit)  # [limit], most similar first
    held = value > _NEG
    if cap is not None:
        held &= torch.arange(limit, device=device) < torch.as_tensor(cap, device=device)
    at = torch.where(held, at, 0).clamp_max(max(m - 1, 0))
    i, j = torch.where(held, at, -1), torch.where(held, nn_idx[at], -1)
    older = ids[i.clamp_min(0)] < ids[j.clamp_min(0)]
    a = torch.where(held, torch.where(older, i, j), -1)
    b = torch.where(held, torch.where(older, j, i), -1)
    return a, b, torch.where(held, value, _NEG), held.sum()


def nearest_forest(nn_sim: Tensor, nn_idx: Tensor, limit: int) -> tuple[Tensor, Tensor, Tensor]:
    """The `limit` most similar links (entry -> its cached nearest neighbour) as trees, from `[M]` neighbour
    similarities and rows (-1: unknown) -> (`[limit]` rows that merge away (-1: padding), the root row each
    merges into (-1), the count k as a 0-dim tensor). No host sync.

    A link i -> j is kept only when j's own link is at least as similar (ties: toward the higher row): along
    exact nearest-neighbour links similarity never drops, so this keeps every tree and only breaks the
    two-way link of a mutual pair (and, in float, near-tie cycles); the links are then acyclic, and k links
    merge away exactly k entries, each into the root of its tree (pointer jumping, log2 M steps)."""
    m = nn_sim.shape[0]
    device = nn_sim.device
    rows = torch.arange(m, device=device)
    j = nn_idx.clamp_min(0)
    known = (nn_idx >= 0) & (nn_sim > _NEG)
    up = known & ((nn_sim[j] > nn_sim) | ((nn_sim[j] == nn_sim) & (j > rows)))
    score = torch.where(up, nn_sim, _NEG)
    if m < limit:
        score = torch.cat([score, score.new_full((limit - m,), _NEG)])
    value, at = score.topk(limit)  # [limit] the most similar links first
    held = value > _NEG
    at = torch.where(held, at, 0)
    links = torch.cat([rows, rows.new_zeros(1)])  # slot m takes the padding
    links[torch.where(held, at, m)] = torch.where(held, nn_idx[at], 0)
    parent = links[:m]
    for _ in range(max(1, math.ceil(math.log2(max(m, 2))))):  # each step doubles the path followed
        parent = parent[parent]
    return torch.where(held, at, -1), torch.where(held, parent[at], -1), held.sum()
