"""The snapshot format of `TokenMemory` (what Redis stores): its fields, version, validation and bytes."""

from __future__ import annotations

import io
import pickle
from typing import Any

import torch
from torch import Tensor

STATE_VERSION = 3  # 2 added the previous frame's look (recent_*), 3 the intervals; 1 and 2 still load
NEG = float("-inf")
CONFIG = ("dim", "tau", "capacity", "window_s", "evidence_frames")
INTERVAL_CONFIG = ("gap_s", "max_intervals")  # in the state since version 3, not in `TokenMemory.summary`
MAX_INTERVALS = 16  # default bound on intervals per entry (and that of a version 1 or 2 state)
SPACINGS = 15  # recent positive frame spacings kept for the running (median) spacing estimate
COUNTERS = (
    "newest_t",
    "next_id",
    "frames_total",
    "tokens_in_total",
    "tokens_zero_total",
    "tokens_evicted_total",
    "evicted_total",
    "consolidations_total",
    "bridged_total",
)
ROW_FIELDS = ("sums", "counts", "first_seen", "last_seen", "frames", "ids", "evidence", "nn_idx", "nn_sim")
RECENT_FIELDS = ("recent_ids", "recent_unit")  # entries seen in the latest frame: id, unit of what they took
# Intervals, ragged in the state: iv_count [M] per entry, the others [sum of counts] in row order, oldest
# first.
INTERVAL_FIELDS = ("iv_count", "iv_start", "iv_end", "iv_frame", "iv_support")
INTERVAL_STATE = (*INTERVAL_FIELDS, "spacings")  # spacings: [<= SPACINGS] float64 seconds, oldest first
_F32, _F64, _I64 = torch.float32, torch.float64, torch.int64
# Per-entry buffers: name -> (row shape: "D" width, "E" evidence slots, "K" interval slots, "N" neighbour
# slots, "2" pairs, "" scalar; dtype; fill of an unused row). An interval slot is used when its start is
# finite (compress.intervals). The neighbour lists (nb_*) are rebuilt from nn_idx / nn_sim on load, never
# saved.
ROWS: dict[str, tuple[str, torch.dtype, float]] = {
    "sums": ("D", _F32, 0.0),
    "unit": ("D", _F32, 0.0),
    "counts": ("", _I64, 0),
    "first_seen": ("", _F64, 0.0),
    "last_seen": ("", _F64, 0.0),
    "frames": ("", _I64, 0),
    "ids": ("", _I64, -1),
    "evidence": ("E", _I64, -1),
    "nn_idx": ("", _I64, -1),
    "nn_sim": ("", _F32, NEG),
    "iv_span": ("K2", _F64, float("inf")),  # (start, end) per interval slot
    "iv_evidence": ("K2", _I64, -1),  # (evidence frame, its support) per interval slot
    "nb_idx": ("N", _I64, -1),  # the most similar other entries (-1: empty slot), any order
    "nb_sim": ("N", _F32, NEG),  # their cosines
    "nb_bound": ("", _F32, NEG),  # every entry outside the list is at most this similar
}


def check_state(state: object) -> dict[str, Any]:
    """`state` as a consistent state of this version (a version 1 state gains an empty recent look, a version
    1 or 2 state one interval per entry: see `_with_intervals`); ValueError naming what is wrong otherwise."""
    if not isinstance(state, dict) or state.get("version") not in (1, 2, STATE_VERSION):
        raise ValueError(f"not a TokenMemory state of version 1, 2 or {STATE_VERSION}")
    version = state["version"]
    tensors = (
        ROW_FIELDS
        + (RECENT_FIELDS if version >= 2 else ())
        + (INTERVAL_STATE if version >= STATE_VERSION else ())
    )
    names = CONFIG + COUNTERS + (INTERVAL_CONFIG if version >= STATE_VERSION else ()) + tensors
    missing = [k for k in names if k not in state]
    if missing or not all(
        isinstance(state[k], Tensor if k in tensors else int | float | None) for k in state
    ):
        raise ValueError(f"TokenMemory state lacks fields {missing} or holds values of the wrong type")
    if version == 1:
        state = {
            **state,
            "recent_ids": torch.empty(0, dtype=_I64),
            "recent_unit": torch.empty(0, int(state["dim"])),
        }
    m, sizes = state["ids"].shape[0], {"D": state["dim"], "E": state["evidence_frames"]}
    for name in ROW_FIELDS:
        shape, dtype = (m, *(sizes[c] for c in ROWS[name][0])), ROWS[name][1]
        if tuple(state[name].shape) != shape or state[name].dtype != dtype:
            raise ValueError(
                f"TokenMemory state {name}: {tuple(state[name].shape)} {state[name].dtype}, want {shape}"
            )
    ids, nn, recent, look = state["ids"], state["nn_idx"], state["recent_ids"], state["recent_unit"]
    if m and not (
        int(state["counts"].min()) >= 1
        and bool(torch.isfinite(state["sums"]).all())
        and int(ids.min()) >= 0
        and int(ids.max()) < state["next_id"]
        and torch.unique(ids).numel() == m
        and -1 <= int(nn.min()) <= int(nn.max()) < m
    ):
        raise ValueError(
            "TokenMemory state rows are inconsistent (counts, ids, neighbours or non-finite sums)"
        )
    r = recent.shape[0]
    if (
        recent.dtype != _I64
        or look.dtype != _F32
        or tuple(look.shape) != (r, state["dim"])
        or recent.dim() != 1
        or (
            r
            and not (
                int(recent.min()) >= 0
                and int(recent.max()) < state["next_id"]
                and torch.unique(recent).numel() == r
                and bool(torch.isfinite(look).all())
            )
        )
    ):
        raise ValueError("TokenMemory state recent_ids / recent_unit are inconsistent")
    if version < STATE_VERSION:
        state = _with_intervals(state)
    _check_intervals(state)
    return {**state, "version": STATE_VERSION}


