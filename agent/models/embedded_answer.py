"""The embedded backend's honest, limited answerer: yes/no, when (first, last, every time), how long and how
many (as separate appearances) about ImageNet-labellable things, and what was seen (whole-frame
predictions), answered from memory entries' labels and presence intervals; never guesses beyond them.

Every time it names lies in the range asked for (`english.Clock`), each camera in its own stream seconds
with its wall clock; a follow-up's "it" is the session's subject (`AskContext.subject`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from agent.concepts.index import Concept
from agent.english import Clock, article, join, occasions, plural, singular
from agent.models.base import AskContext, CameraView, PeopleSeen, Reply, clip_entry, evidence_spans
from agent.models.frames import CONFIDENT_MASS, STABLE_S, frame_concepts
from agent.models.labels import NOT_SEEABLE, Labeler, LabelNotSeen, UnknownLabel
from agent.phrases import find_range

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
every each total all separate occasions count number come came arrive arrived pass passed go went again them
they one ones also then more still while colour color colours colors coloured colored size
""".split()  # noqa: SIM905 (a word list reads better as text)
)
_BEYOND = (
    "I can't answer that: the embedded model only recognises the 1000 ImageNet object classes and when they "
    "were on camera. Ask e.g. 'when did you last see a cat?', 'what was seen in the last 2 minutes?' or "
    "'how long was the dog there?'."
)
_KINDS = (  # the first that matches decides; a question matching none is yes/no or "every time"
    ("how_long", re.compile(r"\bhow long\b|\bfor how\b|\bduration\b|\bhow much time\b")),
    ("how_many", re.compile(r"\bhow many\b|\bhow often\b|\bnumber of\b|\bcount\b")),
    ("first", re.compile(r"\bfirst\b|\bearliest\b")),
    ("last", re.compile(r"\blast\b|\blatest\b|\bmost recent(ly)?\b")),
    ("every", re.compile(r"\bwhen\b|\bwhat time\b|\bevery\b|\beach time\b|\ball the times\b")),
)
_YES_NO = re.compile(r"^(?:and |so |also |but )?(?:is|are|was|were|did|do|does|have|has|had|can|could|any)\b")
_ELLIPTICAL = re.compile(r"^(?:and|what about|how about|also|or)\b")
_REFERS_BACK = re.compile(r"\b(?:it|its|that|them|they|those|this|one|him|her)\b")
_WHAT = re.compile(r"\bwhat\b|\bwho\b|\banything\b|\bsomething\b")
# Where the question only says "in the picture", not what: phrases, never objects ("on screen" is no CRT).
_PLACE = re.compile(
    r"\b(?:on|in|at|into|onto)\s+(?:the\s+|this\s+|that\s+)?(?:screen|camera|cam|video|footage|stream|picture|"
    r"frame|view|image|shot|scene|recording|feed)s?\b"
)
# What the memory cannot know: the embedded model keeps which classes were on camera and when, nothing else.
_ATTRIBUTES = (
    (
        "colours",
        re.compile(
            r"\b(?:colou?rs?|colou?red|red|green|blue|yellow|black|white|grey|gray|orange|purple|"
            r"pink|brown)\b"
        ),
    ),
    ("sizes or distances", re.compile(r"\b(?:how big|how large|how small|how far|size|tall|distance)\b")),
    (
        "what things were doing",
        re.compile(
            r"\b(?:doing|running|walking|moving|sitting|standing|eating|"
            r"holding|wearing|driving|riding|why)\b"
        ),
    ),
)


@dataclass(frozen=True)
class Subject:
    """What a question asks about: the words as a person says them (singular) and their class ids."""

    name: str
    ids: frozenset[int]
    note: str | None = None  # how it was read, when not simply as said ("reading 'flowr' as 'flower'")


