"""Local files as sources: sampling from timestamps, resizing, looping as a live camera, broken files."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest

import streamer
from streamer import State
from tests.streamer.helpers import camera_threads, collect


async def test_a_file_sampled_at_2_fps_gives_duration_times_fps_frames_in_timestamp_order(
    videos: Path,
) -> None:
    async with streamer.open_source(str(videos / "bikes.mp4"), camera_id="bikes", fps=2) as source:
        frames = await collect(source)
    assert len(frames) == 20  # 10 s at 25 fps: pts 0 .. 9.96 -> 0, 0.5, ..., 9.5
    assert [f.index for f in frames] == list(range(20))
    assert all(abs((b.pts_s - a.pts_s) - 0.5) <= 0.04 + 1e-6 for a, b in itertools.pairwise(frames))
    assert frames[0].rgb.shape == (272, 640, 3) and frames[0].rgb.dtype == np.uint8
    assert source.status.state == State.STOPPED and source.status.code == "ended"
    stats = source.stats
    assert (stats.frames_decoded, stats.frames_sampled, stats.frames_emitted) == (250, 20, 20)
    assert stats.drops == {} and abs(stats.input_fps - 25) < 0.5 and stats.decode_seconds > 0


async def test_frames_are_resized_at_decode_to_the_requested_size(videos: Path) -> None:
    async with streamer.open_source(str(videos / "bikes.mp4"), camera_id="c", fps=1, size=(64, 48)) as source:
        frames = await collect(source, count=2)
    assert frames[0].rgb.shape == (48, 64, 3) and frames[0].rgb.flags.c_contiguous


async def test_a_squashed_frame_still_knows_the_pictures_aspect_ratio(videos: Path) -> None:
    async with streamer.open_source(
        str(videos / "bikes.mp4"), camera_id="c", fps=1, size=(448, 448)
    ) as source:
        frames = await collect(source, count=1)
    assert frames[0].rgb.shape == (448, 448, 3)
    assert frames[0].source_aspect == pytest.approx(640 / 272)


async def test_a_source_larger_than_the_pixel_limit_stops_with_a_clear_reason(videos: Path) -> None:
    async with streamer.open_source(
        str(videos / "bikes.mp4"), camera_id="c", fps=1, max_pixels=100_000
    ) as src:
        frames = await collect(src, count=1, timeout_s=10)
        assert frames == []
        assert src.status.state == State.STOPPED and src.status.code == "unsupported"
        assert "640x272 picture is above the limit of 100000 pixels" in src.status.reason


async def test_giving_only_a_width_keeps_the_aspect_ratio(videos: Path) -> None:
    async with streamer.open_source(str(videos / "bikes.mp4"), camera_id="c", fps=1, width=320) as source:
        frames = await collect(source, count=1)
    assert frames[0].rgb.shape == (136, 320, 3)


async def test_a_looping_file_plays_at_its_native_rate_with_ever_increasing_timestamps(videos: Path) -> None:
    # carphone is 4 s long: reaching pts 5 s means it looped once, and pacing makes that take ~5 s.
    started = time.monotonic()
    async with streamer.open_source(
        str(videos / "carphone_pristine.mp4"), camera_id="demo", fps=4, loop=True
    ) as source:
        frames = await collect(source, until_pts_s=5.0, timeout_s=15)
        elapsed = time.monotonic() - started
        assert source.status.state == State.UP
    assert 4.5 <= elapsed <= 8.0
    assert source.stats.loops == 1
    pts = [f.pts_s for f in frames]
    assert all(b > a for a, b in itertools.pairwise(pts))
    assert abs(len(frames) - 5.0 * 4) <= 1


async def test_a_file_read_faster_than_real_time_waits_for_a_slow_consumer_instead_of_dropping(
    videos: Path,
) -> None:
    async with streamer.open_source(
        str(videos / "carphone_pristine.mp4"), camera_id="c", fps=None, queue_size=1
    ) as source:
        count = 0
        async for _ in source.frames():
            count += 1
            if count % 20 == 0:
                time.sleep(0.05)  # deliberately stalls the event loop, as a busy consumer does
    assert count == 120 and source.stats.drops == {}


async def test_a_truncated_recording_stops_with_a_clear_reason_and_no_exception(
    truncated_mp4s: dict[str, Path],
) -> None:
    async with streamer.open_source(str(truncated_mp4s["cut"]), camera_id="cut", fps=2) as source:
        frames = await collect(source, timeout_s=10)
    assert frames == []
    assert source.status.state == State.STOPPED and source.status.code == "invalid_data"
    assert "corrupt, truncated" in source.status.reason


async def test_a_truncated_faststart_mp4_plays_its_first_half_then_stops(
    truncated_mp4s: dict[str, Path],
) -> None:
    async with streamer.open_source(str(truncated_mp4s["cut_faststart"]), camera_id="cut", fps=5) as source:
        frames = await collect(source, timeout_s=10)
    assert 20 <= len(frames) <= 26  # ~114 of 250 frames decode, ~4.6 s at 5 fps
    assert source.status.state == State.STOPPED and source.status.code in {"ended", "invalid_data"}


async def test_random_bytes_named_mp4_stop_with_invalid_data(truncated_mp4s: dict[str, Path]) -> None:
    async with streamer.open_source(
        str(truncated_mp4s["noise"]), camera_id="noise", fps=2, loop=True
    ) as source:
        frames = await collect(source, timeout_s=10)
    assert frames == [] and source.status.code == "invalid_data" and source.status.state == State.STOPPED


async def test_closing_a_looping_file_releases_its_thread_within_2_s(videos: Path) -> None:
    source = streamer.open_source(str(videos / "bigbuckbunny.mp4"), camera_id="bbb", fps=2, loop=True)
    async with source:
        await collect(source, count=1)
        started = time.monotonic()
    assert time.monotonic() - started < 2.0
    assert not source.running and camera_threads() == []
    assert source.status.state == State.STOPPED


async def test_a_source_cannot_be_entered_twice_or_reused_after_close(videos: Path) -> None:
    source = streamer.open_source(str(videos / "bikes.mp4"), camera_id="c", fps=1)
    async with source:
        with pytest.raises(RuntimeError, match="already entered"):
            await source.__aenter__()
    with pytest.raises(streamer.SourceClosed):
        await source.start()
