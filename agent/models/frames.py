"""Whole-frame ImageNet predictions rebuilt from memory entries: what "what did you see?" names.

The ImageNet head was trained on the average of a frame's tokens. Memory keeps entries (means of tokens) and
when each was on camera, so at every moment an entry was seen the frame's mean token is the mean of the
entries on camera then, each weighted by the tokens it took per frame (count / frames); the head is linear, so
its logits are the same weighted mean of the entries' logits. Pure tensor math over a `Labeler`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from agent.models.labels import Labeler

if TYPE_CHECKING:
    from compress.memory import EntryInfo

WHOLE_FRAME = 0.5  # share of a typical moment's tokens (per-frame weight) a moment needs to count as a frame


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


CONFIDENT_MASS = 0.25  # probability a concept (a class or a WordNet node, summed over its classes) needs
STABLE_S = 3.0  # seconds an unconfident top prediction must hold, unbroken, to be named at all...
WEAK_MIN_PROB = 0.01  # ...with at least 10x the chance probability (a flat frame's top class is p ~ 0.001)


@dataclass(frozen=True)
class FrameConcept:
    """What whole frames showed over some moments, at the most specific confident level.

    Attributes:
        name: the concept named ("cat", "flower"; a class's display name at the leaf).
        leaf: the class most often the top prediction under it ("Egyptian Mau").
        prob: its highest whole-frame probability (summed over its classes).
        confident: False for a top prediction that never reached `CONFIDENT_MASS` but held for `STABLE_S`.
        spans: runs of consecutive moments it was named at, (from, to) in the entries' stream seconds.
        rows: the entries on camera at those moments.
    """

    name: str
    leaf: str
    prob: float
    confident: bool
    spans: list[tuple[float, float]]
    rows: list[int]

    @property
    def seconds(self) -> float:
        return sum(b - a for a, b in self.spans)


def frame_concepts(labeler: Labeler, tokens: Tensor, entries: Sequence[EntryInfo]) -> list[FrameConcept]:
    """What frames showed, in order of first appearance: at each moment the most specific concept on the top
    class's WordNet path whose summed probability reaches `CONFIDENT_MASS` (the class itself, else "cat",
    else "animal"...); where none does, the top class when it holds the top for `STABLE_S` seconds unbroken
    (at 448 px whole-frame probabilities are flat: a real photo's top class is often p=0.02-0.2)."""
    times, probs = frame_probs(labeler, tokens, entries)
    if len(times) == 0:
        return []
    index = labeler.concepts
    top_p, top_c = probs.max(dim=-1)
    named: list[tuple[str, bool, float]] = []  # per moment: (concept, confident, probability)
    for j in range(len(times)):
        c = int(top_c[j])
        pick = None
        for wnid in index.path_up(c):
            mass = float(probs[j, sorted(index.members[wnid])].sum())
            if mass >= CONFIDENT_MASS:
                own = wnid == index.classes[c].wnid
                pick = (labeler.class_names[c] if own else index.name_of(wnid), True, mass)
                break
        weak = (labeler.class_names[c], False, float(top_p[j])) if float(top_p[j]) >= WEAK_MIN_PROB else None
        named.append(pick or weak or ("", False, 0.0))
    runs: list[tuple[int, int]] = []  # (first, last moment) of consecutive moments with the same name
    for j in range(len(times)):
        if runs and named[runs[-1][0]][0] == named[j][0]:
            runs[-1] = (runs[-1][0], j)
        else:
            runs.append((j, j))
    spans: dict[str, list[tuple[float, float]]] = {}  # name -> its runs, in stream seconds
    moments: dict[str, list[int]] = {}  # name -> the moments of those runs
    for a, b in runs:
        name, confident, _ = named[a]
        if not name or (not confident and float(times[b] - times[a]) < STABLE_S):
            continue
        spans.setdefault(name, []).append((float(times[a]), float(times[b])))
        moments.setdefault(name, []).extend(range(a, b + 1))
    out = []
    for name, at in moments.items():
        leaves = [int(top_c[j]) for j in at]
        leaf = max(set(leaves), key=leaves.count)
        seconds = {float(times[j]) for j in at}
        rows = sorted(
            i
            for i, e in enumerate(entries)
            if any(a <= t + 1e-6 and b >= t - 1e-6 for t in seconds for a, b in e.intervals)
        )
        prob = max(named[j][2] for j in at)
        out.append(FrameConcept(name, labeler.class_names[leaf], prob, named[at[0]][1], spans[name], rows))
    return sorted(out, key=lambda f: f.spans[0][0])
