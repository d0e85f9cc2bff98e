"""The encode batcher: one encoder call for the frames that wait together, a bound on waiting, failures that
stay with their batch."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
import torch

from agent.camera.batcher import EncodeBatcher


def frame(value: int) -> np.ndarray:
    return np.full((4, 4, 3), value, dtype=np.uint8)


class Encoder:
    """Each frame becomes one token row [1, 2] holding its pixel value; records every batch it was given."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[int] = set()
        self.fail_on = fail_on

    def __call__(self, frames: list[np.ndarray]) -> torch.Tensor:
        values = [int(f[0, 0, 0]) for f in frames]
        self.batches.append(values)
        self.threads.add(threading.get_ident())
        if self.fail_on in values:
            raise RuntimeError("encoder broke")
        return torch.tensor(values, dtype=torch.float32)[:, None, None].expand(-1, 1, 2)


async def test_frames_waiting_together_share_one_encoder_call_and_each_gets_its_own_row() -> None:
    encoder = Encoder()
    batcher = EncodeBatcher(encoder, max_batch=4, max_wait_s=0.5)
    await batcher.start()
    try:
        results = await asyncio.gather(*(batcher.encode(frame(v)) for v in (1, 2, 3, 4)))
    finally:
        await batcher.stop()
    assert encoder.batches == [[1, 2, 3, 4]]
    assert [float(tokens[0, 0]) for tokens, _ in results] == [1.0, 2.0, 3.0, 4.0]
    assert all(seconds >= 0 for _, seconds in results)
    assert batcher.stats.batches == 1 and batcher.stats.frames == 4 and batcher.stats.last_batch_size == 4
    assert threading.get_ident() not in encoder.threads, "the encoder runs off the event loop"


async def test_a_lone_frame_is_encoded_once_the_oldest_has_waited_max_wait() -> None:
    encoder = Encoder()
    batcher = EncodeBatcher(encoder, max_batch=8, max_wait_s=0.05)
    await batcher.start()
    try:
        tokens, _ = await asyncio.wait_for(batcher.encode(frame(7)), 5)
    finally:
        await batcher.stop()
    assert encoder.batches == [[7]] and float(tokens[0, 0]) == 7.0


async def test_a_failing_batch_fails_its_own_frames_and_the_next_batch_is_served() -> None:
    encoder = Encoder(fail_on=1)
    batcher = EncodeBatcher(encoder, max_batch=1, max_wait_s=0.01)
    await batcher.start()
    try:
        with pytest.raises(RuntimeError, match="encoder broke"):
            await batcher.encode(frame(1))
        tokens, _ = await batcher.encode(frame(2))
    finally:
        await batcher.stop()
    assert float(tokens[0, 0]) == 2.0 and batcher.stats.batches == 1


async def test_past_its_bound_the_queue_refuses_a_frame_and_counts_it() -> None:
    batcher = EncodeBatcher(Encoder(), max_queue=1)  # not started: nothing drains the queue
    waiting = asyncio.ensure_future(batcher.encode(frame(1)))
    await asyncio.sleep(0)
    with pytest.raises(asyncio.QueueFull):
        await batcher.encode(frame(2))
    assert batcher.stats.rejected == 1
    await batcher.stop()
    with pytest.raises(RuntimeError, match="encoder stopped"):
        await waiting  # stop() fails what still waits
