"""One camera's decode thread: open, demux, decode, sample, hand off, reconnect. Never touches the event loop
except through FrameQueue and one status callback; never logs a URL that was not redacted."""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar, cast

import av
import av.container.core
import numpy as np
import numpy.typing as npt

from streamer.errors import CameraUnreachable
from streamer.failures import AV_ERRORS, classify
from streamer.fetch import PolicedHTTP, Target
from streamer.frame import Frame
from streamer.policy import TargetPolicy, TargetRefused, ffmpeg_guard_options
from streamer.sampler import FpsSampler, FrameQueue, QueueClosed
from streamer.status import SourceStats, State
from streamer.urls import host_and_port, is_file_url, redact

log = logging.getLogger(__name__)

# Consecutive packets the decoder may reject before the stream counts as broken.
MAX_DECODE_ERRORS = 50
_T = TypeVar("_T")
FAILURE_LOG_EVERY_S = 300.0  # a failure repeating the same reason is logged again after this long
_THREAD = threading.local()


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What one decode thread needs (validated by `open_source`)."""

    camera_id: str
    target: str  # what av.open gets: the URL, or a local path
    url: str  # as configured, for classification only (never logged unredacted)
    fps: float | None
    loop: bool
    realtime: bool
    transport: str
    open_timeout_s: float
    read_timeout_s: float
    width: int | None
    height: int | None
    backoff_initial_s: float
    backoff_max_s: float
    decode_threads: int
    ffmpeg_options: tuple[tuple[str, str], ...]
    policy: TargetPolicy | None = None  # None: no address checks (files, or a library user's own cameras)
    tls_verify: bool = True
    ca_file: str | None = None
    max_pixels: int = 7680 * 4320  # larger pictures are refused: decoding one costs memory nobody budgeted


class _StopAwareClock:
    """Stands in for `time` as read by PyAV's interrupt callback (av/container/core.py `interrupt_cb`).

    PyAV aborts a blocking open/read when `time.monotonic()` passes its deadline, and offers no other way to
    interrupt one. Reporting a far-future time to a decode thread whose stop event is set makes `close()` take
    effect within FFmpeg's polling interval (~0.1 s) even while a hung camera keeps the socket silent, instead
    of after the read timeout. Other threads and every other use of `time` see the real clock.
    """

    def __init__(self, real: ModuleType) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def monotonic(self) -> float:
        now = float(self._real.monotonic())
        stop: threading.Event | None = getattr(_THREAD, "stop", None)
        return now + 1e9 if stop is not None and stop.is_set() else now


def install_stop_aware_clock() -> bool:
    """Install `_StopAwareClock` into PyAV once; False if this PyAV has no such hook (stop then waits for the
    read timeout)."""
    current = getattr(av.container.core, "time", None)
    if isinstance(current, _StopAwareClock):
        return True
    if current is not time:
        return False
    av.container.core.time = _StopAwareClock(time)  # type: ignore[attr-defined]
    return True


class Backoff:
    """Exponential backoff with full jitter: initial, 2x, 4x ... up to `max_s`, each scaled by [0.5, 1)."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self.initial_s, self.max_s = initial_s, max_s
        self.attempt = 0

    def next_delay(self) -> float:
        """The next wait, in seconds."""
        base = min(self.max_s, self.initial_s * 2.0**self.attempt)
        self.attempt += 1
        return base * random.uniform(0.5, 1.0)  # jitter spreads reconnect storms of many cameras

    def reset(self) -> None:
        """Start over from the initial delay (after a session that delivered frames)."""
        self.attempt = 0


class Timeline:
    """Maps each session's presentation timestamps onto a continuous, strictly increasing source timeline."""

    def __init__(self) -> None:
        self.last_s: float | None = None
        self._first_raw: float | None = None
        self._last_raw: float | None = None
        self._base_s = 0.0
        self._gap_s = 0.0
        self.period_s = 1 / 25

    def new_session(self, gap_s: float, period_s: float) -> None:
        """A new connection or file pass starts; `gap_s` of wall time passed since the last frame."""
        self._first_raw = self._last_raw = None
        self._gap_s, self.period_s = gap_s, period_s

    def map(self, raw_s: float | None) -> float:
        """The timeline position of a frame whose pts is `raw_s` seconds (None: one period after the last)."""
        if raw_s is None:
            raw_s = self._last_raw + self.period_s if self._last_raw is not None else 0.0
        if self._first_raw is None:  # first frame of a session: continue after the last one
            self._first_raw = raw_s
            self._base_s = 0.0 if self.last_s is None else self.last_s + max(self._gap_s, self.period_s)
        t = self._base_s + (raw_s - self._first_raw)
        if self.last_s is not None and t <= self.last_s:
            # The camera's clock jumped back (or repeated a pts): restart the mapping one period on.
            self._first_raw, self._base_s = raw_s, self.last_s + self.period_s
            t = self._base_s
        self.last_s, self._last_raw = t, raw_s
        return t


