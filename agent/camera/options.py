"""Per-camera options a client may set (memory and source), their types, their allowed ranges, and the memory
they make."""

from __future__ import annotations

from typing import Any

import torch

from agent.errors import InvalidRequest, QuotaExceeded
from agent.settings import CameraDefaults, LimitsOptions
from compress.memory import TokenMemory
from compress.memory_state import MAX_INTERVALS, ROWS

MEMORY_OPTIONS = {"tau": float, "capacity": int, "window_s": float}
SOURCE_OPTIONS = {
    "transport": str,
    "loop": bool,
    "open_timeout_s": float,
    "read_timeout_s": float,
    "queue_size": int,
    "decode_threads": int,
    "backoff_max_s": float,
    "insecure_tls": bool,  # accept any certificate from this rtsps:// / https:// camera (reported in status)
}
# Ranges an API client may ask for: memory and threads are preallocated from these, so they must be bounded.
OPTION_RANGES = {
    "capacity": (1, 65_536),
    "window_s": (1.0, 7 * 86_400.0),
    "open_timeout_s": (0.1, 300.0),
    "read_timeout_s": (0.1, 300.0),
    "queue_size": (1, 64),
    "decode_threads": (0, 16),
    "backoff_max_s": (0.1, 3600.0),
}


def split_options(options: dict[str, Any], *, allow_files: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """A camera's `options` -> (memory options, source options), typed and range-checked; InvalidRequest
    naming the option otherwise (`loop` needs a server that allows local files)."""
    memory: dict[str, Any] = {}
    source: dict[str, Any] = {}
    for key, value in options.items():
        kinds = MEMORY_OPTIONS if key in MEMORY_OPTIONS else SOURCE_OPTIONS if key in SOURCE_OPTIONS else None
        if kinds is None:
            allowed = ", ".join(sorted({*MEMORY_OPTIONS, *SOURCE_OPTIONS}))
            raise InvalidRequest(f"options.{key}", f"unknown option; allowed: {allowed}")
        if kinds[key] is bool and not isinstance(value, bool):
            raise InvalidRequest(f"options.{key}", "must be true or false")
        try:
            (memory if kinds is MEMORY_OPTIONS else source)[key] = kinds[key](value)
        except (TypeError, ValueError):
            raise InvalidRequest(f"options.{key}", f"must be a {kinds[key].__name__}") from None
        lo, hi = OPTION_RANGES.get(key, (None, None))
        got = (memory if kinds is MEMORY_OPTIONS else source)[key]
        if lo is not None and not lo <= got <= hi:
            raise InvalidRequest(f"options.{key}", f"must be between {lo} and {hi}")
    if source.get("transport", "tcp") not in {"tcp", "udp"}:
        raise InvalidRequest("options.transport", "must be tcp or udp")
    if source.get("loop") and not allow_files:
        raise InvalidRequest("options.loop", "looping is only for local files, which this server refuses")
    return memory, source


# Row widths of TokenMemory's per-entry buffers (compress.memory_state.ROWS) besides D: E evidence frames (its
# default, which the service uses), K interval slots, N neighbour slots (compress.memory's _NEIGHBOURS).
_ROW_WIDTHS = {"E": 4, "K": MAX_INTERVALS, "N": 8, "2": 2}


def memory_bytes(capacity: int, dim: int) -> int:
    """Bytes a `TokenMemory(dim, capacity=capacity)` preallocates: capacity + 2 rows (scratch and headroom)
    of every per-entry buffer; the two float32 `[M, D]` ones (token sums, unit means) are ~8 x D of a row."""
    row = 0
    for shape, dtype, _ in ROWS.values():
        width = 1
        for size in shape:
            width *= dim if size == "D" else _ROW_WIDTHS[size]
        row += width * dtype.itemsize
    return (capacity + 2) * row


def memory_capacity(options: dict[str, Any], defaults: CameraDefaults) -> int:
    """The capacity a camera's memory `options` (`split_options`) ask for, the default when unset."""
    return int(options.get("capacity", defaults.capacity_entries))


def check_memory_quota(bytes_needed: int, *, others_bytes: int, limits: LimitsOptions) -> None:
    """Refuse a memory before it is allocated: InvalidRequest (422) when one camera's is over
    `memory_bytes_per_camera`; QuotaExceeded (409) when it and `others_bytes` (every other camera's) are
    over `memory_bytes_total`."""
    if bytes_needed > limits.memory_bytes_per_camera:
        raise InvalidRequest(
            "options.capacity",
            f"this memory would take {bytes_needed} bytes, over SCISSOR_LIMITS__MEMORY_BYTES_PER_CAMERA "
            f"({limits.memory_bytes_per_camera}); ask for a smaller capacity",
        )
    if others_bytes + bytes_needed > limits.memory_bytes_total:
        raise QuotaExceeded(
            "SCISSOR_LIMITS__MEMORY_BYTES_TOTAL",
            limits.memory_bytes_total,
            f"cameras' memories would take {others_bytes + bytes_needed} bytes",
        )


def build_memory(
    options: dict[str, Any],
    *,
    defaults: CameraDefaults,
    token_dim: int,
    backend_tau: float,
    device: str | torch.device = "cpu",
) -> TokenMemory:
    """A new, empty memory for a camera's memory `options` (`split_options`), the rest from `defaults`, on
    `device` (the encoder's: its tokens never leave it).

    tau: the option, else `SCISSOR_CAMERA__TAU` when it was set, else the backend's own (its tokens' scale).
    Raises InvalidRequest("options") for a combination TokenMemory refuses.
    """
    tau = options.get("tau", defaults.tau if "tau" in defaults.model_fields_set else backend_tau)
    try:
        return TokenMemory(
            token_dim,
            tau=tau,
            capacity=options.get("capacity", defaults.capacity_entries),
            window_s=options.get("window_s", defaults.window_s),
            device=device,
        )
    except ValueError as exc:
        raise InvalidRequest("options", str(exc)) from None
