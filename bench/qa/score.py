"""Scoring for `scissor bench qa`: each answer against the ground truth of the cameras it asked, graded right,
partial or wrong by the rules below (deterministic, the same for every answerer), plus the checks every answer
gets: times named inside the asked range, evidence (span and snapshot) inside it, the issue's English rules.

Rules (also in docs/benchmarks.md's qa section). TOL = one sample spacing + 1 s + the label's edge slack.
- yes/no: right when the Yes/No matches the truth inside the asked range; anything else (a refusal too:
  the model can see the subject) is wrong.
- when first / last: right when the time named is within TOL of the truth and the answer says first/last;
  partial when within 3 TOL, or right but without the word; wrong when it says not seen, refuses, or is
  further off. About something absent, right only when it says it was not seen.
- every appearance: right when every true span is matched (both ends within TOL) and no extra one is named;
  partial when at least half are matched.
- how long: right within TOL + 1 s per span of the true time on screen, partial within twice that.
- how many (times): right on the exact number of separate appearances, partial when one off.
- what in range: right when it names every subject on camera >= 5 s of the range (its words or ImageNet
  classes) and no seeable subject that was not there; partial when it names some of them (an ancestor such as
  "an animal" counts here) and nothing false; wrong otherwise. With nothing nameable on camera >= 5 s, right
  when it names nothing false.
- attributes (colour, counting individuals, actions) and out of scope: right on an honest refusal; partial
  on a plain "no" about something never there; wrong otherwise (a "did not see" about a subject on camera
  is wrong).
- people: without a people detector the right answer is an honest refusal; with one (the service resolves
  "person"), the presence, first time and face count must be right, graded as above.
- follow-ups and multi-camera: graded as the question they are, then wrong if the follow-up stays on the
  previous subject, or a multi-camera answer rests on a camera that never saw it or leaves one out.
Evidence at times the subject was not on camera turns right into partial. A subject present under
MIN_PRESENT_S inside the range is too close to call: graded None and left out of every share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.qa import parse
from bench.qa.dataset import SUBJECTS, Interval, Timeline, length, names_of, slack, truth_spans
from bench.qa.english import format_issues
from bench.qa.questions import COUNT_AT, EVERY, FIRST, HOW_LONG, HOW_MANY, LAST, REFUSE, WHAT, YES_NO

ROUNDING_S = 0.5  # answers print whole seconds
SNAPSHOT_SLACK_S = 0.05  # a keyframe's stream second is looked up within this
MIN_PRESENT_S = 2.0  # less on camera inside the range than this: too close to call, not scored
EXPECTED_IN_RANGE_S = 5.0  # a what-in-range answer must name a subject on camera this long inside the range
RIGHT, PARTIAL, WRONG = "right", "partial", "wrong"


@dataclass(frozen=True)
class Camera:
    """One camera's truth as the bench ran it.

    Attributes:
        timeline: what was on camera when (video seconds).
        offset: stream second of the file's frame 0 (measured: the memory's earliest entry).
        sample_s: seconds between sampled frames.
        seeable: per concept asked, the classifier probe's verdict (`detect.can_see`), for the answerable
            subset only: never used to grade.
        split: "tuning" or "held_out".
    """

    timeline: Timeline
    offset: float
    sample_s: float
    seeable: dict[str, dict[str, Any]]
    split: str = "tuning"


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
        snapshot_s: every fetched snapshot URL and the stream second of its frame (X-Stream-Seconds).
        latency_s: seconds the HTTP question took, as the client saw it.
    """

    question: Any
    status: int
    answer: dict[str, Any]
    ranges: dict[str, Interval]
    bases: dict[str, float] = field(default_factory=dict)
    links: dict[str, int] = field(default_factory=dict)
    snapshot_s: dict[str, float] = field(default_factory=dict)
    latency_s: float = 0.0


