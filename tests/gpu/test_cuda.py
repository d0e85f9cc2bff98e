"""On a CUDA device: the compressor, the memory and the embedded encoder give what they give on the CPU, and
the memory and the compressor stay within their host-sync budgets (torch.cuda.set_sync_debug_mode).

Marked `gpu` (left out of the default run); `scripts/gpu-check` runs them. Without a CUDA device they fail
with that reason rather than skip: a GPU check that checked nothing must not read as passed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import Tensor

from agent.models import load_backend
from bench.compress import camera_like_stream
from compress.memory import TokenMemory
from compress.scc import compress_video
from compress.syncs import HostSyncs
from tests.agent.camera.test_pipeline_device import PX, frames, pipeline

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda() -> torch.device:
    assert torch.cuda.is_available(), "no CUDA device: run the gpu tests on a machine with one"
    return torch.device("cuda")


def clustered(frames: int, tokens: int = 196, dim: int = 256, seed: int = 0) -> Tensor:
    """`[F, N, D]` tokens around a few slowly changing concepts, as a camera's are."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(12, dim, generator=g)
    which = torch.randint(0, 12, (frames, tokens), generator=g)
    return centres[which] + 0.05 * torch.randn(frames, tokens, dim, generator=g)


def test_compress_video_on_cuda_equals_the_cpu(cuda: torch.device) -> None:
    video = clustered(16)
    cpu = compress_video(video, 0.9)
    gpu = compress_video(video.to(cuda), 0.9)
    assert gpu.device.type == "cuda" and gpu.shape == cpu.shape
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-4)


def test_the_memory_on_cuda_keeps_the_same_entries_and_intervals(cuda: torch.device) -> None:
    video = clustered(120, seed=1)
    memories = [TokenMemory(256, 0.9, capacity=64, device=d) for d in ("cpu", cuda)]
    for i, frame in enumerate(video):
        for memory in memories:
            memory.add_frame(frame, 0.5 * i, i)
    (cpu_means, cpu_info), (gpu_means, gpu_info) = (m.tokens() for m in memories)
    assert gpu_means.device.type == "cuda"
    assert [(e.id, e.count, e.intervals) for e in gpu_info] == [
        (e.id, e.count, e.intervals) for e in cpu_info
    ]
    assert torch.allclose(gpu_means.cpu(), cpu_means, atol=1e-4)
    copy = TokenMemory.from_bytes(memories[1].to_bytes(), device=cuda)
    assert [e.intervals for e in copy.tokens()[1]] == [e.intervals for e in gpu_info]


def test_the_embedded_encoder_on_cuda_matches_the_cpu_and_auto_picks_cuda(cuda: torch.device) -> None:
    frame = np.random.default_rng(0).integers(0, 256, (448, 448, 3), dtype=np.uint8)
    cpu = load_backend("embedded", device="cpu").encoder.encode([frame])
    auto = load_backend("embedded", device="auto")
    gpu = auto.encoder.encode([frame])
    assert gpu.shape == cpu.shape
    assert torch.allclose(gpu.float().cpu(), cpu, atol=5e-2, rtol=5e-2)  # float16 on CUDA by default


ADD_FRAME_BUDGET = 16  # as tests/compress/test_host_syncs.py asserts on the CPU


def test_add_frame_on_cuda_stays_within_the_host_sync_budget(cuda: torch.device) -> None:
    """torch.cuda.set_sync_debug_mode warns at every synchronising CUDA call: below and at capacity an update
    makes at most the budget of them (and compress.syncs counts the same ops as on the CPU)."""
    frames = camera_like_stream(196, 256, seed=3)
    memory = TokenMemory(256, tau=0.91, capacity=256, window_s=1e9, device=cuda)
    worst = {"below": 0, "at": 0}
    counted = {"below": 0, "at": 0}
    for f in range(40):
        tokens = next(frames).to(cuda)
        part = "at" if len(memory) >= memory.capacity else "below"
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                memory.add_frame(tokens, f / 4, f)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchroniz" in str(w.message) for w in caught)
        worst[part] = max(worst[part], syncs)
        with HostSyncs() as host:
            memory.add_frame(next(frames).to(cuda), f / 4 + 0.125, f)
        counted[part] = max(counted[part], host.total)
    assert memory.consolidations_total > 0
    assert max(worst.values()) <= ADD_FRAME_BUDGET, worst
    assert max(counted.values()) <= ADD_FRAME_BUDGET, counted


def test_compress_video_on_cuda_stays_within_the_host_sync_budget(cuda: torch.device) -> None:
    video = clustered(32).to(cuda)  # the paper's 32 x 196 tokens
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            compress_video(video, 0.9)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert sum("synchroniz" in str(w.message) for w in caught) <= 24


def sync_warnings(fn: Callable[[], object]) -> int:
    """Synchronising CUDA calls `fn` makes (torch.cuda.set_sync_debug_mode warns at each)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def test_the_embedded_encoders_tokens_stay_on_cuda_and_its_labels_match_the_cpu(cuda: torch.device) -> None:
    frame = np.random.default_rng(1).integers(0, 256, (448, 448, 3), dtype=np.uint8)
    cpu, gpu = (load_backend("embedded", device=d).encoder for d in ("cpu", "auto"))
    tokens = gpu.encode([frame])
    assert tokens.device.type == "cuda" and tokens.dtype == torch.float32  # no copy to the host
    logits = gpu.class_logits(tokens[0].mean(0))  # type: ignore[attr-defined]
    assert logits.device.type == "cpu"  # only the logits come to the host
    want = cpu.class_logits(cpu.encode([frame])[0].mean(0))  # type: ignore[attr-defined]
    assert logits.argmax() == want.argmax()


def test_the_camera_pipeline_on_cuda_keeps_tokens_and_memory_there_within_the_budget(
    cuda: torch.device,
) -> None:
    """SCISSOR_DEVICE=auto on a CUDA machine: the memory lives on the GPU, the per-frame path keeps the
    tokens there and synchronises at most the budget per frame, a view (what readers and snapshots take
    under the ingest lock) synchronises never, and a snapshot made from it is the memory's."""
    backend = load_backend("embedded", device="auto", image_px=PX)
    camera = pipeline(backend)
    memory = camera.runtime.memory
    assert memory.device.type == "cuda"
    worst = 0
    for frame in frames(30):
        tokens = backend.encoder.encode([frame.rgb])[0]
        assert tokens.device == memory.device
        camera.runtime.frames_processed = frame.index
        worst = max(worst, sync_warnings(lambda: camera._add_frame(tokens, frame.pts_s, frame)))  # noqa: B023
    assert memory.consolidations_total > 0 and worst <= ADD_FRAME_BUDGET, worst
    assert sync_warnings(memory.view) == 0
    view = memory.view()
    blob = view.to_bytes()
    copy = TokenMemory.from_bytes(blob, device=cuda)
    assert [e.intervals for e in copy.tokens()[1]] == [e.intervals for e in memory.tokens()[1]]
    tokens_, entries = camera.read(None, None)
    assert tokens_.device == memory.device and entries == memory.tokens()[1]
