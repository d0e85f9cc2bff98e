"""Scoring for `scissor bench qa`: each answer against the ground truth of the cameras it asked, per kind,
plus the checks every answer gets (times inside the asked range, evidence only from cameras that saw it, the
issue's English rules).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.qa import parse
from bench.qa.dataset import SUBJECTS, Interval, Timeline, length, slack, truth_spans
from bench.qa.questions import EVERY, FIRST, HOW_LONG, HOW_MANY, LAST, WHAT, YES_NO, Question

ROUNDING_S = 0.5  # answers print whole seconds
MIN_PRESENT_S = 2.0  # less on camera inside the range than this: too close to call, not scored
EXPECTED_IN_RANGE_S = 4.0  # a what-in-range answer must name a subject on camera this long inside the range
CLOCK_SLACK_S = 1.5  # a clock and its t= are each rounded to whole seconds
_SAYS_APPEARANCES = r"separate|appearance|occasion|\btimes\b|cannot count|can't count|not how many"
PLURALS = tuple(w for s in SUBJECTS.values() for w in s.words if w.endswith("s") and w[:-1] in s.words)
_POLAR = r"(is|are|was|were|did|do|does|has|have|had|can|could)\b"  # a yes/no question opens with one


@dataclass(frozen=True)
class Camera:
    """One camera's truth as the bench ran it.

    Attributes:
        timeline: what was on camera when (video seconds).
        offset: stream second of the file's frame 0 (measured: the memory's earliest entry).
        sample_s: seconds between sampled frames.
        seeable: per subject, the classifier probe's verdict (`detect.can_see`).
    """

    timeline: Timeline
    offset: float
    sample_s: float
    seeable: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Asked:
    """One question as asked.

    Attributes:
        question: the question.
        status: the HTTP status.
        answer: the response body (an Answer on 200).
        ranges: per camera, the range in its stream seconds (lo, hi) the answer had to stay in.
        bases: per camera, the wall-clock second (Unix time) of its stream second 0.
        links: every evidence snapshot URL and the HTTP status fetching it gave.
    """

    question: Question
    status: int
    answer: dict[str, Any]
    ranges: dict[str, Interval]
    bases: dict[str, float] = field(default_factory=dict)
    links: dict[str, int] = field(default_factory=dict)


@dataclass
class Verdict:
    """The score of one answer."""

    right: bool | None  # None: too close to the range's edge to call
    answerable: bool  # counted towards the goal: the classifier demonstrably sees (or never sees) it
    expected: str
    got: str
    why: str = ""
    out_of_range: list[str] = field(default_factory=list)
    format_issues: list[str] = field(default_factory=list)


def _present(asked: Asked, cameras: dict[str, Camera], subject: str) -> dict[str, list[Interval]]:
    """Per asked camera, the subject's true spans inside the asked range (stream seconds)."""
    out = {}
    for cid in asked.question.cameras:
        lo, hi = asked.ranges[cid]
        cam = cameras[cid]
        out[cid] = truth_spans(cam.timeline, subject, cam.offset, lo, hi)
    return out


def out_of_range(asked: Asked) -> list[str]:
    """Every time the answer names outside the range asked (text t=... values and evidence spans); negative
    times are always outside."""
    bad = []
    text = str(asked.answer.get("answer", ""))
    ranges = asked.ranges
    for t in parse.read(text).points:
        if t < 0 or not any(lo - ROUNDING_S <= t <= hi + ROUNDING_S for lo, hi in ranges.values()):
            bad.append(f"text names t={t:g}s")
    for ev in asked.answer.get("evidence", []):
        cam, a, b = ev.get("camera"), float(ev["from"]), float(ev["to"])
        lo, hi = ranges.get(cam, (0.0, -1.0))
        if cam not in ranges:
            bad.append(f"evidence from camera {cam!r}, not asked")
        elif a < 0 or a < lo - 1e-3 or b > hi + 1e-3 or b < a:
            bad.append(f"evidence {cam} {a:.1f}-{b:.1f}s outside {lo:.1f}-{hi:.1f}s")
    return bad


def _tol(cam: Camera, subject: str) -> float:
    return cam.sample_s + 1.0 + slack(cam.timeline, subject)


def _answerable(asked: Asked, cameras: dict[str, Camera], subject: str) -> tuple[bool, str]:
    views = [
        cameras[c].seeable.get(subject, {"answerable": False, "why": "not probed"}) for c in asked.ranges
    ]
    ok = all(v["answerable"] for v in views)
    return ok, "; ".join(f"{c}: {v['why']}" for c, v in zip(asked.ranges, views, strict=True))