@dataclass
class Verdict:
    """The grade of one answer, and what every answer is checked for."""

    grade: str | None  # RIGHT / PARTIAL / WRONG; None: too close to the range's edge to call
    answerable: bool  # in the answerable subset (reported beside the totals, never instead)
    expected: str
    got: str
    why: str = ""
    out_of_range: list[str] = field(default_factory=list)  # answer-text times outside the asked range
    evidence: int = 0  # evidence items
    evidence_outside: list[str] = field(default_factory=list)  # items whose span or snapshot lies outside
    format_issues: list[str] = field(default_factory=list)
    named: list[tuple[str, bool]] = field(default_factory=list)  # what-in-range: (subject >= 5 s, named)


def out_of_range(asked: Asked) -> list[str]:
    """Every time the answer's text names outside the range asked (t=... values); negative times always."""
    bad = []
    for t in parse.read(str(asked.answer.get("answer", ""))).points:
        if t < 0 or not any(lo - ROUNDING_S <= t <= hi + ROUNDING_S for lo, hi in asked.ranges.values()):
            bad.append(f"text names t={t:g}s")
    return bad


def evidence_outside(asked: Asked) -> list[str]:
    """Every evidence item whose span, or whose snapshot's frame time, lies outside the asked range of its
    camera (or that comes from a camera not asked)."""
    bad = []
    for ev in asked.answer.get("evidence", []):
        cam, a, b = ev.get("camera"), float(ev["from"]), float(ev["to"])
        if cam not in asked.ranges:
            bad.append(f"evidence from camera {cam!r}, not asked")
            continue
        lo, hi = asked.ranges[cam]
        if a < 0 or a < lo - 1e-3 or b > hi + 1e-3 or b < a:
            bad.append(f"evidence {cam} {a:.1f}-{b:.1f}s outside {lo:.1f}-{hi:.1f}s")
        url = ev.get("snapshot_url")
        t = asked.snapshot_s.get(url) if url else None
        if t is not None and not lo - SNAPSHOT_SLACK_S <= t <= hi + SNAPSHOT_SLACK_S:
            bad.append(f"snapshot of {cam} at t={t:.2f}s outside {lo:.1f}-{hi:.1f}s")
    return bad


def _fmt(spans: Sequence[Interval]) -> str:
    return ", ".join(f"{a:.0f}-{b:.0f}s" for a, b in spans) or "none"


def _near(said: float, want: float, tol: float, word: bool) -> str:
    if abs(said - want) <= tol:
        return RIGHT if word else PARTIAL
    return PARTIAL if abs(said - want) <= 3 * tol else WRONG


def grade(kind: str, text: str, spans: list[Interval], tol: float) -> tuple[str, str]:
    """(grade, expected) of an answer about one camera whose true spans inside the range are `spans`."""
    said = parse.read(text)
    if kind == YES_NO:
        yes_no = "yes" if spans else "no"
        return (RIGHT if said.verdict == yes_no else WRONG), yes_no
    if not spans:  # a when/how question about something that was not there: it must say so
        return (RIGHT if parse.says_not_seen(text) else WRONG), "not seen"
    low = text.lower()
    if said.verdict == "no" or (said.verdict == "refusal" and not said.points):
        return WRONG, f"seen at {_fmt(spans)}"
    if kind in (FIRST, LAST):
        want = spans[0][0] if kind == FIRST else spans[-1][1]
        words = ("first", "earliest") if kind == FIRST else ("last", "latest")
        if not said.points:
            return WRONG, f"{kind} at t={want:.0f}s"
        named = min(said.points) if kind == FIRST else max(said.points)
        return _near(
            named, want, tol, any(w in low for w in words)
        ), f"{words[0]} at t={want:.0f}s (+-{tol:.0f}s)"
    if kind == EVERY:
        got = [s for s in said.spans if s[1] > s[0]]
        hit = sum(any(abs(a - x) <= tol and abs(b - y) <= tol for x, y in got) for a, b in spans)
        ok = (
            RIGHT
            if hit == len(spans) and len(got) == len(spans)
            else PARTIAL
            if 2 * hit >= len(spans)
            else WRONG
        )
        return ok, f"{len(spans)} spans: {_fmt(spans)} (+-{tol:.0f}s)"
    if kind == HOW_LONG:
        total, stated = length(spans), parse.duration(text)
        margin = tol + len(spans) * 1.0
        off = abs(stated - total) if stated is not None else float("inf")
        ok = RIGHT if off <= margin else PARTIAL if off <= 2 * margin else WRONG
        return ok, f"about {total:.0f}s on screen (+-{margin:.0f}s) in {_fmt(spans)}"
    if kind == HOW_MANY:
        n = parse.count(text)
        ok = RIGHT if n == len(spans) else PARTIAL if n is not None and abs(n - len(spans)) == 1 else WRONG
        return ok, f"{len(spans)} separate appearance(s): {_fmt(spans)}"
    raise ValueError(f"no grade for {kind!r}")


