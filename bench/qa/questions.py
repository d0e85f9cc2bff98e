"""The questions of `scissor bench qa`: every kind issue 26 names, generated from each camera's timeline by
fixed templates (no randomness, nothing read from a model), each with the concept it asks about and the range
it asks for. What the right answer is comes from the timelines at scoring time (bench/qa/score.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from bench.qa.dataset import SUBJECTS, Timeline, members

KINDS = (
    "yes_no",
    "when_first",
    "when_last",
    "every_appearance",
    "how_long",
    "how_many",
    "what_in_range",
    "follow_up",
    "multi_camera",
    "synonym",
    "hypernym",
    "typo",
    "attribute",
    "people",
    "out_of_scope",
)
YES_NO, FIRST, LAST, EVERY, HOW_LONG, HOW_MANY, WHAT = KINDS[:7]
COUNT_AT = "count_at"  # a people check: how many faces at one second
REFUSE = "refuse"  # attributes and out-of-scope questions: an honest refusal is the right answer


@dataclass(frozen=True)
class Range:
    """The time range a question asks for, in the asked camera's stream seconds.

    Attributes:
        how: "all" (the whole memory), "since" (`since_s` in the body), "from_to" (`from`/`to` in the body),
            "last" (a phrase such as "in the last 30 seconds" in the text), "between" (a phrase
            "between t=A and t=B" in the text).
        a, b: seconds back for since/last; the bounds for from_to/between (`b` None: open-ended).
        back_to: for since/last, the stream second the range should reach back to: `a` is set when the
            question is asked (whole seconds, or whole minutes for a "{m}" in the text), so a slow run
            whose memory lags the clock still asks about the same footage.
    """

    how: str = "all"
    a: float = 0.0
    b: float | None = None
    back_to: float | None = None

    def at(self, now: float, text: str) -> tuple[Range, str]:
        """This range and `text` as asked at stream second `now` ({n} seconds / {m} minutes filled in)."""
        if self.back_to is None:
            return self, text
        if "{m}" in text:
            m = max(1, math.ceil((now - self.back_to) / 60))
            return replace(self, a=60.0 * m), text.format(m=m)
        n = max(1, round(now - self.back_to))
        return replace(self, a=float(n)), text.format(n=n)

    def body(self) -> dict[str, float]:
        """The request fields this range sets."""
        if self.how == "since":
            return {"since_s": self.a}
        if self.how == "from_to":
            return {"from": self.a} | ({} if self.b is None else {"to": self.b})
        return {}


ALL = Range()


@dataclass(frozen=True)
class Question:
    """One question to ask.

    Attributes:
        kind: a KINDS entry (the table row).
        text: the question as sent.
        cameras: the cameras asked (several: `POST /ask`).
        subject: the concept it asks about (a SUBJECTS key or a WordNet ancestor in dataset.HYPERNYMS), None
            for what-in-range and some out-of-scope questions.
        range: the range asked for.
        checks: how the answer is scored (YES_NO..WHAT, COUNT_AT or REFUSE; empty: as `kind`).
        session: session id of a follow-up chain, None for a lone question.
        after: the subject of the session's previous turn (a follow-up must not stay on it).
        also: other checks a right answer may be scored as ("And coffee?" after "How long was it there?" may
            be read as "how long was the coffee there?").
        at_s: for COUNT_AT, the video second asked about.
    """

    kind: str
    text: str
    cameras: tuple[str, ...]
    subject: str | None = None
    range: Range = ALL
    checks: str = ""
    session: str | None = None
    after: str | None = None
    also: tuple[str, ...] = ()
    at_s: float | None = None

    @property
    def scored_as(self) -> str:
        """The check that judges the answer."""
        return self.checks or self.kind


# Words a question may use instead of the subject's name: a synonym, a plural, a multi-word phrase, a typo.
SYNONYM = {"cat": "kitten", "coffee": "mug", "rocket": "space shuttle", "clock": "wall clock",
           "bicycle": "bike", "taxi": "cab", "tie": "necktie", "motorcycle": "motorbike", "horse": "pony",
           "rabbit": "bunny"}  # fmt: skip
PLURAL = {"cat": "cats", "coffee": "coffee cups", "rocket": "rockets", "clock": "clocks",
          "bicycle": "bicycles", "taxi": "taxis", "tie": "ties", "motorcycle": "motorcycles",
          "horse": "horses", "rabbit": "rabbits"}  # fmt: skip
TYPO = {"cat": "catt", "coffee": "cofee", "rocket": "rokcet", "clock": "clcok", "bicycle": "bicyle",
        "taxi": "taxxi", "tie": "tei", "motorcycle": "motorcyle", "horse": "hrose",
        "rabbit": "rabit"}  # fmt: skip
# Ancestors asked per camera only where every subject on that camera is unambiguously in or out of them (a
# rocket is a WordNet vehicle, so "vehicle" is never asked where a rocket is on camera).
ANCESTORS = ("animal", "vehicle", "mammal", "timepiece", "clothing", "car", "feline", "beverage")
ABSENT = ("dog", "bird", "cat", "bicycle", "horse", "clock", "taxi", "rabbit", "rocket", "coffee")
ATTRIBUTES = ("What colour is the {s}?", "What is the {s} doing?", "How many {p} are in the picture?")
OUT_OF_SCOPE = (
    ("Did you see a giraffe?", "giraffe"),
    ("Is it raining?", "rain"),
    ("What did the man say?", None),
    ("What will happen next?", None),
    ("What is the temperature in the room?", None),
)


MASS = frozenset({"coffee", "clothing", "neckwear"})  # "any coffee", never "a coffee"
MIN_SHOWN_S = 5.0  # subjects on camera less than this in all get no questions of their own (still truth)


def _a(word: str) -> str:
    if word in MASS:
        return "any " + word
    return ("an " if word[0] in "aeiou" else "a ") + word


def _q(
    kind: str, text: str, camera: str, subject: str | None = None, rng: Range = ALL, **kw: object
) -> Question:
    return Question(kind, text, (camera,), subject, rng, **kw)  # type: ignore[arg-type]


def _spans(tl: Timeline, concept: str) -> list[tuple[float, float]]:
    return [(a.start, a.end) for a in tl.of(concept)]


def _shown(tl: Timeline) -> list[str]:
    """The seeable subjects on camera at least MIN_SHOWN_S in all (what the ImageNet classifier could know),
    in order of first appearance."""
    return [
        s
        for s in tl.subjects()
        if SUBJECTS[s].seeable and sum(b - a for a, b in _spans(tl, s)) >= MIN_SHOWN_S
    ]


def _gap(tl: Timeline, subject: str) -> tuple[float, float] | None:
    """A stretch of at least 8 s, 2 s clear of every appearance of `subject`, or None."""
    edges = [0.0] + [x for a, b in _spans(tl, subject) for x in (a - 2, b + 2)] + [tl.seconds]
    for lo, hi in zip(edges[::2], edges[1::2], strict=True):
        if hi - lo >= 8:
            return (math.ceil(lo), math.floor(hi))
    return None


def _per_subject(cam: str, tl: Timeline, s: str) -> list[Question]:
    """The when/how questions about one subject on one camera, whole memory and ranged."""
    a = _a(s)
    spans = _spans(tl, s)
    qs = [
        _q(YES_NO, f"Is there {a}?", cam, s),
        _q(FIRST, f"When did you first see {a}?", cam, s),
        _q(LAST, f"When did you last see {a}?", cam, s),
        _q(EVERY, f"List every time you saw {a}.", cam, s),
        _q(HOW_LONG, f"How long was the {s} on camera?", cam, s),
        _q(HOW_MANY, f"How many times did you see {a}?", cam, s),
    ]
    lo, hi = math.floor(spans[0][0]), math.ceil(spans[0][1]) + 4
    qs.append(_q(YES_NO, f"Was there {a} between t={lo} and t={hi}?", cam, s, Range("between", lo, hi)))
    qs.append(_q(HOW_LONG, f"How long was the {s} there?", cam, s, Range("from_to", lo, hi)))
    gap = _gap(tl, s)
    if gap is not None:
        qs.append(_q(YES_NO, f"Did you see {a}?", cam, s, Range("from_to", *gap)))
    if len(spans) > 1:
        after = math.ceil(spans[0][1]) + 1
        qs.append(_q(FIRST, f"When did you first see {a} after t={after}?", cam, s, Range("from_to", after)))
    return qs


def _wording(cam: str, tl: Timeline, shown: list[str]) -> list[Question]:
    """Synonyms, plurals, multi-word phrases, typos, ancestors: the same truth in a user's own words."""
    qs: list[Question] = []
    for k, s in enumerate(shown):
        qs.append(_q("synonym", f"Did you see {_a(SYNONYM[s])}?", cam, s, checks=YES_NO))
        if k % 2:
            qs.append(_q("synonym", f"Were there any {PLURAL[s]}?", cam, s, checks=YES_NO))
            qs.append(_q("typo", f"When did you last see {_a(TYPO[s])}?", cam, s, checks=LAST))
        else:
            qs.append(_q("synonym", f"When did you first see {_a(SYNONYM[s])}?", cam, s, checks=FIRST))
            qs.append(_q("typo", f"Is there {_a(TYPO[s])}?", cam, s, checks=YES_NO))
    for h in ANCESTORS:
        inside = [s for s in shown if s in members(h)]
        if h == "vehicle" and "rocket" in shown:
            continue
        if inside:
            qs.append(_q("hypernym", f"Did you see {_a(h)}?", cam, h, checks=YES_NO))
            if h in ("animal", "vehicle"):
                qs.append(_q("hypernym", f"When did you first see {_a(h)}?", cam, h, checks=FIRST))
        elif h in ("animal", "vehicle"):
            qs.append(_q("hypernym", f"Was there {_a(h)}?", cam, h, checks=YES_NO))
    return qs


