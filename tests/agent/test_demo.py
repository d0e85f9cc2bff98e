"""What `scissor demo` prints: its banner (the console first among the URLs) and one line per alert."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from agent.demo import banner, console_line
from agent.records import Alert

BASE = "http://127.0.0.1:8080"


def test_the_banner_names_the_console_at_the_root_beside_the_other_urls_and_the_curl_lines() -> None:
    text = banner(Path("/videos/bikes.mp4"), BASE)
    assert f"  Console:   {BASE}/\n" in text
    for kept in (f"{BASE}/docs", f"{BASE}/metrics", f"{BASE}/events", f"curl -s {BASE}/cameras/demo\n"):
        assert kept in text
    assert "loops bikes.mp4; label rule 'bicycle'" in text and "when did you last see a bicycle?" in text
    assert text.index("Console:") < text.index("API docs:")


def alert(**fields: object) -> Alert:
    time = datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC)
    return Alert.model_validate(
        {"camera": "gate", "rule": "9f" * 16, "kind": "label", "score": 0.8, "label": "bicycle", "time": time}
        | fields
    )


def test_an_alert_line_names_an_unnamed_rule_by_kind_and_label_not_by_its_id() -> None:
    line = console_line(alert(rule_title="label:bicycle"), BASE)
    assert line is not None and "ALERT gate [label:bicycle] bicycle (score 0.80, t=0.0s)" in line
    assert "9f9f" not in line


def test_an_alert_line_keeps_the_rule_name_and_falls_back_to_the_id_for_old_alerts() -> None:
    named = console_line(alert(rule_name="bikes", rule_title="bikes"), BASE)
    assert named is not None and "[bikes]" in named
    old = console_line(alert(), BASE)
    assert old is not None and f"[{'9f' * 16}]" in old