class CameraWorker:
    """The decode thread's body. `run()` returns when stopped, when a file ends, or on a final failure."""

    def __init__(
        self,
        cfg: WorkerConfig,
        queue: FrameQueue[Frame],
        stats: SourceStats,
        set_status: Callable[[State, str, str], None],
        stop: threading.Event,
    ) -> None:
        self.cfg, self.queue, self.stats, self.stop = cfg, queue, stats, stop
        self.set_status = set_status
        self.local = is_file_url(cfg.url)
        self.backoff = Backoff(cfg.backoff_initial_s, cfg.backoff_max_s)
        self.timeline = Timeline()
        self.sampler = FpsSampler(cfg.fps)
        self.index = 0
        self.http = PolicedHTTP(
            cfg.policy, tls_verify=cfg.tls_verify, ca_file=cfg.ca_file, timeout_s=cfg.open_timeout_s
        )
        self._failure_log: tuple[str, float, int] = ("", 0.0, 0)  # (reason, when logged, repeats since)
        self.pixel_aspect = 1.0  # the open stream's sample aspect ratio (1 for square pixels)
        self.state = State.CONNECTING
        self.recent_pts: deque[float] = deque(maxlen=32)
        self.last_frame_mono: float | None = None

    def run(self) -> None:
        """Thread target: the reconnect loop, with the top-level crash guard."""
        _THREAD.stop = self.stop
        try:
            self._reconnect_loop()
        except QueueClosed:
            pass  # the consumer closed the source
        except Exception as exc:  # crash guard: a bug must mark the camera stopped, not vanish silently
            log.exception("camera %s: decode thread crashed", self.cfg.camera_id)
            self._status(State.STOPPED, f"internal error: {redact(repr(exc))}", "internal")
        finally:
            if self.state != State.STOPPED:
                self._status(State.STOPPED, "closed", "closed")
            self.queue.close()

    def _reconnect_loop(self) -> None:
        self._status(State.CONNECTING, f"opening {redact(self.cfg.url)}", "")
        while not self.stop.is_set():
            try:
                ended = self._session()
            except CameraUnreachable as err:
                if not self._on_failure(err):
                    return
            else:
                if self.stop.is_set() or not self._on_end_of_stream(ended):
                    return
                if self.local:
                    continue  # a looping file restarts at once
            self.stop.wait(self.backoff.next_delay())

    def _on_failure(self, err: CameraUnreachable) -> bool:
        """Record a failed session; whether to try again."""
        if self.stop.is_set():
            return False
        self._log_failure(err.reason)
        if not err.retryable:
            self._status(State.STOPPED, err.reason, err.code)
            return False
        self._status(State.DOWN, err.reason, err.code)
        return True

    def _log_failure(self, reason: str) -> None:
        """Warn when the reason changes, then at most once per FAILURE_LOG_EVERY_S with the repeat count:
        a camera that stays down cannot fill the log."""
        now = time.monotonic()
        last_reason, last_at, repeats = self._failure_log
        if reason == last_reason and now - last_at < FAILURE_LOG_EVERY_S:
            self._failure_log = (reason, last_at, repeats + 1)
            return
        again = f" (again, {repeats} more times since)" if reason == last_reason and repeats else ""
        log.warning("camera %s: %s%s", self.cfg.camera_id, reason, again)
        self._failure_log = (reason, now, 0)

    def _on_end_of_stream(self, ended: bool) -> bool:
        """A session ended without error; whether to go on (loop a file, reconnect a live camera)."""
        if not ended:
            return False
        if self.local and not self.cfg.loop:
            self._status(State.STOPPED, "end of file", "ended")
            return False
        if self.local:
            self.stats.loops += 1
            return True
        # A live server that goes away (killed, restarted) often just ends the stream (docs/design.md).
        self._status(State.DOWN, "the camera closed the stream (end of stream); reconnecting", "ended")
        return True

    def _status(self, state: State, reason: str, code: str) -> None:
        if state == State.UP and self.state == State.DOWN:
            self.stats.reconnects += 1
        self.state = state
        self.set_status(state, reason, code)

    # --- one session: open, then demux and decode until end, error or stop ---------------------------------

    def _session(self) -> bool:
        """Run one connection (or one file pass). True when the stream ended, False when stopped."""
        container = self._open()
        with container:
            stream = self._video_stream(container)
            gap = 0.0 if self.last_frame_mono is None else time.monotonic() - self.last_frame_mono
            rate = stream.average_rate or stream.guessed_rate
            self.timeline.new_session(0.0 if self.local else gap, 1 / float(rate) if rate else 1 / 25)
            return self._decode_all(container, stream)

    def _open(self) -> av.container.InputContainer:
        cfg = self.cfg
        target = Target(cfg.target, hls=False)
        if not self.local:
            self._resolve()
            target = self._checked_target()
        options = dict(cfg.ffmpeg_options)
        if not self.local:
            options = self._network_options() | options
        options |= ffmpeg_guard_options(
            local=self.local,
            tls_verify=cfg.tls_verify,
            ca_file=cfg.ca_file,
            hls=target.hls,
            rtsp=target.url.lower().startswith(("rtsp://", "rtsps://")),
        )
        io_open = self.http.io_open if target.hls else None  # every playlist entry fetched and checked here
        started = time.monotonic()
        try:  # blocking: this is why decode runs in its own thread (PyAV releases the GIL while it waits)
            return av.open(
                target.url,
                options=options,
                timeout=(cfg.open_timeout_s, cfg.read_timeout_s),
                io_open=io_open,
            )
        except AV_ERRORS as exc:
            self.stats.connect_failures += 1
            # While opening, FFmpeg's socket timeout (the read timeout) applies as well as the open timeout.
            limit = min(cfg.open_timeout_s, cfg.read_timeout_s)
            raise classify(
                exc,
                camera_id=cfg.camera_id,
                url=cfg.url,
                elapsed_s=time.monotonic() - started,
                timeout_s=limit,
                phase="open",
            ) from None

    def _checked_target(self) -> Target:
        """Where to open after the policy's checks on each redirect hop (a refused target is reported as
        plainly unreachable, never with what answered there)."""
        cfg = self.cfg
        if not cfg.target.lower().startswith(("http://", "https://")):
            if cfg.policy is not None:
                self._check_policy(cfg.policy.check, cfg.target)
            return Target(cfg.target, hls=False)
        return self._check_policy(self.http.resolve, cfg.target)

    def _check_policy(self, check: Callable[[str], _T], url: str) -> _T:
        try:
            return check(url)
        except TargetRefused:
            self.stats.connect_failures += 1
            raise CameraUnreachable(
                self.cfg.camera_id, "unreachable", "camera unreachable (outside the camera-target policy)"
            ) from None

    def _resolve(self) -> None:
        host, port = host_and_port(self.cfg.url)
        try:  # FFmpeg reports DNS failures as a bare EIO; resolve first so the reason can say "DNS"
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            self.stats.connect_failures += 1
            raise classify(
                exc,
                camera_id=self.cfg.camera_id,
                url=self.cfg.url,
                elapsed_s=0.0,
                timeout_s=self.cfg.open_timeout_s,
                phase="open",
            ) from None

    def _network_options(self) -> dict[str, str]:
        cfg = self.cfg
        options = {
            "timeout": str(int(cfg.read_timeout_s * 1_000_000)),  # socket I/O timeout, microseconds
            "analyzeduration": "1000000",  # ~1 s of probing: fast open, finds SPS (docs/design.md)
            "probesize": "1000000",
        }
        if cfg.url.lower().startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = cfg.transport
        return options

    def _video_stream(self, container: av.container.InputContainer) -> av.VideoStream:
        if not container.streams.video:
            raise CameraUnreachable(
                self.cfg.camera_id, "unsupported", "the source has no video stream", retryable=not self.local
            )
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise CameraUnreachable(
                self.cfg.camera_id,
                "unsupported",
                f"no decoder for codec {stream.codec_context_name!r}",
                retryable=False,
            )
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > self.cfg.max_pixels:
            raise CameraUnreachable(
                self.cfg.camera_id,
                "unsupported",
                f"the source's {width}x{height} picture is above the limit of {self.cfg.max_pixels} pixels",
                retryable=False,
            )
        stream.codec_context.thread_count = self.cfg.decode_threads
        sar = stream.sample_aspect_ratio
        self.pixel_aspect = (
            float(sar) if sar is not None and sar.numerator > 0 and sar.denominator > 0 else 1.0
        )
        return stream

    def _decode_all(self, container: av.container.InputContainer, stream: av.VideoStream) -> bool:
        packets = container.demux(stream)
        errors_in_a_row = 0
        pace = _Pacer(self.stop) if self.cfg.realtime else None
        while not self.stop.is_set():
            packet = self._next_packet(packets)
            if packet is None:
                return True
            started = time.perf_counter()
            try:
                decoded = stream.decode(packet)
            except AV_ERRORS:
                errors_in_a_row += 1
                self.stats.count_drop("decode_error")
                if errors_in_a_row > MAX_DECODE_ERRORS:
                    raise CameraUnreachable(
                        self.cfg.camera_id,
                        "invalid_data",
                        "the stream keeps failing to decode (corrupt data)",
                        retryable=not self.local,
                    ) from None
                continue
            errors_in_a_row = 0
            self.stats.decode_seconds += time.perf_counter() - started
            for frame in decoded:
                self._on_frame(frame, pace)
        return False

    def _next_packet(self, packets: Iterator[av.Packet[Any]]) -> av.Packet[Any] | None:
        started = time.monotonic()
        try:  # blocking read, bounded by the read timeout (and by stop, through _StopAwareClock)
            return next(packets)
        except StopIteration:
            return None
        except AV_ERRORS as exc:
            if self.stop.is_set():
                return None
            raise classify(
                exc,
                camera_id=self.cfg.camera_id,
                url=self.cfg.url,
                elapsed_s=time.monotonic() - started,
                timeout_s=self.cfg.read_timeout_s,
                phase="read",
            ) from None

    def _on_frame(self, frame: av.VideoFrame, pace: _Pacer | None) -> None:
        pts_s = self.timeline.map(frame.time)
        now = time.time()
        self.last_frame_mono = time.monotonic()
        self.stats.frames_decoded += 1
        self.stats.last_frame_wall_time = now
        self.recent_pts.append(pts_s)
        if len(self.recent_pts) > 1 and self.recent_pts[-1] > self.recent_pts[0]:
            self.stats.input_fps = (len(self.recent_pts) - 1) / (self.recent_pts[-1] - self.recent_pts[0])
        if self.state != State.UP:
            self._status(State.UP, "", "")
            self.backoff.reset()
        if pace is not None:
            pace.wait_until(pts_s)
        if self.sampler.take(pts_s):
            self._emit(frame, pts_s, now)

    def _emit(self, frame: av.VideoFrame, pts_s: float, wall_time: float) -> None:
        started = time.perf_counter()
        width, height = self._output_size(frame.width, frame.height)
        # swscale converts and resizes in C, only for the frames the sampler kept.
        rgb = cast(npt.NDArray[np.uint8], frame.to_ndarray(format="rgb24", width=width, height=height))
        self.stats.decode_seconds += time.perf_counter() - started
        aspect = frame.width * self.pixel_aspect / frame.height if frame.width and frame.height else None
        item = Frame(self.cfg.camera_id, self.index, pts_s, wall_time, rgb, aspect)
        self.index += 1
        self.stats.frames_sampled += 1
        # Files read faster than real time wait for the consumer; live sources drop the oldest frame.
        block = self.local and not self.cfg.realtime
        if self.queue.put(item, block=block, stop=self.stop):
            self.stats.count_drop("consumer_behind")

    def _output_size(self, src_w: int, src_h: int) -> tuple[int, int]:
        w, h = self.cfg.width, self.cfg.height
        if w and h:
            return w, h
        if w:
            return w, max(2, round(src_h * w / src_w / 2) * 2)
        if h:
            return max(2, round(src_w * h / src_h / 2) * 2), h
        return src_w, src_h


class _Pacer:
    """Sleeps so frames come out at their presentation times (a file replayed as a live camera)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.origin: tuple[float, float] | None = None  # (monotonic, pts_s) that line up

    def wait_until(self, pts_s: float) -> None:
        """Block until the wall clock reaches `pts_s` on this pacer's schedule (or stop)."""
        now = time.monotonic()
        if self.origin is None:
            self.origin = (now, pts_s)
        delay = self.origin[0] + (pts_s - self.origin[1]) - now
        if delay < -0.5:
            self.origin = (now, pts_s)  # fell behind (CPU starved): continue live, don't burst to catch up
        elif delay > 0:
            self.stop.wait(delay)