def _fmt(spans: Sequence[Interval]) -> str:
    return ", ".join(f"{a:.0f}-{b:.0f}s" for a, b in spans) or "none"


def _judge(kind: str, text: str, spans: list[Interval], tol: float) -> tuple[bool, str]:
    """(right, expected) of an answer about one camera whose true spans in range are `spans`."""
    said = parse.read(text)
    if kind == YES_NO:
        want = "yes" if spans else "no"
        return said.verdict == want, want
    if not spans:  # a when/how question about something that was not there: it must say so
        return parse.says_not_seen(text), "not seen"
    low = text.lower()
    if said.verdict == "no" or (said.verdict == "refusal" and not said.points):
        return False, f"seen at {_fmt(spans)}"
    if kind == FIRST:
        first = spans[0][0]
        ok = (
            bool(said.points)
            and abs(min(said.points) - first) <= tol
            and ("first" in low or "earliest" in low)
        )
        return ok, f"first at t={first:.0f}s (+-{tol:.0f}s), saying 'first'"
    if kind == LAST:
        last = spans[-1][1]
        ok = bool(said.points) and abs(max(said.points) - last) <= tol
        return ok and (
            "last" in low or "latest" in low
        ), f"last at t={last:.0f}s (+-{tol:.0f}s), saying 'last'"
    if kind == EVERY:
        got = [s for s in said.spans if s[1] > s[0]]
        matched = all(any(abs(a - x) <= tol and abs(b - y) <= tol for x, y in got) for a, b in spans)
        return matched and len(got) == len(spans), f"{len(spans)} spans: {_fmt(spans)} (+-{tol:.0f}s)"
    if kind == HOW_LONG:
        total, stated = length(spans), parse.duration(text)
        margin = tol + len(spans) * 1.0
        ok = stated is not None and abs(stated - total) <= margin
        return ok, f"about {total:.0f}s on screen (+-{margin:.0f}s) in {_fmt(spans)}"
    if kind == HOW_MANY:
        return parse.count(text) == len(spans), f"{len(spans)} separate appearance(s): {_fmt(spans)}"
    raise ValueError(f"no judge for {kind!r}")


def _what(asked: Asked, cam: Camera, tol: float) -> tuple[bool, str]:
    """A what-in-range answer: names what was on camera long enough inside the range, nothing that was not."""
    text = str(asked.answer.get("answer", ""))
    lo, hi = asked.ranges[asked.question.cameras[0]]
    want, never = [], []
    for name, view in cam.seeable.items():
        s = SUBJECTS[name]
        if not view["answerable"] or not cam.timeline.of(name):
            continue
        inside = length(truth_spans(cam.timeline, name, cam.offset, lo, hi))
        near = length(truth_spans(cam.timeline, name, cam.offset, lo - tol, hi + tol))
        words = s.words + s.classes
        if inside >= EXPECTED_IN_RANGE_S:
            want.append((name, words))
        elif near == 0:
            never.append((name, words))
    missing = [n for n, w in want if not parse.mentions(text, w)]
    extra = [n for n, w in never if parse.mentions(text, w)]
    expected = f"names {[n for n, _ in want] or 'nothing in particular'}, not {[n for n, _ in never]}"
    return not missing and not extra, expected + (f"; missing {missing}" if missing else "") + (
        f"; names {extra} (not in range)" if extra else ""
    )


def _format(asked: Asked, kind: str) -> list[str]:
    """The issue's English rules: Yes/No only for yes/no questions, articles, wall-clock times for 'when'."""
    text = str(asked.answer.get("answer", ""))
    issues = [f"article: {e!r}" for e in parse.article_errors(text)]
    issues += [f"plural after 'a': {e!r}" for e in parse.plural_errors(text, PLURALS)]
    lead = re.match(r"\s*(yes|no)\b", text, re.IGNORECASE)
    head = lead.group(1).lower() if lead else ""
    polar = re.match(_POLAR, asked.question.text.strip().lower()) is not None
    if kind == YES_NO and polar and head not in {"yes", "no"} and parse.verdict(text) != "refusal":
        issues.append("a yes/no question not answered with Yes/No")
    if kind not in {YES_NO, "out_of_scope"} and head in {"yes", "no"}:
        issues.append(f"'{head.title()}' opens the answer to a {kind} question")
    said = parse.read(text)
    if kind in {FIRST, LAST, EVERY} and said.points and not said.clocks:
        issues.append("a 'when' answer with stream seconds but no wall-clock time")
    for clock, t in parse.clock_pairs(text):
        if asked.bases and not any(_same_clock(clock, base + t) for base in asked.bases.values()):
            issues.append(f"wall clock {clock} is not stream second t={t:g}s")
    if kind == HOW_MANY and not re.search(_SAYS_APPEARANCES, text, re.IGNORECASE):
        issues.append("a 'how many' answer that does not say it counts separate appearances")
    return issues


