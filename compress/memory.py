"""Rolling per-camera token memory by incremental SCC (DESIGN.md "TokenMemory"): tensors only, never I/O."""

from __future__ import annotations

import math
import statistics
from typing import Any

import torch
from torch import Tensor

from compress.entries import EntryInfo, MemoryUpdate
from compress.intervals import INF, NO_FRAME, counts, fuse, group_slots, side_by_side
from compress.memory_state import CONFIG as _CONFIG
from compress.memory_state import COUNTERS as _COUNTERS
from compress.memory_state import INTERVAL_CONFIG as _INTERVAL_CONFIG
from compress.memory_state import INTERVAL_FIELDS as _INTERVAL_FIELDS
from compress.memory_state import MAX_INTERVALS, SPACINGS, STATE_VERSION, check_state, from_bytes, to_bytes
from compress.memory_state import NEG as _NEG
from compress.memory_state import ROW_FIELDS as _ROW_FIELDS
from compress.memory_state import ROWS as _ROWS
from compress.pairs import candidate_pairs, safe_pairs
from compress.scc import check_tau, graph_components, merge_by_labels, normalize, semantic_components

__all__ = ["EntryInfo", "MemoryUpdate", "TokenMemory"]  # the entry types live in compress.entries

_ROUND_PAIRS = 32  # most pairs one consolidation round merges with one similarity pass
_CANDIDATES = 8  # entries a component offers its tokens in the final merge before the exactness check
_ANGLE_MARGIN = 1e-2  # radians of float error allowed for in that check
# Where the state's ragged interval fields (after iv_count) live: (buffer, column of its last dimension).
_SLOT_FIELDS = (("iv_span", 0), ("iv_span", 1), ("iv_evidence", 0), ("iv_evidence", 1))
_GAP_SPACINGS = 3.5  # gap_s=None: this many frame spacings (missing from two frames stays one interval)


