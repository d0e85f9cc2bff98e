"""What the embedded classifier can see in the bench's footage: its whole-frame top-5 on the truth frames.

This decides only the "answerable" subset reported beside the totals; it never grades an answer, and truth
never comes from it. A question is one "the model can answer" only when this says so: a subject that was on
camera must have one of its classes in the top-5 on at least half of its frames; a subject that was not
must be in the top-5 on none of the camera's frames. Measured once per footage file and cached next to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agent.models.embedded import EmbeddedEncoder
from agent.models.labels import load_catalog
from bench.qa.dataset import SUBJECTS, Timeline, members
from bench.qa.footage import decode_at

TOP_K = 5
PROBE_EVERY_S = 1.0  # one probed frame per this many video seconds (the cameras' sampling spacing)
DETECTED_SHARE = 0.5  # share of a subject's frames that must carry one of its classes in the top-5


def subject_classes(concept: str) -> set[int]:
    """ImageNet class ids of a concept: its subjects' named classes plus their WordNet groups' (the shipped
    catalog's members of the group's first sense)."""
    catalog = load_catalog()
    index = {n: i for i, n in enumerate(catalog.names)}
    ids: set[int] = set()
    for name in members(concept):
        subject = SUBJECTS[name]
        ids |= {index[n] for n in subject.classes}
        if subject.group is not None:
            for wnid in catalog.senses.get(subject.group, ())[:1]:
                ids |= set(catalog.members.get(wnid, ()))
    return ids


@dataclass(frozen=True)
class Probe:
    """The classifier's top-5 on one camera's probed frames.

    Attributes:
        times: video seconds of the probed frames.
        top5: per frame, the top-5 class ids of the whole-frame prediction (mean token through the head).
    """

    times: tuple[float, ...]
    top5: tuple[tuple[int, ...], ...]

    def share(self, classes: set[int], spans: list[tuple[float, float]]) -> tuple[float, int]:
        """(share of the probed frames inside `spans` whose top-5 holds one of `classes`, frames inside)."""
        inside = [k for k, t in enumerate(self.times) if any(a <= t < b for a, b in spans)]
        hits = sum(bool(classes & set(self.top5[k])) for k in inside)
        return (hits / len(inside) if inside else 0.0), len(inside)


def probe(encoder: EmbeddedEncoder, video: Path, timeline: Timeline) -> Probe:
    """Top-5 on frames every PROBE_EVERY_S (cached next to the video)."""
    cache = video.with_suffix(f".top5-every-{PROBE_EVERY_S:g}s.json")
    if cache.is_file():
        raw = json.loads(cache.read_text())
        return Probe(tuple(raw["times"]), tuple(tuple(r) for r in raw["top5"]))
    times = [PROBE_EVERY_S / 2 + k * PROBE_EVERY_S for k in range(int(timeline.seconds / PROBE_EVERY_S))]
    frames = decode_at(video, times, encoder.image_px)
    top: list[tuple[int, ...]] = []
    with torch.inference_mode():
        for b in range(0, len(frames), 8):
            tokens = encoder.encode(frames[b : b + 8])  # [F, N, D]
            ids = encoder.class_logits(tokens.mean(dim=1)).topk(TOP_K, dim=-1).indices  # [F, 5]
            top.extend(tuple(int(c) for c in row) for row in ids.tolist())
    cache.write_text(json.dumps({"times": times, "top5": top}))
    return Probe(tuple(times), tuple(top))


def can_see(probe_: Probe, timeline: Timeline, concept: str) -> dict[str, Any]:
    """Whether the classifier demonstrably sees `concept` on this camera (or, absent, never sees it), why."""
    if not all(SUBJECTS[m].seeable for m in members(concept)):
        return {"answerable": True, "why": "no ImageNet class for it: a refusal is the answer"}
    classes = subject_classes(concept)
    apps = timeline.of(concept)
    if apps:
        spans = [(a.start + a.slack_s, a.end - a.slack_s) for a in apps]
        share, frames = probe_.share(classes, spans)
        ok = share >= DETECTED_SHARE
        why = f"a {concept} class in the top-5 on {share:.0%} of its {frames} probed frames"
    else:
        share, frames = probe_.share(classes, [(0.0, timeline.seconds + 1)])
        ok = share == 0.0
        why = f"absent; a {concept} class in the top-5 on {share:.0%} of the camera's {frames} probed frames"
    top1 = sorted({load_catalog().names[t[0]] for t in probe_.top5 if classes & set(t)})
    return {"answerable": ok, "why": why, "share": share, "frames": frames, "seen_as": top1[:4]}
