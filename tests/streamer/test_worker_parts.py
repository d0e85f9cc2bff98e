"""The decode thread's pure parts: reconnect backoff, the continuous timeline, and failure descriptions."""

from __future__ import annotations

import errno
import itertools
import socket

import av
import pytest

from streamer.failures import classify
from streamer.worker import Backoff, Timeline


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap_with_jitter() -> None:
    backoff = Backoff(0.5, 10.0)
    delays = [backoff.next_delay() for _ in range(10)]
    caps = [min(10.0, 0.5 * 2**i) for i in range(10)]
    assert all(cap * 0.5 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    assert max(delays) <= 10.0 and delays[-1] >= 5.0


def test_backoff_starts_over_after_a_reset() -> None:
    backoff = Backoff(1.0, 8.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_jitter_spreads_the_reconnects_of_many_cameras() -> None:
    first_retry = {round(Backoff(2.0, 10.0).next_delay(), 3) for _ in range(50)}
    assert len(first_retry) > 25


def test_the_timeline_starts_at_zero_whatever_the_cameras_first_pts() -> None:
    timeline = Timeline()
    timeline.new_session(0.0, 0.04)
    assert [timeline.map(t) for t in (1000.0, 1000.04, 1000.08)] == pytest.approx([0.0, 0.04, 0.08])


def test_a_reconnect_continues_the_timeline_after_the_outage_although_pts_restarted() -> None:
    timeline = Timeline()
    timeline.new_session(0.0, 0.04)
    before = [timeline.map(t) for t in (5.0, 5.04, 5.08)]
    timeline.new_session(3.0, 0.04)  # 3 s outage; the new RTSP session's pts start near 0 again
    after = [timeline.map(t) for t in (0.1, 0.14)]
    assert after == pytest.approx([before[-1] + 3.0, before[-1] + 3.04])


def test_a_camera_clock_that_jumps_back_still_gives_increasing_timestamps() -> None:
    timeline = Timeline()
    timeline.new_session(0.0, 0.04)
    out = [timeline.map(t) for t in (10.0, 10.04, 2.0, 2.04, 2.04, None)]
    assert all(b > a for a, b in itertools.pairwise(out))


def _code(
    exc: BaseException, url: str = "rtsp://u:pw-123456@cam.local:554/live", elapsed: float = 0.01
) -> str:
    err = classify(exc, camera_id="c", url=url, elapsed_s=elapsed, timeout_s=5.0, phase="open")
    assert "pw-123456" not in err.reason
    return err.code


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "dns"),
        (
            av.HTTPUnauthorizedError(0, "Server returned 401", "rtsp://u:pw-123456@cam.local/live"),
            "unauthorized",
        ),
        (av.HTTPForbiddenError(0, "Server returned 403", "x"), "forbidden"),
        (av.HTTPNotFoundError(0, "Server returned 404", "x"), "not_found"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "refused"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), "unreachable"),
        (av.ExitError(0, "Immediate exit requested", "x"), "timeout"),
        (av.InvalidDataError(0, "Invalid data", "rtsp://u:pw-123456@cam.local/live"), "invalid_data"),
        (OSError(errno.EIO, "Input/output error", "rtsp://u:pw-123456@cam.local/live"), "io_error"),
    ],
)
def test_each_failure_gets_its_own_reason_code(exc: BaseException, code: str) -> None:
    assert _code(exc) == code


def test_invalid_data_at_the_timeout_is_reported_as_a_timeout() -> None:
    # FFmpeg reports a server that never speaks RTSP as invalid data, but only once the timeout has passed.
    assert _code(av.InvalidDataError(0, "Invalid data", "x"), elapsed=4.9) == "timeout"


def test_local_file_failures_are_final_and_network_failures_are_retried() -> None:
    file_err = classify(
        FileNotFoundError(2, "No such file"),
        camera_id="c",
        url="/videos/gone.mp4",
        elapsed_s=0.0,
        timeout_s=5.0,
        phase="open",
    )
    net_err = classify(
        av.HTTPUnauthorizedError(0, "401", "x"),
        camera_id="c",
        url="rtsp://cam/x",
        elapsed_s=0.0,
        timeout_s=5.0,
        phase="open",
    )
    assert (file_err.code, file_err.retryable) == ("file_not_found", False)
    assert net_err.retryable
