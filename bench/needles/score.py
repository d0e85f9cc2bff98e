"""Scoring for `scissor bench needles`: temporal IoU of interval sets, per-needle best match, recall by age.

An interval (a, b) is a first..last frame pair in stream seconds; it covers [a, b + dt) with dt = 1 / fps,
so a single frame covers dt and two sets of frame times compare frame for frame. Pure Python; never I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.needles.stream import Interval, Recipe

RECALL_IOU = 0.5
AGE_BUCKETS = 4  # equal shares of the stream: 0-15, 15-30, 30-45, 45-60 minutes for an hour


def cover(intervals: Sequence[Interval], dt: float) -> list[Interval]:
    """Sorted disjoint half-open [a, b + dt) spans covered by first..last-frame `intervals`."""
    out: list[Interval] = []
    for a, b in sorted(intervals):
        lo, hi = a, b + dt
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _length(spans: Sequence[Interval]) -> float:
    return sum(b - a for a, b in spans)


def _overlap(x: Sequence[Interval], y: Sequence[Interval]) -> float:
    """Total length of the intersection of two sorted disjoint span lists (two pointers)."""
    i = j = 0
    total = 0.0
    while i < len(x) and j < len(y):
        total += max(0.0, min(x[i][1], y[j][1]) - max(x[i][0], y[j][0]))
        if x[i][1] < y[j][1]:
            i += 1
        else:
            j += 1
    return total


def iou(a: Sequence[Interval], b: Sequence[Interval], dt: float) -> float:
    """Temporal IoU of two interval sets (time covered by both / by either); 0 when both are empty."""
    ca, cb = cover(a, dt), cover(b, dt)
    inter = _overlap(ca, cb)
    union = _length(ca) + _length(cb) - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class Needle:
    """One needle photo and its ground truth.

    Attributes:
        photo: the skimage photo's name.
        label: its own ImageNet class (top-1 of the whole photo's mean token).
        shown: its class as shown (top-1 of the mean token over its frames on camera: pan/zoom crops).
        truth: its appearance intervals (stream seconds, first..last frame), sorted.
        age_min: minutes from its first appearance's start to the end of the stream.
        last_age_min: minutes from its last appearance's end to the end of the stream.
    """

    photo: str
    label: int
    shown: int
    truth: tuple[Interval, ...]
    age_min: float
    last_age_min: float


def needles_of(recipe: Recipe, labels: dict[str, int], shown: dict[str, int]) -> list[Needle]:
    """The recipe's needles with their labels (of the photo and as shown), in order of first appearance."""
    end = recipe.frames / recipe.fps
    out = []
    for p in recipe.photos():
        truth = recipe.truth(p)
        age, last = (end - truth[0][0]) / 60, (end - truth[-1][1] - 1 / recipe.fps) / 60
        out.append(Needle(p, labels[p], shown[p], truth, age, last))
    return out


def age_edges(minutes: float) -> list[float]:
    """Bucket edges in minutes: AGE_BUCKETS equal shares of the stream."""
    return [minutes * k / AGE_BUCKETS for k in range(AGE_BUCKETS + 1)]


def bucket_of(age_min: float, edges: Sequence[float]) -> int:
    """Index of the age bucket holding `age_min` (the last bucket includes its upper edge)."""
    for k in range(len(edges) - 1):
        if age_min < edges[k + 1]:
            return k
    return len(edges) - 2


def score_needles(
    labels: Sequence[int],
    spans: Sequence[Sequence[Interval]],
    needles: Sequence[Needle],
    dt: float,
    *,
    shown: bool = False,
) -> list[dict[str, Any]]:
    """Per needle: best IoU of a kept unit carrying its label (the photo's, or with `shown` the label as
    shown), IoU of all of them together, how many, and the best unit's seconds covered and seconds shared
    with the truth (0 without one)."""
    rows = []
    for needle in needles:
        target = needle.shown if shown else needle.label
        found = [s for lab, s in zip(labels, spans, strict=True) if lab == target]
        scored = [(iou(s, needle.truth, dt), s) for s in found]
        best, spans_of_best = max(scored, key=lambda p: p[0], default=(0.0, ()))
        union = iou([i for s in found for i in s], needle.truth, dt) if found else 0.0
        covered = cover(spans_of_best, dt)
        rows.append(
            {
                "photo": needle.photo,
                "best_iou": best,
                "union_iou": union,
                "candidates": len(found),
                "best_cover_s": _length(covered),
                "best_overlap_s": _overlap(covered, cover(needle.truth, dt)),
            }
        )
    return rows


def summarize(
    rows: Sequence[dict[str, Any]], needles: Sequence[Needle], edges: Sequence[float]
) -> dict[str, Any]:
    """Recall at IoU >= RECALL_IOU by age bucket and overall, mean best IoU, union recall, label found."""
    buckets: list[list[float]] = [[] for _ in range(len(edges) - 1)]
    for row, needle in zip(rows, needles, strict=True):
        buckets[bucket_of(needle.age_min, edges)].append(row["best_iou"])

    def recall(ious: Sequence[float]) -> float | None:
        return sum(v >= RECALL_IOU for v in ious) / len(ious) if ious else None

    best = [r["best_iou"] for r in rows]
    return {
        "recall": recall(best),
        "mean_iou": sum(best) / len(best) if best else None,
        "recall_by_age": [recall(b) for b in buckets],
        "needles_by_age": [len(b) for b in buckets],
        "union_recall": recall([r["union_iou"] for r in rows]),
        "label_found": sum(r["candidates"] > 0 for r in rows) / len(rows) if rows else None,
    }
