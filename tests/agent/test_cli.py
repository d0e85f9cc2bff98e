"""The `scissor` command line: `scissor bench` reaches the benchmarks through the installed entry point (the
product imports nothing of bench/), bad settings are reported key by key before the heavy stack loads, a port
in use or an open API off loopback is refused with exit 2, every option has help, a log flood is capped."""

from __future__ import annotations

import io
import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.cli import main
from agent.logs import RateLimitFilter, configure_logging, report_left_out
from agent.server import exposure_refusal, is_loopback
from agent.settings import Settings, load_settings
from bench import BENCHMARKS


def test_bench_help_lists_every_benchmark_through_the_entry_point(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--help"]) == 0
    listed = capsys.readouterr().out
    assert all(f"  {name}" in listed for name in BENCHMARKS)


def test_an_unknown_benchmark_is_refused_naming_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "nope"]) == 2
    assert "unknown benchmark 'nope'; choose one of compress" in capsys.readouterr().err


def test_invalid_settings_exit_2_naming_the_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCISSOR_PORT", "0")
    with pytest.raises(SystemExit) as exited:
        main(["serve"])
    assert exited.value.code == 2 and "port (SCISSOR_PORT)" in capsys.readouterr().err


def test_version_prints_the_installed_packages_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"scissor {version('scissor-stream')}"


# --- the real `scissor` command as a subprocess: what it refuses, how fast, and what it prints -------------

SCISSOR = Path(sys.executable).with_name("scissor")
HEAVY = ("torch", "transformers", "av", "numpy", "uvicorn", "agent.service")