def _what(asked: Asked, cam: Camera, tol: float) -> tuple[str, str, list[tuple[str, bool]]]:
    """A what-in-range answer: names what was on camera long enough inside the range, nothing that was not."""
    text = str(asked.answer.get("answer", ""))
    lo, hi = asked.ranges[asked.question.cameras[0]]
    want, never = [], []
    for name, s in SUBJECTS.items():
        if not s.seeable:
            continue
        inside = length(truth_spans(cam.timeline, name, cam.offset, lo, hi))
        near = length(truth_spans(cam.timeline, name, cam.offset, lo - tol, hi + tol))
        if inside >= EXPECTED_IN_RANGE_S:
            want.append(name)
        elif near == 0:
            never.append(name)
    named = [(n, parse.mentions(text, names_of(n))) for n in want]
    loosely = [n for n in want if parse.mentions(text, names_of(n) + SUBJECTS[n].kinds)]
    false = [n for n in never if parse.mentions(text, names_of(n))]
    if false:
        g = WRONG if not loosely else PARTIAL
    elif all(ok for _, ok in named):
        g = RIGHT
    else:
        g = PARTIAL if loosely else WRONG
    expected = f"names {want or 'nothing in particular'}, nothing not there"
    missing = [n for n, ok in named if not ok]
    expected += (f"; missing {missing}" if missing else "") + (
        f"; names {false} (not there)" if false else ""
    )
    return g, expected, named


def _refusal(asked: Asked, cameras: dict[str, Camera]) -> tuple[str, str]:
    """Attributes and out-of-scope questions: an honest refusal; a plain no only about something absent."""
    text = str(asked.answer.get("answer", ""))
    said = parse.verdict(text)
    if said == "refusal":
        return RIGHT, "an honest refusal"
    subject = asked.question.subject
    there = subject is not None and any(cameras[c].timeline.of(subject) for c in asked.question.cameras)
    if said == "no" and not there:
        return PARTIAL, "an honest refusal (a plain 'no' about something never there: partial)"
    return WRONG, "an honest refusal"


def _people(asked: Asked, cameras: dict[str, Camera], detector: bool, tol: float) -> tuple[str, str] | None:
    """People questions; None to grade them as their check with the truth (a detector is installed)."""
    q = asked.question
    text = str(asked.answer.get("answer", ""))
    if not detector:
        ok = parse.verdict(text) == "refusal"
        return (RIGHT if ok else WRONG), "an honest refusal: no people detector is installed"
    if q.scored_as == COUNT_AT:
        cam = cameras[q.cameras[0]]
        want = cam.timeline.count_at(q.subject, float(q.at_s))
        return (RIGHT if parse.count(text) == want else WRONG), f"{want} {q.subject}(s) at t={q.at_s:g}s"
    return None