def _same_clock(clock: str, unix_s: float) -> bool:
    """Whether HH:MM:SS names the wall-clock second `unix_s` (UTC or this machine's zone), within rounding."""
    h, m, sec = (int(x) for x in clock.split(":"))
    said = h * 3600 + m * 60 + sec
    for moment in (datetime.fromtimestamp(unix_s, UTC), datetime.fromtimestamp(unix_s)):
        true = moment.hour * 3600 + moment.minute * 60 + moment.second + moment.microsecond / 1e6
        if min(abs(said - true), 86400 - abs(said - true)) <= CLOCK_SLACK_S:
            return True
    return False


def _evidence_off_truth(asked: Asked, seen: dict[str, list[Interval]], tol: float) -> list[str]:
    """Evidence spans at times the subject was not on that camera (beyond the tolerance), as notes."""
    notes = []
    for ev in asked.answer.get("evidence", []):
        cam, a, b = ev.get("camera"), float(ev["from"]), float(ev["to"])
        spans = seen.get(str(cam), [])
        if not any(a <= y + tol and b >= x - tol for x, y in spans):
            notes.append(f"evidence {cam} {a:.0f}-{b:.0f}s when it was not there")
    return notes


def judge(asked: Asked, cameras: dict[str, Camera]) -> Verdict:
    """Score one asked question."""
    q = asked.question
    text = str(asked.answer.get("answer", ""))
    got = text if asked.status == 200 else f"HTTP {asked.status}: {asked.answer}"
    bad = out_of_range(asked) if asked.status == 200 else []
    if asked.status != 200:
        return Verdict(False, q.kind != "out_of_scope", "an answer", got, "the request failed", bad)
    if q.kind == "out_of_scope":
        ok = parse.verdict(text) == "refusal"
        return Verdict(ok, False, "an honest refusal", got, "" if ok else "not a refusal", bad)
    kind = q.scored_as
    fmt = _format(asked, kind)
    if kind == WHAT:
        cam = cameras[q.cameras[0]]
        ok, expected = _what(asked, cam, cam.sample_s + 1.0)
        return Verdict(ok, True, expected, got, "", bad, fmt)
    assert q.subject is not None
    answerable, why = _answerable(asked, cameras, q.subject)
    present = _present(asked, cameras, q.subject)
    edge = [c for c, s in present.items() if s and length(s) < MIN_PRESENT_S]
    if edge:
        return Verdict(
            None, False, "too close to the range's edge", got, f"{edge}: under {MIN_PRESENT_S}s", bad
        )
    seen = {c: s for c, s in present.items() if s}
    cam_id = next(iter(seen), q.cameras[0])
    tol = _tol(cameras[cam_id], q.subject)
    judged = [_judge(k, text, seen.get(cam_id, []), tol) for k in (kind, *q.also)]
    ok, expected = any(j[0] for j in judged), judged[0][1]
    if q.also:
        expected += f" (or {' / '.join(j[1] for j in judged[1:])})"
    notes = _evidence_off_truth(asked, seen, tol)
    notes += [f"snapshot {url} answers {code}" for url, code in asked.links.items() if code != 200]
    ok = ok and not notes
    if q.after and q.after != q.subject:
        s, before = SUBJECTS[q.subject], SUBJECTS[q.after]
        if parse.mentions(text, before.words + before.classes) and not parse.mentions(
            text, s.words + s.classes
        ):
            ok = False
            notes.append(f"still about the {q.after}")
    if len(q.cameras) > 1:
        evidence_cams = {e.get("camera") for e in asked.answer.get("evidence", [])}
        if not evidence_cams <= set(seen):
            ok = False
            notes.append(
                f"evidence from {sorted(str(c) for c in evidence_cams - set(seen))}, which never saw it"
            )
        if seen and not all(parse.mentions(text, (c,)) for c in seen):
            ok = False
            notes.append(f"does not name camera {sorted(seen)}")
        expected += f", naming camera {sorted(seen)}" if seen else ""
    return Verdict(ok, answerable, expected, got, "; ".join(notes) or why, bad, fmt)