class EmbeddedAnswerer:
    """Answers yes/no, when, how-long, how-many and what questions from entry labels.

    Args:
        labeler: the ImageNet labeler of the embedded encoder.
        min_prob: probability mass an entry must put on a queried class group to count as a sighting.
        min_support: token support (sum of count x mass over a camera's sighting entries) needed to say a
            camera saw it: a few fur patches of a cat that look like a dog must not make a dog (measured on
            skimage's chelsea: dog support 3.5 tokens, cat support over 20 at min_prob 0.3).
        top_labels: how many labels a "what was seen" answer names at most.
        frame_min_prob: whole-frame probability a class needs in a frame for "what was seen" to name it...
        frame_min_margin: ...or how many times the runner-up class's probability it needs.
        gap_s: sightings closer than this are one appearance.
    """

    def __init__(
        self,
        labeler: Labeler,
        *,
        min_prob: float = 0.3,
        min_support: float = 10.0,
        top_labels: int = 5,
        frame_min_prob: float = 0.1,
        frame_min_margin: float = 3.0,
        gap_s: float = 1.0,
    ) -> None:
        if not 0.0 < min_prob <= 1.0:
            raise ValueError(f"min_prob must be in (0, 1], got {min_prob}")
        if not 0.0 < frame_min_prob <= 1.0:
            raise ValueError(f"frame_min_prob must be in (0, 1], got {frame_min_prob}")
        if frame_min_margin < 1.0:
            raise ValueError(f"frame_min_margin must be >= 1, got {frame_min_margin}")
        if min_support < 0:
            raise ValueError(f"min_support must be >= 0, got {min_support}")
        self.labeler = labeler
        self.min_prob, self.min_support, self.top_labels = min_prob, min_support, top_labels
        self.frame_min_prob, self.frame_min_margin, self.gap_s = frame_min_prob, frame_min_margin, gap_s

    # ------------------------------------------------------------------------------------------ subject
    def find_concept(self, question: str) -> tuple[str, Concept] | None:
        """The first concept the question names (by position; at one position the longest phrase; a lone word
        of 4+ letters may be a near-miss spelling) with the words that named it, or None."""
        words = re.findall(r"[a-z][a-z\-']*", _PLACE.sub(" ", question.lower()))
        for spelling in (False, True):  # a real word anywhere beats a guessed spelling
            for i in range(len(words)):
                for n in (3, 2, 1):
                    phrase = words[i : i + n]
                    if len(phrase) < n or phrase[0] in _STOP or phrase[-1] in _STOP:
                        continue
                    if spelling and (n > 1 or len(phrase[0]) < 4):
                        continue
                    try:
                        return " ".join(phrase), self.labeler.concept(" ".join(phrase), spelling=spelling)
                    except UnknownLabel:
                        continue
        return None

    def find_target(self, question: str) -> tuple[str, set[int]] | None:
        """The first label query in the question and its class ids, or None (`find_concept`)."""
        found = self.find_concept(question)
        return None if found is None else (found[0], set(found[1].class_ids))

    def _subject(self, q: str, context: AskContext) -> Subject | None:
        found = self.find_concept(q)
        if found is not None:
            words, concept = found
            if concept.via in ("broader", "spelling"):  # "puppy" is looked for as a dog, "flowr" as a flower
                return Subject(concept.name, frozenset(concept.class_ids), concept.note)
            name = singular(words)
            try:
                same = self.labeler.resolve(name) == set(concept.class_ids)
            except UnknownLabel:
                same = False
            return Subject(name if same else words, frozenset(concept.class_ids), concept.note)
        if context.subject and (_REFERS_BACK.search(q) or _kind(q) is not None or _ELLIPTICAL.match(q)):
            try:
                return Subject(context.subject, frozenset(self.labeler.resolve(context.subject)))
            except UnknownLabel:
                return None
        return None

    # ------------------------------------------------------------------------------------------ answer
    def answer(
        self, question: str, tokens: Tensor, entries: Sequence[EntryInfo], *, max_new_tokens: int = 64
    ) -> Reply:
        """Answer from tokens `[K, 1280]` (row i = entries[i]) of one camera, outside any session: a range
        phrase in the question ("in the last 2 minutes") counts back from the newest entry.

        `max_new_tokens` is ignored (no language model).
        """
        _check(tokens, entries)
        text, phrase = find_range(question)
        lo = min((e.first_seen for e in entries), default=0.0)
        hi = max((e.last_seen for e in entries), default=0.0)
        if phrase is not None:
            since, until = phrase.bounds(hi)
            lo = max(lo, since if since is not None else lo)
            hi = min(hi, until if until is not None else hi)
            rows = [(i, clip_entry(e, lo, hi)) for i, e in enumerate(entries)]
            keep = [(i, e) for i, e in rows if e is not None]
            tokens = tokens[torch.tensor([i for i, _ in keep], dtype=torch.long)]
            entries = [e for _, e in keep]
        view = CameraView("", 0.0, lo, max(lo, hi), None)
        context = AskContext((view,), (0,) * len(entries), range_text=phrase.text if phrase else None)
        return self.answer_in_context(text, tokens, entries, context)

    def answer_in_context(
        self,
        question: str,
        tokens: Tensor,
        entries: Sequence[EntryInfo],
        context: AskContext,
        *,
        max_new_tokens: int = 64,
    ) -> Reply:
        """Answer `question` (its range phrase taken out) from tokens `[K, 1280]` (row i = entries[i], of
        camera `context.cameras[context.owners[i]]`)."""
        start = time.perf_counter()
        _check(tokens, entries)
        q = question.lower().strip()
        explicit = _kind(q)
        # "and coffee?" asks the previous question again about a new subject, and whether it was there at all:
        # the previous kind, answered with Yes:/No: first.
        elliptical = explicit is None and bool(_ELLIPTICAL.match(q))
        yes_no = bool(_YES_NO.match(q)) or elliptical
        kind = explicit or (context.kind if elliptical and context.kind not in (None, "what") else None)
        unseeable = next((w for w in re.findall(r"[a-z]+", q) if w in NOT_SEEABLE), None)
        beyond = next((what for what, pattern in _ATTRIBUTES if pattern.search(q)), None)
        subject = None if unseeable else self._subject(q, context)
        rows: list[int] = []
        spans: list[tuple[float, float]] | None = None  # None: the rows' own intervals
        people = [(v, seen) for v, seen in zip(context.cameras, context.people, strict=False) if seen]
        if unseeable is not None and people:
            subject = Subject("face" if unseeable.startswith("face") else "person", frozenset())
            text, spans = _about_people(
                kind or ("yesno" if yes_no else "every"), yes_no, subject.name, q, people
            )
        elif unseeable is not None:
            text = f"I cannot tell: {LabelNotSeen(unseeable)}."
        elif beyond is not None:
            kind = "beyond"
            text = (
                f"I cannot tell {beyond}: the embedded model only knows which kinds of things (ImageNet "
                "classes and the WordNet concepts above them) were on camera, and when"
                + (f"; ask e.g. 'when did you see {article(subject.name)}?'." if subject else ".")
            )
        elif subject is None and _WHAT.search(q):
            kind = "what"
            text, rows, spans = self._summary(tokens, entries, context)
        elif subject is None:
            text = _BEYOND
        elif not entries:
            text = f"My memory holds nothing {self._ranges(context)} yet."
        else:
            text, rows = self._about(
                kind or ("yesno" if yes_no else "every"), yes_no, subject, tokens, entries, context
            )
        return Reply(
            text=text,
            evidence=evidence_spans([entries[r] for r in rows], self.gap_s) if spans is None else spans,
            tokens_used=int(tokens.shape[0]),
            prefill_tokens=0,
            latency_s=time.perf_counter() - start,
            rows=tuple(rows),
            subject=subject.name if subject else None,
            kind=kind or ("yesno" if yes_no else None),
        )

    # ------------------------------------------------------------------------------------------ about X
    def _about(
        self,
        kind: str,
        yes_no: bool,
        subject: Subject,
        tokens: Tensor,
        entries: Sequence[EntryInfo],
        ctx: AskContext,
    ) -> tuple[str, list[int]]:
        probs = self.labeler.probs(tokens)  # [K, 1000]
        ids = torch.tensor(sorted(subject.ids), dtype=torch.long)
        # Calibrated: the share of the mass above what |ids| classes would get by chance, so a broad concept
        # ("animal": 398 classes) needs as clear a lead as a single class.
        prior = len(subject.ids) / probs.shape[-1]
        mass = (probs.index_select(-1, ids).sum(-1) - prior) / (1.0 - prior)  # [K]
        top_c = probs.argmax(dim=-1)
        several = len(ctx.cameras) > 1
        clauses: list[str] = []
        rows: list[int] = []
        for c, view in enumerate(ctx.cameras):
            hits = [i for i in range(len(entries)) if ctx.owners[i] == c and float(mass[i]) >= self.min_prob]
            if sum(entries[i].count * float(mass[i]) for i in hits) < self.min_support:
                continue
            best = max(hits, key=lambda i: float(mass[i]))
            shown = self.labeler.class_names[int(top_c[best])] if int(top_c[best]) in subject.ids else None
            detail = (
                f" ({shown}, p={float(mass[best]):.2f})" if shown and shown.lower() != subject.name else ""
            )
            spans = [
                (a - view.offset_s, b - view.offset_s)
                for a, b in evidence_spans([entries[i] for i in hits], self.gap_s)
            ]
            clock = Clock(view.lo, view.hi, view.wall0)
            clauses.append(_clause(kind, subject.name, detail, spans, clock, view.id if several else None))
            rows.extend(hits)
        note = f" ({subject.note})" if subject.note else ""
        if not clauses:
            text = f"I did not see {article(subject.name)} {self._ranges(ctx)}{note}."
            return ("No: " + text if yes_no else text), []
        text = "; ".join(clauses) + note
        if kind == "how_many":
            text += (
                f"; I cannot count individuals: my memory keeps when {plural(subject.name)} were on camera, "
                "not how many there were"
            )
        if yes_no:
            return f"Yes: {text}.", sorted(rows)
        return text[0].upper() + text[1:] + ".", sorted(rows)

    @staticmethod
    def _ranges(ctx: AskContext) -> str:
        """The range asked for, per camera: "between t=5s and t=15s (17:41:32-17:41:42)"."""
        several = len(ctx.cameras) > 1
        return join(
            [
                (f"on camera {v.id} " if several else "") + Clock(v.lo, v.hi, v.wall0).range()
                for v in ctx.cameras
            ]
        )

    # ------------------------------------------------------------------------------------------ what
    def _summary(
        self, tokens: Tensor, entries: Sequence[EntryInfo], ctx: AskContext
    ) -> tuple[str, list[int], list[tuple[float, float]]]:
        """What was seen: per camera, the classes whole frames were confidently predicted as, with when."""
        if not entries:
            return f"My memory holds nothing {self._ranges(ctx)} yet.", [], []
        clauses: list[str] = []
        rows: list[int] = []
        moments: list[tuple[float, float]] = []
        for c, view in enumerate(ctx.cameras):
            mine = [i for i in range(len(entries)) if ctx.owners[i] == c]
            if not mine:
                continue
            clock = Clock(view.lo, view.hi, view.wall0)
            named = frame_concepts(self.labeler, tokens[mine], [entries[i] for i in mine])
            named = sorted(
                sorted(named, key=lambda f: -f.seconds)[: self.top_labels], key=lambda f: f.spans[0][0]
            )
            where = f"on camera {view.id} " if len(ctx.cameras) > 1 else ""
            if not named:
                clauses.append(f"{where}nothing that held for {STABLE_S:g} s")
                continue
            parts = []
            for label in named:
                spans = [(a - view.offset_s, b - view.offset_s) for a, b in label.spans]
                if label.confident:
                    leaf = f"{label.leaf}, " if label.leaf.lower() != label.name.lower() else ""
                    thing = f"{article(label.name)} ({leaf}p={label.prob:.2f}; {clock.spans(spans, limit=3)})"
                else:
                    thing = (
                        f"something most like {article(label.name)} (a weak guess, p={label.prob:.2f}; "
                        f"{clock.spans(spans, limit=3)})"
                    )
                parts.append(thing)
                rows.extend(mine[j] for j in label.rows)
                moments.extend(label.spans)
            clauses.append(f"{where}{join(parts)}")
        said = self._ranges(ctx)
        if not rows:
            return (
                f"{said[0].upper()}{said[1:]} nothing held still long enough to name: no concept reached "
                f"p={CONFIDENT_MASS:.2f} and no class stayed the top prediction for {STABLE_S:g} s.",
                list(range(len(entries))),  # the evidence is what was looked at: its keyframes show why
                evidence_spans(entries, self.gap_s),
            )
        text = f"{said[0].upper()}{said[1:]} I saw " + "; ".join(clauses) + "."
        return text, sorted(set(rows)), sorted(moments)


