"""Load (slow): 8 RTSP cameras at 2 fps + 20 concurrent askers for 60 s: no errors, bounded RSS.
`pytest -m slow`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import reliability

PEAK_RSS_BOUND_MIB = 2048  # the embedded model, 8 cameras' memories and decoders fit well under this


@pytest.mark.slow
def test_eight_cameras_and_twenty_concurrent_askers_for_a_minute_run_without_errors(tmp_path: Path) -> None:
    out = tmp_path / "reliability.json"
    code = reliability.main(
        ["--cameras", "8", "--fps", "2", "--questions", "20", "--duration", "60", "--out", str(out)]
    )
    result = json.loads(out.read_text())["result"]
    assert code == 0, result
    assert result["errors"] == {} and result["questions_ok"] > 0
    assert result["cameras_not_online"] == [] and result["log_errors"] == 0
    assert result["frames_encoded"] > 0, "ingest kept going under question load"
    assert result["peak_rss_mib"] < PEAK_RSS_BOUND_MIB
    assert result["rss_end_mib"] < result["rss_start_mib"] * 1.5, "RSS does not keep growing under load"