def _with_intervals(state: dict[str, Any]) -> dict[str, Any]:
    """A version 1 or 2 state with what version 3 adds: gap_s measured from the stream, MAX_INTERVALS, no
    spacings yet, and one interval first_seen..last_seen per entry whose evidence is the entry's first
    evidence frame, with the entry's mean tokens per frame as its support (what it absorbed there was not
    recorded)."""
    m = state["ids"].shape[0]
    support = (state["counts"] // state["frames"].clamp_min(1)).clamp_min(1)
    return {
        **state,
        "gap_s": None,
        "max_intervals": MAX_INTERVALS,
        "spacings": torch.empty(0, dtype=_F64),
        "iv_count": torch.ones(m, dtype=_I64),
        "iv_start": state["first_seen"].clone(),
        "iv_end": state["last_seen"].clone(),
        "iv_frame": state["evidence"][:, 0].clone(),
        "iv_support": support,
    }


def _check_intervals(state: dict[str, Any]) -> None:
    """ValueError unless the state's interval fields are consistent: gap_s None or >= 0, max_intervals >= 1,
    1..max_intervals intervals per entry, sorted and disjoint, spanning first_seen..last_seen, and the
    spacings a few finite positive seconds."""
    gap, limit, spacings = state["gap_s"], state["max_intervals"], state["spacings"]
    if not (gap is None or gap >= 0) or not isinstance(limit, int) or limit < 1:  # gap >= 0 also rejects NaN
        raise ValueError(f"TokenMemory state gap_s {gap} or max_intervals {limit} out of range")
    if not (
        spacings.dtype == _F64
        and spacings.dim() == 1
        and spacings.numel() <= SPACINGS
        and bool((torch.isfinite(spacings) & (spacings > 0)).all())
    ):
        raise ValueError("TokenMemory state spacings are inconsistent")
    count, start, end = state["iv_count"], state["iv_start"], state["iv_end"]
    m, total = state["ids"].shape[0], int(count.sum()) if count.numel() else 0
    dtypes = dict(zip(INTERVAL_FIELDS, (_I64, _F64, _F64, _I64, _I64), strict=True))
    shapes = {name: (m,) if name == "iv_count" else (total,) for name in INTERVAL_FIELDS}
    if any(tuple(state[n].shape) != shapes[n] or state[n].dtype != dtypes[n] for n in INTERVAL_FIELDS) or (
        m and not 1 <= int(count.min()) <= int(count.max()) <= limit
    ):
        raise ValueError(f"TokenMemory state intervals: wrong shapes or counts outside 1..{limit}")
    if not m:
        return
    last = count.cumsum(0) - 1
    first = last - count + 1
    later = torch.ones(total, dtype=torch.bool).index_fill_(0, first, False)  # not an entry's first interval
    previous_end = torch.cat([end.new_full((1,), -float("inf")), end[:-1]])
    if not (
        bool(torch.isfinite(start).all() and torch.isfinite(end).all() and (start <= end).all())
        and bool((start[later] > previous_end[later]).all())
        and torch.equal(start[first], state["first_seen"])
        and torch.equal(end[last], state["last_seen"])
        and int(state["iv_frame"].min()) >= -1
        and int(state["iv_support"].min()) >= 0
    ):
        raise ValueError(
            "TokenMemory state intervals are inconsistent (unsorted, overlapping, not spanning "
            "first_seen..last_seen, or negative frames / support)"
        )


def to_bytes(state: dict[str, Any]) -> bytes:
    """A state serialised with torch.save."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def from_bytes(blob: bytes) -> object:
    """Inverse of `to_bytes` (torch.load with weights_only=True: no code runs); ValueError for a corrupt
    blob."""
    try:
        return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as error:
        raise ValueError(
            f"not a TokenMemory snapshot ({len(blob)} bytes): {error}".splitlines()[0]
        ) from error
