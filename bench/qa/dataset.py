"""Ground truth for `scissor bench qa`: what each camera showed, when, and what a person would call it, at the
concept level (the subject's words, the ImageNet leaf classes that are it, the WordNet ancestors a person may
ask by). Pure data and interval arithmetic: no video, no model, and never anything a model predicted.

Times are video seconds of the camera's file (its frame 0 is second 0); bench/qa/run.py measures the offset of
the camera's stream seconds (the first frame's stream second) and shifts these by it.
"""

from __future__ import annotations

from dataclasses import dataclass

Interval = tuple[float, float]


@dataclass(frozen=True)
class Subject:
    """Something on camera (or never on camera) that a question can ask about, as a person names it.

    Attributes:
        name: the word a person uses first ("cat").
        words: every word or phrase a person may call it by (synonyms, plurals, multi-word), lower case; an
            answer naming one of these or of `classes` names the subject.
        classes: ImageNet-1k leaf classes that are this subject (hand-chosen from what the images show).
        kinds: WordNet ancestors a person may ask by ("animal" for the cat); each one's WordNet synset holds
            one of `classes` (tests/bench/test_qa_smoke.py checks it against the shipped catalog).
        group: a WordNet noun whose ImageNet classes are this subject (for subjects never on camera: "dog").
        seeable: False where ImageNet-1k has no class for it (giraffes, rain): the honest answer is a refusal.
        people: a person or a face: seen by a people detector, never by the ImageNet classifier.
    """

    name: str
    words: tuple[str, ...]
    classes: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    group: str | None = None
    seeable: bool = True
    people: bool = False


_CATS = ("tabby cat", "tiger cat", "Persian cat", "Siamese cat", "Egyptian Mau")
SUBJECTS = {
    s.name: s
    for s in (
        Subject("cat", ("cat", "cats", "kitten", "kitty", "tabby", "tabby cat"), _CATS,
                ("feline", "mammal", "animal")),
        Subject("coffee", ("coffee", "espresso", "cup of coffee", "coffee cup", "coffee mug", "mug", "cup"),
                ("espresso", "coffee mug", "tea cup"), ("beverage", "drink")),
        Subject("rocket", ("rocket", "rockets", "missile", "space shuttle", "spacecraft"),
                ("missile", "projectile", "space shuttle"), ("spacecraft",)),
        Subject("clock", ("clock", "clocks", "wall clock", "analog clock"),
                ("wall clock", "analog clock", "digital clock"), ("timepiece",)),
        Subject("bicycle", ("bicycle", "bicycles", "bike", "bikes", "cycle", "push bike", "mountain bike"),
                ("mountain bike", "tandem bicycle", "tricycle"), ("wheeled vehicle", "vehicle")),
        Subject("taxi", ("taxi", "taxis", "cab", "cabs", "taxicab", "taxi cab"), ("taxicab",),
                ("car", "motor vehicle", "vehicle")),
        Subject("tie", ("tie", "ties", "necktie", "bow tie", "windsor tie"), ("Windsor tie", "bow tie"),
                ("neckwear", "clothing")),
        Subject("motorcycle", ("motorcycle", "motorcycles", "motorbike", "moped", "scooter"),
                ("moped", "motor scooter"), ("motor vehicle", "vehicle")),
        Subject("horse", ("horse", "horses", "pony", "stallion", "mare"), ("common sorrel horse",),
                ("equine", "mammal", "animal")),
        Subject("rabbit", ("rabbit", "rabbits", "bunny", "bunnies", "hare"),
                ("cottontail rabbit", "Angora rabbit", "hare"), ("mammal", "animal")),
        Subject("dog", ("dog", "dogs", "puppy", "puppies"), (), ("mammal", "animal"), group="dog"),
        Subject("bird", ("bird", "birds"), (), ("animal",), group="bird"),
        Subject("person", ("person", "people", "man", "woman", "someone", "anyone", "pedestrian"),
                seeable=False, people=True),
        Subject("face", ("face", "faces"), seeable=False, people=True),
        Subject("giraffe", ("giraffe", "giraffes"), seeable=False),
        Subject("rain", ("rain", "raining"), seeable=False),
    )
}  # fmt: skip
HYPERNYMS = tuple(sorted({k for s in SUBJECTS.values() for k in s.kinds} - set(SUBJECTS)))


