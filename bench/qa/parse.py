"""Reading an answer for `scissor bench qa`: its stated times, spans, duration, count, yes/no or refusal, from
the Answer JSON's text and structured fields. Pure text work, no truth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# "t=4s", "t=20s-29s", "t=20-29s", "t=20s to t=29s", "t=20.5 s"
_T = re.compile(
    r"\bt\s*=\s*(-?\d+(?:\.\d+)?)\s*(?:s\b|sec\w*)?"
    r"(?:\s*(?:-|\u2013|to|until)\s*(?:t\s*=\s*)?(-?\d+(?:\.\d+)?)\s*(?:s\b|sec\w*))?",
    re.IGNORECASE,
)
_CLOCK = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?\b")
_DURATION = re.compile(
    r"(?<![=\w.])(\d+(?:\.\d+)?)\s*(seconds?|secs?|s|minutes?|mins?|m)\b(?!\s*ago)", re.IGNORECASE
)
_PROB = re.compile(r"\bp\s*=\s*\d+(?:\.\d+)?")
_NUMBER_WORDS = {
    "no": 0, "zero": 0, "once": 1, "one": 1, "twice": 2, "two": 2, "three": 3, "thrice": 3, "four": 4,
    "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}  # fmt: skip
_COUNTED = (
    r"(?:separate\s+|distinct\s+|different\s+)?"
    r"(?:times?|appearances?|sightings?|occasions?|visits?|stretches?|intervals?|periods?)"
)
_REFUSAL = re.compile(
    r"\bcannot\b|\bcan't\b|\bcan not\b|\bunable\b|\bnot able\b|\bdon't know\b|\bno class\b|"
    r"\bcan only (?:see|recognise|recognize)\b|\bnot recogni[sz]e\b|\bnot something\b",
    re.IGNORECASE,
)
_NEGATIVE = re.compile(
    r"\bdid not see\b|\bdidn't see\b|\bnever saw\b|\bnot seen\b|\bno sign of\b|\bholds nothing\b",
    re.IGNORECASE,
)

Span = tuple[float, float]


@dataclass(frozen=True)
class Said:
    """What an answer's text says.

    Attributes:
        points: every time named (t=...), spans' ends included, in text order.
        spans: the t=A-B spans named, and single t=A times as (A, A), in text order.
        clocks: wall-clock times named (HH:MM or HH:MM:SS).
        verdict: "yes", "no", "refusal" or "other".
    """

    points: tuple[float, ...]
    spans: tuple[Span, ...]
    clocks: tuple[str, ...]
    verdict: str


def read(text: str) -> Said:
    """Parse an answer's text."""
    points: list[float] = []
    spans: list[Span] = []
    for m in _T.finditer(text):
        a = float(m.group(1))
        b = float(m.group(2)) if m.group(2) is not None else a
        points.extend([a] if m.group(2) is None else [a, b])
        spans.append((a, b))
    clocks = tuple(m.group(0) for m in _CLOCK.finditer(text))
    return Said(tuple(points), tuple(spans), clocks, verdict(text))


def verdict(text: str) -> str:
    """'yes' / 'no' by the answer's first word (or a plain "I did not see"), 'refusal' for an honest "I
    cannot tell" that is no confident yes or no, else 'other'."""
    head = text.strip().lower()
    if re.match(r"yes\b", head):
        return "yes"
    if re.match(r"no\b", head):
        return "no"
    if _REFUSAL.search(text):
        return "refusal"
    if _NEGATIVE.search(text):
        return "no"
    return "other"


def says_not_seen(text: str) -> bool:
    """Whether the text says the thing was not seen (a plain No, "I did not see", "holds nothing")."""
    return verdict(text) == "no" or _NEGATIVE.search(text) is not None


def _strip_times(text: str) -> str:
    out = _T.sub(" ", text)
    out = _CLOCK.sub(" ", out)
    return _PROB.sub(" ", out)


