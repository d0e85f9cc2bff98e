"""Launcher for the real GStreamer RTSP server (ops/camera/rtsp_camera.py) that tests and benchmarks
start, kill, pause and restart.

Never mocks anything: it runs Debian's /usr/bin/python3 as a subprocess on a loopback port and waits for
READY.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Self

from harness.ports import free_port

SYSTEM_PYTHON = "/usr/bin/python3"
# The same script the compose stack's sample camera runs (one RTSP server implementation, not two).
SCRIPT = Path(__file__).resolve().parents[1] / "ops" / "camera" / "rtsp_camera.py"


class RtspServerError(RuntimeError):
    """The RTSP server did not start (missing GStreamer packages, port taken, bad video)."""


class RtspServer:
    """One RTSP server process serving one mp4 at rtsp://127.0.0.1:PORT/cam, looping.

    The port stays the same across kill()/restart(), so a client sees the same camera come back.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        mount: str = "/cam",
        user: str | None = None,
        password: str | None = None,
        ready_timeout_s: float = 15.0,
    ) -> None:
        self.port = port or free_port()
        self.mount = mount
        self.user = user
        self.password = password
        self.ready_timeout_s = ready_timeout_s
        self.video_path: Path | None = None
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        """The camera URL without credentials."""
        return f"rtsp://127.0.0.1:{self.port}{self.mount}"

    def url_with(self, user: str, password: str, path: str | None = None) -> str:
        """The camera URL with the given credentials (and optionally another mount path)."""
        return f"rtsp://{user}:{password}@127.0.0.1:{self.port}{path or self.mount}"

    def start(self, video_path: str | Path) -> RtspServer:
        """Start serving `video_path`; return once the server printed READY."""
        self.video_path = Path(video_path)
        cmd = [
            SYSTEM_PYTHON,
            str(SCRIPT),
            str(self.video_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--mount",
            self.mount,
        ]
        env = {k: v for k, v in os.environ.items() if k not in ("CAMERA_USER", "CAMERA_PASSWORD")}
        if self.user is not None:
            env |= {"CAMERA_USER": self.user, "CAMERA_PASSWORD": self.password or ""}
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + self.ready_timeout_s
        # readline blocks, but the script prints READY or FAILED (or dies) promptly.
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("READY"):
                return
            if not line and self.proc.poll() is not None:
                break
            if line.startswith("FAILED"):
                break
        self.kill()
        raise RtspServerError(f"RTSP server on port {self.port} did not become ready")

    def kill(self) -> None:
        """SIGKILL the server (a camera losing power); its clients see the TCP connection close."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.resume()
            self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def restart(self) -> RtspServer:
        """Kill the server if running and start it again on the same port with the same video."""
        assert self.video_path is not None, "start() first"
        self.kill()
        # The old listener is gone at once (SIGKILL); retry briefly in case the port is still settling.
        for attempt in range(20):
            try:
                return self.start(self.video_path)
            except RtspServerError:
                if attempt == 19:
                    raise
                time.sleep(0.25)
        return self

    def pause(self) -> None:
        """SIGSTOP the server: connections stay open but no data flows (a hung camera)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT a paused server."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server for good (same as kill; kept for readable teardown)."""
        self.kill()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
