"""Rolling per-camera token memory by incremental SCC (DESIGN.md "TokenMemory"): tensors only, never I/O."""

from __future__ import annotations

import math
import statistics
import struct
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from compress.entries import EntryInfo, MemoryUpdate
from compress.intervals import counts, fuse, group_slots, side_by_side
from compress.memory_state import CONFIG as _CONFIG
from compress.memory_state import COUNTERS as _COUNTERS
from compress.memory_state import INTERVAL_CONFIG as _INTERVAL_CONFIG
from compress.memory_state import INTERVAL_FIELDS as _INTERVAL_FIELDS
from compress.memory_state import MAX_INTERVALS, SPACINGS, check_state, from_bytes, to_bytes
from compress.memory_state import NEG as _NEG
from compress.memory_state import ROW_FIELDS as _ROW_FIELDS
from compress.memory_state import ROWS as _ROWS
from compress.pairs import mutual_pairs, nearest_forest, safe_count, walk
from compress.scc import (
    _components,
    _exact_components,
    _norms,
    check_finite,
    check_tau,
    graph_components,
    merge_by_labels,
    unit,
)
from compress.view import SLOT_FIELDS as _SLOT_FIELDS
from compress.view import MemoryView

__all__ = ["EntryInfo", "MemoryUpdate", "TokenMemory"]  # the entry types live in compress.entries

_ROUND_PAIRS = 32  # most pairs one consolidation round merges with one similarity pass
_CANDIDATES = 8  # entries a component offers its tokens in the final merge before the exactness check
_ANGLE_MARGIN = 1e-2  # radians of float error allowed for in that check
_LINKED = 4  # columns per component held for the entries a frame links (more: the grouping is redone)
_NEIGHBOURS = 8  # most similar other entries each entry lists (an exact top list and a bound on the rest)
CONSOLIDATIONS = ("forest", "matching", "exact")  # nearest-neighbour trees; mutual pairs; one pair at a time
_BIG = torch.iinfo(torch.int64).max
_GAP_SPACINGS = 3.5  # gap_s=None: this many frame spacings (missing from two frames stays one interval)


