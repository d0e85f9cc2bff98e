"""A node's shared encoder on a real Ray node (127.0.0.1): frames of several cameras in one batch, the same
tokens as the model in this process, and a crashed encoder replaced without failing the frame."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data

from agent.cluster.encoders import ENCODER_PREFIX, EncoderStats, RemoteEncoder
from agent.models import load_backend
from tests.cluster.conftest import LocalCluster, cluster_settings

FRAMES = [data.astronaut(), data.chelsea(), data.coffee()]  # type: ignore[no-untyped-call]  # real photos


def _frame(image: np.ndarray) -> np.ndarray:
    import PIL.Image

    return np.array(PIL.Image.fromarray(image).resize((448, 448)))  # writable, as a decoded frame is


@pytest.mark.parametrize("local_cluster", [0], indirect=True)
async def test_one_encoder_per_node_batches_cameras_frames_and_survives_a_crash(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    import ray

    settings = cluster_settings(local_cluster, tmp_path)
    ray.init(address=local_cluster.address, _node_ip_address="127.0.0.1", namespace="scissor")
    cpu = torch.device("cpu")
    cameras = [RemoteEncoder(settings, cpu, timeout_s=60) for _ in FRAMES]  # three cameras on one node
    frames = [_frame(f) for f in FRAMES]

    await cameras[0].encode(frames[0])  # starts the node's encoder (the model loads once)
    results = await asyncio.gather(*(c.encode(f) for c, f in zip(cameras, frames, strict=True)))

    handle = ray.get_actor(ENCODER_PREFIX + ray.get_runtime_context().get_node_id(), namespace="scissor")
    assert all(c.handle()._actor_id == handle._actor_id for c in cameras)  # one actor, found by name
    stats: EncoderStats = await handle.stats.remote()
    # Each camera has one frame in flight: a batch of more than one holds frames of several cameras.
    assert stats.frames == 4 and stats.batches < 4 and stats.largest_batch >= 2, stats
    expected = load_backend("embedded", device="cpu").encoder.encode(frames)
    for (tokens, seconds), want in zip(results, expected, strict=True):
        assert tokens.shape == want.shape and seconds > 0
        torch.testing.assert_close(tokens, want, atol=1e-3, rtol=1e-3)

    pid = await handle.pid.remote()
    os.kill(pid, signal.SIGKILL)  # the encoder's process crashes; Ray starts it again on the node
    tokens, _ = await cameras[1].encode(frames[1])
    torch.testing.assert_close(tokens, expected[1], atol=1e-3, rtol=1e-3)
    assert await handle.pid.remote() != pid