_AT_TIME = re.compile(r"\bat t\s*=\s*(\d+(?:\.\d+)?)\s*s?\b")
NEAREST_SAMPLE_S = 2.5  # how far from the asked moment a detector sample may lie to stand for it


def _about_people(
    kind: str, yes_no: bool, label: str, q: str, people: Sequence[tuple[CameraView, PeopleSeen]]
) -> tuple[str, list[tuple[float, float]]]:
    """An answer about people from the cameras' person / face detector (`PeopleSeen`), with the spans it
    rests on in the entries' time line."""
    several = len(people) > 1
    clauses: list[str] = []
    spans_all: list[tuple[float, float]] = []
    at = _AT_TIME.search(q)
    for view, seen in people:
        where = f"on camera {view.id} " if several else ""
        clock = Clock(view.lo, view.hi, view.wall0)
        index = 1 if label == "person" else 2
        if at is not None and kind in ("how_many", "yesno"):
            t = float(at.group(1))
            near = min(seen.samples, key=lambda s: abs(s[0] - t), default=None)
            if near is None or abs(near[0] - t) > NEAREST_SAMPLE_S:
                clauses.append(
                    f"{where}I cannot tell: the {seen.detector} detector ran on no frame within "
                    f"{NEAREST_SAMPLE_S:g} s of t={t:g}s"
                )
                continue
            n = near[index]
            clauses.append(
                f"{where}{clock.at(near[0])} I saw {n} {plural(label) if n != 1 else label}"
                + (" (at least: one body counts as one person)" if label == "person" and n else "")
            )
            spans_all.append((near[0] + view.offset_s, near[0] + view.offset_s))
            continue
        runs = seen.person if label == "person" else seen.face
        spans = [(a, b) for a, b, _ in runs]
        if not spans:
            checked = len(seen.samples)
            clauses.append(
                f"{where}I saw no {label} in the {checked} frames the {seen.detector} detector checked"
            )
            continue
        text = _clause(
            kind if kind != "how_many" else "every", label, "", spans, clock, view.id if several else None
        )
        if kind == "how_many":
            text += f"; at most {max(n for _, _, n in runs)} on one frame"
        clauses.append(text)
        spans_all.extend((a + view.offset_s, b + view.offset_s) for a, b in spans)
    found = bool(spans_all)
    body = "; ".join(clauses)
    body = body[0].upper() + body[1:] if body else body
    if yes_no:
        return (f"Yes: {body}." if found else f"No: {body}."), spans_all
    return body + ".", spans_all


