"""Keep-all: every encoded token of every frame as its own memory row, with no SCC merging at all, the 100 %
retention baseline compression is measured against; bookkeeping only, it never merges and never copies.

Why a cosine threshold is no keep-all: SCC links tokens whose cosine *exceeds* tau, and float32 cosines of
identical tokens come out above 1 (1.0000002 on the tiny model's), so `compress_video(frames, 1.0)` keeps
326 of two identical tiny-model frames' 392 tokens; and `TokenMemory` has no mode that stores every token.
Hand `keep_all` rows to an answerer instead (`tests/agent/models/test_llava_path.py` compares them with
transformers' native video path).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from compress.entries import EntryInfo


def keep_all(
    frames: Tensor, times_s: Sequence[float] | None = None, *, first_index: int = 0
) -> tuple[Tensor, list[EntryInfo]]:
    """Every token of `frames` as a row, with one entry per row.

    Args:
        frames: `[F, N, D]` encoder tokens.
        times_s: each frame's stream seconds (default: frame i at i seconds).
        first_index: the frame index of `frames[0]` (entries' evidence frames count from it).

    Returns:
        (`[F * N, D]` rows in frame order, a view of `frames` when it is contiguous; entries, where entry
        `i * N + j` is token j of frame i, seen once at `times_s[i]`, count 1, evidence frame
        `first_index + i`).

    Raises:
        ValueError: `frames` is not `[F, N, D]`, or `times_s` does not give one time per frame.
    """
    if frames.ndim != 3:
        raise ValueError(f"frames must be [F, N, D], got shape {tuple(frames.shape)}")
    f, n, d = frames.shape
    times = [float(i) for i in range(f)] if times_s is None else [float(t) for t in times_s]
    if len(times) != f:
        raise ValueError(f"got {len(times)} times for {f} frames")
    entries = [
        EntryInfo(i * n + j, times[i], times[i], 1, 1, (first_index + i,)) for i in range(f) for j in range(n)
    ]
    return frames.reshape(f * n, d), entries
