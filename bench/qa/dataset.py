"""Ground truth for `scissor bench qa`: what each camera showed, when, and the words and ImageNet classes of
each subject. Pure data and interval arithmetic: no video, no model.

Times are video seconds of the camera's file (its frame 0 is second 0); bench/qa/run.py measures the offset of
the camera's stream seconds (the first frame's stream second) and shifts these by it.
"""

from __future__ import annotations

from dataclasses import dataclass

Interval = tuple[float, float]


@dataclass(frozen=True)
class Subject:
    """Something a question can ask about.

    Attributes:
        name: the word questions use ("cat", "coffee").
        words: words an answer may call it by (its name, plural, synonyms), lower case.
        classes: ImageNet class names that are this subject (hand-chosen, not the answerer's resolver), empty
            for a subject the classifier has no class for.
        group: a WordNet noun whose ImageNet classes (in the shipped catalog) are this subject too ("dog":
            the 118 breeds), or None.
        seeable: False for concepts ImageNet-1k has no class for (people, astronauts, giraffes, weather):
            questions about them must get an honest refusal.
    """

    name: str
    words: tuple[str, ...]
    classes: tuple[str, ...]
    group: str | None = None
    seeable: bool = True


SUBJECTS = {
    s.name: s
    for s in (
        Subject(
            "cat",
            ("cat", "cats", "kitten"),
            ("tabby cat", "tiger cat", "Persian cat", "Siamese cat", "Egyptian Mau"),
        ),
        Subject("coffee", ("coffee", "espresso", "cup", "mug"), ("espresso", "coffee mug", "tea cup")),
        Subject("rocket", ("rocket", "rockets", "missile"), ("missile", "projectile", "space shuttle")),
        Subject("clock", ("clock", "clocks"), ("wall clock", "analog clock", "digital clock")),
        Subject(
            "bicycle",
            ("bicycle", "bicycles", "bike", "bikes"),
            ("mountain bike", "tandem bicycle", "tricycle"),
        ),
        Subject("taxi", ("taxi", "taxis", "cab", "cabs", "taxicab"), ("taxicab",)),
        Subject("tie", ("tie", "ties", "necktie", "bow tie"), ("Windsor tie", "bow tie")),
        Subject("dog", ("dog", "dogs"), (), group="dog"),  # never on camera: the "No" questions
        Subject("person", ("person", "people", "man", "pedestrian"), (), seeable=False),
        Subject("astronaut", ("astronaut",), (), seeable=False),
        Subject("giraffe", ("giraffe",), (), seeable=False),
        Subject("rain", ("rain", "raining"), (), seeable=False),
    )
}


@dataclass(frozen=True)
class Appearance:
    """One stretch of time a subject was on camera.

    Attributes:
        subject: a SUBJECTS key, or a filler name (photos nobody asks about).
        start, end: video seconds, `end` exclusive (the next shot's first second).
        slack_s: how uncertain the hand-labelled edges are (added to the scoring tolerance).
    """

    subject: str
    start: float
    end: float
    slack_s: float = 0.0


@dataclass(frozen=True)
class Timeline:
    """One camera's ground truth: what was on camera when.

    Attributes:
        camera: the camera id the bench registers.
        seconds: the file's length in video seconds.
        appearances: every labelled appearance (several may overlap: a cyclist is a person and a bicycle).
    """

    camera: str
    seconds: float
    appearances: tuple[Appearance, ...]

    def of(self, subject: str) -> list[Appearance]:
        """The subject's appearances in time order."""
        return sorted((a for a in self.appearances if a.subject == subject), key=lambda a: a.start)

    def subjects(self) -> list[str]:
        """Every subject named in the timeline, in order of first appearance."""
        return list(dict.fromkeys(a.subject for a in sorted(self.appearances, key=lambda a: a.start)))


def clip(spans: list[Interval], lo: float, hi: float) -> list[Interval]:
    """`spans` cut to [lo, hi]; spans outside it are dropped."""
    return [(max(a, lo), min(b, hi)) for a, b in spans if b > lo and a < hi]


def length(spans: list[Interval]) -> float:
    """Total seconds of disjoint spans."""
    return sum(b - a for a, b in spans)


def truth_spans(timeline: Timeline, subject: str, offset: float, lo: float, hi: float) -> list[Interval]:
    """The subject's appearances in stream seconds (video seconds + `offset`), cut to [lo, hi]."""
    return clip([(a.start + offset, a.end + offset) for a in timeline.of(subject)], lo, hi)


def slack(timeline: Timeline, subject: str) -> float:
    """The largest edge uncertainty of the subject's labels."""
    return max((a.slack_s for a in timeline.of(subject)), default=0.0)