def _scissor(
    argv: list[str], env: dict[str, str], timeout_s: float = 60.0
) -> tuple[int, str, set[str], float]:
    """Run the installed `scissor` with PYTHONPROFILEIMPORTTIME: exit code, stderr without the import
    lines, the top-level packages imported, and the wall seconds it took."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SCISSOR_")}
    started = time.monotonic()
    done = subprocess.run(
        [str(SCISSOR), *argv],
        env={**clean, "PYTHONPROFILEIMPORTTIME": "1", **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    took = time.monotonic() - started
    imports = {
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    text = "\n".join(line for line in done.stderr.splitlines() if not line.startswith("import time:"))
    return done.returncode, text + done.stdout, imports, took


def test_bad_settings_print_one_header_and_fail_before_the_heavy_stack_loads() -> None:
    code, out, imported, took = _scissor(["serve"], {"SCISSOR_PORT": "0", "SCISSOR_MQTT__KEEPALIVE_S": "1"})
    assert code == 2, out
    assert out.count("invalid settings") == 1, out
    assert "port (SCISSOR_PORT)" in out and "mqtt.keepalive_s (SCISSOR_MQTT__KEEPALIVE_S)" in out
    assert not imported & set(HEAVY), f"imported before the settings were checked: {imported & set(HEAVY)}"
    assert took < 10, f"{took:.1f} s to report bad settings"  # ~0.3 s idle; the heavy stack alone is 5-15 s


def test_a_missing_ca_bundle_is_a_settings_error_at_start() -> None:
    code, out, imported, _ = _scissor(["serve"], {"SCISSOR_CAMERA__CA_FILE": "/nonexistent/ca.pem"})
    assert code == 2 and "camera.ca_file (SCISSOR_CAMERA__CA_FILE)" in out and "does not exist" in out, out
    assert not imported & set(HEAVY)


def test_a_port_in_use_is_named_and_exits_2_before_the_service_starts() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, out, imported, _ = _scissor(["serve", "--port", str(port)], {"SCISSOR_BACKEND": "tiny"})
    assert code == 2, out
    assert f"127.0.0.1:{port}" in out and "already in use" in out, out
    assert "service started" not in out and "Traceback" not in out, out
    assert not imported & set(HEAVY), "refused before torch and the service load"


def test_an_open_api_on_a_non_loopback_address_is_refused_before_anything_binds() -> None:
    # The refusal comes before the socket is bound: nothing listens on 0.0.0.0, not even for a moment.
    code, out, imported, _ = _scissor(["serve", "--host", "0.0.0.0", "--port", "18080"], {})
    assert code == 2, out
    assert "refusing to serve 0.0.0.0:18080 without SCISSOR_API_TOKEN" in out, out
    assert "SCISSOR_ALLOW_UNAUTHENTICATED=true" in out and "Traceback" not in out
    assert not imported & set(HEAVY)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("camera-host.lan", False),
    ],
)
def test_only_loopback_addresses_and_names_count_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_exposure_decision_needs_a_token_or_the_explicit_opt_out_off_loopback() -> None:
    token = "a-strong-token-of-32-characters!"
    assert exposure_refusal(Settings(host="127.0.0.1")) is None
    assert exposure_refusal(Settings(host="0.0.0.0", api_token=token)) is None
    assert exposure_refusal(Settings(host="0.0.0.0", allow_unauthenticated=True)) is None
    refusal = exposure_refusal(Settings(host="0.0.0.0"))
    assert (
        refusal is not None and "SCISSOR_API_TOKEN" in refusal and "SCISSOR_ALLOW_UNAUTHENTICATED" in refusal
    )


def test_the_opt_out_is_the_documented_setting_scissor_allow_unauthenticated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCISSOR_HOST", "0.0.0.0")
    monkeypatch.setenv("SCISSOR_ALLOW_UNAUTHENTICATED", "true")
    assert exposure_refusal(load_settings()) is None


# --- help texts ------------------------------------------------------------------------------------------


def _undocumented_options(help_text: str) -> list[str]:
    """Options in an argparse help whose entry has no text (neither beside it nor on the next line)."""
    lines = help_text.splitlines()
    bare = []
    for i, line in enumerate(lines):
        entry = re.match(r"^( {2}|  )(-{1,2}[\w-]+.*?)(?: {2,}(\S.*))?$", line)
        if not entry or entry.group(3):
            continue
        following = lines[i + 1] if i + 1 < len(lines) else ""
        indented_text = following.startswith(" " * 6) and not following.strip().startswith("-")
        if not indented_text:
            bare.append(entry.group(2).strip())
    return bare


def test_every_ask_option_has_help_and_the_token_is_explained(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["ask", "--help"])
    text = capsys.readouterr().out
    assert _undocumented_options(text) == [], text
    assert "SCISSOR_API_TOKEN" in text
    for positional in ("camera ", "question "):
        assert re.search(rf"^  {positional}\s+\S", text, re.M), positional


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_every_bench_option_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["bench", name, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "options:" in text and _undocumented_options(text) == [], text


# --- log rate limiting -------------------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _flood_handler(limit: RateLimitFilter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(limit)
    logger = logging.getLogger(f"test.flood.{id(limit)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def test_a_flood_from_one_call_site_is_capped_and_then_counted() -> None:
    clock = _Clock()
    limit = RateLimitFilter(burst=5, window_s=60.0, clock=clock)
    logger, out = _flood_handler(limit)

    def accept_error(fd: int) -> None:  # as asyncio's: one call site, a different socket in every message
        logger.error(
            "socket.accept() out of system resource: <socket fd=%d>: [Errno 24] Too many open files", fd
        )

    for fd in range(10_000):
        accept_error(fd)
    assert len(out.getvalue().splitlines()) == 5 and limit.suppressed_total == 9_995
    clock.now = 61.0
    accept_error(1)
    last = out.getvalue().splitlines()[-1]
    assert "fd=1>" in last and "[9995 more like this left out in the last 60 s]" in last


def test_info_lines_and_other_call_sites_are_not_capped() -> None:
    limit = RateLimitFilter(burst=2, window_s=60.0, clock=_Clock())
    logger, out = _flood_handler(limit)
    for i in range(50):
        logger.info("camera %d started", i)
    logger.warning("one")
    logger.warning("two")
    logger.warning("three")  # its own call site, its own budget
    assert len(out.getvalue().splitlines()) == 53


def test_configure_logging_caps_every_logger_and_the_total_left_out_is_reported_at_the_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    limit = configure_logging("INFO")
    try:
        for _ in range(100):
            logging.getLogger("asyncio").error("accept failed")
        assert limit.suppressed_total == 100 - limit.burst
        assert report_left_out() == 80
        assert "80 log records were left out by the rate limit" in capsys.readouterr().err
    finally:
        logging.getLogger().handlers.clear()


def test_a_model_offline_mode_cannot_reach_is_refused_before_torch_loads() -> None:
    # The service itself says so too, after 10-35 s of importing torch and transformers.
    env = {"SCISSOR_BACKEND": "nobody-here/no-such-model", "HF_HUB_OFFLINE": "1", "SCISSOR_PORT": "18081"}
    code, out, imported, _ = _scissor(["serve"], env)
    assert code == 2, out
    assert "'nobody-here/no-such-model' (SCISSOR_BACKEND) is not in the Hugging Face cache" in out, out
    assert not imported & set(HEAVY) and "Traceback" not in out


def test_a_model_in_the_offline_cache_passes_the_preflight(tmp_path: Path) -> None:
    commit = "0" * 40
    repo = tmp_path / "hub" / "models--someone--cached-model"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}", encoding="utf-8")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit, encoding="utf-8")
    script = (
        "from agent.preflight import missing_offline_weights as m\n"
        "print(m('someone/cached-model'), '|', m('someone/not-cached'))"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    cached, missing = done.stdout.split("|")
    assert cached.strip() == "None" and "'someone/not-cached' (SCISSOR_BACKEND)" in missing, done.stderr
