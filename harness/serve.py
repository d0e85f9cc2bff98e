"""`scissor serve` (or `scissor demo`, or a wrapper of the CLI) as a real subprocess for fault, security, load
and browser runs: start and wait for /healthz, SIGTERM or SIGKILL, restart, captured log. The one home of the
start-and-wait loop every test that runs the service as a process uses."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import httpx

REPO = Path(__file__).resolve().parents[1]


class ServeNotReady(RuntimeError):
    """`scissor serve` exited or did not answer /healthz in time; the message ends with its log tail."""


SERVE_ARGV = ("-m", "agent.cli", "serve")


class ServeProcess:
    """`python -m agent.cli serve` (or `python *argv`) with `env` (SCISSOR_* settings) added to ours;
    stdout+stderr go to `log_path`. `env` must hold SCISSOR_PORT, the loopback port it listens on."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        token: str | None = None,
        argv: Sequence[str] = SERVE_ARGV,
        open_files_limit: int | None = None,
    ) -> None:
        self.port = int(env["SCISSOR_PORT"])
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
        self.log_path = log_path
        self.argv = list(argv)
        self.open_files_limit = open_files_limit  # RLIMIT_NOFILE of the process (descriptor exhaustion runs)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's process id (for RSS sampling)."""
        assert self.proc is not None, "start() first"
        return self.proc.pid

    def start(self, timeout_s: float = 90.0) -> Self:
        """Start the process and wait until /healthz answers 200."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, *self.argv],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                preexec_fn=self._limit_open_files if self.open_files_limit else None,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServeNotReady(f"{self.what} exited {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise ServeNotReady(f"{self.what} not up after {timeout_s} s:\n{self.log()[-3000:]}")

    @property
    def what(self) -> str:
        """The command, as error messages name it."""
        return " ".join(self.argv)

    def _limit_open_files(self) -> None:
        assert self.open_files_limit is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files_limit, self.open_files_limit))

    def client(self, timeout_s: float = 60.0) -> httpx.Client:
        """A synchronous API client (with the bearer token when one was given)."""
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout_s)

    def async_client(self, timeout_s: float = 60.0) -> httpx.AsyncClient:
        """An asynchronous API client (with the bearer token when one was given)."""
        return httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=timeout_s)

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL after 20 s); return the exit code."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        return None if self.proc is None else self.proc.returncode

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