def members(concept: str) -> tuple[str, ...]:
    """The subjects a concept stands for: a subject itself, or every subject a WordNet ancestor covers
    ("animal" -> cat, horse, rabbit, dog, bird; "car" -> taxi)."""
    if concept in SUBJECTS:
        return (concept,)
    found = tuple(s.name for s in SUBJECTS.values() if concept in s.kinds)
    if not found:
        raise KeyError(f"no subject or ancestor {concept!r}")
    return found


def names_of(concept: str) -> tuple[str, ...]:
    """Every word an answer may use to name the concept at its own level or below (its members' words and
    ImageNet classes), plus the concept word itself."""
    words = [concept]
    for m in members(concept):
        words += [*SUBJECTS[m].words, *SUBJECTS[m].classes]
    return tuple(dict.fromkeys(words))


def concept_of(concept: str) -> Subject:
    """A Subject standing for the concept (the subject itself, or a merge of its members for an ancestor)."""
    if concept in SUBJECTS:
        return SUBJECTS[concept]
    subs = [SUBJECTS[m] for m in members(concept)]
    return Subject(
        concept,
        names_of(concept),
        tuple(c for s in subs for c in s.classes),
        group=None,
        seeable=all(s.seeable for s in subs),
        people=all(s.people for s in subs),
    )


@dataclass(frozen=True)
class Appearance:
    """One stretch of time a subject was on camera.

    Attributes:
        subject: a SUBJECTS key, or a filler name (a texture or blank nobody asks about, never nameable).
        start, end: video seconds, `end` exclusive (the next shot's first second).
        slack_s: how uncertain the hand-labelled edges are (added to the scoring tolerance).
        count: how many of it are in the frame (faces), None where nobody counted.
    """

    subject: str
    start: float
    end: float
    slack_s: float = 0.0
    count: int | None = None


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

    def of(self, concept: str) -> list[Appearance]:
        """The appearances of the concept's subjects (a subject, or an ancestor's members) in time order."""
        wanted = set(members(concept)) if concept in SUBJECTS or concept in HYPERNYMS else {concept}
        return sorted((a for a in self.appearances if a.subject in wanted), key=lambda a: a.start)

    def subjects(self) -> list[str]:
        """Every named subject in the timeline (no fillers), in order of first appearance."""
        order = sorted(self.appearances, key=lambda a: a.start)
        return list(dict.fromkeys(a.subject for a in order if a.subject in SUBJECTS))

    def count_at(self, concept: str, t: float) -> int | None:
        """How many of the concept were in the frame at video second `t` (0 when none; None: not counted)."""
        here = [a for a in self.of(concept) if a.start <= t < a.end]
        if any(a.count is None for a in here):
            return None
        return sum(a.count or 0 for a in here)


def merge(spans: list[Interval]) -> list[Interval]:
    """Overlapping or touching spans joined (a cat then a horse is one stretch of 'animal')."""
    out: list[Interval] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1] + 1e-6:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def clip(spans: list[Interval], lo: float, hi: float) -> list[Interval]:
    """`spans` cut to [lo, hi]; spans outside it are dropped."""
    return [(max(a, lo), min(b, hi)) for a, b in spans if b > lo and a < hi]


def length(spans: list[Interval]) -> float:
    """Total seconds of disjoint spans."""
    return sum(b - a for a, b in spans)


def truth_spans(timeline: Timeline, concept: str, offset: float, lo: float, hi: float) -> list[Interval]:
    """The concept's appearances in stream seconds (video seconds + `offset`), merged, cut to [lo, hi]."""
    return clip(merge([(a.start + offset, a.end + offset) for a in timeline.of(concept)]), lo, hi)


def slack(timeline: Timeline, concept: str) -> float:
    """The largest edge uncertainty of the concept's labels."""
    return max((a.slack_s for a in timeline.of(concept)), default=0.0)