class TokenMemory:
    """Bounded per-camera memory of visual tokens (N per frame, width D, M live entries), updated frame by
    frame, on the device of its buffers (`device`).

    Entries are rows 0..M-1 of preallocated buffers (ToMe-style float32 sums + counts, G3); removal swaps the
    last row into the hole, so no step touches more than M rows. Prometheus counters: plain `*_total`
    attributes.

    Each entry also keeps the intervals of stream seconds in which it was on camera (`EntryInfo.intervals`),
    at most `max_intervals`, each with an evidence frame and its support (`compress.intervals`): an entry seen
    within `gap_s` of the end of its latest interval extends it, otherwise opens a new one; merged entries
    (bridging, consolidation) unite their intervals.

    Each entry keeps its most similar other entries, exactly (`_NEIGHBOURS` of them and a bound on the rest),
    so an entry whose nearest neighbour merges away mostly falls back on its list instead of meeting every
    entry again. A list that a frame's consolidation empties after the frame's merges are done caches -1 and
    its bound (an upper bound on its best) and is relisted by the next frame's refresh, in the pass over
    every entry that refresh makes anyway (a frame needing few merges then reads the entries once less).

    Host syncs: `add_frame` reads its counts from the device a few times per frame (each read named `# host
    sync` below: `compress.syncs` counts them); everything between two reads has shapes the host already
    knows.
    """

    def __init__(
        self,
        dim: int,
        tau: float = 0.9,
        capacity: int = 2048,
        window_s: float = 600.0,
        device: str | torch.device = "cpu",
        *,
        evidence_frames: int = 4,
        gap_s: float | None = None,
        max_intervals: int = MAX_INTERVALS,
        consolidation: str = "exact",
    ) -> None:
        """An empty memory: tau in [-1, 1] for the spatial SCC and for joining entries; past `capacity`
        entries the most similar pair merges; entries last seen over `window_s` before the newest frame are
        evicted; `evidence_frames` frame indices are kept per entry (the first and the newest).

        Intervals: an entry seen at most `gap_s` seconds after the end of its latest interval extends it (and
        intervals of merged entries that close fuse); `gap_s=None` measures it from the stream: 3.5 times the
        median spacing of the last 15 frames (`spacing_s`; frames with equal t are skipped), so an entry
        missing from up to two frames in a row keeps one interval, the half spacing keeps the border clear of
        timestamp jitter, and the median ignores the odd stall or reconnect; 0 until two frames have come.
        Past `max_intervals` the two adjacent intervals with the smallest gap between them fuse."""
        if dim < 1 or capacity < 1 or evidence_frames < 1 or not window_s > 0:
            raise ValueError(
                f"need dim, capacity, evidence_frames >= 1 and window_s > 0, got {dim=}, {capacity=}, "
                f"{evidence_frames=}, {window_s=}"
            )
        if gap_s is not None and not float(gap_s) >= 0:  # also rejects NaN
            raise ValueError(f"gap_s must be None (measured from the stream) or seconds >= 0, got {gap_s}")
        if consolidation not in CONSOLIDATIONS:
            raise ValueError(f"consolidation must be one of {CONSOLIDATIONS}, got {consolidation!r}")
        self.consolidation = consolidation
        self.consolidation_passes = 0  # similarity passes the latest frame's consolidation made
        if isinstance(max_intervals, bool) or int(max_intervals) != max_intervals or max_intervals < 1:
            raise ValueError(f"max_intervals must be an integer >= 1, got {max_intervals}")
        self.gap_s, self.max_intervals = None if gap_s is None else float(gap_s), int(max_intervals)
        self._spacings: list[
            float
        ] = []  # the last SPACINGS positive spacings between frames' t, oldest first
        self.dim, self.tau, self.capacity = int(dim), check_tau(tau), int(capacity)
        self.window_s, self.evidence_frames = float(window_s), int(evidence_frames)
        self.device = torch.device(device)
        self.newest_t: float | None = None
        self.next_id = self.frames_total = self.tokens_in_total = self.tokens_zero_total = 0
        self.tokens_evicted_total = self.evicted_total = self.consolidations_total = self.bridged_total = 0
        self._m = 0
        self._rows: dict[str, Tensor] = {}
        self._recent = (  # entries seen in the latest frame: id (-1: padding) and the unit of what they took
            torch.empty(0, dtype=torch.int64, device=self.device),
            torch.empty(0, dim, device=self.device),
        )
        self._pace = _Pace()
        self._reserve(self.capacity + 1)

    def _reserve(self, rows: int) -> None:
        """Hold at least `rows` rows plus the scratch row (only ever capacity + the largest frame's
        components)."""
        if self._rows and self._rows["ids"].shape[0] > rows:
            return
        for name, (shape, dtype, fill) in _ROWS.items():
            sizes = {
                "D": self.dim,
                "E": self.evidence_frames,
                "K": self.max_intervals,
                "N": _NEIGHBOURS,
                "2": 2,
            }
            width = [sizes[c] for c in shape]
            buf = torch.full((rows + 1, *width), fill, dtype=dtype, device=self.device)
            if name in self._rows:
                buf[: self._m] = self._rows[name][: self._m]
            self._rows[name] = buf

    @property
    def _scratch(self) -> int:
        """The last buffer row, past every live one: padded slots of fixed-size index lists point here, so
        their reads and writes touch no entry."""
        return self._rows["ids"].shape[0] - 1

    @property
    def spacing_s(self) -> float | None:
        """The running estimate of the seconds between frames: the median of the last 15 positive spacings
        between consecutive frames' t, None before two frames with different t."""
        return statistics.median(self._spacings) if self._spacings else None

    def current_gap_s(self) -> float:
        """The gap in effect now: `gap_s`, or with gap_s=None 3.5 x `spacing_s` (0 while it is unknown)."""
        if self.gap_s is not None:
            return self.gap_s
        spacing = self.spacing_s
        return 0.0 if spacing is None else _GAP_SPACINGS * spacing

    def _pick(self, mask: Tensor, count: int) -> Tensor:
        """The `count` rows where `mask` is set, ascending (`count` read from the device before): no sync."""
        return torch.nonzero_static(mask, size=count).squeeze(1)

    def _remove(self, rows: Tensor, *, heads: bool = True) -> Tensor:
        """Swap-remove the (unique) live `rows`; returns the old-row -> new-row map `[M]`, -1 for removed
        rows. Fixed shapes: the holes below the new end (in the order given) take the live rows past it
        (ascending); the other removed rows pair with each other, past the new end, where nothing is read.
        `heads` False: the caller recomputes the cached nearest neighbours (`_heads`) itself."""
        m, r, n = self._m, self._rows, rows.numel()
        keep = m - n
        mapping = torch.arange(m, device=self.device)
        if n == 0:
            return mapping
        gone = torch.zeros(m, dtype=torch.bool, device=self.device).index_fill_(0, rows, True)
        holes = rows[torch.argsort((rows >= keep).to(torch.int8), stable=True)]  # the holes below keep first
        movers = keep + torch.argsort(gone[keep:].to(torch.int8), stable=True)  # the live rows past it first
        for buf in r.values():
            buf[holes] = buf[movers]
        mapping.index_fill_(0, rows, -1)
        mapping[movers] = torch.where(gone[movers], -1, holes)
        self._m = keep
        nb = r["nb_idx"][:keep]  # every list through the mapping; removed rows drop out
        moved = torch.where(nb >= 0, mapping[nb.clamp_min(0)], -1)
        nb.copy_(moved)
        r["nb_sim"][:keep].masked_fill_(moved < 0, _NEG)
        if heads:
            self._heads()
        return mapping

    def _forget(self, rows: Tensor, m: int | None = None) -> None:
        """Drop `rows` (whose units changed or which are gone) from every neighbour list of rows 0..m-1."""
        m = self._m if m is None else m
        gone = torch.zeros(m + 1, dtype=torch.bool, device=self.device)
        gone[torch.where(rows < m, rows, m)] = True  # the scratch row and padding land in slot m
        gone[m] = False
        nb, sim = self._rows["nb_idx"][:m], self._rows["nb_sim"][:m]
        hit = gone[torch.where(nb >= 0, nb, m)]
        nb.masked_fill_(hit, -1)
        sim.masked_fill_(hit, _NEG)

    def _heads(self, m: int | None = None, alive: Tensor | None = None) -> None:
        """The cached nearest neighbour of rows 0..m-1 from their lists (ties: the lowest row, as an argmax
        over all rows gives); an empty list caches -1 and its bound (the walk stops there until it is
        recomputed). `alive`: rows merged away during consolidation cache -inf."""
        m = self._m if m is None else m
        r = self._rows
        nb, sim = r["nb_idx"][:m], r["nb_sim"][:m]
        best = sim.max(dim=1).values
        lowest = torch.where((sim == best[:, None]) & (nb >= 0), nb, _BIG).min(dim=1).values  # min: amin on
        # int64 rows is ~10x slower on the CPU
        empty = lowest == _BIG
        nn_sim = torch.where(empty, r["nb_bound"][:m], best)
        r["nn_sim"][:m] = nn_sim if alive is None else nn_sim.masked_fill(~alive[:m], _NEG)
        r["nn_idx"][:m] = torch.where(empty, -1, lowest)

    def _relist(self, rows: Tensor, sims: Tensor) -> None:
        """Rows `rows` get the exact top neighbours of their row of cosines `sims` `[r, m]` with every entry
        (itself and entries gone masked to -inf), and the next cosine as their bound."""
        k = _NEIGHBOURS
        if sims.shape[1] < k + 1:
            sims = torch.cat([sims, sims.new_full((sims.shape[0], k + 1 - sims.shape[1]), _NEG)], 1)
        top, at = sims.topk(k + 1, dim=1)
        r = self._rows
        r["nb_idx"][rows] = torch.where(top[:, :k] > _NEG, at[:, :k], -1)
        r["nb_sim"][rows] = top[:, :k]
        r["nb_bound"][rows] = top[:, k]

    def _offer(self, cols: Tensor, sims: Tensor, m: int | None = None) -> None:
        """Rows 0..m-1 meet the new units of rows `cols` (`sims` `[c, m]` their cosines with every row, -inf
        where not to be offered): each joins a row's list when above its bound, and the list keeps its best
        (what falls off raises the bound)."""
        m = self._m if m is None else m
        r, k = self._rows, _NEIGHBOURS
        nb, sim, bound = r["nb_idx"][:m], r["nb_sim"][:m], r["nb_bound"][:m]
        offered = sims.t()
        offered = offered.masked_fill(offered <= bound[:, None], _NEG)  # [m, c]
        every = torch.cat([sim, offered], 1)
        top, at = every.sort(dim=1, descending=True)  # faster than topk for these short rows on the CPU
        top, at = top[:, : k + 1], at[:, : k + 1]
        rows = torch.cat([nb, cols[None].expand(m, -1)], 1).gather(1, at[:, :k])
        nb.copy_(torch.where(top[:, :k] > _NEG, rows, -1))
        sim.copy_(top[:, :k])
        bound.copy_(torch.maximum(bound, top[:, k]))

    def _cos_all(self, q: Tensor, m: int | None = None) -> Tensor:
        """`[r, D]` unit rows -> `[r, M]` cosines with every live entry (rows 0..m-1). Past the CPU caches
        this product is bound by reading the M x D units, and BLAS re-reads them per block of ~3 rows of
        `q @ U.T` but per ~16 rows of `U @ q.T`: the second orientation is up to 3x faster for the 4-30 rows
        of a refresh or a frame."""
        unit_ = self._rows["unit"][: self._m if m is None else m]
        return q @ unit_.T if q.shape[0] <= 3 else (unit_ @ q.T).T

    def _refresh(self, changed: Tensor, stale: Tensor) -> None:
        """Keep every neighbour list exact after the units of `changed` rows moved, in O(r M D) with r small:
        the changed rows and the `stale` ones (whose lists emptied) meet every row; every other row meets the
        changed rows only."""
        m = self._m
        self._forget(changed)
        rows = torch.cat([changed, stale])
        if m < 2 or rows.numel() == 0:
            if m == 1:
                self._relist(rows, self._rows["unit"].new_full((rows.numel(), 1), _NEG))
            self._heads()
            return
        s = self._cos_all(self._rows["unit"][rows])  # [r, M]
        s[torch.arange(rows.numel(), device=self.device), rows] = _NEG
        self._offer(changed, s[: changed.numel()])
        self._relist(rows, s)
        self._heads()

    def _merge_rows(
        self,
        into: Tensor,
        away: Tensor,
        *,
        renormalize: bool = True,
        pairs: bool = False,
        sums: bool = True,
        groups: tuple[Tensor, Tensor, int] | None = None,
    ) -> None:
        """Add rows `away` into rows `into` (counts-weighted: sums and counts add; evidence frames and
        intervals unite); no row is removed here. `pairs`: `into` are distinct (a consolidation round), so no
        grouping; `sums` False: the round added the sums already. Else `groups`: (the distinct rows of `into`
        ascending, each away row's place among them, the most rows merging into one), read beforehand."""
        r, e = self._rows, self.evidence_frames
        if away.numel() == 0:
            return
        grouping: tuple[Tensor, Tensor, int] | None = None  # rows merging into one: (group, position, widest)
        names = ("sums", "counts", "frames") if sums else ("counts", "frames")
        if pairs:  # one row into each: plain elementwise sums, minima and maxima
            rows = into
            for name in names:
                r[name][rows] += r[name][away]
            r["first_seen"][rows] = torch.minimum(r["first_seen"][rows], r["first_seen"][away])
            r["last_seen"][rows] = torch.maximum(r["last_seen"][rows], r["last_seen"][away])
        else:
            if groups is None:
                rows, inverse = torch.unique(into, return_inverse=True)  # host sync; `groups` avoids it
                widest = None
            else:
                rows, inverse, widest = groups
            for name in names:  # index_add_ on the small result, never a whole buffer
                r[name][rows] += torch.zeros_like(r[name][rows]).index_add_(0, inverse, r[name][away])
            r["first_seen"][rows] = r["first_seen"][rows].scatter_reduce(
                0, inverse, r["first_seen"][away], "amin"
            )
            r["last_seen"][rows] = r["last_seen"][rows].scatter_reduce(
                0, inverse, r["last_seen"][away], "amax"
            )
            grouping = (inverse, *group_slots(inverse, rows.numel(), widest))
        r["frames"][rows] = r["frames"][rows].clamp_max(
            self.frames_total
        )  # an upper bound on distinct frames
        r["evidence"][rows] = _first_and_newest(self._laid("evidence", rows, away, grouping), e)
        spans, evidence = (self._laid(name, rows, away, grouping) for name in ("iv_span", "iv_evidence"))
        self._fuse_intervals(rows, spans, evidence)
        if renormalize:  # a consolidation round already holds the merged units
            r["unit"][rows] = unit(r["sums"][rows])

    def _laid(
        self, name: str, rows: Tensor, away: Tensor, grouping: tuple[Tensor, Tensor, int] | None
    ) -> Tensor:
        """Buffer `name`'s slots of each of `rows`, then those of the rows `away` merging into it (grouping
        None: one each, in order; else `compress.intervals.side_by_side`'s group, position, widest)."""
        own, other = self._rows[name][rows], self._rows[name][away]
        return torch.cat([own, other], 1) if grouping is None else side_by_side(own, other, *grouping)

    def _fuse_intervals(
        self, rows: Tensor, spans: Tensor, evidence: Tensor, gap: float | None = None
    ) -> None:
        """Make `spans`, `evidence` (`[r, W, 2]`: the interval sets of `rows`, any order) the intervals of
        `rows`, fused within `gap` (None: the current gap) and bounded (`compress.intervals.fuse`)."""
        gap = self.current_gap_s() if gap is None else gap
        self._rows["iv_span"][rows], self._rows["iv_evidence"][rows] = fuse(
            spans, evidence, gap, self.max_intervals
        )

    def _crowded(self, rows: Tensor, t: float) -> Tensor:
        """`[r]` whether each of `rows`, seen at `t`, neither extends its latest interval nor has a free slot
        (`_appear` then fuses its two closest intervals)."""
        count = counts(self._rows["iv_span"][rows])
        extend = (count > 0) & (t - self._rows["last_seen"][rows] <= self.current_gap_s())
        return ~extend & (count >= self.max_intervals)

    def _appear(self, rows: Tensor, took: Tensor, t: float, frame_index: int, crowded: int) -> None:
        """`rows` were seen in the frame at `t` (their last_seen not yet moved to `t`), `took` `[r]` tokens
        each: each extends its latest interval when that ends at most the current gap before `t` (its evidence
        moves to this frame if it took more tokens here than at the interval's evidence frame), or opens
        [t, t] (past max_intervals, the two closest intervals fuse: `crowded` rows, counted beforehand)."""
        r, k = self._rows, self.max_intervals
        spans, evidence = r["iv_span"], r["iv_evidence"]
        count = counts(spans[rows])
        extend = (count > 0) & (t - r["last_seen"][rows] <= self.current_gap_s())  # last_seen: the latest end
        opens = ~extend & (count < k)
        slot = torch.where(extend, count - 1, count.clamp_max(k - 1))  # the latest interval, or the next slot
        span, chosen = spans[rows, slot], evidence[rows, slot]  # [r, 2]
        now = torch.stack([torch.full_like(took, frame_index), took], 1)
        better = opens | (extend & (took > chosen[:, 1]))
        start = torch.where(opens, t, span[:, 0])
        spans[rows, slot] = torch.stack([start, torch.where(extend | opens, t, span[:, 1])], 1)
        evidence[rows, slot] = torch.where(
            better[:, None], now, chosen
        )  # rows left alone write back as they were
        if crowded:  # rare: one interval too many, so the two closest fuse (no gap fuses here)
            at = self._pick(~extend & ~opens, crowded)
            fresh = spans.new_full((crowded, 1, 2), t)
            self._fuse_intervals(
                rows[at],
                torch.cat([spans[rows[at]], fresh], 1),
                torch.cat([evidence[rows[at]], now[at, None]], 1),
                gap=-math.inf,
            )

    def add_frame(self, tokens: Tensor, t: float, frame_index: int) -> MemoryUpdate:
        """Merge one frame: spatial SCC; components join every entry they exceed tau with (entries bridged by
        one component merge) or become entries; every token joins its most similar entry (the final merge);
        bounds.

        Args: tokens `[N, D]` any float dtype, on any device (moved to the memory's), zero-norm rows are
            padding (counted, not kept); t stream seconds, never below the previous frame's; frame_index kept
            as evidence.
        Raises: ValueError for a wrong shape, NaN/inf tokens, non-finite or decreasing t (then nothing
            changes).
        """
        if tokens.dim() != 2 or tokens.shape[1] != self.dim:
            raise ValueError(f"tokens must be [N, {self.dim}], got shape {tuple(tokens.shape)}")
        if not math.isfinite(t) or (self.newest_t is not None and t < self.newest_t):
            raise ValueError(f"t must be finite and never go backwards (newest {self.newest_t}), got {t}")
        t, frame_index = float(t), int(frame_index)
        x32 = tokens.to(self.device, torch.float32)
        x, inv, finite = _norms(x32)
        kept = inv > 0  # D4: zero-norm tokens carry nothing, never capture a merge
        old = self._rows["last_seen"][: self._m] < t - self.window_s
        labels, k1_, redo = _components(x * inv[:, None], kept, self.tau)  # [N] spatial step (Eq. 5)
        # host sync 1: the NaN check, the tokens kept, the entries to evict, the frame's components
        ok, n, n_old, k1, again = torch.stack(
            [finite.long(), kept.sum(), old.sum(), k1_ - (~kept).sum(), redo.long()]
        ).tolist()
        if not ok:
            check_finite(x32)  # raises naming the count; else the norms merely overflowed
            raise ValueError("tokens: token norms overflow float32; rescale the input")
        evicted = self._evict(old, n_old)
        if self.newest_t is not None and t > self.newest_t:
            self._spacings = [*self._spacings, t - self.newest_t][-SPACINGS:]
        self.newest_t = t
        self.frames_total += 1
        self.tokens_in_total += tokens.shape[0]
        self.tokens_zero_total += tokens.shape[0] - n
        if n == 0:
            self._recent = (self._recent[0][:0], self._recent[1][:0])  # nothing was seen in this frame
            if n_old:
                self._mend()
            ids = torch.cat(evicted).tolist() if evicted else []  # host sync: the evicted ids
            self.tokens_evicted_total += ids.pop() if ids else 0
            return MemoryUpdate(t, frame_index, (), (), (), tuple(ids), 0.0, 0)
        if again:  # rare: more edges than the fixed-size list holds
            labels, k1_ = _exact_components(x * inv[:, None], kept, self.tau)
        labels = _kept_labels(labels, kept)
        if again:
            k1 = int(labels.max()) + 1  # host sync (rare): the redone count
        if n < x.shape[0]:
            x = x[self._pick(kept, n)]
            labels = labels[self._pick(kept, n)]
        done = self._merge_frame(x, labels, k1, t, frame_index)
        gone = self._consolidate()
        # host sync: what the update names (ids of absorbed, bridged, merged and evicted entries, counts)
        values = torch.cat([done.absorbed, done.away, gone, *evicted]).tolist()
        a, b, c = done.absorbed.numel(), done.away.numel(), gone.numel()
        absorbed, away, merged = values[:a], values[a : a + b], values[a + b : a + b + c]
        evicted_ids = values[a + b + c : -1] if evicted else []
        if evicted:
            self.tokens_evicted_total += values[-1]
        novelty = 1.0 - _float32(done.matched / n)
        return MemoryUpdate(
            t,
            frame_index,
            done.new,
            tuple(absorbed),
            (*away, *merged),
            tuple(evicted_ids),
            novelty,
            k1,
        )

    def _evict(self, old: Tensor, count: int) -> tuple[Tensor, ...]:
        """Drop the `count` entries `old` marks (last seen over window_s before now) -> (their ids, then the
        tokens they held: one tensor to read with the update), or () when none."""
        if count == 0:
            return ()
        r = self._rows
        rows = self._pick(old, count)
        out = (r["ids"][rows], r["counts"][rows].sum()[None])
        self.evicted_total += count
        self._remove(rows, heads=False)  # lists that lose every entry are recomputed with the frame's refresh
        return out

    def _mend(self) -> None:
        """Recompute the neighbour lists that emptied (after an eviction in a frame that showed nothing)."""
        m = self._m
        empty = (self._rows["nb_idx"][:m] < 0).all(dim=1)
        stale = self._pick(empty, int(empty.sum()))  # host sync (rare): how many lists emptied
        self._refresh(stale[:0], stale)

    def _group(self, x: Tensor, labels: Tensor, k1: int, room: int | None = None) -> _Groups:
        """Link components to entries and to each other (cos > tau), union all linked -> `_Groups`: per
        component its group, per group its target row or -1 (its oldest linked entry), the rows bridged into
        targets, the components' units and cosines with every entry, the candidates of the final merge, and
        the counts read from the device (one host sync). The linked entries are gathered into `room` columns
        (default: a few per component; a frame linking more is redone with room for all)."""
        m, r = self._m, self._rows
        room = min(m, _LINKED * k1) if room is None else room
        comp_unit = unit(merge_by_labels(x, labels, k1, reduce="sum"))  # [k1, D]
        comp_cos = self._cos_all(comp_unit)  # [k1, M]: the frame's one component x entry matmul
        link = comp_cos > self.tau
        # Chaining, as batch SCC links components frame to frame: a component also joins an entry whose look
        # in the previous frame it exceeds tau with, so a slowly drifting region stays one entry.
        recent_ids, recent_unit = self._recent
        if recent_ids.numel() and m:
            ids_sorted, order = torch.sort(r["ids"][:m])
            at = torch.searchsorted(ids_sorted, recent_ids).clamp_max(m - 1)
            column = torch.where(ids_sorted[at] == recent_ids, order[at], m)  # the row of each, m: gone
            wide = torch.cat([link, link.new_zeros(k1, 1)], 1)
            wide[:, column] |= comp_unit @ recent_unit.T > self.tau
            link = wide[:, :m]
        linked = link.any(dim=0)  # [M] entries some component links
        # The linked entries' columns (ascending; past them padding m): `room` of them, enough unless flagged.
        cols = torch.nonzero_static(linked, size=room, fill_value=m).squeeze(1)  # [L]
        held = cols < m
        sub = torch.cat([link, link.new_zeros(k1, 1)], 1)[:, cols]  # [k1, L]
        first = sub.T.contiguous().view(torch.uint8).argmax(dim=1)  # [L] the first component linking each
        # Components sharing an entry join through that entry's first component.
        share = torch.zeros(k1 * k1, dtype=torch.long, device=self.device)
        share.index_add_(
            0,
            (torch.arange(k1, device=self.device)[:, None] * k1 + first).reshape(-1),
            sub.reshape(-1).long(),
        )
        share = share.view(k1, k1) > 0
        adj = (comp_unit @ comp_unit.T > self.tau) | share | share.T  # same frame, or through an entry
        adj |= torch.eye(k1, dtype=torch.bool, device=self.device)
        group = graph_components(adj[None])[0]  # [k1], numbered in first-member order
        col_group = torch.where(held, group[first], k1)  # [L] group of any component linking the entry
        ids = torch.cat([r["ids"][:m], r["ids"].new_full((1,), _BIG)])[cols]
        oldest = torch.full((k1 + 1,), _BIG, dtype=torch.long, device=self.device)
        oldest.scatter_reduce_(0, col_group, ids, "amin")
        is_target = held & (ids == oldest[col_group])
        target = torch.full((k1 + 1,), -1, dtype=torch.long, device=self.device)
        target[torch.where(is_target, col_group, k1)] = cols
        target[k1] = -1
        bridged = held & ~is_target  # [L] entries merged into their group's target
        into = torch.where(bridged, target[col_group], m)  # [L] the target each merges into, m: none
        per_target = torch.zeros(m + 1, dtype=torch.long, device=self.device).index_add_(
            0, into, torch.ones_like(into)
        )[:m]
        # The final merge's candidates: each component's best entries outside the linked ones.
        top_cos, top_rows, bound = comp_cos, comp_cos.new_zeros(0, dtype=torch.long), None
        if m:
            top_cos, top_rows = comp_cos.masked_fill(linked[None], _NEG).topk(min(_CANDIDATES + 1, m), dim=1)
            if m > _CANDIDATES:
                bound, top_rows = top_cos[:, -1], top_rows[:, :-1]
        chosen = torch.zeros(m, dtype=torch.bool, device=self.device)
        chosen[top_rows.reshape(-1)] = True
        matched = (target[group[labels]] >= 0).sum()
        # host sync 2: groups, targets, bridged entries and their targets, widest bridge, candidates, matched
        g, n_targets, n_bridged, n_into, widest, n_cand, n_matched, overflow = torch.stack(
            [
                group.max() + 1,
                (target >= 0).sum(),
                bridged.sum(),
                (per_target > 0).sum(),
                per_target.max() if m else per_target.new_zeros(()),
                chosen.sum(),
                matched,
                linked.sum() > room,
            ]
        ).tolist()
        if overflow:  # rare: more linked entries than `room`; again with room for all (one more host sync)
            return self._group(x, labels, k1, m)
        at = self._pick(bridged, n_bridged)
        away = cols[at]
        receivers = self._pick(per_target > 0, n_into)
        place = (torch.cumsum((per_target > 0).long(), 0) - 1)[into[at]]
        return _Groups(
            group=group,
            target=target[:g],
            n_fresh=g - n_targets,
            away=away,
            into=into[at],
            receivers=(receivers, place, widest),
            blocked=linked,
            comp_unit=comp_unit,
            comp_cos=comp_cos,
            cand=self._pick(chosen, n_cand),
            bound=bound,
            matched=n_matched,
        )

    def _nearest(self, x: Tensor, labels: Tensor, groups: _Groups, reps: Tensor) -> Tensor:
        """Eq. 7 per token -> `[N]`: the most similar unblocked live row (< M) or group representative g
        (M + g). Exact without an [N, M] matmul: any entry beyond a component's top ones is at least (its
        angle to the component - the token's) away (triangle inequality); only tokens this leaves open meet
        every row (their count: one host sync)."""
        m, unit_ = self._m, self._rows["unit"][: self._m]
        cand, blocked = groups.cand, groups.blocked
        x_unit = unit(x)
        scores = [x_unit @ unit(reps).T]  # [N, G]
        bound = torch.full((groups.comp_cos.shape[0],), -1.0, device=self.device)  # cos of the best left out
        if groups.bound is not None:
            bound = groups.bound
        if m:
            scores.insert(0, (x_unit @ unit_[cand].T).masked_fill(blocked[cand][None], _NEG))
        best, arg = torch.cat(scores, dim=1).max(dim=1)
        rows = torch.cat([cand, m + torch.arange(reps.shape[0], device=self.device)])[arg]
        own = torch.acos(
            (x_unit @ groups.comp_unit.T).gather(1, labels[:, None])[:, 0].clamp(-1, 1)
        )  # margin: float error
        open_ = torch.acos(bound.clamp(-1, 1))[labels] - own < torch.acos(best.clamp(-1, 1)) + _ANGLE_MARGIN
        if m:
            n_open = int(open_.sum())  # host sync 3: the tokens left open; their count shapes the product
            if n_open:
                at = self._pick(open_, n_open)
                full = self._cos_all(x_unit[at]).masked_fill(blocked[None], _NEG)  # [n_open, M]
                full_best, full_arg = full.max(dim=1)
                rows[at] = torch.where(full_best > best[at], full_arg, rows[at])
        return rows

    def _merge_frame(self, x: Tensor, labels: Tensor, k1: int, t: float, frame_index: int) -> _Done:
        """Steps 2-3 of DESIGN.md: join or create entries, then the final merge of every token (Eqs. 7-8)."""
        m, r = self._m, self._rows
        g = self._group(x, labels, k1)
        away = g.away
        self.bridged_total += away.numel()
        away_ids = r["ids"][away]
        self._merge_rows(g.into, away, groups=g.receivers)
        f = g.n_fresh
        fresh = self._pick(g.target < 0, f)
        self._reserve(m + f)
        for name, (_, _, fill) in _ROWS.items():
            r[name][m : m + f] = t if name.endswith("_seen") else fill
        target = g.target.clone()
        target[fresh] = m + torch.arange(f, device=self.device)
        reps = r["sums"][target] + merge_by_labels(x, g.group[labels], target.numel(), reduce="sum")  # [G, D]
        assign = self._nearest(x, labels, g, reps)
        assign = torch.where(assign >= m, target[(assign - m).clamp_min(0)], assign)
        size = m + f
        present = torch.zeros(size, dtype=torch.bool, device=self.device)
        present[assign] = True
        inverse = (torch.cumsum(present.long(), 0) - 1)[assign]  # each token's rank among the rows it joins
        rows = torch.nonzero_static(present, size=x.shape[0], fill_value=self._scratch).squeeze(1)  # padded
        took = merge_by_labels(x, inverse, x.shape[0], reduce="sum")  # [N, D] what each row takes (padded)
        r["sums"][rows] += took  # float32 accumulation (D5); padding lands in the scratch row
        taken = torch.zeros(size, dtype=torch.int64, device=self.device).index_add_(
            0, assign, torch.ones_like(assign)
        )  # tokens each row took
        r["counts"][:size] += taken
        touched = present.clone()
        touched[target] = True  # a joined entry appeared in this frame even if its tokens went elsewhere
        touched[away] = False
        filled = r["counts"][m:size] > 0  # a new entry whose tokens all went elsewhere never exists
        # Lists that would lose every entry: all they hold is bridged away or has a new unit now.
        moved = torch.zeros(m + 1, dtype=torch.bool, device=self.device)
        moved[:m] = touched[:m]
        moved[away] = True
        nb = r["nb_idx"][:m]
        empties = ~moved[:m] & ~(~moved[torch.where(nb >= 0, nb, m)] & (nb >= 0)).any(dim=1)
        crowded = self._crowded(torch.arange(size, device=self.device), t) & touched
        # host sync 4: rows touched, new entries that exist, lists to recompute, rows with too many intervals
        n_touched, n_filled, n_empty, n_crowded = torch.stack(
            [touched.sum(), filled.sum(), empties.sum(), crowded.sum()]
        ).tolist()
        touched_rows = self._pick(touched, n_touched)
        stale = self._pick(empties, n_empty)
        absorbed = r["ids"][touched_rows[: n_touched - f]]  # touched rows < m come first; every fresh row is
        self._appear(touched_rows, taken[touched_rows], t, frame_index, n_crowded)
        r["last_seen"][touched_rows] = t
        r["frames"][touched_rows] += 1
        self._append_evidence(touched_rows, frame_index)
        r["unit"][touched_rows] = unit(r["sums"][touched_rows])
        new_ids = self.next_id + torch.arange(n_filled, device=self.device)
        r["ids"][m + self._pick(filled, n_filled)] = new_ids  # ids in first-appearance order, never reused
        new = tuple(range(self.next_id, self.next_id + n_filled))
        self.next_id += n_filled
        live = rows != self._scratch
        self._recent = (
            torch.where(live, r["ids"][rows], -1),
            unit(took),
        )  # every row that took tokens exists
        self._m = size
        mapping = self._remove(torch.cat([away, m + self._pick(~filled, f - n_filled)]), heads=False)
        changed = mapping[touched_rows]
        changed = changed[self._pick(changed >= 0, n_touched - (f - n_filled))]
        self._refresh(changed, mapping[stale])
        return _Done(new, absorbed, away_ids, g.matched)

    def _append_evidence(self, rows: Tensor, frame_index: int) -> None:
        """Record `frame_index` on `rows`; a full row keeps its first frame and shifts the newer ones left."""
        ev, e = self._rows["evidence"], self.evidence_frames
        block = ev[rows]  # [r, E]
        filled = (block >= 0).sum(dim=1)
        shifted = block.clone()
        shifted[:, 1:-1] = block[:, 2:]  # empty slices when E <= 2 are fine
        block = torch.where((filled == e)[:, None], shifted, block)
        block[torch.arange(rows.numel(), device=self.device), filled.clamp_max(e - 1)] = frame_index
        ev[rows] = block

    def _consolidate(self) -> Tensor:
        """While over capacity, merge entries by the memory's `consolidation` rule (the older id survives);
        returns the ids gone (a device tensor): "forest" (the most similar nearest-neighbour
        links, each tree into one entry, in one pass whenever a frame adds at most `capacity` entries),
        "matching" (mutual nearest pairs, one pass each) or "exact" (the most similar pair, one at a time)."""
        m0, r = self._m, self._rows
        need = m0 - self.capacity
        self.consolidation_passes = 0
        if need <= 0:
            return r["ids"][:0]
        if self.consolidation == "forest":
            return self._consolidate_forest(need)
        if self.consolidation == "matching":
            return self._consolidate_matching(need)
        return self._consolidate_exact(need)

    def _consolidate_exact(self, need: int) -> Tensor:
        """The exact rule (the reference for tests): `need` merges of the most similar pair, one at a time in
        effect. A round merges several pairs with one similarity pass when that equals one at a time
        (`compress.pairs`); rounds queue without host syncs (merged entries stay as dead rows until the end),
        and the host reads how far they got once per batch of rounds. Lists the rounds empty are relisted only
        while merges remain (a walk may stop at them); once the need is met they wait for the next frame's
        refresh (exact: their cached bound keeps a walk from passing them)."""
        m0, r = self._m, self._rows
        alive = torch.ones(m0 + 1, dtype=torch.bool, device=self.device)
        alive[m0] = False  # slot m0: where padding points
        merged = torch.zeros((), dtype=torch.long, device=self.device)
        done, gone = 0, []
        while done < need:
            limit = min(_ROUND_PAIRS, need - done, self._pace.slots())
            rounds = []
            for _ in range(self._pace.rounds(need - done)):
                rounds.append(self._round(m0, alive, limit, need - merged))
                merged = merged + rounds[-1][2]
            self.consolidation_passes += len(rounds)
            empty = alive[:m0] & (r["nb_idx"][:m0] < 0).all(dim=1)
            # host sync: each round's pair count and the lists left empty (their rows meet every row next)
            *sizes, n_empty = torch.stack([k for _, _, k in rounds] + [empty.sum()]).tolist()
            for (a, b, _), k in zip(rounds, sizes, strict=True):
                if k:
                    gone.append(r["ids"][b[:k]])
                    self._apply_pairs(a[:k], b[:k])
                    self.consolidations_total += k
            done += sum(sizes)
            self._pace.update(sizes, limit)
            if n_empty and done < need:  # met: the next frame's refresh relists them in its own pass
                self._relist_alive(self._pick(empty, n_empty), m0, alive)
        dead = self._pick(~alive[:m0], need)
        self._remove(dead)
        return torch.cat(gone)

    def _consolidate_forest(self, need: int) -> Tensor:
        """The forest rule: each pass takes the `need` most similar links entry -> nearest neighbour
        (`compress.pairs.nearest_forest`), merges every tree into one entry (counts-weighted; the oldest id
        survives), removes the rest and refreshes every list with one similarity pass of the merged units
        against every entry (`_refresh`); two host reads per pass. Every tree of nearest-neighbour links tops
        out in a mutual pair, so M entries hold at least M / 2 links: one pass merges them all while `need` is
        at most `capacity` (a frame adds at most `capacity` entries), else each pass halves M at least."""
        r, done = self._rows, 0
        gone: list[Tensor] = []
        while done < need:
            m = self._m
            away, root, count = nearest_forest(r["nn_sim"][:m], r["nn_idx"][:m], need - done)
            held = away >= 0
            into = torch.zeros(m + 1, dtype=torch.long, device=self.device)
            into.index_add_(0, torch.where(held, root, m), held.long())  # rows merging into each root
            ids = r["ids"][:m]
            oldest = ids.clone().scatter_reduce_(
                0, root.clamp_min(0), torch.where(held, ids[away], _BIG), "amin"
            )
            # host sync: the links taken, the trees, the widest tree
            k, n_into, widest = torch.stack([count, (into[:m] > 0).sum(), into[:m].max()]).tolist()
            self.consolidation_passes += 1
            if k == 0:  # no link left (float near-ties, emptied lists): the exact rule does the rest
                return torch.cat([*gone, self._consolidate_exact(need - done)])
            away, root = away[:k], root[:k]
            receivers = self._pick(into[:m] > 0, n_into)
            place = (torch.cumsum((into[:m] > 0).long(), 0) - 1)[root]
            # The tree's oldest id survives: a row merging away with it swaps ids with its root.
            swap = torch.zeros(m, dtype=torch.long, device=self.device).index_add_(
                0, away, torch.where(ids[away] == oldest[root], ids[root] - ids[away], 0)
            )
            ids[receivers] = oldest[receivers]
            ids += swap
            gone.append(ids[away].clone())
            self._merge_rows(root, away, groups=(receivers, place, widest))
            self.consolidations_total += k
            done += k
            mapping = self._remove(away, heads=False)
            changed = mapping[receivers]
            self._refresh_stale(changed)
        return torch.cat(gone)

    def _refresh_stale(self, changed: Tensor) -> None:
        """`_refresh` after the units of `changed` rows moved, with the lists that then hold nothing else
        (one host read: how many) relisted in the same pass."""
        m, nb = self._m, self._rows["nb_idx"][: self._m]
        moved = torch.zeros(m + 1, dtype=torch.bool, device=self.device)
        moved[changed] = True
        moved[m] = True  # -1 slots point at m
        empties = ~moved[:m] & moved[torch.where(nb >= 0, nb, m)].all(dim=1)
        self._refresh(changed, self._pick(empties, int(empties.sum())))  # host sync: lists emptied

    def _consolidate_matching(self, need: int) -> Tensor:
        """The matching rule: each pass merges every mutual nearest-neighbour pair (disjoint by definition),
        most similar first, up to what is still needed, with one similarity pass of the merged units against
        every entry; one host read per pass. The most similar pair is always mutual, so a pass merges at least
        one pair; on camera streams one or two passes do a frame's merges (`consolidation_passes`)."""
        m0, r = self._m, self._rows
        alive = torch.ones(m0 + 1, dtype=torch.bool, device=self.device)
        alive[m0] = False  # slot m0: where padding points
        done, gone = 0, []
        while done < need:
            a, b, count = self._round(m0, alive, need - done, None, matching=True)
            empty = alive[:m0] & (r["nb_idx"][:m0] < 0).all(dim=1)
            # host sync: the pass's pair count and the lists it left empty (their rows meet every row next)
            k, n_empty = torch.stack([count, empty.sum()]).tolist()
            self.consolidation_passes += 1
            if k:
                gone.append(r["ids"][b[:k]])
                self._apply_pairs(a[:k], b[:k])
                self.consolidations_total += k
            done += k
            if n_empty and done < need:
                self._relist_alive(self._pick(empty, n_empty), m0, alive)
        self._remove(self._pick(~alive[:m0], need))
        return torch.cat(gone)

    def _relist_alive(self, rows: Tensor, m0: int, alive: Tensor) -> None:
        """Rows `rows` (lists emptied by a round) meet every row still alive."""
        s = self._cos_all(self._rows["unit"][rows], m0).masked_fill(~alive[None, :m0], _NEG)
        s[torch.arange(rows.numel(), device=self.device), rows] = _NEG
        self._relist(rows, s)
        self._heads(m0, alive)

    def _round(
        self, m0: int, alive: Tensor, limit: int, cap: Tensor | None, *, matching: bool = False
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One consolidation round over rows 0..m0-1 (`alive` marks those not merged away), no host sync:
        take up to `limit` (and `cap`) candidate pairs off the neighbour cache, meet their merged units with
        every row, keep the safe prefix (`compress.pairs`), merge its sums and update every list -> (`[limit]`
        rows a, rows b, pairs merged k as a 0-dim tensor); slots past k are padding. A row whose list the
        round empties caches -1 (the next rounds' walks stop there) until the host reads it."""
        r, scratch = self._rows, self._scratch
        pick = mutual_pairs if matching else walk
        a, b, value, count = pick(r["nn_sim"][:m0], r["nn_idx"][:m0], r["ids"][:m0], limit, cap)
        a_, b_ = torch.where(a >= 0, a, scratch), torch.where(b >= 0, b, scratch)
        merged = unit(r["sums"][a_] + r["sums"][b_])  # [L, D] unit of each candidate merge
        p = self._cos_all(merged, m0).masked_fill_(~alive[None, :m0], _NEG)  # [L, M] before any merge
        between = merged @ merged.T
        k = count if matching else safe_count(p, between, a, b, value, count)  # matching: every pair
        ok = torch.arange(limit, device=self.device) < k
        a_k, b_k = torch.where(ok, a_, scratch), torch.where(ok, b_, scratch)
        a_m, b_m = torch.where(ok, a_, m0).clamp_max(m0), torch.where(ok, b_, m0).clamp_max(m0)
        r["sums"][a_k] += r["sums"][b_k]  # the payload (counts, intervals...) follows after the host read
        r["unit"][a_k] = merged
        alive[b_m] = False
        alive[m0] = False
        gone = torch.zeros(m0 + 1, dtype=torch.bool, device=self.device)
        gone[a_m], gone[b_m] = True, True
        self._forget(torch.cat([a_m, b_m]), m0)
        # Every row meets the merged units; the merged rows get whole lists.
        self._offer(a_k.clamp_max(m0 - 1), p.masked_fill(~ok[:, None] | gone[None, :m0], _NEG), m0)
        own = torch.cat([p, p.new_full((limit, 1), _NEG)], 1)  # [L, M + 1]: column m0 takes the padding
        own[:, a_m] = between.masked_fill(~(ok[:, None] & ok[None, :]), _NEG).fill_diagonal_(_NEG)
        own[:, b_m] = _NEG
        self._relist(a_k, own[:, :m0].masked_fill(~alive[None, :m0], _NEG))
        self._heads(m0, alive)
        return a, b, k

    def _apply_pairs(self, a: Tensor, b: Tensor) -> None:
        """The payload of a round's pairs, after its count was read: counts, frames, times, evidence and
        intervals of rows b join rows a (the round merged their sums and units)."""
        self._merge_rows(a, b, renormalize=False, pairs=True, sums=False)

    def __len__(self) -> int:
        return self._m

    def view(self, *, sums: bool = True) -> MemoryView:
        """The memory as it is now, as device copies of its live rows (`compress.view`): queues the copies
        and returns, no host sync, so a reader holds the ingest lock only that long and reads the view after
        releasing it. `sums` False: no M x D token sums (enough for `summary` and `live_evidence`)."""
        values = {n: getattr(self, n) for n in _CONFIG + _INTERVAL_CONFIG + _COUNTERS}
        values["spacings"] = list(self._spacings)
        return MemoryView.of(self._rows, self._m, self._recent, values, sums=sums)

    def tokens(
        self, since: float | None = None, until: float | None = None
    ) -> tuple[Tensor, list[EntryInfo]]:
        """Live entries with an interval overlapping [since, until] (None: open end) -> (`[K, D]` float32
        means, `EntryInfo` per row), ordered by first_seen then id (`MemoryView.tokens` of a view now)."""
        return self.view().tokens(since, until)

    def live_evidence(self) -> dict[int, int]:
        """Every frame index a live entry's interval names as its evidence -> its support: the tokens the
        entry absorbed in that frame, summed over the intervals naming the same frame (what a keyframe store
        keeps)."""
        return self.view(sums=False).live_evidence()

    def summary(self) -> dict[str, float | int | None]:
        """Sizes and counters, for the API's memory summary and Prometheus (entries is a gauge, *_total
        counters)."""
        return self.view(sums=False).summary()

    def state_dict(self) -> dict[str, Any]:
        """Plain CPU tensors, ints and floats (torch.save-able); entry rows are copies, in row order."""
        return self.view().state_dict()

    @classmethod
    def from_state_dict(
        cls,
        state: dict[str, Any],
        *,
        device: str | torch.device = "cpu",
        dim: int | None = None,
        consolidation: str = "exact",
    ) -> TokenMemory:
        """A memory with the state's configuration and entries, merging by the `consolidation` rule (a
        choice of code, not saved); ValueError unless it is a consistent TokenMemory state (of width `dim`
        when given)."""
        state = check_state(state)
        if dim is not None and state["dim"] != dim:
            raise ValueError(f"memory state has dim {state['dim']}, expected {dim}")
        dim_, tau, capacity, window_s, evidence = (state[name] for name in _CONFIG)
        gap, limit = (state[name] for name in _INTERVAL_CONFIG)
        memory = cls(
            dim_,
            tau,
            capacity,
            window_s,
            device,
            evidence_frames=evidence,
            gap_s=gap,
            max_intervals=limit,
            consolidation=consolidation,
        )
        m = int(state["ids"].shape[0])
        memory._reserve(max(m, capacity) + 1)
        for name in _ROW_FIELDS:
            memory._rows[name][:m] = state[name].to(memory.device)
        count = state["iv_count"].to(memory.device)
        owner = torch.repeat_interleave(torch.arange(m, device=memory.device), count)  # row of each interval
        slot = torch.arange(owner.numel(), device=memory.device) - (count.cumsum(0) - count)[owner]
        for (buf, side), name in zip(_SLOT_FIELDS, _INTERVAL_FIELDS[1:], strict=True):
            memory._rows[buf][owner, slot, side] = state[name].to(memory.device)
        memory._spacings = state["spacings"].tolist()
        memory._rows["unit"][:m] = unit(memory._rows["sums"][:m])
        rows = memory._rows  # each list starts as the cached neighbour alone, bounded by its similarity
        rows["nb_idx"][:m, 0] = rows["nn_idx"][:m]
        rows["nb_sim"][:m, 0] = rows["nn_sim"][:m].masked_fill(rows["nn_idx"][:m] < 0, _NEG)
        rows["nb_bound"][:m] = rows["nn_sim"][:m]  # an empty list (nn_idx -1) saved its bound as nn_sim
        memory._m = m
        memory._recent = (state["recent_ids"].to(memory.device), state["recent_unit"].to(memory.device))
        for name in _COUNTERS:
            setattr(memory, name, state[name])
        return memory

    def to_bytes(self) -> bytes:
        """`state_dict()` serialised with torch.save (for Redis snapshots)."""
        return to_bytes(self.state_dict())

    @classmethod
    def from_bytes(
        cls,
        blob: bytes,
        *,
        device: str | torch.device = "cpu",
        dim: int | None = None,
        consolidation: str = "exact",
    ) -> TokenMemory:
        """Inverse of `to_bytes` (no code runs on load); ValueError for a corrupt or foreign blob or a state
        of another `dim`."""
        state = from_bytes(blob)
        return cls.from_state_dict(state, device=device, dim=dim, consolidation=consolidation)  # type: ignore[arg-type]


def _first_and_newest(seen: Tensor, keep: int) -> Tensor:
    """`[r, W]` frame indices (-1: none, repeats allowed) -> `[r, keep]` per row its distinct frames, sorted,
    the first one and the newest others when there are more than `keep`, padded with -1."""
    big = torch.iinfo(torch.int64).max
    x = torch.sort(torch.where(seen >= 0, seen, big), dim=1).values
    repeat = torch.zeros_like(x, dtype=torch.bool)
    repeat[:, 1:] = x[:, 1:] == x[:, :-1]
    x = torch.sort(x.masked_fill(repeat, big), dim=1).values
    n = (x < big).sum(dim=1, keepdim=True)
    j = torch.arange(keep, device=x.device)[None]
    out = x.gather(1, torch.where(n <= keep, j, torch.where(j == 0, 0, n - keep + j)))
    return out.masked_fill(out == big, -1)


@dataclass(frozen=True)
class _Groups:
    """What `TokenMemory._group` found (see there); `receivers` is `_merge_rows`'s `groups` argument."""

    group: Tensor
    target: Tensor
    n_fresh: int
    away: Tensor
    into: Tensor
    receivers: tuple[Tensor, Tensor, int]
    blocked: Tensor
    comp_unit: Tensor
    comp_cos: Tensor
    cand: Tensor
    bound: Tensor | None
    matched: int


@dataclass(frozen=True)
class _Done:
    """What `TokenMemory._merge_frame` did: ids of the new entries, and on the device the ids of the absorbed
    and the bridged ones (read with the update), and the tokens that matched a pre-existing entry."""

    new: tuple[int, ...]
    absorbed: Tensor
    away: Tensor
    matched: int


class _Pace:
    """How many consolidation rounds to queue before reading their counts (one host sync) and how many pair
    slots each round offers: both from the pairs a round merged lately. A round queued past the need, or a
    slot past the safe prefix, costs a share of a similarity pass for nothing; a batch too short costs a
    sync."""

    def __init__(self) -> None:
        self.per_round = 4.0  # running mean of the pairs a round merged

    def slots(self) -> int:
        return max(2, math.ceil(2 * self.per_round))

    def rounds(self, remaining: int) -> int:
        # queued as if rounds merged 1.5x their mean: a round past the need costs a whole similarity pass
        # with nothing to merge, a batch short of it one more host read (measured: fewer passes win)
        return max(1, math.ceil(remaining / max(1.0, 1.5 * self.per_round)))

    def update(self, sizes: list[int], limit: int) -> None:
        for k in sizes:
            if k:
                self.per_round = 0.8 * self.per_round + 0.2 * min(k, limit)


def _kept_labels(labels: Tensor, kept: Tensor) -> Tensor:
    """Component labels over all tokens (a zero-norm token is a singleton) -> those of the kept tokens
    numbered 0..K-1 in first-member order (rows of dropped tokens: any value)."""
    dropped = torch.zeros_like(labels).index_add_(0, labels, (~kept).long())  # 1 at a zero token's label
    return labels - (torch.cumsum(dropped, 0) - dropped)[labels]


def _float32(value: float) -> float:
    """`value` rounded to float32, as torch's float32 mean of 0/1 flags gives it (the novelty)."""
    return float(struct.unpack("f", struct.pack("f", value))[0])