def _kind(q: str) -> str | None:
    return next((name for name, pattern in _KINDS if pattern.search(q)), None)


def _clause(
    kind: str, name: str, detail: str, spans: list[tuple[float, float]], clock: Clock, camera: str | None
) -> str:
    """One camera's part of an answer about `name`, seen in `spans` (its own stream seconds); `camera` is
    named when the question asked several."""
    n = len(spans)
    thing = article(name) + detail
    where = f"on camera {camera} " if camera else ""
    if kind == "first":
        return f"{where}I first saw {thing} {clock.at(spans[0][0])}"
    if kind == "last":
        return f"{where}I last saw {thing} {clock.at(spans[-1][1])}"
    if kind == "how_long":
        total = sum(b - a for a, b in spans)
        length = f"about {total:.0f} s" if total >= 0.5 else "under a second"
        on = f"on camera {camera}" if camera else "on camera"
        return f"{thing} was {on} for {length} in total, {occasions(n)}: {clock.spans(spans)}"
    if kind == "how_many":
        return f"{where}I saw {thing} {occasions(n)}: {clock.spans(spans)}"
    if kind == "every":
        return f"{where}I saw {thing} {occasions(n)}: {clock.spans(spans)}"
    # yes/no: that it was seen, how often, and the latest time
    last = clock.at(spans[-1][1])
    return f"{where}I saw {thing} {occasions(n)}, last {last}" + (f": {clock.spans(spans)}" if n > 1 else "")


def _check(tokens: Tensor, entries: Sequence[EntryInfo]) -> None:
    if tokens.ndim != 2 or tokens.shape[0] != len(entries):
        raise ValueError(
            f"need one token row per entry: tokens {tuple(tokens.shape)}, {len(entries)} entries"
        )
