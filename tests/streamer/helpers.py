"""Small async helpers shared by the streamer tests (waiting on status, collecting frames)."""

from __future__ import annotations

import asyncio
import http.server
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av

from streamer import Frame, Source, SourceStatus


async def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll `predicate` until it holds; return the seconds it took. Fails the test after `timeout_s`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def collect(
    source: Source, *, count: int | None = None, until_pts_s: float | None = None, timeout_s: float = 20.0
) -> list[Frame]:
    """Frames from `source` until `count` frames, a frame at or past `until_pts_s`, or the end."""
    frames: list[Frame] = []

    async def run() -> None:
        async for frame in source.frames():
            if until_pts_s is not None and frame.pts_s >= until_pts_s:
                return
            frames.append(frame)
            if count is not None and len(frames) >= count:
                return

    await asyncio.wait_for(run(), timeout_s)
    return frames


def camera_threads() -> list[threading.Thread]:
    """Decode threads still alive (named camera-<id>)."""
    return [t for t in threading.enumerate() if t.name.startswith("camera-")]


class StatusLog:
    """Records every status a source reports through `on_status`, and the thread it was reported on."""

    def __init__(self) -> None:
        self.statuses: list[SourceStatus] = []
        self.threads: set[int] = set()

    def __call__(self, status: SourceStatus) -> None:
        self.statuses.append(status)
        self.threads.add(threading.get_ident())

    @property
    def states(self) -> list[str]:
        return [s.state.value for s in self.statuses]


def remux_to_mpegts(source: Path, target: Path) -> None:
    """The clip as MPEG-TS (no transcode): it plays over HTTP without range requests, which
    http.server cannot answer."""
    with av.open(str(source)) as src, av.open(str(target), "w", format="mpegts") as out:
        stream = src.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is not None:
                packet.stream = copy
                out.mux(packet)


def serve_http(
    handler: type[http.server.BaseHTTPRequestHandler],
    host: str = "127.0.0.1",
    tls: ssl.SSLContext | None = None,
) -> http.server.ThreadingHTTPServer:
    """A real HTTP(S) server on a free port of `host`, serving `handler` on a daemon thread; `stop_http` ends
    it."""
    server = http.server.ThreadingHTTPServer((host, 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop_http(server: http.server.ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()