def duration(text: str) -> float | None:
    """The first duration the text states outside t=... times ("about 20s", "1 minute"), in seconds."""
    m = _DURATION.search(_strip_times(text))
    if m is None:
        return None
    value = float(m.group(1))
    return value * 60 if m.group(2).lower().startswith("m") else value


def count(text: str) -> int | None:
    """The number of appearances the text states ("2 separate times", "twice", "three appearances"), else
    the first bare number outside times and durations."""
    rest = _DURATION.sub(" ", _strip_times(text)).lower()
    word = r"(\d+|" + "|".join(_NUMBER_WORDS) + r")"
    m = re.search(rf"\b{word}\s+{_COUNTED}\b", rest) or re.search(r"\b(once|twice|thrice)\b", rest)
    if m is None:
        m = re.search(r"\b(\d+)\b", rest)
    if m is None:
        return None
    token = m.group(1)
    return int(token) if token.isdigit() else _NUMBER_WORDS[token]


def mentions(text: str, words: tuple[str, ...]) -> bool:
    """Whether any of `words` (or class names) occurs in the text as a whole word, case-insensitively."""
    low = text.lower()
    return any(re.search(rf"(?<![a-z]){re.escape(w.lower())}(?![a-z])", low) for w in words)


_VOWEL_SOUND_EXCEPTIONS = ("uni", "use", "usu", "eu", "one", "once", "ur")
_SILENT_H = ("hour", "honest", "honou", "heir")


def article_errors(text: str) -> list[str]:
    """'a espresso', 'an cat' and the like: article/first-letter mismatches by the usual spelling rules."""
    bad = []
    for m in re.finditer(r"\b(a|an)\s+([A-Za-z][\w-]*)", text):
        art, word = m.group(1).lower(), m.group(2).lower()
        vowel = word[0] in "aeiou" and not word.startswith(_VOWEL_SOUND_EXCEPTIONS)
        vowel = vowel or word.startswith(_SILENT_H)
        if (art == "a" and vowel) or (art == "an" and not vowel):
            bad.append(m.group(0))
    return bad


_CLOCK_AFTER_T = re.compile(
    r"\bt\s*=\s*(\d+(?:\.\d+)?)\s*s?(?:\s*-\s*(\d+(?:\.\d+)?)\s*s)?\s*"
    r"\((\d{1,2}:\d{2}:\d{2})(?:\s*-\s*(\d{1,2}:\d{2}:\d{2}))?\)"
)
_CLOCK_BEFORE_T = re.compile(r"(\d{1,2}:\d{2}:\d{2})\s*\(\s*t\s*=\s*(\d+(?:\.\d+)?)\s*s?\s*\)")


def clock_pairs(text: str) -> list[tuple[str, float]]:
    """(HH:MM:SS, stream second) pairs the text gives side by side: "17:41:31 (t=4s)", "t=4s (17:41:31)",
    "t=20s-29s (17:41:27-17:41:36)"."""
    pairs = [(m.group(1), float(m.group(2))) for m in _CLOCK_BEFORE_T.finditer(text)]
    for m in _CLOCK_AFTER_T.finditer(text):
        if m.group(2) is not None and m.group(4) is not None:  # "t=A-B (c1-c2)"
            pairs += [(m.group(3), float(m.group(1))), (m.group(4), float(m.group(2)))]
        elif m.group(4) is not None:  # "between t=A and t=B (c1-c2)": only c2 belongs to this t
            pairs.append((m.group(4), float(m.group(1))))
        else:
            pairs.append((m.group(3), float(m.group(1))))
    return pairs


def plural_errors(text: str, plurals: tuple[str, ...]) -> list[str]:
    """'a bicycles' and the like: 'a'/'an' before one of `plurals`."""
    low = text.lower()
    return [m.group(0) for w in plurals for m in re.finditer(rf"\ban?\s+{re.escape(w)}\b", low)]
