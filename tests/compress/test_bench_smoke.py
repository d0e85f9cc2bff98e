"""`scissor bench compress --quick` runs end to end and writes its JSON (CI smoke test)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.compress import main


def test_the_quick_compress_benchmark_writes_ratios_for_every_setting(tmp_path: Path) -> None:
    out = tmp_path / "compress.json"
    assert main(["--quick", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["workload"] for r in rows} == {"camera", "dense"}
    for r in rows:
        assert r["ours_over_floor"] > 0 and r["reference_over_ours"] > 0
        assert r["output_tokens"] <= r["spatial_tokens"] <= r["input_tokens"]
