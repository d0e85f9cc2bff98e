"""Tables of `scissor bench qa`: per kind questions / right / %, the goals, the failures; its block of
docs/benchmarks.md (between the qa markers, the rest of the file untouched)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.doc_block import replace_block
from bench.qa.questions import KINDS
from bench.qa.score import Asked, Verdict

BEGIN = "<!-- qa:begin: written by `scissor bench qa`, replaced on every run -->"
END = "<!-- qa:end -->"
GOAL = 0.95


def _range_text(asked: Asked) -> str:
    r = asked.question.range
    if r.how == "all":
        return "whole memory"
    if r.how in {"since", "last"}:
        return f"{r.how} {r.a:g} s"
    return f"{r.how} {r.a:g}-{'now' if r.b is None else f'{r.b:g}'}"


def rows(asked: Sequence[Asked], verdicts: Sequence[Verdict]) -> list[dict[str, Any]]:
    """One record per question: what was asked, expected, got, right, and every check's findings."""
    return [
        {
            "kind": a.question.kind,
            "scored_as": a.question.scored_as,
            "question": a.question.text,
            "cameras": list(a.question.cameras),
            "range": _range_text(a),
            "ranges_s": {c: [round(x, 2) for x in r] for c, r in a.ranges.items()},
            "session": a.question.session,
            "subject": a.question.subject,
            "status": a.status,
            "answerable": v.answerable,
            "right": v.right,
            "expected": v.expected,
            "got": v.got,
            "why": v.why,
            "evidence": a.answer.get("evidence", []) if a.status == 200 else [],
            "out_of_range": v.out_of_range,
            "format_issues": v.format_issues,
        }
        for a, v in zip(asked, verdicts, strict=True)
    ]


