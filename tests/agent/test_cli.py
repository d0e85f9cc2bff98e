"""The `scissor` command line: `scissor bench` reaches the benchmarks through the installed entry point (the
product imports nothing of bench/), and bad settings are reported key by key."""

from __future__ import annotations

import pytest

from agent.cli import main
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
