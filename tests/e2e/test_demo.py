"""`scissor demo`, the README's main job, as a real process: it sees the sample clip, answers, and alerts."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from harness.ports import free_port

REPO = Path(__file__).resolve().parents[2]


def test_scissor_demo_watches_the_sample_clip_answers_and_fires_its_label_rule(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "demo", "--port", str(port), "--duration", "120"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 100
        answer = ""
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            time.sleep(1)
            try:
                status = httpx.get(f"{base}/cameras/demo", timeout=5).json()
            except httpx.HTTPError:
                continue
            fired = "ALERT demo [bicycle]" in log_path.read_text()
            if status.get("memory_entries", 0) > 0 and fired:
                answer = httpx.post(
                    f"{base}/cameras/demo/ask",
                    json={"question": "when did you last see a bicycle?"},
                    timeout=30,
                ).json()["answer"]
                if answer.startswith("I last saw a bicycle"):  # a when-question: no Yes/No
                    break
        output = log_path.read_text()
        assert "curl -s" in output and f"{base}/cameras/demo" in output, (
            "the demo prints its URLs and curl lines"
        )
        assert f"Console:   {base}/\n" in output, "the banner names the console at /"
        alert = re.search(
            r"^\d\d:\d\d:\d\d ALERT demo \[bicycle\] bicycle \(score .*snapshot\?frame=\d+$", output, re.M
        )
        assert alert, f"the bicycle rule fired and was printed as one readable line, by its name:\n{output}"
        assert '"kind":' not in output, "no raw JSON records on the console: the rest stays on /events"
        assert re.match(r"I last saw a bicycle .*at \d\d:\d\d:\d\d \(t=\d+s\)\.$", answer), answer
    finally:
        proc.terminate()
        proc.wait(30)
