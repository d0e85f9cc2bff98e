"""Report half of `scissor bench eval`: verdicts, docs/benchmarks.md and the PNG plots (matplotlib Agg).

Benchmark-only; never imported by the product, never measures anything itself (it only formats results).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from bench.eval.quality import INCREMENTAL, SCC

MEASURES = {
    "coverage": "coverage",
    "label_recall5": "label recall@5",
    "temporal_recall": "temporal recall",
    "temporal_iou": "temporal IoU",
}
TIE = 0.005  # absolute gap always counted as noise


def _by(rows: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    out: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def verdict(ours: list[float], rival: list[float]) -> tuple[str, float, float]:
    """Paired per-clip comparison with the best other method: (verdict, mean gap, 2 x its standard error).

    "clearly best": ahead by more than the noise (2 SE, at least 0.005); "best": ahead by less; "within
    noise": behind by no more than the noise; else "behind".
    """
    gaps = [a - b for a, b in zip(ours, rival, strict=True)]
    gap = statistics.fmean(gaps)
    noise = max(2 * statistics.stdev(gaps) / math.sqrt(len(gaps)) if len(gaps) > 1 else 0.0, TIE)
    if gap > noise:
        return "clearly best", gap, noise
    if gap >= 0:
        return "best", gap, noise
    return ("within noise" if -gap <= noise else "behind"), gap, noise


def summarise(quality: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per retention and measure: each method's mean over clips, the best peer, SCC's `verdict` against it."""
    out = []
    for (target,), rows in sorted(_by(quality, "target").items(), reverse=True):
        per_method = _by(rows, "method")
        clips = sorted({r["clip"] for r in rows})
        value = {m: {r["clip"]: r for r in rs} for (m,), rs in per_method.items()}
        for key in MEASURES:
            means = {m: statistics.fmean(v[c][key] for c in clips) for m, v in value.items()}
            row: dict[str, Any] = {
                "target": target,
                "measure": key,
                "means": means,
                "retention": {
                    m: statistics.fmean(v[c]["retention"] for c in clips) for m, v in value.items()
                },
            }
            for ours in (SCC, INCREMENTAL):
                others = {m: s for m, s in means.items() if m not in (SCC, INCREMENTAL)}
                rival = max(others, key=lambda m: others[m])
                series = [value[ours][c][key] for c in clips]
                rival_series = [value[rival][c][key] for c in clips]
                verdict_, gap, noise = verdict(series, rival_series)
                row[ours] = {"verdict": verdict_, "best_peer": rival, "gap": gap, "noise": noise}
            out.append(row)
    return out


def headline(result: dict[str, Any]) -> str:
    """The coverage and label-recall table (mean over clips) as printed text."""
    summary = [s for s in result["summary"] if s["measure"] in ("coverage", "label_recall5")]
    methods = list(summary[0]["means"]) if summary else []
    head = f"{'measure':<15}{'ret%':>5}" + "".join(f"{m:>16}" for m in methods)
    lines = [head, "-" * len(head)]
    for s in summary:
        best = max(s["means"].values())
        cells = "".join(f"{('*' if v == best else '') + format(v, '.3f'):>16}" for v in s["means"].values())
        lines.append(f"{MEASURES[s['measure']]:<15}{100 * s['target']:>5.0f}{cells}")
    return "\n".join(lines)


def plot_quality(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    for ax, key in zip(axes, ("coverage", "label_recall5", "temporal_iou"), strict=True):
        rows = sorted((s for s in result["summary"] if s["measure"] == key), key=lambda s: s["target"])
        for method in rows[0]["means"]:
            style = (
                {"lw": 3}
                if method in (SCC, INCREMENTAL)
                else {"lw": 1.2, "ls": "--" if "+" in method else "-"}
            )
            ax.plot(
                [100 * s["retention"][method] for s in rows],
                [s["means"][method] for s in rows],
                marker="o",
                label=method,
                **style,
            )
        ax.set(xscale="log", xlabel="retention % (achieved, log)", ylabel=MEASURES[key], title=MEASURES[key])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        "Quality vs retention, mean over clips (embedded EfficientNet-Lite0 tokens, 32 frames x 196)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_speed(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    speed = result["speed"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    tokens = [r["tokens"] for r in speed["compress"]]
    left.plot(
        tokens, [r["ours_s"] for r in speed["compress"]], marker="o", lw=3, label="compress_video (ours)"
    )
    left.plot(
        tokens, [r["reference_s"] for r in speed["compress"]], marker="s", label="reference re-expression"
    )
    left.set(
        xscale="log",
        yscale="log",
        xlabel="input tokens F x N",
        ylabel="seconds (median)",
        title="Compression time vs size",
    )
    left.legend()
    left.grid(alpha=0.3, which="both")
    mem = speed["memory"]
    right.plot([r["frames"] for r in mem], [r["update_ms_median"] for r in mem], marker="o", label="median")
    right.plot([r["frames"] for r in mem], [r["update_ms_p90"] for r in mem], marker="^", label="p90")
    right.set(
        xscale="log",
        xlabel="stream length (frames)",
        ylabel="ms per add_frame",
        title="TokenMemory update time vs stream length",
        ylim=(0, None),
    )
    right.legend()
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
