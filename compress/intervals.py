"""On-camera intervals of `TokenMemory` entries: padded per-row interval sets, fused and bounded in one pass.

An entry holds up to `limit` intervals of stream seconds, sorted and disjoint, each with an evidence frame
(the frame index where the entry absorbed the most tokens within the interval) and that frame's support (the
tokens absorbed there). A row is two padded tensors: spans `[limit, 2]` float64 (start, end) and evidence
`[limit, 2]` int64 (frame, support); unused slots have start = +inf (what else they hold is never read), so an
entry's intervals are the slots with a finite start.

`fuse` is the one rule bridging and consolidation go through (and a frame's appearance when it overflows):

- intervals that overlap or lie within `gap` seconds of each other fuse into one;
- past `limit` intervals, the two adjacent ones with the smallest gap between them fuse, repeatedly (ties: the
  earliest gap). Fusing adjacent intervals leaves every other gap as it was, so this removes exactly the
  `count - limit` smallest gaps, ordered by (gap, position): one sort, no loop;
- a fused interval's evidence is the frame with the most support among the fused intervals' evidence frames,
  the supports of intervals naming the same frame added (ties: the earliest frame).

Pure tensor code: r rows, W slots per row.
"""

from __future__ import annotations

import math
import sys

import torch
from torch import Tensor

INF = math.inf
NO_FRAME = (
    -1
)  # evidence frame (and support) of an unused slot, or the frame of an interval whose frame is unknown
_BIG = torch.iinfo(torch.int64).max
_MAX_GAP = sys.float_info.max  # gap +inf: every gap fuses, but the first slot still opens an interval


def counts(spans: Tensor) -> Tensor:
    """`[..., W, 2]` spans -> `[...]` intervals held (slots with a finite start)."""
    return (spans[..., 0] < INF).sum(dim=-1)


def fuse(spans: Tensor, evidence: Tensor, gap: float, limit: int) -> tuple[Tensor, Tensor]:
    """Normalise `[r, W, 2]` padded spans and their `[r, W, 2]` evidence (any order, possibly overlapping) ->
    (spans, evidence) `[r, limit, 2]`, sorted, disjoint and padded. `gap` -inf only bounds the count
    (intervals merely touching then stay apart)."""
    r, w = spans.shape[:2]
    if r == 0 or w == 0:  # nothing to fuse
        return spans.new_full((r, limit, 2), INF), evidence.new_full((r, limit, 2), NO_FRAME)
    order = torch.argsort(spans[..., 0], dim=1, stable=True)[..., None].expand(r, w, 2)
    spans, evidence = spans.gather(1, order), evidence.gather(1, order)
    start, frame, support = spans[..., 0], evidence[..., 0], evidence[..., 1]
    valid = start < INF  # a prefix of each row once sorted
    end = torch.where(valid, spans[..., 1], -INF)
    reach = torch.cummax(end, dim=1).values  # the latest end among the intervals up to each slot
    step = torch.cat([start.new_full((r, 1), INF), start[:, 1:] - reach[:, :-1]], 1)  # the gap before a slot
    cut = valid & (step > min(gap, _MAX_GAP))  # slot opens a new interval
    over = cut.sum(dim=1) - limit
    if w > limit:  # fuse the `over` smallest gaps, earliest first among equal ones (none where over <= 0)
        value = step.masked_fill(~cut, INF)
        value[:, 0] = INF  # the first interval has no gap before it
        rank = torch.empty_like(over[:, None].expand(r, w)).scatter_(
            1, torch.argsort(value, dim=1, stable=True), torch.arange(w, device=start.device).expand(r, w)
        )
        cut &= rank >= over[:, None]
    seg = torch.where(valid, cut.cumsum(dim=1) - 1, limit)  # output slot of each input slot; `limit`: unused
    out = spans.new_full((r, limit + 1, 2), INF)
    out[..., 0].scatter_reduce_(1, seg, start, "amin")
    out[..., 1].scatter_reduce_(1, seg, end, "amax", include_self=False)
    # Evidence: the slots of one interval naming one frame add their support.
    same = (seg[:, :, None] == seg[:, None, :]) & (frame[:, :, None] == frame[:, None, :])
    score = torch.where(same, support[:, None, :], 0).sum(dim=2)  # [r, W]
    chosen = evidence.new_full((r, limit + 1, 2), NO_FRAME)
    best = chosen[..., 1].scatter_reduce_(1, seg, score, "amax", include_self=False)
    pick = torch.where(score == best.gather(1, seg), frame, _BIG)
    chosen[..., 0].scatter_reduce_(1, seg, pick, "amin", include_self=False)
    return out[:, :limit], chosen[:, :limit]


def group_slots(inverse: Tensor, groups: int, widest: int | None = None) -> tuple[Tensor, int]:
    """Members `[n]` of `groups` groups (`inverse`: their group) -> (each member's position within its group
    `[n]`, the largest group's size): where each member's slots go when a group's rows lie side by side.
    `widest`: that size when the caller knows it (else read here: a host sync)."""
    if inverse.numel() <= groups:  # one member per group (a consolidation round's pairs), or none
        return torch.zeros_like(inverse), min(1, inverse.numel())
    sizes = torch.zeros(groups, dtype=torch.long, device=inverse.device).index_add_(
        0, inverse, torch.ones_like(inverse)
    )
    order = torch.argsort(inverse, stable=True)
    first = sizes.cumsum(0) - sizes
    position = torch.empty_like(inverse)
    position[order] = torch.arange(inverse.numel(), device=inverse.device) - first[inverse[order]]
    return position, int(sizes.max()) if widest is None else widest


def side_by_side(own: Tensor, other: Tensor, inverse: Tensor, position: Tensor, widest: int) -> Tensor:
    """`[R, S, ...]` rows and `[n, S, ...]` rows joining them (row `inverse[j]`, `position[j]`-th among those)
    -> `[R, S * (1 + widest), ...]`: each row's own slots, then those of the rows joining it; unused slots
    hold +inf (spans: no interval) or -1 (evidence frames, -1: none)."""
    s = own.shape[1]
    fill = INF if own.is_floating_point() else NO_FRAME
    out = own.new_full((own.shape[0], s * (1 + widest), *own.shape[2:]), fill)
    out[:, :s] = own
    cols = (s * (1 + position))[:, None] + torch.arange(s, device=own.device)[None]
    out[inverse[:, None], cols] = other
    return out
