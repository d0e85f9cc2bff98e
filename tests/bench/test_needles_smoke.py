"""`scissor bench needles --quick` end to end: every method at every budget, sane recalls, sound truth."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench.needles import QUICK_CAPACITIES, QUICK_MINUTES, QUICK_PX, main
from bench.needles.report import BEGIN, END, write_section
from bench.needles.score import cover, iou
from bench.needles.stream import build_recipe

METHODS = {"memory", "fifo", "uniform", "moviechat", "tome"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("needles")
    argv = [
        "--quick",
        "--out",
        str(out / "needles.json"),
        "--docs-dir",
        str(out),
        "--cache-dir",
        str(out / "c"),
    ]
    assert main(argv) == 0
    return out, json.loads((out / "needles.json").read_text())


def test_every_method_is_scored_at_every_budget(quick: tuple[Path, dict[str, Any]]) -> None:
    _, result = quick
    assert {(r["method"], r["capacity"]) for r in result["results"]} == {
        (m, c) for m in METHODS for c in QUICK_CAPACITIES
    }
    for r in result["results"]:
        assert 1 <= r["kept"] <= r["capacity"], r
        assert len(r["needles"]) == len(result["needles"])


def test_recall_and_iou_values_are_in_range(quick: tuple[Path, dict[str, Any]]) -> None:
    _, result = quick
    for r in result["results"]:
        shown = r["as_shown"]
        for value in (r["recall"], r["mean_iou"], r["union_recall"], r["label_found"], *shown.values()):
            if not isinstance(value, list):
                assert 0.0 <= value <= 1.0, r
        assert sum(r["needles_by_age"]) == len(result["needles"])
        for count, value in zip(r["needles_by_age"], r["recall_by_age"], strict=True):
            assert (value is None) == (count == 0)
            assert value is None or 0.0 <= value <= 1.0
        for n in r["needles"]:
            assert 0.0 <= n["best_iou"] <= 1.0 and 0.0 <= n["union_iou"] <= 1.0
            assert n["candidates"] > 0 or n["best_iou"] == 0.0
            assert 0.0 <= n["best_iou_shown"] <= 1.0
            assert n["best_overlap_s"] <= n["best_cover_s"] + 1e-9


def test_the_ground_truth_is_consistent(quick: tuple[Path, dict[str, Any]]) -> None:
    _, result = quick
    meta = result["meta"]
    recipe = build_recipe(QUICK_MINUTES, size=QUICK_PX)
    assert meta["recipe"] == recipe.key() and meta["frames"] == recipe.frames == round(QUICK_MINUTES * 60)
    assert any(len(n["truth"]) > 1 for n in result["needles"])  # some needle appears twice
    end = recipe.frames / recipe.fps
    for n in result["needles"]:
        truth = [tuple(s) for s in n["truth"]]
        assert truth == list(recipe.truth(n["photo"]))
        assert iou(truth, truth, 1 / recipe.fps) == 1.0
        assert len(cover(truth, 1 / recipe.fps)) == len(truth)  # sorted and disjoint
        assert all(0 <= a <= b < end and 10 <= b - a + 1 <= 30 for a, b in truth)
        assert math.isclose(n["age_min"], (end - truth[0][0]) / 60)
        assert 0.0 <= n["frames_with_label"] <= 1.0 and 0.0 <= n["tokens_with_label"] <= 1.0


def test_fifo_cannot_recall_a_needle_older_than_its_span(quick: tuple[Path, dict[str, Any]]) -> None:
    _, result = quick
    n_tokens, frames = result["meta"]["tokens_per_frame"], result["meta"]["frames"]
    truth = {n["photo"]: n["truth"] for n in result["needles"]}
    checked = 0
    for r in result["results"]:
        if r["method"] != "fifo":
            continue
        oldest_kept = frames - math.ceil(r["capacity"] / n_tokens)  # frame index = stream second at 1 fps
        for n in r["needles"]:
            if truth[n["photo"]][-1][1] < oldest_kept:
                assert n["best_iou"] == 0.0 and n["union_iou"] == 0.0, (r["capacity"], n)
                checked += 1
    assert checked > 0


def test_the_plot_and_the_docs_section_are_written(quick: tuple[Path, dict[str, Any]]) -> None:
    out, _ = quick
    assert (out / "needles.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "benchmarks.md").read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1 and "needles.png" in text
    assert "| tokens | method |" in text


def test_the_docs_section_replaces_only_itself(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Other benchmarks\n\nkept\n")
    write_section(doc, f"{BEGIN}\nfirst\n{END}")
    write_section(doc, f"{BEGIN}\nsecond\n{END}")
    text = doc.read_text()
    assert text.startswith("# Other benchmarks\n\nkept\n") and "second" in text and "first" not in text
    assert text.count(BEGIN) == 1


def test_interval_iou() -> None:
    assert iou([(0.0, 9.0)], [(10.0, 19.0)], 1.0) == 0.0
    assert math.isclose(iou([(0.0, 9.0)], [(5.0, 14.0)], 1.0), 5 / 15)
    assert math.isclose(iou([(0.0, 4.0), (10.0, 14.0)], [(0.0, 14.0)], 1.0), 10 / 15)
    assert iou([(3.0, 3.0)], [(3.0, 3.0)], 1.0) == 1.0  # one frame covers one frame period


def test_the_recipe_is_deterministic_and_seeded() -> None:
    assert build_recipe(60).key() == build_recipe(60).key()
    assert build_recipe(60, seed=1).key() != build_recipe(60).key()
    hour = build_recipe(60)
    assert hour.frames == 3600 and len(hour.photos()) >= 12
    assert sum(s.frames for s in hour.background) == hour.frames