def by_kind(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per kind: answerable questions and how many right; the questions beyond the model apart."""
    out = []
    for kind in KINDS:
        mine = [r for r in records if r["kind"] == kind]
        if not mine:
            continue
        counted = [r for r in mine if (r["answerable"] or kind == "out_of_scope") and r["right"] is not None]
        beyond = [r for r in mine if not r["answerable"] and kind != "out_of_scope"]
        right = sum(bool(r["right"]) for r in counted)
        out.append(
            {
                "kind": kind,
                "questions": len(counted),
                "right": right,
                "share": right / len(counted) if counted else None,
                "beyond_model": len(beyond),
                "beyond_model_right": sum(bool(r["right"]) for r in beyond),
                "out_of_range_answers": sum(bool(r["out_of_range"]) for r in mine),
            }
        )
    fmt = [r for r in records if r["status"] == 200 and r["kind"] != "out_of_scope"]
    out.append(
        {
            "kind": "english (every answer)",
            "questions": len(fmt),
            "right": sum(not r["format_issues"] for r in fmt),
            "share": sum(not r["format_issues"] for r in fmt) / len(fmt) if fmt else None,
            "beyond_model": 0,
            "beyond_model_right": 0,
            "out_of_range_answers": 0,
        }
    )
    return out


def goals(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Issue 16's three goals."""
    answerable = [r for r in records if r["answerable"] and r["right"] is not None]
    oos = [r for r in records if r["kind"] == "out_of_scope"]
    right = sum(bool(r["right"]) for r in answerable)
    share = right / len(answerable) if answerable else 0.0
    out_of_range = sum(bool(r["out_of_range"]) for r in records)
    return {
        "answerable_questions": len(answerable),
        "answerable_right": right,
        "answerable_share": share,
        "answerable_met": share >= GOAL,
        "out_of_scope_questions": len(oos),
        "out_of_scope_refused": sum(bool(r["right"]) for r in oos),
        "out_of_scope_met": all(r["right"] for r in oos),
        "answers_out_of_range": out_of_range,
        "out_of_range_met": out_of_range == 0,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def kind_table(kinds: Sequence[dict[str, Any]]) -> str:
    """Markdown: kind | questions | right | % | beyond the model (right) | answers with out-of-range times."""
    lines = [
        "| kind | questions | right | % | beyond the model (right) | answers naming times out of range |",
        "|---|---|---|---|---|---|",
    ]
    for k in kinds:
        beyond = f"{k['beyond_model']} ({k['beyond_model_right']})" if k["beyond_model"] else "-"
        lines.append(
            f"| {k['kind']} | {k['questions']} | {k['right']} | {_pct(k['share'])} | {beyond} | "
            f"{k['out_of_range_answers']} |"
        )
    return "\n".join(lines)


def _cell(text: str, limit: int = 220) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def failures(records: Sequence[dict[str, Any]], *, answerable_only: bool = True) -> str:
    """Markdown list of wrong answers: kind, question (camera, range), expected, got, why."""
    wrong = [
        r
        for r in records
        if (r["right"] is False and (r["answerable"] or r["kind"] == "out_of_scope" or not answerable_only))
        or r["out_of_range"]
    ]
    if not wrong:
        return "None."
    lines = ["| kind | question (camera, range) | expected | got | why |", "|---|---|---|---|---|"]
    for r in wrong:
        why = "; ".join([*([r["why"]] if r["right"] is False and r["why"] else []), *r["out_of_range"]])
        lines.append(
            f"| {r['kind']} | {_cell(r['question'])} ({', '.join(r['cameras'])}; {r['range']}) | "
            f"{_cell(r['expected'])} | {_cell(r['got'])} | {_cell(why)} |"
        )
    return "\n".join(lines)


def beyond(records: Sequence[dict[str, Any]]) -> str:
    """Markdown list of the questions the classifier cannot answer (not counted), right or not."""
    rows_ = [r for r in records if not r["answerable"] and r["kind"] != "out_of_scope"]
    if not rows_:
        return "None."
    lines = ["| kind | question (camera, range) | right | expected | got |", "|---|---|---|---|---|"]
    for r in rows_:
        lines.append(
            f"| {r['kind']} | {_cell(r['question'])} ({', '.join(r['cameras'])}; {r['range']}) | "
            f"{'yes' if r['right'] else 'no'} | {_cell(r['expected'])} | {_cell(r['got'])} |"
        )
    return "\n".join(lines)


def english_failures(records: Sequence[dict[str, Any]]) -> str:
    """Markdown list of answers breaking the issue's English rules."""
    bad = [r for r in records if r["format_issues"]]
    if not bad:
        return "None."
    return "\n".join(
        f"- {_cell(r['question'], 80)} -> {_cell(r['got'], 120)}: {'; '.join(r['format_issues'])}"
        for r in bad
    )


def section(result: dict[str, Any]) -> str:
    """The qa block of docs/benchmarks.md."""
    meta, g = result["meta"], result["goals"]
    emb, tiny = result["embedded"], result["tiny"]
    asked = {(c, r["subject"]) for r in emb["records"] for c in r["cameras"] if r["subject"]}
    seeable = "\n".join(
        f"- {cam}: "
        + "; ".join(
            f"{s}: {'can answer' if v['answerable'] else 'cannot'} ({v['why']}"
            + (f"; top-1 on those frames: {', '.join(v['seen_as'])}" if v.get("seen_as") else "")
            + ")"
            for s, v in subs.items()
            if (cam, s) in asked
        )
        for cam, subs in result["seeable"].items()
    )
    return "\n".join(
        [
            BEGIN,
            "## Questions answered right: `scissor bench qa`",
            "",
            f"Command: `{meta['command']}` ({meta['runtime_s'] / 60:.1f} min on {meta['cpus']} shared cores, "
            f"{meta['date']}). Cameras: {meta['cameras']}. Backend `embedded` (EfficientNet-Lite0, "
            f"{meta['image_px']} px), real service path (API -> file camera paced at its own rate -> "
            "encoder -> memory -> answerer), then the `tiny` backend for the LLM plumbing.",
            "",
            "A question counts towards the goal only when the classifier demonstrably sees its subject on "
            "the ground-truth frames (a subject class in the whole-frame top-5 on at least half of them; an "
            "absent subject in no frame's top-5); the others are run and listed as 'beyond the model'. "
            "Out-of-scope questions (people, concepts without an ImageNet class) must get an honest "
            "refusal.",
            "",
            "Ground truth, video seconds of each file (slideshows exact; the street hand-labelled from "
            "frames rendered every 5th source frame, with the label's uncertainty):",
            "",
            *(f"- {cam}: {line}" for cam, line in meta["timelines"].items()),
            "",
            "What the classifier sees (whole-frame top-5 on probed frames, one per second):",
            "",
            seeable,
            "",
            "At the end: "
            + "; ".join(
                f"{c} {v['frames_dropped']} frames dropped, {v['memory_entries']} memory entries"
                for c, v in emb["cameras_at_end"].items()
            )
            + ". Stream second of each file's first frame: "
            + ", ".join(f"{c} {v:.2f} s" for c, v in emb["offsets_s"].items())
            + ". Times are scored within one sample spacing + 1 s (+ label uncertainty).",
            "",
            "### Embedded backend",
            "",
            kind_table(emb["kinds"]),
            "",
            f"Goals: {g['answerable_right']}/{g['answerable_questions']} answerable right "
            f"({_pct(g['answerable_share'])}, goal >= {GOAL:.0%}: "
            f"{'met' if g['answerable_met'] else 'NOT met'}); "
            f"{g['out_of_scope_refused']}/{g['out_of_scope_questions']} out-of-scope questions refused "
            f"({'met' if g['out_of_scope_met'] else 'NOT met'}); {g['answers_out_of_range']} answers name a "
            f"time outside the asked range ({'met' if g['out_of_range_met'] else 'NOT met'}).",
            "",
            "#### Failures",
            "",
            failures(emb["records"]),
            "",
            "#### Beyond the model (run, not counted: the classifier does not see these subjects)",
            "",
            beyond(emb["records"]),
            "",
            "#### English rules broken",
            "",
            english_failures(emb["records"]),
            "",
            "### Tiny backend (LLM plumbing: answers are nonsense, they must be well-formed and in range)",
            "",
            f"{tiny['ok']}/{tiny['questions']} answered 200 with a well-formed Answer; "
            f"{tiny['out_of_range']} name a time outside the asked range; "
            f"errors: {tiny['errors'] or 'none'}.",
            END,
        ]
    )


def write_section(path: Path, text: str) -> None:
    """Replace the qa block of `path` (between the markers), or append it; the rest stays as it is."""
    replace_block(path, text, BEGIN, END)
