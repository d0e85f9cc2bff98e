"""Network sources against real servers: a GStreamer RTSP camera that we kill, pause and restart, plus
servers that refuse, never answer, ask for a password or send garbage."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from typing import TypedDict

import pytest

import streamer
from harness.ports import free_port
from harness.rtsp import RtspServer
from streamer import State
from streamer.policy import TargetPolicy, TargetRefused
from tests.streamer.conftest import TcpServer
from tests.streamer.helpers import StatusLog, camera_threads, collect, wait_for


class _FastOptions(TypedDict):
    """Keyword options for `streamer.open_source` that make reconnects and timeouts quick in tests."""

    backoff_initial_s: float
    backoff_max_s: float
    open_timeout_s: float
    read_timeout_s: float


FAST: _FastOptions = {
    "backoff_initial_s": 0.2,
    "backoff_max_s": 1.0,
    "open_timeout_s": 3.0,
    "read_timeout_s": 2.0,
}


async def test_pulling_rtsp_at_2_fps_gives_increasing_timestamps_the_right_size_and_count(
    rtsp_server: RtspServer,
) -> None:
    async with streamer.open_source(rtsp_server.url, camera_id="cam", fps=2, **FAST) as source:
        frames = await collect(source, until_pts_s=4.0)
        assert source.status.state == State.UP
    assert abs(len(frames) - 4.0 * 2) <= 1
    assert all(f.rgb.shape == (144, 176, 3) and f.camera_id == "cam" for f in frames)
    assert all(b.pts_s > a.pts_s and b.index == a.index + 1 for a, b in itertools.pairwise(frames))
    assert abs(source.stats.input_fps - 29.97) < 1.5


async def test_udp_transport_can_be_selected(rtsp_server: RtspServer) -> None:
    async with streamer.open_source(
        rtsp_server.url, camera_id="cam", fps=2, transport="udp", **FAST
    ) as source:
        frames = await collect(source, count=3)
    assert len(frames) == 3


async def test_a_killed_camera_goes_down_then_up_on_its_own_and_indices_keep_increasing(
    rtsp_server: RtspServer,
) -> None:
    log = StatusLog()
    threads_before = threading.active_count()
    async with streamer.open_source(rtsp_server.url, camera_id="cam", fps=4, on_status=log, **FAST) as source:
        before = await collect(source, count=4)
        rtsp_server.kill()
        await wait_for(lambda: source.status.state == State.DOWN, 5, "down after the kill")
        rtsp_server.restart()
        await wait_for(lambda: source.status.state == State.UP, 10, "up after the restart")
        after = await collect(source, count=4)
        assert source.stats.reconnects == 1
    assert log.states[:2] == ["connecting", "up"] and "down" in log.states
    assert log.states[log.states.index("down") :][-2:] == ["up", "stopped"]
    frames = before + after
    assert all(b.index > a.index and b.pts_s > a.pts_s for a, b in itertools.pairwise(frames))
    assert after[0].pts_s - before[-1].pts_s >= 0.2  # the outage shows on the timeline
    await wait_for(lambda: threading.active_count() <= threads_before, 3, "no leaked threads")
    assert camera_threads() == []


async def test_a_hung_camera_goes_down_after_the_read_timeout_and_up_when_it_resumes(
    rtsp_server: RtspServer,
) -> None:
    async with streamer.open_source(rtsp_server.url, camera_id="cam", fps=2, **FAST) as source:
        await collect(source, count=2)
        rtsp_server.pause()
        took = await wait_for(
            lambda: source.status.state == State.DOWN, 8, "down while the server is stopped"
        )
        assert source.status.code == "timeout" and "timed out" in source.status.reason
        assert took <= FAST["read_timeout_s"] + 3
        rtsp_server.resume()
        await wait_for(lambda: source.status.state == State.UP, 15, "up after resuming")


async def test_close_releases_the_thread_within_2_s_even_while_the_camera_hangs(
    rtsp_server: RtspServer,
) -> None:
    source = streamer.open_source(
        rtsp_server.url, camera_id="cam", fps=2, read_timeout_s=30, open_timeout_s=30
    )
    async with source:
        await collect(source, count=2)
        rtsp_server.pause()
        await asyncio.sleep(0.5)  # the decode thread is now blocked in a read with 29 s to go
        started = time.monotonic()
        await source.close()
        assert time.monotonic() - started < 2.0
    assert not source.running and source.status.state == State.STOPPED


async def test_a_wrong_path_goes_down_with_not_found(rtsp_server: RtspServer) -> None:
    url = rtsp_server.url.replace("/cam", "/nope")
    async with streamer.open_source(url, camera_id="cam", fps=2, **FAST) as source:
        await wait_for(lambda: source.status.state == State.DOWN, 5, "down")
        assert source.status.code == "not_found" and "404" in source.status.reason


async def test_bad_credentials_go_down_as_unauthorized_and_the_password_is_never_shown(
    rtsp_server_with_auth: RtspServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = rtsp_server_with_auth.url_with("viewer", "wrong-pa55word")
    async with streamer.open_source(url, camera_id="cam", fps=2, **FAST) as source:
        await wait_for(lambda: source.stats.connect_failures >= 2, 5, "two refused logins")
        status, stats = source.status, source.stats
    assert status.code == "unauthorized" and "401" in status.reason
    shown = f"{status} {stats} {source.url} {caplog.text}"
    assert "wrong-pa55word" not in shown and "viewer" not in shown


async def test_right_credentials_are_accepted(rtsp_server_with_auth: RtspServer) -> None:
    url = rtsp_server_with_auth.url_with("viewer", "hunter2-secret")
    async with streamer.open_source(url, camera_id="cam", fps=2, **FAST) as source:
        assert len(await collect(source, count=2)) == 2


async def test_a_closed_port_goes_down_with_connection_refused() -> None:
    async with streamer.open_source(
        f"rtsp://127.0.0.1:{free_port()}/cam", camera_id="cam", fps=2, **FAST
    ) as s:
        await wait_for(lambda: s.status.state == State.DOWN, 3, "down")
        assert s.status.code == "refused" and "connection refused" in s.status.reason


async def test_a_camera_that_stays_refused_logs_its_reason_once_not_at_every_retry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="streamer.worker")
    async with streamer.open_source(
        f"rtsp://127.0.0.1:{free_port()}/cam", camera_id="cam", fps=2, **FAST
    ) as s:
        await wait_for(lambda: s.stats.connect_failures >= 4, 10, "four failed connections")
    warnings = [r for r in caplog.records if "connection refused" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


async def test_an_unresolvable_host_goes_down_with_a_dns_failure() -> None:
    async with streamer.open_source("rtsp://no-such-camera.invalid/cam", camera_id="cam", fps=2, **FAST) as s:
        await wait_for(lambda: s.status.state == State.DOWN, 5, "down")
        assert s.status.code == "dns" and "no-such-camera.invalid" in s.status.reason


def test_an_address_outside_the_camera_networks_is_refused_before_any_packet_is_sent() -> None:
    # Tests stay on loopback: the policy stops a foreign address (TEST-NET-1 here) before any connection.
    loopback_only = TargetPolicy.from_cidrs(["127.0.0.0/8"])
    with pytest.raises(TargetRefused, match="outside the camera networks"):
        streamer.open_source("rtsp://192.0.2.1:554/cam", camera_id="cam", fps=2, policy=loopback_only, **FAST)


async def test_a_server_that_accepts_but_never_answers_times_out(black_hole_server: TcpServer) -> None:
    url = f"rtsp://127.0.0.1:{black_hole_server.port}/cam"
    async with streamer.open_source(url, camera_id="cam", fps=2, **FAST) as s:
        await wait_for(lambda: s.status.state == State.DOWN, FAST["open_timeout_s"] + 3, "down")
        assert s.status.code == "timeout"


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
async def test_garbage_bytes_served_as_a_stream_go_down_with_a_clear_reason(
    garbage_server: TcpServer, scheme: str
) -> None:
    url = f"{scheme}://127.0.0.1:{garbage_server.port}/cam"
    async with streamer.open_source(url, camera_id="cam", fps=2, **FAST) as s:
        await wait_for(lambda: s.status.state == State.DOWN, 5, "down")
        assert s.status.code in {"invalid_data", "io_error"} and s.status.reason
        await asyncio.wait_for(_no_frame_yet(s), 1)  # raises on a timeout or if a frame came through


async def _no_frame_yet(source: streamer.Source) -> None:
    await asyncio.sleep(0.3)
    assert source.stats.frames_emitted == 0


async def test_a_progressive_mp4_over_http_is_ingested(http_video_server: str) -> None:
    async with streamer.open_source(
        f"{http_video_server}/faststart.mp4", camera_id="web", fps=2, **FAST
    ) as source:
        frames = await collect(source, count=5)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4] and frames[0].rgb.shape == (272, 640, 3)


async def test_a_slow_consumer_has_its_drops_counted_and_memory_stays_bounded(
    rtsp_server: RtspServer,
) -> None:
    async with streamer.open_source(
        rtsp_server.url, camera_id="cam", fps=None, queue_size=2, **FAST
    ) as source:
        held = []
        async for frame in source.frames():
            await asyncio.sleep(0.25)  # a consumer four times slower than the 30 fps camera ... for 3 s
            held.append(frame.index)
            stats = source.stats
            # Frames in flight never exceed the queue: everything sampled was emitted, dropped or is queued.
            assert stats.frames_sampled - stats.frames_emitted - stats.drops.get("consumer_behind", 0) <= 2
            if len(held) == 12:
                break
    assert source.stats.drops["consumer_behind"] >= 40
    assert all(
        b > a + 1 for a, b in itertools.pairwise(held[2:])
    )  # the consumer sees fresh frames, with gaps


async def test_eight_cameras_from_one_server_all_make_progress(rtsp_server: RtspServer) -> None:
    sources = [streamer.open_source(rtsp_server.url, camera_id=f"cam{i}", fps=2, **FAST) for i in range(8)]
    for source in sources:
        await source.start()
    try:
        counts = await asyncio.gather(*(collect(s, count=5, timeout_s=30) for s in sources))
    finally:
        await asyncio.gather(*(s.close() for s in sources))
    assert [len(c) for c in counts] == [5] * 8
    assert camera_threads() == []


async def test_status_callbacks_run_on_the_event_loop_thread(rtsp_server: RtspServer) -> None:
    log = StatusLog()
    async with streamer.open_source(rtsp_server.url, camera_id="cam", fps=2, on_status=log, **FAST) as source:
        await collect(source, count=1)
        await asyncio.sleep(0.05)
    assert log.threads == {threading.get_ident()} and log.states[-1] == "stopped"
