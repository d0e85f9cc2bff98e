"""A still view of a `TokenMemory`: copies of its live rows on the memory's device, read later off the lock.

Taking a view (`TokenMemory.view`) only queues device copies of the live rows, so a reader holds the ingest
lock for as long as those copies take to queue, never for a host read: on a GPU the clones are kernels that
run in stream order (before any later update writes the buffers), and the host reads them (`tokens`,
`summary`, `live_evidence`, `state_dict` / `to_bytes`) after the lock is released, while the next frame is
already being merged. On the CPU a view is a plain copy of the rows. Nothing here changes a memory.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from compress.entries import EntryInfo
from compress.intervals import INF, NO_FRAME
from compress.memory_state import (
    CONFIG,
    COUNTERS,
    INTERVAL_CONFIG,
    INTERVAL_FIELDS,
    ROW_FIELDS,
    STATE_VERSION,
    to_bytes,
)

# Where the state's ragged interval fields (after iv_count) live: (buffer, column of its last dimension).
SLOT_FIELDS = (("iv_span", 0), ("iv_span", 1), ("iv_evidence", 0), ("iv_evidence", 1))
# The rows a view copies: the saved row fields and the interval slots; `sums` (the M x D payload) only when
# asked for (tokens, snapshots), not for a summary or the evidence frames.
_VIEWED = (*ROW_FIELDS, "iv_span", "iv_evidence")


class MemoryView:
    """Copies of a memory's live rows (device tensors), its configuration and counters (Python values) at
    one moment: what `TokenMemory.tokens`, `summary`, `live_evidence` and `state_dict` read.

    Args:
        rows: buffer name -> its live rows `[M, ...]`, copies the memory never writes.
        recent: (ids, units) of the entries seen in the latest frame (-1 ids: padding), copies.
        values: configuration and counters by name (`compress.memory_state.CONFIG`, `INTERVAL_CONFIG`,
            `COUNTERS`) and `spacings`, a list of seconds.
    """

    def __init__(self, rows: dict[str, Tensor], recent: tuple[Tensor, Tensor], values: dict[str, Any]):
        self.rows, self.recent, self.values = rows, recent, values
        self.device = rows["ids"].device

    @classmethod
    def of(
        cls,
        buffers: dict[str, Tensor],
        m: int,
        recent: tuple[Tensor, Tensor],
        values: dict[str, Any],
        *,
        sums: bool = True,
    ) -> MemoryView:
        """The view of rows 0..m-1 of a memory's `buffers` (device clones: no host sync); `sums` False leaves
        the M x D sums out (`tokens` and `state_dict` then raise)."""
        names = _VIEWED if sums else tuple(n for n in _VIEWED if n != "sums")
        rows = {name: buffers[name][:m].clone() for name in names}
        return cls(rows, (recent[0].clone(), recent[1].clone()), dict(values))

    def __len__(self) -> int:
        return int(self.rows["ids"].shape[0])

    def _on_host(self) -> tuple[dict[str, Tensor], tuple[Tensor, Tensor]]:
        """The rows and the recent look on the CPU: on a GPU every copy is queued at once (non_blocking, into
        pinned memory) and the host waits once, for those copies only (an event after them), never for the
        updates queued since. On the CPU the tensors themselves."""
        if self.device.type != "cuda":
            return self.rows, self.recent
        rows = {name: t.to("cpu", non_blocking=True) for name, t in self.rows.items()}
        recent = (self.recent[0].to("cpu", non_blocking=True), self.recent[1].to("cpu", non_blocking=True))
        done = torch.cuda.Event()  # type: ignore[no-untyped-call]  # torch leaves it untyped
        done.record(torch.cuda.current_stream(self.device))
        done.synchronize()  # host sync: the copies, once (off the ingest lock)
        return rows, recent

    def tokens(
        self, since: float | None = None, until: float | None = None
    ) -> tuple[Tensor, list[EntryInfo]]:
        """Entries with an interval overlapping [since, until] (None: open end) -> (`[K, D]` float32 means on
        the memory's device, `EntryInfo` per row), ordered by first_seen then id."""
        r = self.rows
        since, until = -math.inf if since is None else since, math.inf if until is None else until
        start, end = r["iv_span"][:, :, 0], r["iv_span"][:, :, 1]
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
        """Every frame index an entry's interval names as its evidence -> its support (see
        `TokenMemory.live_evidence`)."""
        r = self.rows
        chosen = r["iv_evidence"][(r["iv_span"][:, :, 0] < INF) & (r["iv_evidence"][:, :, 0] != NO_FRAME)]
        keys, inverse = torch.unique(chosen[:, 0], return_inverse=True)
        sums = torch.zeros_like(keys).index_add_(0, inverse, chosen[:, 1])
        return dict(zip(keys.tolist(), sums.tolist(), strict=True))

    def summary(self) -> dict[str, float | int | None]:
        """Sizes and counters (see `TokenMemory.summary`)."""
        return {
            "entries": len(self),
            "tokens_stored": int(self.rows["counts"].sum()),
            **{n: self.values[n] for n in CONFIG + COUNTERS},
        }

    def state_dict(self) -> dict[str, Any]:
        """Plain CPU tensors, ints and floats (torch.save-able), entry rows in row order: the memory's state
        (`TokenMemory.state_dict`)."""
        r, (recent_ids, recent_unit) = self._on_host()
        rows = {name: r[name] for name in ROW_FIELDS}  # copies already: the memory never writes them
        seen = recent_ids >= 0  # padding slots hold id -1
        live = r["iv_span"][:, :, 0] < INF
        intervals = {"iv_count": live.sum(dim=1)}
        for (buf, side), name in zip(SLOT_FIELDS, INTERVAL_FIELDS[1:], strict=True):
            intervals[name] = r[buf][:, :, side][live]
        return {
            "version": STATE_VERSION,
            **{n: self.values[n] for n in CONFIG + INTERVAL_CONFIG + COUNTERS},
            **rows,
            "recent_ids": recent_ids[seen],
            "recent_unit": recent_unit[seen],
            **intervals,
            "spacings": torch.tensor(self.values["spacings"], dtype=torch.float64),
        }

    def to_bytes(self) -> bytes:
        """`state_dict()` serialised with torch.save (what `TokenMemory.from_bytes` reads)."""
        return to_bytes(self.state_dict())
