"""Sampling by presentation timestamps and the bounded thread-to-asyncio frame queue."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import pytest

from streamer.sampler import FpsSampler, FrameQueue, QueueClosed


def sample(fps: float | None, timestamps: list[float]) -> list[float]:
    sampler = FpsSampler(fps)
    return [t for t in timestamps if sampler.take(t)]


def test_a_25_fps_stream_sampled_at_2_fps_gives_two_frames_per_second_half_a_second_apart() -> None:
    kept = sample(2, [i / 25 for i in range(250)])  # 10 s
    assert len(kept) == 20
    gaps = [b - a for a, b in itertools.pairwise(kept)]
    assert all(abs(g - 0.5) <= 1 / 25 + 1e-9 for g in gaps)


def test_ntsc_rate_sampled_at_5_fps_matches_duration_times_fps_within_one_frame() -> None:
    timestamps = [i * 1001 / 30000 for i in range(600)]  # 29.97 fps, ~20 s
    kept = sample(5, timestamps)
    assert abs(len(kept) - timestamps[-1] * 5) <= 1


def test_no_target_fps_keeps_every_frame() -> None:
    assert sample(None, [0.0, 0.01, 0.02]) == [0.0, 0.01, 0.02]
    assert sample(0, [0.0, 0.01]) == [0.0, 0.01]


def test_after_a_gap_the_sampler_restarts_instead_of_emitting_a_burst() -> None:
    kept = sample(1, [0.0, 0.5, 1.0] + [30.0 + i / 10 for i in range(25)])
    assert kept == [0.0, 1.0, 30.0, 31.0, 32.0]


def test_the_sampler_rejects_a_negative_fps() -> None:
    with pytest.raises(ValueError):
        FpsSampler(-2)


async def test_a_full_queue_drops_its_oldest_item_and_says_so() -> None:
    queue: FrameQueue[int] = FrameQueue(2, asyncio.get_running_loop())
    dropped = [queue.put(i) for i in range(5)]
    assert dropped == [False, False, True, True, True]
    assert [await queue.get(), await queue.get()] == [3, 4]


async def test_a_producer_thread_never_holds_more_than_maxsize_items_while_the_loop_is_blocked() -> None:
    queue: FrameQueue[bytes] = FrameQueue(3, asyncio.get_running_loop())
    drops = 0

    def produce() -> None:
        nonlocal drops
        for _ in range(2000):
            drops += queue.put(bytes(1000))

    thread = threading.Thread(target=produce)
    thread.start()
    thread.join()  # the event loop is blocked all along: no callback per item may pile up
    assert len(queue) == 3 and drops == 1997
    assert await queue.get() is not None


async def test_a_blocking_put_waits_for_the_consumer_instead_of_dropping() -> None:
    queue: FrameQueue[int] = FrameQueue(1, asyncio.get_running_loop())
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.extend(queue.put(i, block=True) for i in range(5)))
    thread.start()
    got = [await asyncio.wait_for(queue.get(), 5) for _ in range(5)]
    thread.join(5)
    assert got == [0, 1, 2, 3, 4] and results == [False] * 5


async def test_get_returns_what_is_left_then_none_after_close() -> None:
    queue: FrameQueue[int] = FrameQueue(4, asyncio.get_running_loop())
    queue.put(1)
    queue.close()
    assert await queue.get() == 1
    assert await queue.get() is None
    with pytest.raises(QueueClosed):
        queue.put(2)


async def test_a_waiting_consumer_wakes_when_another_thread_puts() -> None:
    queue: FrameQueue[str] = FrameQueue(2, asyncio.get_running_loop())
    threading.Timer(0.05, lambda: queue.put("frame")).start()
    started = time.monotonic()
    assert await asyncio.wait_for(queue.get(), 2) == "frame"
    assert time.monotonic() - started < 1


async def test_a_blocked_producer_gives_up_when_stopped() -> None:
    queue: FrameQueue[int] = FrameQueue(1, asyncio.get_running_loop())
    queue.put(0)
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    assert queue.put(1, block=True, stop=stop) is False
    assert len(queue) == 1
