"""Smoke runs of `scissor bench memory` and `scissor bench faithful` in their --quick modes; never slow."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import bench.faithful
import bench.memory


@pytest.fixture(autouse=True)
def restore_threads() -> Iterator[None]:
    """The benchmarks pin torch to one thread; give the process its setting back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_quick_memory_bench_writes_a_bounded_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "memory.json"
    assert bench.memory.main(["--quick", "--out", str(out)]) == 0
    result = json.loads(out.read_text())["result"]
    assert result["peak_entries"] <= 64 and result["consolidations_total"] > 0
    assert result["first_median_ms"] > 0 and result["last_median_ms"] > 0
    assert result["tokens_stored"] == result["tokens_in_total"] - result["tokens_evicted_total"]
    assert result["full_at_frame"] is not None and result["full_ratio"] > 0  # the flat-once-full measure ran
    assert result["snapshot_bytes_per_entry"] * result["final_entries"] == pytest.approx(
        result["snapshot_bytes"]
    )
    assert (
        1 <= result["intervals_mean"] <= result["intervals_max"] <= 16 and result["live_evidence_frames"] > 16
    )
    assert "last / first" in capsys.readouterr().out


def test_quick_faithful_bench_compares_every_tau_side_by_side(tmp_path: Path) -> None:
    out = tmp_path / "faithful.json"
    assert bench.faithful.main(["--quick", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["tau"] for r in rows] == list(bench.faithful.TAUS)
    assert all(r["batch_tokens"] > 0 and r["incremental_tokens"] > 0 for r in rows)
    assert all(0.9 < r["coverage_ratio"] < 1.1 for r in rows)
