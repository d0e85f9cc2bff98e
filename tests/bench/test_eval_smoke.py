"""`scissor bench eval --quick` runs end to end and writes sane numbers, a report and plots (CI smoke
test)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench.eval import main, write
from bench.eval.doc import keep_blocks
from bench.eval.quality import INCREMENTAL, METHODS, SCC
from bench.eval.report import verdict
from bench.models import flops_eq9


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("eval")
    assert main(["--quick", "--out-dir", str(out)]) == 0
    return out, json.loads((out / "eval.json").read_text())


def test_the_quick_run_writes_the_report_the_json_and_both_plots(quick: tuple[Path, dict[str, Any]]) -> None:
    out, _ = quick
    for name in ("benchmarks.md", "eval.json", "eval_quality.png", "eval_speed.png"):
        assert (out / name).stat().st_size > 1000, name
    assert (out / "eval_quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "benchmarks.md").read_text()
    assert "## Verdicts" in text and "eval_quality.png" in text and "Represent" in text


def test_every_method_is_scored_at_every_ratio_on_every_clip(quick: tuple[Path, dict[str, Any]]) -> None:
    _, result = quick
    rows = result["quality"]
    clips = {c["name"] for c in result["meta"]["clips"]}
    assert {(r["clip"], r["method"], r["target"]) for r in rows} == {
        (c, m, t) for c in clips for m in METHODS for t in (0.35, 0.10)
    }


def test_quality_numbers_are_in_range_and_no_method_exceeds_its_budget(
    quick: tuple[Path, dict[str, Any]],
) -> None:
    _, result = quick
    for r in result["quality"]:
        assert 1 <= r["kept"] <= r["budget"], r
        assert -1.0 <= r["coverage"] <= 1.0
        for key in ("label_recall5", "temporal_recall", "temporal_iou"):
            assert 0.0 <= r[key] <= 1.0, (key, r)
        if r["method"] not in (SCC, INCREMENTAL):
            assert r["kept"] == r["budget"]  # peers spend exactly the budget


def test_keeping_more_tokens_never_lowers_scc_coverage(quick: tuple[Path, dict[str, Any]]) -> None:
    _, result = quick
    scc = {(r["clip"], r["target"]): r["coverage"] for r in result["quality"] if r["method"] == SCC}
    for clip in {c for c, _ in scc}:
        assert scc[(clip, 0.35)] >= scc[(clip, 0.10)]


def test_scc_keeps_most_of_the_token_similarity_at_35_percent(quick: tuple[Path, dict[str, Any]]) -> None:
    _, result = quick
    for r in result["quality"]:
        if r["method"] in (SCC, INCREMENTAL) and r["target"] == 0.35:
            assert r["coverage"] > 0.8 and r["label_recall5"] >= 0.6, r


def test_speed_section_has_timings_cameras_and_the_papers_flops(quick: tuple[Path, dict[str, Any]]) -> None:
    _, result = quick
    speed = result["speed"]
    assert all(r["ours_s"] > 0 and r["reference_s"] > 0 for r in speed["compress"])
    assert [r["frames"] for r in speed["memory"]] == [8, 16]
    assert speed["cameras"]["cameras_per_core"] > 0
    full_7b = next(r for r in speed["flops"] if r["model"] == "LLaVA-OV-7B" and r["retention"] == 1.0)
    assert math.isclose(full_7b["tflops"], 41.42, abs_tol=0.01)


def test_eq9_matches_the_numbers_paper_md_checks() -> None:
    assert math.isclose(flops_eq9(6272, 28, 3584, 18944) / 1e12, 41.42, abs_tol=0.01)
    assert math.isclose(flops_eq9(627, 28, 3584, 18944) / 1e12, 3.90, abs_tol=0.01)
    assert math.isclose(flops_eq9(6272, 24, 896, 4864) / 1e12, 3.54, abs_tol=0.01)


def test_a_gap_inside_the_clip_to_clip_noise_is_not_called_a_loss() -> None:
    assert verdict([0.80, 0.70, 0.90], [0.81, 0.69, 0.92])[0] == "within noise"
    assert verdict([0.70, 0.71, 0.72], [0.80, 0.81, 0.82])[0] == "behind"
    assert verdict([0.90, 0.91, 0.92], [0.80, 0.81, 0.82])[0] == "clearly best"


NEEDLES = (
    "<!-- needles:begin: written by `scissor bench needles`, replaced on every run -->\n"
    "## Needles\n\n| a | b |\n|---|---|\n| 1 | 2 |\n<!-- needles:end -->"
)
QA = "<!-- qa:begin -->\n## Questions\n\nsome text\n<!-- qa:end -->"


def test_rewriting_the_page_keeps_every_marker_block_other_commands_wrote(
    quick: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    _, result = quick
    page = tmp_path / "benchmarks.md"
    page.write_text(f"# an older eval page\n\nold tables\n\n{NEEDLES}\n\nmore old text\n\n{QA}\n")
    write(result, tmp_path)
    text = page.read_text()
    assert "old tables" not in text and "more old text" not in text  # the eval part is replaced
    assert "## Verdicts" in text
    assert text.index(NEEDLES) < text.index(QA)  # both blocks, byte for byte, in their order
    write(result, tmp_path)  # a second run neither loses nor doubles them
    again = page.read_text()
    assert again == text and again.count("<!-- needles:begin") == 1 and again.count("<!-- qa:begin") == 1


def test_keep_blocks_keeps_the_new_pages_own_block_and_ignores_unclosed_markers() -> None:
    new = "# page\n\n<!-- qa:begin -->\nnew answers\n<!-- qa:end -->\n"
    old = f"{QA}\n<!-- broken:begin -->\nno end marker\n{NEEDLES}\n"
    out = keep_blocks(old, new)
    assert "new answers" in out and "some text" not in out  # the new page's block wins
    assert out.endswith(NEEDLES + "\n") and "no end marker" not in out
    assert keep_blocks("no blocks here", new) == new
