"""The questions of `scissor bench qa`: every kind issue 16 names, over the bench's cameras, each with what it
asks about and the range it asks for. What the right answer is comes from the timelines at scoring time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

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
    "out_of_scope",
)
YES_NO, FIRST, LAST, EVERY, HOW_LONG, HOW_MANY, WHAT = KINDS[:7]


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
        subject: what it asks about (a dataset SUBJECTS key), None for what-in-range.
        range: the range asked for.
        checks: how the answer is scored (a kind of KINDS[:7]; follow-ups and multi-camera questions are
            scored as the kind they are, plus their own checks).
        session: session id of a follow-up chain, None for a lone question.
        after: the subject of the session's previous turn (a follow-up must not stay on it).
        also: other kinds a right answer may be scored as ("And coffee?" after "How long was it there?" may
            be read as "how long was the coffee there?").
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

    @property
    def scored_as(self) -> str:
        """The kind whose scorer judges the answer."""
        return self.checks or self.kind


def _q(kind: str, text: str, camera: str, subject: str | None = None, rng: Range = ALL) -> Question:
    return Question(kind, text, (camera,), subject, rng)


def _session(sid: str, camera: str, turns: list[tuple[str, str, str]]) -> list[Question]:
    """A follow-up chain: (text, subject, scored as) per turn; each turn knows the previous subject."""
    out: list[Question] = []
    before = None
    for text, subject, checks in turns:
        # an elliptical "And X?" may ask the previous turn's question about X
        elliptical = bool(out) and text.lower().startswith("and ")
        also = tuple(k for k in (out[-1].scored_as,) if k != checks) if elliptical else ()
        out.append(Question("follow_up", text, (camera,), subject, ALL, checks, sid, before, also))
        before = subject
    return out


def plan(lobby: str = "lobby", desk: str = "desk", street: str = "street") -> list[Question]:
    """The full question set over the three cameras (bench/qa/__init__.py FOOTAGE)."""
    qs = [
        # yes / no, whole memory and ranges given every way
        _q(YES_NO, "Is there a cat?", lobby, "cat"),
        _q(YES_NO, "Did you see any coffee?", lobby, "coffee"),
        _q(YES_NO, "Is there a dog?", lobby, "dog"),
        _q(YES_NO, "Did you see a bicycle?", lobby, "bicycle"),
        _q(YES_NO, "Was there a rocket?", desk, "rocket"),
        _q(YES_NO, "Was there a cat?", desk, "cat"),
        _q(YES_NO, "Was there a cat?", lobby, "cat", Range("from_to", 0, 15)),
        _q(YES_NO, "Was there a cat between t=15 and t=35?", lobby, "cat", Range("between", 15, 35)),
        _q(YES_NO, "Did you see coffee between t=12 and t=38?", lobby, "coffee", Range("between", 12, 38)),
        _q(YES_NO, "Is there a rocket?", desk, "rocket", Range("from_to", 21, 29)),
        _q(YES_NO, "Was there a cat in the last {n} seconds?", lobby, "cat", Range("last", back_to=55)),
        _q(YES_NO, "Did you see coffee?", lobby, "coffee", Range("since", back_to=55)),
        _q(YES_NO, "Is there a taxi?", street, "taxi"),
        _q(YES_NO, "Is there a bike?", street, "bicycle"),
        _q(YES_NO, "Did you see a tie?", street, "tie"),
        # when: first, last, every appearance
        _q(FIRST, "When did you first see a cat?", lobby, "cat"),
        _q(FIRST, "When did coffee first appear?", lobby, "coffee"),
        _q(FIRST, "When did you first see a rocket?", desk, "rocket"),
        _q(FIRST, "When did a cat first appear?", lobby, "cat", Range("from_to", 35, 80)),
        _q(FIRST, "When did you first see coffee after t=20?", lobby, "coffee", Range("from_to", 20)),
        _q(FIRST, "When did you first see a bicycle?", street, "bicycle"),
        # "when did X appear?" is its first appearance (or every one), never only the last
        Question(FIRST, "When did a cat appear?", (lobby,), "cat", also=(EVERY,)),
        _q(LAST, "When did you last see a cat?", lobby, "cat"),
        _q(LAST, "When did you last see coffee?", lobby, "coffee"),
        _q(LAST, "When was the rocket last seen?", desk, "rocket"),
        _q(
            LAST, "When did you last see a cat between t=10 and t=45?", lobby, "cat", Range("between", 10, 45)
        ),
        _q(LAST, "When did you last see coffee?", lobby, "coffee", Range("from_to", 0, 30)),
        _q(LAST, "When did you last see a taxi?", street, "taxi"),
        _q(LAST, "When did you last see a cab?", street, "taxi"),
        _q(LAST, "When did you last see a tie?", street, "tie"),
        _q(EVERY, "When was the cat on camera? List every appearance.", lobby, "cat"),
        _q(EVERY, "List every time you saw coffee.", lobby, "coffee"),
        _q(EVERY, "Every time the rocket appeared?", desk, "rocket"),
        _q(EVERY, "List every appearance of a clock.", lobby, "clock"),
        # how long: time on screen, not first-to-last
        _q(HOW_LONG, "How long was the cat on camera?", lobby, "cat"),
        _q(HOW_LONG, "How long was coffee visible?", lobby, "coffee"),
        _q(HOW_LONG, "For how long did you see a rocket?", desk, "rocket"),
        _q(
            HOW_LONG,
            "How long was the cat there between t=15 and t=45?",
            lobby,
            "cat",
            Range("between", 15, 45),
        ),
        _q(HOW_LONG, "How long was coffee on camera?", lobby, "coffee", Range("from_to", 5, 60)),
        _q(HOW_LONG, "How long was the bicycle there?", street, "bicycle"),
        _q(
            HOW_LONG,
            "How long was the cat there in the last {n} seconds?",
            lobby,
            "cat",
            Range("last", back_to=45),
        ),
        _q(FIRST, "When did you first see a rocket?", desk, "rocket", Range("since", back_to=25)),
        # how many: separate appearances
        _q(HOW_MANY, "How many times did a cat appear?", lobby, "cat"),
        _q(HOW_MANY, "How many times did you see coffee?", lobby, "coffee"),
        _q(HOW_MANY, "How many rockets appeared?", desk, "rocket"),
        _q(HOW_MANY, "How many cats did you see?", lobby, "cat"),
        _q(HOW_MANY, "How many times did a cat appear?", lobby, "cat", Range("from_to", 0, 45)),
        _q(HOW_MANY, "How many bicycles went by?", street, "bicycle"),
        # what was seen in a range
        _q(WHAT, "What did you see?", lobby),
        _q(WHAT, "What did you see between t=15 and t=35?", lobby, None, Range("between", 15, 35)),
        _q(WHAT, "What did you see?", lobby, None, Range("from_to", 38, 52)),
        _q(WHAT, "What did you see in the last {n} seconds?", lobby, None, Range("last", back_to=55)),
        _q(WHAT, "What was on camera?", desk, None, Range("since", back_to=25)),
        _q(WHAT, "What did you see in the past {n} seconds?", desk, None, Range("last", back_to=5)),
        _q(WHAT, "What did you see in the past {m} minutes?", lobby, None, Range("last", back_to=0)),
        _q(WHAT, "What did you see between t=0 and t=10?", lobby, None, Range("between", 0, 10)),
    ]
    qs += _session("s-cat", lobby, [
        ("Is there a cat?", "cat", YES_NO),
        ("When did you first see it?", "cat", FIRST),
        ("How long was it there?", "cat", HOW_LONG),
        ("And coffee?", "coffee", YES_NO),
        ("When did you last see that?", "coffee", LAST),
        ("And a dog?", "dog", YES_NO),
    ])  # fmt: skip
    qs += _session("s-rocket", desk, [
        ("Did you see a rocket?", "rocket", YES_NO),
        ("When was it last there?", "rocket", LAST),
        ("How many times did it appear?", "rocket", HOW_MANY),
        ("Is there a cat?", "cat", YES_NO),
    ])  # fmt: skip
    two, back = (lobby, desk), (desk, lobby)
    qs += [
        Question("multi_camera", "Is there a cat?", back, "cat", checks=YES_NO),
        Question("multi_camera", "When did you first see a cat?", two, "cat", checks=FIRST),
        Question("multi_camera", "When did you last see a rocket?", two, "rocket", checks=LAST),
        Question("multi_camera", "When did you first see coffee?", back, "coffee", checks=FIRST),
        Question("multi_camera", "How long was the rocket on camera?", two, "rocket", checks=HOW_LONG),
        Question("multi_camera", "Was there a dog?", two, "dog", checks=YES_NO),
        Question("multi_camera", "List every time you saw a rocket.", back, "rocket", checks=EVERY),
        Question("multi_camera", "When did you last see a cat?", (street, desk, lobby), "cat", checks=LAST),
    ]
    qs += [
        _q("out_of_scope", "Is there a person?", lobby, "person"),
        _q(
            "out_of_scope",
            "Was anyone there between t=30 and t=40?",
            lobby,
            "person",
            Range("between", 30, 40),
        ),
        _q("out_of_scope", "Did you see an astronaut?", lobby, "astronaut"),
        _q("out_of_scope", "How many people walked by?", street, "person"),
        _q("out_of_scope", "Is there a pedestrian?", street, "person"),
        _q("out_of_scope", "When did you last see a man?", street, "person"),
        _q("out_of_scope", "Did you see a giraffe?", desk, "giraffe"),
        _q("out_of_scope", "Is it raining?", street, "rain"),
        Question("out_of_scope", "Is there a person?", (lobby, street), "person"),
    ]
    # Ranges counted back from now first: asked right after the files end, they still cover footage.
    relative = [q for q in qs if q.range.how in {"since", "last"}]
    return relative + [q for q in qs if q.range.how not in {"since", "last"}]