def _what(cam: str, tl: Timeline) -> list[Question]:
    """What was seen: whole memory, two ranges, the last 30 s, the first 10 s."""
    end = tl.seconds
    mid = round(end / 2)
    return [
        _q(WHAT, "What did you see?", cam),
        _q(WHAT, "What did you see between t=0 and t=10?", cam, None, Range("between", 0, 10)),
        _q(WHAT, f"What was on camera between t={mid - 10} and t={mid + 6}?", cam, None,
           Range("between", mid - 10, mid + 6)),
        _q(WHAT, "What happened?", cam, None, Range("from_to", 12, 30)),
        _q(WHAT, "What happened in the last {n} seconds?", cam, None, Range("last", back_to=end - 30)),
    ]  # fmt: skip


def _people(cam: str, tl: Timeline) -> list[Question]:
    """People: presence, first appearance, faces at one second (truth from the labels, never the model)."""
    qs = [
        _q("people", "Is there a person?", cam, "person", checks=YES_NO),
        _q("people", "When did someone first appear?", cam, "person", checks=FIRST),
        _q("people", "Did you see anyone between t=0 and t=12?", cam, "person", Range("between", 0, 12),
           checks=YES_NO),
    ]  # fmt: skip
    counted = [a for a in tl.of("face") if a.count is not None and a.end - a.start >= 6]
    at = round((counted[0].start + counted[0].end) / 2) if counted else round(tl.seconds / 2)
    if tl.count_at("face", at) is not None:
        qs.append(
            _q("people", f"How many faces were there at t={at}?", cam, "face", checks=COUNT_AT, at_s=at)
        )
    return qs


