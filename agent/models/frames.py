"""Whole-frame ImageNet predictions rebuilt from memory entries: what "what did you see?" names.

The ImageNet head was trained on the average of a frame's tokens. Memory keeps entries (means of tokens) and
when each was on camera, so at every moment an entry was seen the frame's mean token is the mean of the
entries on camera then, each weighted by the tokens it took per frame (count / frames); the head is linear, so
its logits are the same weighted mean of the entries' logits. Pure tensor math over a `Labeler`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from agent.models.labels import Labeler

if TYPE_CHECKING:
    from compress.memory import EntryInfo

WHOLE_FRAME = 0.5  # share of a typical moment's tokens (per-frame weight) a moment needs to count as a frame


@dataclass(frozen=True)
class FrameLabel:
    """A class that was the confident whole-frame prediction at some moments.

    Attributes:
        name: the class name.
        class_id: its ImageNet id.
        prob: its highest whole-frame probability.
        frames: the moments (frames) it was the confident prediction of.
        spans: runs of consecutive moments it was the confident prediction of, (from, to) in the entries'
            stream seconds.
        rows: the entries on camera at those moments.
    """

    name: str
    class_id: int
    prob: float
    frames: int
    spans: list[tuple[float, float]]
    rows: list[int]


def frame_probs(labeler: Labeler, tokens: Tensor, entries: Sequence[EntryInfo]) -> tuple[Tensor, Tensor]:
    """Whole-frame class probabilities at every moment an entry's presence interval starts or ends.

    Args:
        labeler: the encoder's ImageNet head.
        tokens: entry means `[K, D]`, row i = entries[i].
        entries: the entries (their intervals, count and frames).

    Returns:
        (times `[T]` float64, probabilities `[T, 1000]`), T moments in time order; T = 0 without entries.
    """
    if not entries:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, 1000)
    times = torch.tensor(sorted({t for e in entries for iv in e.intervals for t in iv}), dtype=torch.float64)
    starts = torch.tensor([a for e in entries for a, _ in e.intervals], dtype=torch.float64)
    ends = torch.tensor([b for e in entries for _, b in e.intervals], dtype=torch.float64)
    owner = torch.tensor([i for i, e in enumerate(entries) for _ in e.intervals], dtype=torch.long)
    on = (
        (starts[None, :] <= times[:, None] + 1e-6) & (ends[None, :] >= times[:, None] - 1e-6)
    ).float()  # [T, I]
    present = torch.zeros(len(times), len(entries)).index_add_(1, owner, on).clamp_(max=1.0)  # [T, K]
    per_frame = torch.tensor([e.count / max(1, e.frames) for e in entries], dtype=torch.float32)  # [K]
    weights = present * per_frame[None, :]  # [T, K]
    # A moment where fewer entries are on camera than make up a frame (a range cut inside a frame's
    # interval, an entry's gap) would be judged on part of a frame: only whole frames are predictions.
    whole = weights.sum(1) >= WHOLE_FRAME * weights.sum(1).median()
    times, weights = times[whole], weights[whole]
    logits = labeler.class_logits(tokens).float()  # [K, 1000]
    frame_logits = (weights @ logits) / weights.sum(1, keepdim=True).clamp_min(1e-12)  # [T, 1000]
    return times, torch.softmax(frame_logits, dim=-1)  # times stay float64: exactly the entries' own


def frame_labels(
    labeler: Labeler,
    tokens: Tensor,
    entries: Sequence[EntryInfo],
    min_prob: float,
    min_margin: float = math.inf,
) -> list[FrameLabel]:
    """The classes that were a frame's confident top prediction, most frames first: probability >=
    `min_prob`, or at least `min_margin` times the runner-up's (at 448 px whole-frame probabilities are
    flat: skimage's coffee is espresso at p=0.05, 4.8x the next class)."""
    times, probs = frame_probs(labeler, tokens, entries)
    if len(times) == 0:
        return []
    top2_p, top2_c = probs.topk(2, dim=-1)
    top_p, top_c = top2_p[:, 0], top2_c[:, 0]
    confident = (top_p >= min_prob) | (top_p >= min_margin * top2_p[:, 1])
    by_class: dict[int, list[int]] = {}
    runs: dict[int, list[tuple[int, int]]] = {}  # class -> runs of consecutive moments (first, last index)
    for j in confident.nonzero().flatten().tolist():
        c = int(top_c[j])
        by_class.setdefault(c, []).append(j)
        spans_of = runs.setdefault(c, [])
        if spans_of and spans_of[-1][1] == j - 1:  # no other prediction in between: one stretch
            spans_of[-1] = (spans_of[-1][0], j)
        else:
            spans_of.append((j, j))
    out = []
    for cid, frames in by_class.items():
        spans = [(float(times[a]), float(times[b])) for a, b in runs[cid]]
        rows = sorted(
            {
                i
                for i, e in enumerate(entries)
                if any(
                    a <= float(times[j]) + 1e-6 and b >= float(times[j]) - 1e-6
                    for j in frames
                    for a, b in e.intervals
                )
            }
        )
        prob = float(top_p[frames].max())
        out.append(FrameLabel(labeler.class_names[cid], cid, prob, len(frames), spans, rows))
    return sorted(out, key=lambda f: (-f.frames, -f.prob))