def judge(asked: Asked, cameras: dict[str, Camera], *, people_detector: bool = False) -> Verdict:
    """Grade one asked question."""
    q = asked.question
    text = str(asked.answer.get("answer", ""))
    got = text if asked.status == 200 else f"HTTP {asked.status}: {asked.answer}"
    if asked.status != 200:
        return Verdict(WRONG, True, "an answer", got, "the request failed")
    v = Verdict(None, True, "", got, out_of_range=out_of_range(asked), evidence=len(asked.answer["evidence"]))
    v.evidence_outside = evidence_outside(asked)
    v.format_issues = format_issues(asked, q.scored_as, text)
    first = cameras[q.cameras[0]]
    tol0 = first.sample_s + 1.0
    if q.scored_as == REFUSE:
        v.grade, v.expected = _refusal(asked, cameras)
        return v
    if q.kind == "people":
        done = _people(asked, cameras, people_detector, tol0 + slack(first.timeline, str(q.subject)))
        if done is not None:
            v.grade, v.expected = done
            return v
    if q.scored_as == WHAT:
        v.grade, v.expected, v.named = _what(asked, first, tol0)
        v.answerable = all(first.seeable.get(n, {}).get("answerable", False) for n, _ in v.named)
        return v
    return _about(asked, cameras, v)


def _about(asked: Asked, cameras: dict[str, Camera], v: Verdict) -> Verdict:
    """A question about one concept: its truth spans per camera, graded as its check (and the alternatives
    an elliptical follow-up allows), then the follow-up and multi-camera checks."""
    q, text = asked.question, str(asked.answer.get("answer", ""))
    assert q.subject is not None
    views = [cameras[c].seeable.get(q.subject, {"answerable": False}) for c in q.cameras]
    v.answerable = all(x["answerable"] for x in views)
    present = {
        c: truth_spans(cameras[c].timeline, q.subject, cameras[c].offset, *asked.ranges[c]) for c in q.cameras
    }
    edge = [c for c, s in present.items() if s and length(s) < MIN_PRESENT_S]
    if edge:
        v.expected, v.why = "too close to the range's edge", f"{edge}: under {MIN_PRESENT_S}s"
        return v
    seen = {c: s for c, s in present.items() if s}
    cam_id = next(iter(seen), q.cameras[0])
    tol = cameras[cam_id].sample_s + 1.0 + slack(cameras[cam_id].timeline, q.subject)
    graded = [grade(k, text, seen.get(cam_id, []), tol) for k in (q.scored_as, *q.also)]
    order = {RIGHT: 0, PARTIAL: 1, WRONG: 2}
    v.grade = min((g for g, _ in graded), key=order.__getitem__)
    v.expected = graded[0][1] + (f" (or {' / '.join(e for _, e in graded[1:])})" if q.also else "")
    notes = _off_truth(asked, seen, tol)
    notes += [f"snapshot {url} answers {code}" for url, code in asked.links.items() if code != 200]
    if notes and v.grade == RIGHT:
        v.grade = PARTIAL
    if q.after and q.after != q.subject:
        now, before = names_of(q.subject), names_of(q.after)
        if parse.mentions(text, before) and not parse.mentions(text, now):
            v.grade = WRONG
            notes.append(f"still about the {q.after}")
    if len(q.cameras) > 1:
        evidence_cams = {e.get("camera") for e in asked.answer.get("evidence", [])}
        if not evidence_cams <= set(seen):
            v.grade = WRONG
            notes.append(
                f"evidence from {sorted(str(c) for c in evidence_cams - set(seen))}, which never saw it"
            )
        if seen and q.scored_as != YES_NO and not all(parse.mentions(text, (c,)) for c in seen):
            v.grade = WRONG
            notes.append(f"does not name camera {sorted(seen)}")
        v.expected += f", naming camera {sorted(seen)}" if seen else ""
    v.why = "; ".join(notes)
    return v


def _off_truth(asked: Asked, seen: dict[str, list[Interval]], tol: float) -> list[str]:
    """Evidence spans at times the subject was not on that camera (beyond the tolerance), as notes."""
    notes = []
    for ev in asked.answer.get("evidence", []):
        cam, a, b = ev.get("camera"), float(ev["from"]), float(ev["to"])
        if not any(a <= y + tol and b >= x - tol for x, y in seen.get(str(cam), [])):
            notes.append(f"evidence {cam} {a:.0f}-{b:.0f}s when it was not there")
    return notes