def _refusals(cam: str, k: int, shown: list[str]) -> list[Question]:
    """Attributes the model cannot know and questions outside what a camera memory holds."""
    s = shown[k % len(shown)]
    qs = [
        _q("attribute", ATTRIBUTES[k % 3].format(s=s, p=PLURAL[s]), cam, s, checks=REFUSE),
        _q("attribute", ATTRIBUTES[(k + 1) % 3].format(s=s, p=PLURAL[s]), cam, s, checks=REFUSE),
    ]
    for text, subject in (OUT_OF_SCOPE[k % 5], OUT_OF_SCOPE[(k + 2) % 5]):
        qs.append(_q("out_of_scope", text, cam, subject, checks=REFUSE))
    return qs


def _session(sid: str, camera: str, turns: list[tuple[str, str, str]]) -> list[Question]:
    """A follow-up chain: (text, subject, scored as) per turn; each turn knows the previous subject."""
    out: list[Question] = []
    before = None
    for text, subject, checks in turns:
        # an elliptical "And X?" may ask the previous turn's question about X
        elliptical = bool(out) and text.lower().startswith("and ") and "it" not in text.lower().split()
        also = tuple(k for k in (out[-1].scored_as,) if k != checks) if elliptical else ()
        out.append(Question("follow_up", text, (camera,), subject, ALL, checks, sid, before, also))
        before = subject
    return out