class TokenMemory:
    """Bounded per-camera memory of visual tokens (N per frame, width D, M live entries), updated frame by
    frame.

    Entries are rows 0..M-1 of preallocated buffers (ToMe-style float32 sums + counts, G3); removal swaps the
    last row into the hole, so no step touches more than M rows. Prometheus counters: plain `*_total`
    attributes.

    Each entry also keeps the intervals of stream seconds in which it was on camera (`EntryInfo.intervals`),
    at most `max_intervals`, each with an evidence frame and its support (`compress.intervals`): an entry seen
    within `gap_s` of the end of its latest interval extends it, otherwise opens a new one; merged entries
    (bridging, consolidation) unite their intervals.
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
        self._recent = (
            torch.empty(0, dtype=torch.int64, device=self.device),
            torch.empty(0, dim, device=self.device),
        )
        self._reserve(self.capacity + 1)

    def _reserve(self, rows: int) -> None:
        """Hold at least `rows` rows (only ever capacity + the largest frame's components)."""
        if self._rows and self._rows["ids"].shape[0] >= rows:
            return
        for name, (shape, dtype, fill) in _ROWS.items():
            sizes = {"D": self.dim, "E": self.evidence_frames, "K": self.max_intervals, "2": 2}
            width = [sizes[c] for c in shape]
            buf = torch.full((rows, *width), fill, dtype=dtype, device=self.device)
            if name in self._rows:
                buf[: self._m] = self._rows[name][: self._m]
            self._rows[name] = buf

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

    def _remove(self, rows: Tensor) -> Tensor:
        """Swap-remove the (unique) live `rows`; returns the old-row -> new-row map `[M]`, -1 for removed
        rows."""
        m, r = self._m, self._rows
        keep = m - rows.numel()
        gone = torch.zeros(m, dtype=torch.bool, device=self.device).index_fill_(0, rows, True)
        holes = rows[rows < keep]
        movers = keep + (~gone[keep:]).nonzero().squeeze(1)  # live rows past the new end fill the holes
        for buf in r.values():
            buf[holes] = buf[movers]
        mapping = torch.arange(m, device=self.device).index_fill_(0, rows, -1)
        mapping[movers] = holes
        nn = r["nn_idx"][:keep]
        nn.copy_(torch.where(nn >= 0, mapping[nn.clamp_min(0)], -1))  # -1 marks "neighbour gone": recomputed
        self._m = keep
        return mapping

    def _cos_all(self, q: Tensor) -> Tensor:
        """`[r, D]` unit rows -> `[r, M]` cosines with every live entry. Past the CPU caches this product is
        bound by reading the M x D units, and BLAS re-reads them per block of ~3 rows of `q @ U.T` but per ~16
        rows of `U @ q.T`: the second orientation is up to 3x faster for the 4-30 rows of a refresh or a
        frame."""
        unit = self._rows["unit"][: self._m]
        return q @ unit.T if q.shape[0] <= 3 else (unit @ q.T).T

    def _refresh_nn(self, changed: Tensor) -> None:
        """Keep each entry's most similar other entry exact after `changed` rows moved, in O(r M D) with r
        small: rows whose neighbour changed or vanished are recomputed, the others only meet the changed
        rows."""
        m, r = self._m, self._rows
        idx, sim = r["nn_idx"][:m], r["nn_sim"][:m]
        moved = torch.zeros(m + 1, dtype=torch.bool, device=self.device).index_fill_(0, changed, True)
        moved[m] = True
        stale = moved[idx] | moved[:m]  # idx -1 reads the last slot, set for "neighbour gone"
        rows = stale.nonzero().squeeze(1)
        if m < 2 or rows.numel() == 0:
            idx[rows], sim[rows] = -1, _NEG
            return
        s = self._cos_all(r["unit"][rows])  # [r, M]
        s[torch.arange(rows.numel(), device=self.device), rows] = _NEG
        col_best, col_arg = s.max(dim=0)
        better = (col_best > sim) & ~stale
        sim.copy_(torch.where(better, col_best, sim))
        idx.copy_(torch.where(better, rows[col_arg], idx))
        sim[rows], idx[rows] = s.max(dim=1)

    def _merge_rows(
        self, into: Tensor, away: Tensor, *, renormalize: bool = True, pairs: bool = False
    ) -> None:
        """Add rows `away` into rows `into` (counts-weighted: sums and counts add; evidence frames and
        intervals unite); no row is removed here. `pairs`: `into` are distinct (a consolidation round), so no
        grouping."""
        r, e = self._rows, self.evidence_frames
        if away.numel() == 0:
            return
        grouping: tuple[Tensor, Tensor, int] | None = None  # rows merging into one: (group, position, widest)
        if pairs:  # one row into each: plain elementwise sums, minima and maxima
            rows = into
            for name in ("sums", "counts", "frames"):
                r[name][rows] += r[name][away]
            r["first_seen"][rows] = torch.minimum(r["first_seen"][rows], r["first_seen"][away])
            r["last_seen"][rows] = torch.maximum(r["last_seen"][rows], r["last_seen"][away])
        else:
            rows, inverse = torch.unique(into, return_inverse=True)  # small: a bridge
            for name in ("sums", "counts", "frames"):  # index_add_ on the small result, never a whole buffer
                r[name][rows] += torch.zeros_like(r[name][rows]).index_add_(0, inverse, r[name][away])
            r["first_seen"][rows] = r["first_seen"][rows].scatter_reduce(
                0, inverse, r["first_seen"][away], "amin"
            )
            r["last_seen"][rows] = r["last_seen"][rows].scatter_reduce(
                0, inverse, r["last_seen"][away], "amax"
            )
            grouping = (inverse, *group_slots(inverse, rows.numel()))
        r["frames"][rows] = r["frames"][rows].clamp_max(
            self.frames_total
        )  # an upper bound on distinct frames
        r["evidence"][rows] = _first_and_newest(self._laid("evidence", rows, away, grouping), e)
        spans, evidence = (self._laid(name, rows, away, grouping) for name in ("iv_span", "iv_evidence"))
        self._fuse_intervals(rows, spans, evidence)
        if renormalize:  # a consolidation round already holds the merged units
            r["unit"][rows] = normalize(r["sums"][rows])[0]

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

    def _appear(self, rows: Tensor, took: Tensor, t: float, frame_index: int) -> None:
        """`rows` were seen in the frame at `t` (their last_seen not yet moved to `t`), `took` `[r]` tokens
        each: each extends its latest interval when that ends at most the current gap before `t` (its evidence
        moves to this frame if it took more tokens here than at the interval's evidence frame), or opens
        [t, t] (past max_intervals, the two closest intervals fuse)."""
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
        crowded = (~extend & ~opens).nonzero().squeeze(1)
        if crowded.numel():  # rare: one interval too many, so the two closest fuse (no gap fuses here)
            fresh = spans.new_full((crowded.numel(), 1, 2), t)
            self._fuse_intervals(
                rows[crowded],
                torch.cat([spans[rows[crowded]], fresh], 1),
                torch.cat([evidence[rows[crowded]], now[crowded, None]], 1),
                gap=-math.inf,
            )

    def add_frame(self, tokens: Tensor, t: float, frame_index: int) -> MemoryUpdate:
        """Merge one frame: spatial SCC; components join every entry they exceed tau with (entries bridged by
        one component merge) or become entries; every token joins its most similar entry (the final merge);
        bounds.

        Args: tokens `[N, D]` any float dtype, zero-norm rows are padding (counted, not kept); t stream
            seconds, never below the previous frame's; frame_index kept as evidence.
        Raises: ValueError for a wrong shape, NaN/inf tokens, non-finite or decreasing t (then nothing
            changes).
        """
        if tokens.dim() != 2 or tokens.shape[1] != self.dim:
            raise ValueError(f"tokens must be [N, {self.dim}], got shape {tuple(tokens.shape)}")
        if not math.isfinite(t) or (self.newest_t is not None and t < self.newest_t):
            raise ValueError(f"t must be finite and never go backwards (newest {self.newest_t}), got {t}")
        x = tokens.to(self.device, torch.float32)
        x = x[normalize(x)[1]]  # raises on NaN/inf; D4: zero-norm tokens carry nothing, never capture a merge
        evicted = self._evict(float(t))
        if self.newest_t is not None and t > self.newest_t:
            self._spacings = [*self._spacings, float(t) - self.newest_t][-SPACINGS:]
        self.newest_t, t = float(t), float(t)
        self.frames_total += 1
        self.tokens_in_total += tokens.shape[0]
        self.tokens_zero_total += tokens.shape[0] - x.shape[0]
        if x.shape[0] == 0:
            self._recent = (self._recent[0][:0], self._recent[1][:0])  # nothing was seen in this frame
            return MemoryUpdate(t, int(frame_index), (), (), (), evicted, 0.0, 0)
        labels = semantic_components(x, self.tau)  # [N] spatial step (Eq. 5)
        k1 = int(labels.max()) + 1
        new, absorbed, away, novelty = self._merge_frame(x, labels, k1, t, int(frame_index))
        away += self._consolidate()
        return MemoryUpdate(t, int(frame_index), new, absorbed, tuple(away), evicted, novelty, k1)

    def _evict(self, t: float) -> tuple[int, ...]:
        """Drop entries whose last_seen is older than window_s before `t`; returns their ids."""
        m, r = self._m, self._rows
        old = (r["last_seen"][:m] < t - self.window_s).nonzero().squeeze(1)
        if old.numel() == 0:
            return ()
        ids = tuple(r["ids"][old].tolist())
        self.tokens_evicted_total += int(r["counts"][old].sum())
        self.evicted_total += len(ids)
        self._remove(old)
        self._refresh_nn(old.new_empty(0))
        return ids

    def _group(self, x: Tensor, labels: Tensor, k1: int) -> tuple[Tensor, ...]:
        """Link components to entries and to each other (cos > tau), union all linked -> (group [k1], target
        row or -1 [G] (its oldest entry), bridged rows, rows they merge into, component units [k1, D], their
        cos [k1, M])."""
        r = self._rows
        comp_unit = normalize(merge_by_labels(x, labels, k1, reduce="sum"))[0]  # [k1, D]
        comp_cos = self._cos_all(comp_unit)  # [k1, M]: the frame's one component x entry matmul
        link = comp_cos > self.tau
        # Chaining, as batch SCC links components frame to frame: a component also joins an entry whose look
        # in the previous frame it exceeds tau with, so a slowly drifting region stays one entry.
        hit = (r["ids"][: self._m, None] == self._recent[0][None]).nonzero()  # [(row, recent)] still live
        link[:, hit[:, 0]] |= comp_unit @ self._recent[1][hit[:, 1]].T > self.tau
        cols = link.any(dim=0).nonzero().squeeze(1)  # [L] entries some component links
        shared = link[:, cols].float()
        adj = (comp_unit @ comp_unit.T > self.tau) | (
            shared @ shared.T > 0
        )  # same frame, or through an entry
        adj |= torch.eye(k1, dtype=torch.bool, device=self.device)
        group = graph_components(adj[None])[0]  # [k1], numbered in first-member order
        col_group = group[shared.argmax(dim=0)]  # [L] group of any component linking the entry
        ids = r["ids"][cols]
        oldest = torch.full((int(group.max()) + 1,), torch.iinfo(torch.int64).max, device=self.device)
        oldest.scatter_reduce_(0, col_group, ids, "amin")
        target = torch.full_like(oldest, -1)
        is_target = ids == oldest[col_group]
        target[col_group[is_target]] = cols[is_target]
        return group, target, cols[~is_target], target[col_group[~is_target]], comp_unit, comp_cos

    def _nearest(
        self, x: Tensor, labels: Tensor, comp: tuple[Tensor, Tensor], blocked: Tensor, reps: Tensor
    ) -> Tensor:
        """Eq. 7 per token -> `[N]`: the most similar unblocked live row (< M) or group representative g
        (M + g). Exact without an [N, M] matmul: any entry beyond a component's top ones is at least (its
        angle to the component - the token's) away (triangle inequality); only tokens this leaves open meet
        every row."""
        m, unit = self._m, self._rows["unit"][: self._m]
        comp_unit, comp_cos = comp
        x_unit = normalize(x)[0]
        scores = [x_unit @ normalize(reps)[0].T]  # [N, G]
        bound = torch.full((comp_cos.shape[0],), -1.0, device=self.device)  # cos of the best entry left out
        cand = torch.empty(0, dtype=torch.long, device=self.device)
        if m:
            top_cos, top_rows = comp_cos.masked_fill(blocked[None], _NEG).topk(min(_CANDIDATES + 1, m), dim=1)
            if m > _CANDIDATES:
                bound, top_rows = top_cos[:, -1], top_rows[:, :-1]
            cand = torch.unique(top_rows)
            scores.insert(0, (x_unit @ unit[cand].T).masked_fill(blocked[cand][None], _NEG))
        best, arg = torch.cat(scores, dim=1).max(dim=1)
        rows = torch.cat([cand, m + torch.arange(reps.shape[0], device=self.device)])[arg]
        own = torch.acos(
            (x_unit @ comp_unit.T).gather(1, labels[:, None])[:, 0].clamp(-1, 1)
        )  # margin: float error
        open_ = torch.acos(bound.clamp(-1, 1))[labels] - own < torch.acos(best.clamp(-1, 1)) + _ANGLE_MARGIN
        if m and bool(open_.any()):
            full = self._cos_all(x_unit[open_]).masked_fill(blocked[None], _NEG)  # [n_open, M]
            full_best, full_arg = full.max(dim=1)
            rows[open_] = torch.where(full_best > best[open_], full_arg, rows[open_])
        return rows

    def _merge_frame(
        self, x: Tensor, labels: Tensor, k1: int, t: float, frame_index: int
    ) -> tuple[tuple[int, ...], tuple[int, ...], list[int], float]:
        """Steps 2-3 of DESIGN.md: join or create entries, then the final merge of every token (Eqs. 7-8)."""
        m, r = self._m, self._rows
        group, target, away, away_into, comp_unit, comp_cos = self._group(x, labels, k1)
        matched = (target >= 0)[group[labels]]  # [N] tokens whose component joined a pre-existing entry
        away_ids = r["ids"][away].tolist()
        self.bridged_total += len(away_ids)
        self._merge_rows(away_into, away)
        blocked = torch.zeros(m, dtype=torch.bool, device=self.device)
        blocked[target[target >= 0]] = True  # joined entries are scored through their group's representative
        blocked[away] = True
        fresh = (target < 0).nonzero().squeeze(1)
        self._reserve(m + fresh.numel())
        for name, (_, _, fill) in _ROWS.items():
            r[name][m : m + fresh.numel()] = t if name.endswith("_seen") else fill
        target[fresh] = m + torch.arange(fresh.numel(), device=self.device)
        reps = r["sums"][target] + merge_by_labels(x, group[labels], target.numel(), reduce="sum")  # [G, D]
        assign = self._nearest(x, labels, (comp_unit, comp_cos), blocked, reps)
        assign = torch.where(assign >= m, target[(assign - m).clamp_min(0)], assign)
        rows, inverse = torch.unique(assign, return_inverse=True)
        took = merge_by_labels(
            x, inverse, rows.numel(), reduce="sum"
        )  # [R, D] what each row takes this frame
        r["sums"][rows] += took  # float32 accumulation (D5)
        taken = torch.zeros(m + fresh.numel(), dtype=torch.int64, device=self.device)  # tokens each row took
        taken[rows] = torch.bincount(inverse, minlength=rows.numel())
        r["counts"][rows] += taken[rows]
        touched = torch.zeros(m + fresh.numel(), dtype=torch.bool, device=self.device)
        touched[rows] = True
        touched[target] = True  # a joined entry appeared in this frame even if its tokens went elsewhere
        touched[away] = False
        touched = touched.nonzero().squeeze(1)
        absorbed = tuple(r["ids"][touched[touched < m]].tolist())
        self._appear(touched, taken[touched], t, frame_index)
        r["last_seen"][touched] = t
        r["frames"][touched] += 1
        self._append_evidence(touched, frame_index)
        r["unit"][touched] = normalize(r["sums"][touched])[0]
        filled = (
            r["counts"][m : m + fresh.numel()] > 0
        )  # a new entry whose tokens all went elsewhere never exists
        new_ids = self.next_id + torch.arange(int(filled.sum()), device=self.device)
        r["ids"][m + filled.nonzero().squeeze(1)] = new_ids  # ids in first-appearance order, never reused
        self.next_id += new_ids.numel()
        self._recent = (r["ids"][rows], normalize(took)[0])  # every row that took tokens exists, with its id
        self._m = m + fresh.numel()
        mapping = self._remove(torch.cat([away, m + (~filled).nonzero().squeeze(1)]))
        touched = mapping[touched]
        self._refresh_nn(touched[touched >= 0])
        return tuple(new_ids.tolist()), absorbed, away_ids, 1.0 - float(matched.float().mean())

    def _append_evidence(self, rows: Tensor, frame_index: int) -> None:
        """Record `frame_index` on `rows`; a full row keeps its first frame and shifts the newer ones left."""
        ev, e = self._rows["evidence"], self.evidence_frames
        block = ev[rows]  # [r, E]
        filled = (block >= 0).sum(dim=1)
        block[filled == e, 1:-1] = block[filled == e, 2:]  # empty slices when E <= 2 are fine
        block[torch.arange(rows.numel(), device=self.device), filled.clamp_max(e - 1)] = frame_index
        ev[rows] = block

    def _consolidate(self) -> list[int]:
        """While over capacity, merge the most similar pair of entries (the older id survives); returns ids
        gone. A round merges several pairs with one similarity pass when that equals one at a time
        (`compress.pairs`)."""
        gone: list[int] = []
        r = self._rows
        while self._m > self.capacity:
            m = self._m
            limit = min(m - self.capacity, _ROUND_PAIRS)
            a, b, order = candidate_pairs(r["nn_sim"][:m], r["nn_idx"][:m], r["ids"][:m], limit)
            merged = normalize(r["sums"][a] + r["sums"][b])[0]  # [k, D] unit of each candidate merge
            taken = torch.zeros(m + 1, dtype=torch.bool, device=self.device)  # slot m: "no neighbour"
            taken[a], taken[b] = True, True
            stale = (
                (taken[r["nn_idx"][:m]] & ~taken[:m]).nonzero().squeeze(1)
            )  # their neighbour is merged away
            sims = self._cos_all(torch.cat([merged, r["unit"][stale]]))  # [k + s, M] before any merge
            k = safe_pairs(sims[: a.numel()], merged @ merged.T, a, b, order)
            gone += r["ids"][b[:k]].tolist()
            self._apply_pairs(a[:k], b[:k], merged[:k], sims[:k], (stale, sims[a.numel() :]))
            self.consolidations_total += k
        return gone

    def _apply_pairs(
        self, a: Tensor, b: Tensor, merged: Tensor, sims: Tensor, stale: tuple[Tensor, Tensor]
    ) -> None:
        """Merge rows b into rows a and update every neighbour from the round's pass, taken before the round:
        `sims` [k, M] the merged units', `stale` (rows whose neighbour was in a candidate pair, their
        [s, M])."""
        m, r = self._m, self._rows
        self._merge_rows(a, b, renormalize=False, pairs=True)
        r["unit"][a] = merged
        gone = torch.zeros(m + 1, dtype=torch.bool, device=self.device)  # slot m: "no neighbour"
        gone[a], gone[b] = True, True
        p = sims.masked_fill(gone[None, :m], _NEG)  # merged l vs every entry left unchanged
        idx, sim = r["nn_idx"][:m], r["nn_sim"][:m]
        # Entries that kept their neighbour: the merged units may now be closer.
        col_best, col_arg = p.max(dim=0)
        better = (col_best > sim) & ~gone[:m]
        sim.copy_(torch.where(better, col_best, sim))
        idx.copy_(torch.where(better, a[col_arg], idx))
        # Entries whose neighbour merged: their full row, with the merged units in the columns of rows a.
        lost = (
            gone[r["nn_idx"][stale[0]]] & ~gone[stale[0]]
        )  # stale for the pairs taken (the pass had them all)
        rows, s = stale[0][lost], stale[1][lost].masked_fill(gone[None, :m], _NEG)
        s[:, a] = sims[:, rows].T
        s[torch.arange(rows.numel(), device=self.device), rows] = _NEG
        sim[rows], idx[rows] = s.max(dim=1)
        # The merged rows: each other merged unit, and every entry left unchanged.
        between = merged @ merged.T
        p[:, a] = between.fill_diagonal_(_NEG)
        best, arg = p.max(dim=1)
        sim[a], idx[a] = best, torch.where(best > _NEG, arg, -1)
        self._remove(b)

    def __len__(self) -> int:
        return self._m

    def tokens(
        self, since: float | None = None, until: float | None = None
    ) -> tuple[Tensor, list[EntryInfo]]:
        """Live entries with an interval overlapping [since, until] (None: open end) -> (`[K, D]` float32
        means, `EntryInfo` per row), ordered by first_seen then id."""
        m, r = self._m, self._rows
        since, until = -math.inf if since is None else since, math.inf if until is None else until
        start, end = r["iv_span"][:m, :, 0], r["iv_span"][:m, :, 1]
        hit = (start < INF) & (end >= since) & (start <= until)  # start +inf: an unused slot
        rows = hit.any(dim=1).nonzero().squeeze(1)
        rows = rows[torch.argsort(r["ids"][rows], stable=True)]
        rows = rows[torch.argsort(r["first_seen"][rows], stable=True)]
        means = r["sums"][rows] / r["counts"][rows, None].float()
        names = ("ids", "first_seen", "last_seen", "counts", "frames", "evidence", "iv_span", "iv_evidence")
        infos = []
        for i, a, b, c, n, ev, slots, chosen in zip(*(r[name][rows].tolist() for name in names), strict=True):
            held = [(start, end) for start, end in slots if start < INF]
            frames = tuple(frame for frame, _ in chosen[: len(held)])
            evidence = tuple(e for e in ev if e >= 0)
            infos.append(EntryInfo(i, a, b, c, n, evidence, intervals=tuple(held), interval_frames=frames))
        return means, infos

    def live_evidence(self) -> dict[int, int]:
        """Every frame index a live entry's interval names as its evidence -> its support: the tokens the
        entry absorbed in that frame, summed over the intervals naming the same frame (what a keyframe store
        keeps)."""
        m, r = self._m, self._rows
        chosen = r["iv_evidence"][:m][
            (r["iv_span"][:m, :, 0] < INF) & (r["iv_evidence"][:m, :, 0] != NO_FRAME)
        ]
        keys, inverse = torch.unique(chosen[:, 0], return_inverse=True)
        sums = torch.zeros_like(keys).index_add_(0, inverse, chosen[:, 1])
        return dict(zip(keys.tolist(), sums.tolist(), strict=True))

    def summary(self) -> dict[str, float | int | None]:
        """Sizes and counters, for the API's memory summary and Prometheus (entries is a gauge, *_total
        counters)."""
        stored = int(self._rows["counts"][: self._m].sum())
        return {
            "entries": self._m,
            "tokens_stored": stored,
            **{n: getattr(self, n) for n in _CONFIG + _COUNTERS},
        }

    def state_dict(self) -> dict[str, Any]:
        """Plain CPU tensors, ints and floats (torch.save-able); entry rows are copies, in row order."""
        rows = {name: self._rows[name][: self._m].cpu().clone() for name in _ROW_FIELDS}
        recent = {"recent_ids": self._recent[0].cpu().clone(), "recent_unit": self._recent[1].cpu().clone()}
        live = self._rows["iv_span"][: self._m, :, 0] < INF
        intervals = {"iv_count": live.sum(dim=1).cpu()}
        for (buf, side), name in zip(_SLOT_FIELDS, _INTERVAL_FIELDS[1:], strict=True):
            intervals[name] = self._rows[buf][: self._m, :, side][live].cpu()
        return {
            "version": STATE_VERSION,
            **{n: getattr(self, n) for n in _CONFIG + _INTERVAL_CONFIG + _COUNTERS},
            **rows,
            **recent,
            **intervals,
            "spacings": torch.tensor(self._spacings, dtype=torch.float64),
        }

    @classmethod
    def from_state_dict(
        cls, state: dict[str, Any], *, device: str | torch.device = "cpu", dim: int | None = None
    ) -> TokenMemory:
        """A memory with the state's configuration and entries; ValueError unless it is a consistent
        TokenMemory state (of width `dim` when given)."""
        state = check_state(state)
        if dim is not None and state["dim"] != dim:
            raise ValueError(f"memory state has dim {state['dim']}, expected {dim}")
        dim_, tau, capacity, window_s, evidence = (state[name] for name in _CONFIG)
        gap, limit = (state[name] for name in _INTERVAL_CONFIG)
        memory = cls(
            dim_, tau, capacity, window_s, device, evidence_frames=evidence, gap_s=gap, max_intervals=limit
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
        memory._rows["unit"][:m] = normalize(memory._rows["sums"][:m])[0]
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
        cls, blob: bytes, *, device: str | torch.device = "cpu", dim: int | None = None
    ) -> TokenMemory:
        """Inverse of `to_bytes` (no code runs on load); ValueError for a corrupt or foreign blob or a state
        of another `dim`."""
        return cls.from_state_dict(from_bytes(blob), device=device, dim=dim)  # type: ignore[arg-type]


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
