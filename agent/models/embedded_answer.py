"""The embedded backend's honest, limited answerer: what / when / how-long questions about ImageNet-labellable
things, answered from memory entries' labels (the linear head on entry means) and time spans; never guesses
beyond what the labels say.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from agent.models.base import Reply, evidence_spans
from agent.models.labels import NOT_SEEABLE, Labeler, LabelNotSeen, UnknownLabel

if TYPE_CHECKING:
    from compress.memory import EntryInfo

# Question words that are never label queries (several are ImageNet synonyms: "last", "minute", "second"...).
_STOP = frozenset(
    """
a an the any some of in on at to for from by with and or not no yes did do does you your i me we us it its
was were is are be been being there here this that these those what which who whom when where why how long
often last first recently latest earliest see seen saw spot spotted notice noticed detect detected visible
appear appeared appears show showed shown camera memory video stream ago past during since until now today
minute minutes min mins second seconds sec secs hour hours time times ever anything something everything
thing things happen happened going about many much please tell can could would should has have had around near
""".split()  # noqa: SIM905 (a word list reads better as text)
)
_WINDOW = re.compile(r"(?:last|past|previous)\s+(\d+(?:\.\d+)?)?\s*(second|sec|s|minute|min|m|hour|h)s?\b")
_UNIT_S = {
    "second": 1.0,
    "sec": 1.0,
    "s": 1.0,
    "minute": 60.0,
    "min": 60.0,
    "m": 60.0,
    "hour": 3600.0,
    "h": 3600.0,
}
_BEYOND = (
    "I can't answer that: the embedded model only recognises the 1000 ImageNet object classes and when they "
    "were on camera. Ask e.g. 'when did you last see a cat?', 'what was seen in the last 2 minutes?' or "
    "'how long was the dog there?'."
)


@dataclass(frozen=True)
class Sighting:
    """One memory entry labelled: its row, top class, top probability, target-group mass and time span."""

    row: int
    top_class: int
    top_prob: float
    target_mass: float
    first_seen: float
    last_seen: float
    count: int


def _fmt_t(t: float) -> str:
    return f"t={t:.0f}s"


def _fmt_span(a: float, b: float) -> str:
    return _fmt_t(a) if abs(b - a) < 0.5 else f"{_fmt_t(a)}-{b:.0f}s"


class EmbeddedAnswerer:
    """Answers what / when / how-long questions from entry labels.

    Args:
        labeler: the ImageNet labeler of the embedded encoder.
        min_prob: probability mass an entry must put on a queried class group to count as a sighting.
        min_support: token support (sum of count x mass over sighting entries) needed to say "yes": a few
            fur patches of a cat that look like a dog must not make a dog (measured on skimage's chelsea:
            dog support 3.5 tokens, cat support over 20 at min_prob 0.3).
        top_labels: how many labels a "what was seen" answer lists.
    """

    def __init__(
        self, labeler: Labeler, *, min_prob: float = 0.3, min_support: float = 10.0, top_labels: int = 5
    ) -> None:
        if not 0.0 < min_prob <= 1.0:
            raise ValueError(f"min_prob must be in (0, 1], got {min_prob}")
        if min_support < 0:
            raise ValueError(f"min_support must be >= 0, got {min_support}")
        self.labeler = labeler
        self.min_prob = min_prob
        self.min_support = min_support
        self.top_labels = top_labels

    def find_target(self, question: str) -> tuple[str, set[int]] | None:
        """The first label query in the question (longest phrase first) and its class ids, or None."""
        words = [w for w in re.findall(r"[a-z][a-z\-']*", question.lower())]
        for n in (3, 2, 1):
            for i in range(len(words) - n + 1):
                phrase = words[i : i + n]
                if phrase[0] in _STOP or phrase[-1] in _STOP:
                    continue
                try:
                    return " ".join(phrase), self.labeler.resolve(" ".join(phrase))
                except UnknownLabel:
                    continue
        return None

    def _sightings(
        self, tokens: Tensor, entries: Sequence[EntryInfo], target: set[int] | None
    ) -> list[Sighting]:
        probs = self.labeler.probs(tokens)  # [K, 1000]
        top_p, top_c = probs.max(dim=-1)
        if target:
            mass = probs.index_select(-1, torch.tensor(sorted(target), dtype=torch.long)).sum(-1)
        else:
            mass = torch.zeros(len(entries))
        return [
            Sighting(i, int(top_c[i]), float(top_p[i]), float(mass[i]), e.first_seen, e.last_seen, e.count)
            for i, e in enumerate(entries)
        ]

    def answer(
        self, question: str, tokens: Tensor, entries: Sequence[EntryInfo], *, max_new_tokens: int = 64
    ) -> Reply:
        """Answer from tokens `[K, 1280]` (row i = entries[i]).

        `max_new_tokens` is ignored (no language model).
        """
        start = time.perf_counter()
        if tokens.ndim != 2 or tokens.shape[0] != len(entries):
            raise ValueError(
                f"need one token row per entry: tokens {tuple(tokens.shape)}, {len(entries)} entries"
            )
        q = question.lower().strip()
        entries, tokens = self._window(q, entries, tokens)
        unseeable = next((w for w in re.findall(r"[a-z]+", q) if w in NOT_SEEABLE), None)
        found = None if unseeable else self.find_target(q)
        used: list[EntryInfo]
        if unseeable is not None:
            text, used = f"I cannot tell: {LabelNotSeen(unseeable)}.", []
        elif not entries:
            text, used = "My memory holds nothing for that time range yet.", []
        elif found is not None:
            text, used = self._about(q, found[0], found[1], tokens, entries)
        elif re.search(r"\bwhat\b|\bwho\b|\banything\b", q):
            text, used = self._summary(tokens, entries)
        else:
            text, used = _BEYOND, []
        return Reply(
            text=text,
            evidence=evidence_spans(used),
            tokens_used=int(tokens.shape[0]),
            prefill_tokens=0,
            latency_s=time.perf_counter() - start,
        )

    def _window(self, q: str, entries: Sequence[EntryInfo], tokens: Tensor) -> tuple[list[EntryInfo], Tensor]:
        m = _WINDOW.search(q)
        if m is None or not entries:
            return list(entries), tokens
        span = float(m.group(1) or 1.0) * _UNIT_S[m.group(2)]
        now = max(e.last_seen for e in entries)  # stream time of the newest memory
        keep = [i for i, e in enumerate(entries) if e.last_seen >= now - span]
        return [entries[i] for i in keep], tokens[torch.tensor(keep, dtype=torch.long)]

    def _about(
        self, q: str, name: str, target: set[int], tokens: Tensor, entries: Sequence[EntryInfo]
    ) -> tuple[str, list[EntryInfo]]:
        hits = [s for s in self._sightings(tokens, entries, target) if s.target_mass >= self.min_prob]
        lo, hi = min(e.first_seen for e in entries), max(e.last_seen for e in entries)
        if sum(s.count * s.target_mass for s in hits) < self.min_support:
            return f"No, I did not see a {name} between {_fmt_t(lo)} and {_fmt_t(hi)}.", []
        used = [entries[s.row] for s in hits]
        best = max(hits, key=lambda s: s.target_mass)
        what = self.labeler.class_names[best.top_class] if best.top_class in target else name
        spans = evidence_spans(used)
        if re.search(r"\bhow long\b|\bfor how\b|\bduration\b", q):
            total = sum(b - a for a, b in spans)
            return f"A {name} ({what}) was on camera for about {total:.0f}s: {self._spans(spans)}.", used
        if re.search(r"\bfirst\b|\bearliest\b", q):
            first = min(hits, key=lambda s: s.first_seen)
            return (
                f"I first saw a {name} ({what}, p={first.target_mass:.2f}) at {_fmt_t(first.first_seen)}.",
                used,
            )
        last = max(hits, key=lambda s: s.last_seen)
        text = (
            f"Yes: I last saw a {name} ({what}, p={last.target_mass:.2f}) at {_fmt_t(last.last_seen)}; "
            f"seen {self._spans(spans)}."
        )
        return text, used

    def _summary(self, tokens: Tensor, entries: Sequence[EntryInfo]) -> tuple[str, list[EntryInfo]]:
        sightings = self._sightings(tokens, entries, None)
        mass: dict[int, float] = {}
        rows: dict[int, list[Sighting]] = {}
        for s in sightings:  # token-weighted evidence per top class
            mass[s.top_class] = mass.get(s.top_class, 0.0) + s.count * s.top_prob
            rows.setdefault(s.top_class, []).append(s)
        ranked = sorted(mass, key=lambda c: -mass[c])[: self.top_labels]
        lo, hi = min(e.first_seen for e in entries), max(e.last_seen for e in entries)
        parts, used = [], []
        for c in ranked:
            group = [entries[s.row] for s in rows[c]]
            used.extend(group)
            parts.append(f"{self.labeler.class_names[c]} ({self._spans(evidence_spans(group))})")
        return f"Between {_fmt_t(lo)} and {_fmt_t(hi)} I saw: " + "; ".join(parts) + ".", used

    @staticmethod
    def _spans(spans: list[tuple[float, float]], limit: int = 4) -> str:
        text = ", ".join(_fmt_span(a, b) for a, b in spans[-limit:])
        return f"{text} and {len(spans) - limit} earlier" if len(spans) > limit else text