def _follow_ups(cam: str, tl: Timeline, shown: list[str]) -> list[Question]:
    s = shown[0]
    other = shown[1] if len(shown) > 1 else next(x for x in ABSENT if x not in shown)
    return _session(f"s-{cam}", cam, [
        (f"Is there {_a(s)}?", s, YES_NO),
        ("When did you first see it?", s, FIRST),
        ("And when did it leave?", s, LAST),
        ("How long was it there?", s, HOW_LONG),
        (f"And {_a(other)}?", other, YES_NO),
        ("How many times did that appear?", other, HOW_MANY),
    ])  # fmt: skip


def for_camera(cam: str, tl: Timeline, k: int) -> list[Question]:
    """Every question about one camera (`k`: its index, which picks among the template variants)."""
    shown = _shown(tl)
    qs = [q for s in shown for q in _per_subject(cam, tl, s)]
    absent = [x for x in ABSENT if x not in shown][:2]
    for x in absent:
        qs.append(_q(YES_NO, f"Did you see {_a(x)}?", cam, x))
        qs.append(_q(LAST, f"When did you last see {_a(x)}?", cam, x))
    qs += _wording(cam, tl, shown) + _what(cam, tl) + _people(cam, tl) + _refusals(cam, k, shown)
    return qs + _follow_ups(cam, tl, shown)


def across(cams: list[tuple[str, Timeline]]) -> list[Question]:
    """Questions over every camera of a session at once (`POST /ask`)."""
    ids = tuple(c for c, _ in cams)
    back = tuple(reversed(ids))
    seen = list(dict.fromkeys(s for _, tl in cams for s in _shown(tl)))
    qs = []
    for s in seen[:3]:
        qs.append(Question("multi_camera", f"When did you first see {_a(s)}?", ids, s, checks=FIRST))
        qs.append(Question("multi_camera", f"When did you last see {_a(s)}?", back, s, checks=LAST))
    qs.append(Question("multi_camera", "Was there a dog?", ids, "dog", checks=YES_NO))
    qs.append(Question("multi_camera", "Is there a person?", back, "person", checks=YES_NO))
    return qs


def plan(cams: list[tuple[str, Timeline]]) -> list[Question]:
    """The full question set of one session's cameras; ranges counted back from now first (asked right after
    the files end, they still cover footage)."""
    qs = [q for k, (cam, tl) in enumerate(cams) for q in for_camera(cam, tl, k + sum(map(ord, cam)))]
    qs += across(cams) if len(cams) > 1 else []
    relative = [q for q in qs if q.range.how in {"since", "last"}]
    return relative + [q for q in qs if q.range.how not in {"since", "last"}]
