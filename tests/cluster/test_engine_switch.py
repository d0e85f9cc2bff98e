"""The engine switch: local mode never imports Ray; cluster mode without Ray says how to get it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent.cluster.raylib import is_loopback
from agent.settings import SettingsError, load_settings


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_the_single_process_service_imports_no_ray() -> None:
    done = run_python(
        "import sys, agent.service, agent.api, agent.cli\n"
        "from agent.settings import load_settings\n"
        "assert load_settings(None).engine == 'local'\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_cluster_mode_without_ray_exits_2_naming_the_extra() -> None:
    done = run_python(
        "import sys; sys.modules['ray'] = None  # as if Ray were not installed\n"
        "from agent.cluster.ingress import serve_forever\n"
        "from agent.settings import load_settings\n"
        "sys.exit(serve_forever(load_settings(None, engine='ray')))"
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'scissor-stream[ray]'" in done.stderr


def test_engine_and_ray_settings_are_checked() -> None:
    settings = load_settings(None, engine="ray", ray={"address": "auto", "node_ip": "10.0.0.5"})
    assert (settings.ray.address, settings.ray.node_ip) == ("auto", "10.0.0.5")
    assert load_settings(None).ray.node_ip == "127.0.0.1"
    with pytest.raises(SettingsError):
        load_settings(None, engine="spark")
    with pytest.raises(SettingsError):
        load_settings(None, ray={"camera_cpus": 0})
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("10.0.0.5")
