"""Words and times for answers people read: articles, plurals, counts of occasions, and stream / wall-clock
times that never round to a moment outside the range asked for. Pure text, no models."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

_IRREGULAR_PLURALS = {
    "person": "people", "man": "men", "woman": "women", "child": "children", "mouse": "mice",
    "goose": "geese", "foot": "feet", "tooth": "teeth", "ox": "oxen", "louse": "lice",
}  # fmt: skip
_SAME_PLURAL = frozenset({"sheep", "fish", "deer", "moose", "bison", "aircraft", "species", "series"})
_IRREGULAR_SINGULARS = {v: k for k, v in _IRREGULAR_PLURALS.items()}
# Words that start with a vowel letter and a consonant sound ("a unicycle"), or with a silent h ("an hour").
_A_BEFORE = ("uni", "use", "usu", "uti", "ure", "eu", "one", "once", "ewe")
_AN_BEFORE = ("hour", "honest", "honor", "honour", "heir")


def article(noun: str) -> str:
    """`noun` with "a" or "an" before it: "a bicycle", "an espresso", "a unicycle", "an hour"."""
    word = noun.strip().lower()
    vowel = word[:1] in "aeiou" and not word.startswith(_A_BEFORE)
    return f"{'an' if vowel or word.startswith(_AN_BEFORE) else 'a'} {noun.strip()}"


def plural(noun: str) -> str:
    """The plural of a noun or noun phrase (its last word): "bicycles", "buses", "people", "sports cars"."""
    head, _, last = noun.strip().rpartition(" ")
    low = last.lower()
    if low in _IRREGULAR_PLURALS:
        word = _IRREGULAR_PLURALS[low]
    elif low in _SAME_PLURAL:
        word = last
    elif low.endswith(("s", "x", "z", "ch", "sh")):
        word = last + "es"
    elif low.endswith("y") and low[-2:-1] not in ("a", "e", "i", "o", "u", ""):
        word = last[:-1] + "ies"
    else:
        word = last + "s"
    return f"{head} {word}" if head else word


def singular(noun: str) -> str:
    """The singular of a noun or noun phrase a person typed ("bicycles" -> "bicycle", "people" -> "person");
    a word that is not a recognisable plural is returned as it is."""
    head, _, last = noun.strip().rpartition(" ")
    low = last.lower()
    if low in _IRREGULAR_SINGULARS:
        word = _IRREGULAR_SINGULARS[low]
    elif low.endswith("ies") and len(low) > 4:
        word = last[:-3] + "y"
    elif low.endswith(("sses", "xes", "zes", "ches", "shes")) or (low.endswith("ses") and len(low) > 4):
        word = last[:-2]
    elif low.endswith("s") and not low.endswith(("ss", "us")) and len(low) > 3:
        word = last[:-1]
    else:
        word = last
    return f"{head} {word}" if head else word


def occasions(n: int) -> str:
    """ "once", "twice", "on 3 separate occasions"."""
    return {1: "once", 2: "twice"}.get(n, f"on {n} separate occasions")


def join(parts: Sequence[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    items = list(parts)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _inward(value: float, lo: float, hi: float, decimals: int) -> float:
    """`value` rounded to `decimals`, moved inward when rounding alone would leave [lo, hi]."""
    step = 10.0**-decimals
    r = round(value / step) * step
    if r < lo:
        r = math.ceil(lo / step - 1e-9) * step
    if r > hi:
        r = math.floor(hi / step + 1e-9) * step
    return r


@dataclass(frozen=True)
class Clock:
    """Says times of one camera inside the range asked for.

    Attributes:
        lo: the range's start, in the camera's stream seconds.
        hi: the range's end (never past now), in the camera's stream seconds.
        wall0: wall-clock second (Unix time) of the camera's stream second 0; None: stream seconds only.
    """

    lo: float
    hi: float
    wall0: float | None = None

    def t(self, t: float) -> str:
        """ "t=4s": stream seconds, rounded so they never name a second outside [lo, hi]."""
        for decimals in (0, 1, 2):
            r = _inward(t, self.lo, self.hi, decimals)
            if self.lo - 1e-9 <= r <= self.hi + 1e-9:
                return f"t={r:.{decimals}f}s"
        return f"t={min(max(t, self.lo), self.hi)!r}s"  # a range under 10 ms wide: the exact value

    def wall(self, t: float) -> str | None:
        """ "17:41:31" (UTC) of stream second t, rounded inward like `t`; None without a wall clock."""
        if self.wall0 is None:
            return None
        lo, hi = self.wall0 + self.lo, self.wall0 + self.hi
        second = _inward(self.wall0 + t, lo, hi, 0) if math.ceil(lo) <= math.floor(hi) else self.wall0 + t
        return datetime.fromtimestamp(second, UTC).strftime("%H:%M:%S")

    def at(self, t: float) -> str:
        """ "at 17:41:31 (t=4s)", or "at t=4s" without a wall clock."""
        wall = self.wall(t)
        return f"at {wall} ({self.t(t)})" if wall else f"at {self.t(t)}"

    def span(self, a: float, b: float) -> str:
        """ "t=4s-6s (17:41:31-17:41:33)", one moment as "t=4s (17:41:31)"."""
        ta, tb = self.t(a), self.t(b)
        wa, wb = self.wall(a), self.wall(b)
        if ta == tb:
            return f"{ta} ({wa})" if wa else ta
        stream = f"{ta}-{tb.removeprefix('t=')}"
        if not wa:
            return stream
        return f"{stream} ({wa})" if wa == wb else f"{stream} ({wa}-{wb})"

    def spans(self, spans: Sequence[tuple[float, float]], limit: int = 6) -> str:
        """Spans in order, the earliest ones folded into "and N earlier" past `limit`."""
        shown = [self.span(a, b) for a, b in spans[-limit:]]
        if len(spans) > limit:
            return ", ".join(shown) + f" and {len(spans) - limit} earlier"
        return join(shown)

    def range(self) -> str:
        """The range itself: "between t=0s and t=15s (17:41:27-17:41:42)"."""
        wa, wb = self.wall(self.lo), self.wall(self.hi)
        text = f"between {self.t(self.lo)} and {self.t(self.hi)}"
        return f"{text} ({wa}-{wb})" if wa else text
