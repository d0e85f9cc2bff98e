"""Memory blobs: a camera's memory and its time base round-trip exactly; anything else is refused."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from agent.state.memory_blobs import MAGIC, from_blob, to_blob
from compress.memory import TokenMemory


def filled_memory() -> TokenMemory:
    memory = TokenMemory(8, tau=0.9)
    g = torch.Generator().manual_seed(0)
    for i in range(5):
        memory.add_frame(torch.randn(6, 8, generator=g), float(i), i)
    return memory


def test_a_memory_and_its_time_base_come_back_exactly() -> None:
    memory = filled_memory()
    saved = from_blob(to_blob(1_700_000_000.25, memory))
    assert saved.added_at == 1_700_000_000.25
    tokens, entries = memory.tokens()
    again, again_entries = saved.memory.tokens()
    assert torch.equal(tokens, again) and entries == again_entries
    assert saved.memory.tokens_in_total == memory.tokens_in_total


def test_a_blob_of_another_format_is_refused() -> None:
    with pytest.raises(ValueError, match="bad magic"):
        from_blob(b"PK\x03\x04 a zip file")


def test_a_blob_with_a_corrupt_header_is_refused() -> None:
    header = json.dumps({"added": 1.0}).encode()  # no added_at
    blob = MAGIC + struct.pack("<I", len(header)) + header + filled_memory().to_bytes()
    with pytest.raises(ValueError, match="corrupt memory blob header"):
        from_blob(blob)
