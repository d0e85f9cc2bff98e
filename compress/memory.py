"""Rolling per-camera token memory by incremental SCC (DESIGN.md "TokenMemory"): tensors only, never I/O."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from compress.entries import EntryInfo, MemoryUpdate
from compress.memory_state import CONFIG as _CONFIG
from compress.memory_state import COUNTERS as _COUNTERS
from compress.memory_state import NEG as _NEG
from compress.memory_state import ROW_FIELDS as _ROW_FIELDS
from compress.memory_state import ROWS as _ROWS
from compress.memory_state import STATE_VERSION, check_state, from_bytes, to_bytes
from compress.pairs import candidate_pairs, safe_pairs
from compress.scc import check_tau, graph_components, merge_by_labels, normalize, semantic_components

__all__ = ["EntryInfo", "MemoryUpdate", "TokenMemory"]  # the entry types live in compress.entries

_ROUND_PAIRS = 32  # most pairs one consolidation round merges with one similarity pass
_CANDIDATES = 8  # entries a component offers its tokens in the final merge before the exactness check
_ANGLE_MARGIN = 1e-2  # radians of float error allowed for in that check


class TokenMemory:
    """Bounded per-camera memory of visual tokens (N per frame, width D, M live entries), updated frame by
    frame.

    Entries are rows 0..M-1 of preallocated buffers (ToMe-style float32 sums + counts, G3); removal swaps the
    last row into the hole, so no step touches more than M rows. Prometheus counters: plain `*_total`
    attributes.
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
    ) -> None:
        """An empty memory: tau in [-1, 1] for the spatial SCC and for joining entries; past `capacity`
        entries the most similar pair merges; entries last seen over `window_s` before the newest frame are
        evicted; `evidence_frames` frame indices are kept per entry (the first and the newest)."""
        if dim < 1 or capacity < 1 or evidence_frames < 1 or not window_s > 0:
            raise ValueError(
                f"need dim, capacity, evidence_frames >= 1 and window_s > 0, got {dim=}, {capacity=}, "
                f"{evidence_frames=}, {window_s=}"
            )
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
            width = [{"D": self.dim, "E": self.evidence_frames}[c] for c in shape]
            buf = torch.full((rows, *width), fill, dtype=dtype, device=self.device)
            if name in self._rows:
                buf[: self._m] = self._rows[name][: self._m]
            self._rows[name] = buf

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

    def _merge_rows(self, into: Tensor, away: Tensor, *, renormalize: bool = True) -> None:
        """Add rows `away` into rows `into` (counts-weighted: sums and counts add); no row is removed here."""
        r, e = self._rows, self.evidence_frames
        rows, inverse = torch.unique(into, return_inverse=True)  # small: a bridge or one consolidation
        for name in ("sums", "counts", "frames"):  # index_add_ on the small result, never on a whole buffer
            r[name][rows] += torch.zeros_like(r[name][rows]).index_add_(0, inverse, r[name][away])
        r["frames"][rows] = r["frames"][rows].clamp_max(
            self.frames_total
        )  # an upper bound on distinct frames
        r["first_seen"][rows] = r["first_seen"][rows].scatter_reduce(
            0, inverse, r["first_seen"][away], "amin"
        )
        r["last_seen"][rows] = r["last_seen"][rows].scatter_reduce(0, inverse, r["last_seen"][away], "amax")
        for k, a in enumerate(rows.tolist()):
            seen = torch.cat([r["evidence"][a], r["evidence"][away[inverse == k]].flatten()])
            seen = torch.unique(seen[seen >= 0])  # sorted; keep the first frame and the newest ones
            keep = seen if seen.numel() <= e else torch.cat([seen[:1], seen[seen.numel() - e + 1 :]])
            r["evidence"][a] = -1
            r["evidence"][a, : keep.numel()] = keep
        if renormalize:  # a consolidation round already holds the merged units
            r["unit"][rows] = normalize(r["sums"][rows])[0]

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
        r["counts"][rows] += torch.bincount(inverse, minlength=rows.numel())
        touched = torch.zeros(m + fresh.numel(), dtype=torch.bool, device=self.device)
        touched[rows] = True
        touched[target] = True  # a joined entry appeared in this frame even if its tokens went elsewhere
        touched[away] = False
        touched = touched.nonzero().squeeze(1)
        absorbed = tuple(r["ids"][touched[touched < m]].tolist())
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
        self._merge_rows(a, b, renormalize=False)
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
        """Live entries overlapping [since, until] (None: open end) -> (`[K, D]` float32 means, `EntryInfo`
        per row), ordered by first_seen then id."""
        m, r = self._m, self._rows
        since, until = -math.inf if since is None else since, math.inf if until is None else until
        rows = ((r["last_seen"][:m] >= since) & (r["first_seen"][:m] <= until)).nonzero().squeeze(1)
        rows = rows[torch.argsort(r["ids"][rows], stable=True)]
        rows = rows[torch.argsort(r["first_seen"][rows], stable=True)]
        means = r["sums"][rows] / r["counts"][rows, None].float()
        cols = [
            r[name][rows].tolist()
            for name in ("ids", "first_seen", "last_seen", "counts", "frames", "evidence")
        ]
        return means, [
            EntryInfo(i, a, b, c, n, tuple(e for e in ev if e >= 0))
            for i, a, b, c, n, ev in zip(*cols, strict=True)
        ]

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
        return {
            "version": STATE_VERSION,
            **{n: getattr(self, n) for n in _CONFIG + _COUNTERS},
            **rows,
            **recent,
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
        memory, m = (
            cls(dim_, tau, capacity, window_s, device, evidence_frames=evidence),
            int(state["ids"].shape[0]),
        )
        memory._reserve(max(m, capacity) + 1)
        for name in _ROW_FIELDS:
            memory._rows[name][:m] = state[name].to(memory.device)
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
