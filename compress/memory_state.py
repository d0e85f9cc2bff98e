"""The snapshot format of `TokenMemory` (what Redis stores): its fields, version, validation and bytes."""

from __future__ import annotations

import io
import pickle
from typing import Any

import torch
from torch import Tensor

STATE_VERSION = 2  # 2 added the previous frame's look of entries (recent_*); version 1 states still load
NEG = float("-inf")
CONFIG = ("dim", "tau", "capacity", "window_s", "evidence_frames")
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
_F32, _F64, _I64 = torch.float32, torch.float64, torch.int64
# Per-entry buffers: name -> (row shape: "D" width, "E" evidence slots, "" scalar; dtype; fill of an unused
# row).
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
}


def check_state(state: object) -> dict[str, Any]:
    """`state` as a consistent state of this version (a version 1 state gains an empty recent look);
    ValueError naming what is wrong otherwise."""
    if not isinstance(state, dict) or state.get("version") not in (1, STATE_VERSION):
        raise ValueError(f"not a TokenMemory state of version 1 or {STATE_VERSION}")
    tensors = ROW_FIELDS + (RECENT_FIELDS if state["version"] == STATE_VERSION else ())
    missing = [k for k in CONFIG + COUNTERS + tensors if k not in state]
    if missing or not all(
        isinstance(state[k], Tensor if k in tensors else int | float | None) for k in state
    ):
        raise ValueError(f"TokenMemory state lacks fields {missing} or holds values of the wrong type")
    if state["version"] == 1:
        state = {
            **state,
            "version": STATE_VERSION,
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
    return state


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
