"""`open_source()` and `Source`: the asyncio face of one camera.

Never blocks the event loop or leaks a credential. Decode runs in one daemon thread per camera
(streamer/worker.py) because PyAV's open and read block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from types import TracebackType
from typing import Self

from streamer.errors import SourceClosed
from streamer.frame import Frame
from streamer.policy import TargetPolicy, default_ca_file
from streamer.sampler import FrameQueue
from streamer.status import SourceStats, SourceStatus, State
from streamer.urls import is_file_url, redact, validate_url
from streamer.worker import CameraWorker, WorkerConfig, install_stop_aware_clock

log = logging.getLogger(__name__)

StatusCallback = Callable[[SourceStatus], None]


class Source:
    """One camera: an async context manager yielding sampled frames, with live status and counters.

    Create it with `open_source`. Entering it (or the first `frames()`) starts the decode thread; `close()`
    stops it. It can be entered once; `frames()` may be iterated by one consumer at a time.
    """

    def __init__(
        self, cfg: WorkerConfig, *, queue_size: int, on_status: StatusCallback | None, stop_timeout_s: float
    ) -> None:
        self.camera_id = cfg.camera_id
        self.url = redact(cfg.url)
        self._cfg = cfg
        self._queue_size = queue_size
        self._on_status = on_status
        self._stop_timeout_s = stop_timeout_s
        self._status = SourceStatus(State.CONNECTING, "not started", "")
        self._stats = SourceStats()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queue: FrameQueue[Frame] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consuming = False
        self._closed = False

    @property
    def status(self) -> SourceStatus:
        """The latest status (state, reason, code, since)."""
        return self._status

    @property
    def stats(self) -> SourceStats:
        """A snapshot of the counters."""
        return self._stats.snapshot()

    @property
    def running(self) -> bool:
        """Whether the decode thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    async def start(self) -> None:
        """Start the decode thread (idempotent).

        Raises:
            SourceClosed: the source was already closed.
        """
        if self._closed:
            raise SourceClosed(f"camera {self.camera_id!r} is closed")
        if self._thread is not None:
            return
        install_stop_aware_clock()
        self._loop = asyncio.get_running_loop()
        self._queue = FrameQueue(self._queue_size, self._loop)
        worker = CameraWorker(self._cfg, self._queue, self._stats, self._set_status, self._stop)
        self._thread = threading.Thread(target=worker.run, name=f"camera-{self.camera_id}", daemon=True)
        self._thread.start()

    async def frames(self) -> AsyncIterator[Frame]:
        """Sampled frames, oldest first, until the source is closed or a file ends or fails.

        When iteration ends, `status` says why (``stopped`` with a reason). Frames the consumer was too slow
        for are dropped (oldest first) and counted in `stats.drops["consumer_behind"]`.

        Raises:
            SourceClosed: the source was already closed.
            RuntimeError: another consumer is already iterating.
        """
        if self._consuming:
            raise RuntimeError(f"camera {self.camera_id!r} already has a consumer")
        await self.start()
        assert self._queue is not None
        self._consuming = True
        try:
            while (frame := await self._queue.get()) is not None:
                self._stats.frames_emitted += 1
                yield frame
        finally:
            self._consuming = False

    async def close(self) -> None:
        """Stop the decode thread and release its socket; waits up to `stop_timeout_s` (2 s by default)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._queue is not None:
            self._queue.close()
        deadline = time.monotonic() + self._stop_timeout_s
        while self.running and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.running:
            log.warning(
                "camera %s: decode thread still busy after %.1f s; it is a daemon and will exit at its "
                "read timeout",
                self.camera_id,
                self._stop_timeout_s,
            )
        if self._status.state != State.STOPPED:
            self._set_status(State.STOPPED, "closed", "closed")

    async def __aenter__(self) -> Self:
        if self._thread is not None:
            raise RuntimeError(f"camera {self.camera_id!r} source is already entered")
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _set_status(self, state: State, reason: str, code: str) -> None:
        # Called from the decode thread (and close()); the callback always runs on the event loop thread.
        current = self._status
        if (state, code, reason) == (current.state, current.code, current.reason):
            return
        status = SourceStatus(state, redact(reason), code)
        self._status = status
        if status.state != current.state:
            log.info("camera %s: %s %s", self.camera_id, state.value, status.reason)
        if self._on_status is None or self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody left to tell
            self._loop.call_soon_threadsafe(self._deliver, status)

    def _deliver(self, status: SourceStatus) -> None:
        assert self._on_status is not None
        try:
            self._on_status(status)
        except Exception:  # crash guard: a listener's bug must not stop the camera
            log.exception("camera %s: on_status callback failed", self.camera_id)


def open_source(
    url: str,
    *,
    camera_id: str,
    fps: float | None,
    loop: bool = False,
    transport: str = "tcp",
    open_timeout_s: float = 10.0,
    read_timeout_s: float = 5.0,
    width: int | None = None,
    height: int | None = None,
    size: tuple[int, int] | None = None,
    queue_size: int = 2,
    realtime: bool | None = None,
    on_status: StatusCallback | None = None,
    backoff_initial_s: float = 0.5,
    backoff_max_s: float = 10.0,
    decode_threads: int = 1,
    stop_timeout_s: float = 2.0,
    allow_files: bool = True,
    ffmpeg_options: Mapping[str, str] | None = None,
    policy: TargetPolicy | None = None,
    insecure_tls: bool = False,
    ca_file: str | None = None,
    max_pixels: int = 7680 * 4320,
) -> Source:
    """Validate a camera URL and options and return a (not yet started) `Source`.

    Nothing connects until the source is entered or iterated. Use it as
    ``async with open_source(url, camera_id="door", fps=2) as src: async for frame in src.frames(): ...``.

    Args:
        url: ``rtsp://``, ``rtsps://``, ``http(s)://`` (HLS, MJPEG, progressive mp4), ``file://`` or a path.
        camera_id: the camera's id, copied into every frame.
        fps: target frames per second, sampled from timestamps; None or 0 keeps every frame.
        loop: replay a local file forever (implies `realtime`).
        transport: RTSP transport, ``"tcp"`` (default: no loss, NAT-friendly) or ``"udp"``.
        open_timeout_s: limit for connecting and probing.
        read_timeout_s: limit for each wait for data; a silent camera goes ``down`` after it.
        width, height: resize at decode (one of them keeps the aspect ratio); `size=(w, h)` is the same.
        queue_size: frames held for a slow consumer before the oldest is dropped.
        realtime: pace a local file at its native rate, like a live camera (default: `loop`). Files read
            faster than real time wait for the consumer instead of dropping frames.
        on_status: called on the event loop thread with each new `SourceStatus`.
        backoff_initial_s, backoff_max_s: reconnect delays (doubling, capped, with jitter).
        decode_threads: FFmpeg decoder threads per camera (1 suits many cameras per core; 0 = auto).
        stop_timeout_s: how long `close()` waits for the decode thread.
        allow_files: accept local files (an API may refuse server-side paths).
        ffmpeg_options: extra demuxer options passed to FFmpeg (never the guards below: those win).
        policy: the networks the camera may be in (`streamer.policy.TargetPolicy`), checked on the URL now
            and on every connection and redirect hop; None checks no addresses (a library user's own
            cameras). Whatever it is, FFmpeg only gets camera protocols and demuxers, and no redirects of
            its own.
        insecure_tls: accept any certificate from an rtsps:// or https:// camera (default: verify).
        ca_file: CA bundle to verify camera certificates against (default: the system's).
        max_pixels: largest picture (width x height) accepted; a larger source stops as `unsupported`.

    Raises:
        InvalidCameraURL: the URL is unusable (checked before any connection).
        ValueError: an option is out of range.
    """
    target = validate_url(url, allow_files=allow_files)
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    if policy is not None and not is_file_url(url):
        policy.check(url)  # blocking DNS: callers on an event loop run open_source in a thread or pass IPs
    if size is not None:
        if width is not None or height is not None:
            raise ValueError("give either size=(w, h) or width/height, not both")
        width, height = size
    _check_options(
        camera_id=camera_id,
        fps=fps,
        transport=transport,
        url=url,
        timeouts=(open_timeout_s, read_timeout_s, stop_timeout_s),
        width=width,
        height=height,
        queue_size=queue_size,
        backoff=(backoff_initial_s, backoff_max_s),
        decode_threads=decode_threads,
        loop=loop,
    )
    cfg = WorkerConfig(
        camera_id=camera_id,
        target=target,
        url=url,
        fps=fps or None,
        loop=loop,
        realtime=loop if realtime is None else realtime,
        transport=transport,
        open_timeout_s=open_timeout_s,
        read_timeout_s=read_timeout_s,
        width=width,
        height=height,
        backoff_initial_s=backoff_initial_s,
        backoff_max_s=backoff_max_s,
        decode_threads=decode_threads,
        ffmpeg_options=tuple((str(k), str(v)) for k, v in (ffmpeg_options or {}).items()),
        policy=policy,
        tls_verify=not insecure_tls,
        ca_file=ca_file or default_ca_file(),
        max_pixels=max_pixels,
    )
    return Source(cfg, queue_size=queue_size, on_status=on_status, stop_timeout_s=stop_timeout_s)


def _check_options(
    *,
    camera_id: str,
    fps: float | None,
    transport: str,
    url: str,
    timeouts: tuple[float, ...],
    width: int | None,
    height: int | None,
    queue_size: int,
    backoff: tuple[float, float],
    decode_threads: int,
    loop: bool,
) -> None:
    if not camera_id:
        raise ValueError("camera_id must be a non-empty string")
    if fps is not None and fps < 0:
        raise ValueError(f"fps must be > 0, or None/0 for every frame; got {fps}")
    if transport not in {"tcp", "udp"}:
        raise ValueError(f"transport must be 'tcp' or 'udp', got {transport!r}")
    if transport == "udp" and url.lower().startswith("rtsps://"):
        raise ValueError("rtsps:// (TLS) works over tcp only")
    if any(t <= 0 for t in timeouts):
        raise ValueError(f"timeouts must be > 0 seconds, got {timeouts}")
    for name, value in (("width", width), ("height", height)):
        if value is not None and not 2 <= value <= 16384:
            raise ValueError(f"{name} must be between 2 and 16384 pixels, got {value}")
    if queue_size < 1:
        raise ValueError(f"queue_size must be >= 1, got {queue_size}")
    if not 0 < backoff[0] <= backoff[1]:
        raise ValueError(f"need 0 < backoff_initial_s <= backoff_max_s, got {backoff}")
    if decode_threads < 0:
        raise ValueError(f"decode_threads must be >= 0, got {decode_threads}")
    if loop and not is_file_url(url):
        raise ValueError("loop=True replays local files only; live cameras reconnect on their own")
