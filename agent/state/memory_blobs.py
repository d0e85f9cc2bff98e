"""Memory blobs for the state store: a small JSON header (the time base) + TokenMemory bytes. No I/O."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import torch

from compress.memory import TokenMemory
from compress.view import MemoryView

MAGIC = b"SCSNAP1\n"  # the format's first name; blobs already in Redis start with it


@dataclass(frozen=True)
class SavedMemory:
    """A camera's memory and the wall-clock second its stream time starts at."""

    added_at: float
    memory: TokenMemory


def to_blob(added_at: float, memory: TokenMemory | MemoryView) -> bytes:
    """Serialise a camera's memory, or a view of it taken under the ingest lock (`TokenMemory.view`: the
    copy to the host and the serialising then happen off the lock), with its time base (stream second 0 in
    wall-clock seconds)."""
    header = json.dumps({"added_at": added_at}).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + memory.to_bytes()


def from_blob(blob: bytes, *, device: str | torch.device = "cpu") -> SavedMemory:
    """Inverse of `to_blob`, the memory on `device` (the encoder's); a blob of another format raises
    ValueError."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise ValueError("not a Scissor memory blob (bad magic)")
    start = len(MAGIC)
    (size,) = struct.unpack("<I", blob[start : start + 4])
    try:
        header = json.loads(blob[start + 4 : start + 4 + size])
        added_at = float(header["added_at"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"corrupt memory blob header: {exc}") from None
    return SavedMemory(added_at, TokenMemory.from_bytes(blob[start + 4 + size :], device=device))
