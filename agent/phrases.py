"""Time ranges said inside a question ("in the last 10 seconds", "between t=30 and t=60", "since t=20",
"before t=40", "in the first 10 s") found, taken out of the text, and turned into stream seconds.

Pure text and arithmetic: no cameras, no models. `agent.questions` combines what is found here with the
request's own `since_s` / `from` / `to`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER_WORDS = {
    "a": 1.0, "an": 1.0, "one": 1.0, "two": 2.0, "three": 3.0, "four": 4.0, "five": 5.0, "six": 6.0,
    "seven": 7.0, "eight": 8.0, "nine": 9.0, "ten": 10.0, "fifteen": 15.0, "twenty": 20.0, "thirty": 30.0,
    "sixty": 60.0,
}  # fmt: skip
_NUM = r"\d+(?:\.\d+)?"
_UNIT = r"(?:seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h)"
_AMOUNT = rf"(?:({_NUM}|{'|'.join(_NUMBER_WORDS)})\s*)?({_UNIT})\b"
# A point in stream time: "t=30", "t = 30s", "30 s", "30 seconds", "1 min" (a bare number only inside
# "between ... and ..." / "from ... to ...", where nothing else can be meant).
_POINT = rf"(?:t\s*=\s*({_NUM})\s*({_UNIT})?\b|({_NUM})\s*({_UNIT})\b)"
_BARE = rf"(?:t\s*=\s*)?({_NUM})\s*({_UNIT})?\b"
_LEAD = r"(?:\b(?:in|during|over|within|for|of|from)\s+)?(?:\bthe\s+)?"

_LAST = re.compile(rf"{_LEAD}\b(?:last|past|previous|recent)\s+{_AMOUNT}", re.IGNORECASE)
_FIRST = re.compile(rf"{_LEAD}\bfirst\s+{_AMOUNT}", re.IGNORECASE)
_BETWEEN = re.compile(
    rf"(?:\b(?:between|from)\s+){_BARE}\s*(?:and|to|-|\u2013|until|till)\s*{_BARE}", re.IGNORECASE
)
_SPAN = re.compile(rf"\bt\s*=\s*({_NUM})\s*(?:s\b)?\s*(?:-|\u2013)\s*({_NUM})\s*({_UNIT})?\b", re.IGNORECASE)
_SINCE = re.compile(rf"\b(?:since|after|from)\s+{_POINT}", re.IGNORECASE)
_BEFORE = re.compile(rf"\b(?:before|until|till|up\s+to)\s+{_POINT}", re.IGNORECASE)


@dataclass(frozen=True)
class RangePhrase:
    """A time range a question names, before it is placed on a camera.

    Attributes:
        text: the words as the question has them.
        last_s: "the last N seconds": the range ends now and starts N seconds before (then since/until None).
        since: stream seconds the range starts at (None: open).
        until: stream seconds it ends at (None: open).
    """

    text: str
    last_s: float | None = None
    since: float | None = None
    until: float | None = None

    def bounds(self, now: float) -> tuple[float | None, float | None]:
        """(since, until) in stream seconds of a camera whose stream is at `now`."""
        if self.last_s is not None:
            return max(0.0, now - self.last_s), None
        return self.since, self.until


def _seconds(number: str | None, unit: str | None) -> float:
    value = 1.0 if number is None else _NUMBER_WORDS.get(number.lower())
    if value is None:
        value = float(number)  # type: ignore[arg-type]
    return value * _UNIT_S[(unit or "s")[0].lower()]


def find_range(question: str) -> tuple[str, RangePhrase | None]:
    """The first time range the question names, and the question with that phrase taken out.

    Returns:
        (the question without the phrase, the phrase) or (the question unchanged, None).

    Raises:
        ValueError: a range that ends before it starts ("between t=60 and t=30").
    """
    found = _match(question)
    if found is None:
        return question, None
    start, end, phrase = found
    if phrase.since is not None and phrase.until is not None and phrase.until < phrase.since:
        raise ValueError(f"the range {phrase.text!r} ends before it starts")
    rest = re.sub(r"\s{2,}", " ", question[:start] + " " + question[end:]).strip()
    rest = re.sub(r"\s+([?.!,])", r"\1", rest).lstrip(" ,;:")
    return rest, phrase


def _match(q: str) -> tuple[int, int, RangePhrase] | None:
    candidates: list[tuple[int, int, RangePhrase]] = []
    if m := _LAST.search(q):
        candidates.append((m.start(), m.end(), RangePhrase(m.group(0).strip(), last_s=_seconds(*m.groups()))))
    if m := _FIRST.search(q):
        first = RangePhrase(m.group(0).strip(), since=0.0, until=_seconds(*m.groups()))
        candidates.append((m.start(), m.end(), first))
    if m := _BETWEEN.search(q):
        a, ua, b, ub = m.groups()
        unit_a = ua or ub  # "between 30 and 60 seconds": the unit said once holds for both
        candidates.append(
            (m.start(), m.end(), RangePhrase(m.group(0).strip(), None, _seconds(a, unit_a), _seconds(b, ub)))
        )
    if m := _SPAN.search(q):
        a, b, unit = m.groups()
        candidates.append(
            (m.start(), m.end(), RangePhrase(m.group(0).strip(), None, _seconds(a, unit), _seconds(b, unit)))
        )
    if not candidates:
        if m := _SINCE.search(q):
            t = _point(m.groups())
            candidates.append((m.start(), m.end(), RangePhrase(m.group(0).strip(), since=t)))
        if m := _BEFORE.search(q):
            t = _point(m.groups())
            candidates.append((m.start(), m.end(), RangePhrase(m.group(0).strip(), until=t)))
        if len(candidates) == 2:  # "since t=20 and before t=40": both ends
            (s0, _, p0), (_, e1, p1) = sorted(candidates, key=lambda c: c[0])
            since = p0.since if p0.since is not None else p1.since
            until = p0.until if p0.until is not None else p1.until
            return s0, e1, RangePhrase(q[s0:e1].strip(), since=since, until=until)
    if not candidates:
        return None
    return min(candidates, key=lambda c: (c[0], -c[1]))


def _point(groups: tuple[str | None, ...]) -> float:
    t_num, t_unit, num, unit = groups
    return _seconds(t_num, t_unit) if t_num is not None else _seconds(num, unit)
