"""The English rules every `scissor bench qa` answer is checked for (issue 16): Yes/No only for yes/no
questions, articles, wall-clock times beside stream seconds, 'how many' saying what it counts. Reported in
their own row; they never change a grade."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from bench.qa import parse
from bench.qa.dataset import SUBJECTS
from bench.qa.questions import EVERY, FIRST, HOW_MANY, LAST, REFUSE, YES_NO

CLOCK_SLACK_S = 1.5  # a clock and its t= are each rounded to whole seconds
_SAYS_APPEARANCES = r"separate|appearance|occasion|\btimes\b|cannot count|can't count|not how many"
PLURALS = tuple(w for s in SUBJECTS.values() for w in s.words if w.endswith("s") and w[:-1] in s.words)
_POLAR = r"(is|are|was|were|did|do|does|has|have|had|can|could)\b"  # a yes/no question opens with one


def format_issues(asked: Any, kind: str, text: str) -> list[str]:
    """Every English rule `text`, the answer to `asked` scored as `kind`, breaks."""
    issues = [f"article: {e!r}" for e in parse.article_errors(text)]
    issues += [f"plural after 'a': {e!r}" for e in parse.plural_errors(text, PLURALS)]
    lead = re.match(r"\s*(yes|no)\b", text, re.IGNORECASE)
    head = lead.group(1).lower() if lead else ""
    polar = re.match(_POLAR, asked.question.text.strip().lower()) is not None
    if kind == YES_NO and polar and head not in {"yes", "no"} and parse.verdict(text) != "refusal":
        issues.append("a yes/no question not answered with Yes/No")
    if kind not in {YES_NO, REFUSE} and head in {"yes", "no"}:
        issues.append(f"'{head.title()}' opens the answer to a {kind} question")
    said = parse.read(text)
    if kind in {FIRST, LAST, EVERY} and said.points and not said.clocks:
        issues.append("a 'when' answer with stream seconds but no wall-clock time")
    for clock, t in parse.clock_pairs(text):
        if asked.bases and not any(same_clock(clock, base + t) for base in asked.bases.values()):
            issues.append(f"wall clock {clock} is not stream second t={t:g}s")
    if kind == HOW_MANY and not re.search(_SAYS_APPEARANCES, text, re.IGNORECASE):
        issues.append("a 'how many' answer that does not say it counts separate appearances")
    return issues


def same_clock(clock: str, unix_s: float) -> bool:
    """Whether HH:MM:SS names the wall-clock second `unix_s` (UTC or this machine's zone), within rounding."""
    h, m, sec = (int(x) for x in clock.split(":"))
    said = h * 3600 + m * 60 + sec
    for moment in (datetime.fromtimestamp(unix_s, UTC), datetime.fromtimestamp(unix_s)):
        true = moment.hour * 3600 + moment.minute * 60 + moment.second + moment.microsecond / 1e6
        if min(abs(said - true), 86400 - abs(said - true)) <= CLOCK_SLACK_S:
            return True
    return False
