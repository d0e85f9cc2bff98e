"""ops/README.md's "Buckets" block is what `bench.buckets` renders from the committed `bench models` report,
and every measured figure lands inside its histogram's buckets (never in +Inf)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.outputs.metrics import ANSWER_BUCKETS_S, ENCODE_BUCKETS_S
from bench.buckets import (
    BEGIN,
    END,
    MODELS_JSON,
    OPS_README,
    answer_rows,
    current_block,
    encoder_rows,
    main,
    render,
)


def _report() -> dict[str, Any]:
    report: dict[str, Any] = json.loads(MODELS_JSON.read_text(encoding="utf-8"))
    return report


def test_the_ops_readme_block_is_generated_from_the_committed_models_report() -> None:
    assert current_block(OPS_README.read_text(encoding="utf-8")) == render(_report()), (
        "regenerate it: python -m bench.buckets"
    )


def test_the_block_names_the_embedded_encoders_measured_figure() -> None:
    report = _report()
    embedded = next(r for r in report["encoders"] if r["backend"] == "embedded" and r["batch"] == 1)
    assert f"| {embedded['ms_per_frame']:.1f} ms/frame |" in render(report)


def test_every_measured_figure_falls_inside_its_histogram_buckets() -> None:
    report = _report()
    for stage, seconds in encoder_rows(report):
        assert seconds <= ENCODE_BUCKETS_S[-1], stage
    for stage, seconds in answer_rows(report):
        assert seconds <= ANSWER_BUCKETS_S[-1], stage


def test_check_mode_fails_on_a_hand_edited_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{BEGIN}\n| stage | 3.45 s |\n{END}\noutro\n", encoding="utf-8")
    assert main(["--check", "--readme", str(readme)]) == 1
    assert main(["--readme", str(readme)]) == 0
    assert main(["--check", "--readme", str(readme)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("intro\n") and text.endswith("\noutro\n") and "3.45 s" not in text


def test_the_readme_models_table_agrees_with_the_committed_models_report() -> None:
    readme = (MODELS_JSON.parents[2] / "README.md").read_text(encoding="utf-8")
    for backend in ("embedded", "tiny"):
        rows = {r["batch"]: r["ms_per_frame"] for r in _report()["encoders"] if r["backend"] == backend}
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{backend}` ("))
        assert f"| {rows[1]:.1f} ms/frame | {rows[8]:.1f} ms/frame |" in row, (
            f"README.md's {backend} row differs from bench/results/models.json: copy the figures over"
        )
