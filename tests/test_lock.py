"""The lock agrees with pyproject.toml: every direct requirement pinned inside its range, every locked
distribution's own requirements locked too, the runtime lock a consistent subset of the full one."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
LOCKS = {"test": ROOT / "requirements" / "test.lock", "runtime": ROOT / "requirements" / "runtime.lock"}
HEADER = re.compile(r"^#   (\S+)$")


def pyproject_requirements(*extras: str) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = list(project["dependencies"])
    for extra in extras:
        found += project["optional-dependencies"][extra]
    return found


def read_lock(path: Path) -> tuple[list[str], dict[str, Version]]:
    """(the direct requirements its header says it was resolved from, name -> pinned version)."""
    header: list[str] = []
    pins: dict[str, Version] = {}
    for line in path.read_text().splitlines():
        if match := HEADER.match(line):
            header.append(match.group(1))
        elif line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = Version(version)
    return header, pins


def test_the_lock_was_resolved_from_todays_pyproject() -> None:
    header, _ = read_lock(LOCKS["test"])
    want = sorted({r.replace(" ", "") for r in pyproject_requirements("test", "dev", "ray")})
    assert header == want, (
        "pyproject.toml's dependencies changed: run ./scripts/lock and commit requirements/"
    )


@pytest.mark.parametrize(("lock", "extras"), [("test", ("test", "dev", "ray")), ("runtime", ())])
def test_every_direct_requirement_is_pinned_inside_its_range(lock: str, extras: tuple[str, ...]) -> None:
    _, pins = read_lock(LOCKS[lock])
    for text in pyproject_requirements(*extras):
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock}.lock lacks {req.name}"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{lock}.lock: {name}=={pins[name]} vs {req}"
        )


def test_the_runtime_lock_is_the_full_lock_restricted() -> None:
    _, full = read_lock(LOCKS["test"])
    _, runtime = read_lock(LOCKS["runtime"])
    assert {name: full.get(name) for name in runtime} == runtime


@pytest.mark.parametrize("lock", ["test", "runtime"])
def test_every_locked_distribution_has_its_own_requirements_locked(lock: str) -> None:
    """Closed under dependencies, read from the installed distributions' metadata (the tests run in an
    environment installed from test.lock)."""
    _, pins = read_lock(LOCKS[lock])
    env: dict[str, str] = {key: str(value) for key, value in default_environment().items()} | {"extra": ""}
    missing = []
    for name in pins:
        for text in importlib.metadata.requires(name) or []:
            req = Requirement(text)
            if (req.marker is None or req.marker.evaluate(env)) and canonicalize_name(req.name) not in pins:
                missing.append(f"{name} -> {req}")
    assert not missing, f"{lock}.lock is not closed: {missing}"


def test_the_environment_runs_the_locked_versions() -> None:
    _, pins = read_lock(LOCKS["test"])
    installed = {name: Version(importlib.metadata.version(name)) for name in pins}
    drift = {n: (str(installed[n]), str(v)) for n, v in pins.items() if installed[n].public != v.public}
    assert not drift, f"installed (have, locked): {drift}; install with ./scripts/test"


@pytest.mark.parametrize(
    ("path", "lock"),
    [("scripts/test", "test.lock"), ("scripts/demo", "runtime.lock"), ("ops/Dockerfile", "runtime.lock")],
)
def test_every_installer_installs_from_the_lock(path: str, lock: str) -> None:
    text = (ROOT / path).read_text()
    assert re.search(rf"pip install[^\n]*-r requirements/{re.escape(lock)}", text), f"{path} bypasses {lock}"
    if path.startswith("scripts/"):  # the image has its own `python`; a Debian host has only python3
        assert not re.search(r"(^|[\s;&|(])python -m", text), f"{path} calls a bare `python`"
