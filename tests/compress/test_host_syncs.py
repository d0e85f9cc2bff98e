"""Host-sync budgets (issue 21): what `compress.syncs.HostSyncs` counts, and that SCC and the memory stay
within their budgets on the CPU (the same ops a GPU would wait for)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import Tensor

from bench.compress import camera_like, camera_like_stream
from bench.memory import CameraStream
from compress import TokenMemory, compress_video, frame_components, semantic_components
from compress.syncs import HostSyncs, count_syncs

COMPRESS_VIDEO_BUDGET = 24
ADD_FRAME_BUDGET = 16


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


x = torch.arange(6.0)
REPEATS = torch.tensor([1, 2])
COUNTED: dict[str, Callable[[], object]] = {
    "item": lambda: x[0].item(),
    "bool": lambda: bool(x.sum() > 0),
    "int": lambda: int(x[1]),
    "float": lambda: float(x[1]),
    "tolist": lambda: x.tolist(),
    "numpy": lambda: x.numpy(),
    "nonzero": lambda: (x > 2).nonzero(),
    "where(cond)": lambda: torch.where(x > 2),
    "mask index": lambda: x[x > 2],
    "mask assign": lambda: x.clone().__setitem__(x > 2, 0.0),
    "masked_select": lambda: torch.masked_select(x, x > 2),
    "unique": lambda: torch.unique(x),
    "unique_consecutive": lambda: torch.unique_consecutive(x),
    "repeat_interleave": lambda: torch.repeat_interleave(REPEATS),
    "bincount": lambda: torch.bincount(x.long()),
    "equal": lambda: torch.equal(x, x),
    "cpu": lambda: x.cpu(),
    "tensor(list)": lambda: torch.tensor([1.0, 2.0]),
}
FREE: dict[str, Callable[[], object]] = {
    "topk": lambda: x.topk(2),
    "sort": lambda: x.sort(),
    "where": lambda: torch.where(x > 2, x, 0.0),
    "int index": lambda: x[torch.arange(3)],
    "nonzero_static": lambda: torch.nonzero_static(x > 2, size=6),
    "repeat_interleave(output_size)": lambda: torch.repeat_interleave(x, x.long(), output_size=15),
    "any": lambda: (x > 2).any(),
    "masked_fill": lambda: x.masked_fill(x > 2, 0.0),
    "shape": lambda: x.shape[0] + x.numel(),
}


@pytest.mark.parametrize("name", sorted(COUNTED))
def test_the_counter_counts_every_op_that_makes_the_host_wait(name: str) -> None:
    _, syncs = count_syncs(COUNTED[name])
    assert syncs.total >= 1, name


@pytest.mark.parametrize("name", sorted(FREE))
def test_the_counter_leaves_out_ops_whose_output_shape_the_host_knows(name: str) -> None:
    _, syncs = count_syncs(FREE[name])
    assert syncs.total == 0, (name, dict(syncs.by_op))


def test_the_counter_names_ops_and_adds_up_nested_calls() -> None:
    with HostSyncs() as syncs:
        x.tolist()
        x[x > 2].sum().item()
    assert syncs.by_op == {"tolist": 1, "index[bool]": 1, "_local_scalar_dense": 1} and syncs.total == 3
    assert count_syncs(lambda: 1)[1].total == 0


@pytest.mark.parametrize("tau", [0.8, 0.9, 0.97])
@pytest.mark.parametrize("merge", [True, False])
def test_compress_video_at_the_papers_shape_stays_within_its_budget(tau: float, merge: bool) -> None:
    video = camera_like(32, 196, 64)  # the paper's 32 x 196 tokens; the width does not change the count
    out, syncs = count_syncs(lambda: compress_video(video, tau, merge))
    assert isinstance(out, Tensor) and out.shape[0] > 0
    assert syncs.total <= COMPRESS_VIDEO_BUDGET, dict(syncs.by_op)


def test_the_spatial_step_alone_reads_the_host_once() -> None:
    video = camera_like(8, 196, 64)
    assert count_syncs(lambda: frame_components(video, 0.9))[1].total == 1
    assert count_syncs(lambda: semantic_components(video[0], 0.9))[1].total == 1


def test_nan_tokens_still_raise_naming_the_count_though_the_check_is_read_later() -> None:
    video = camera_like(4, 49, 16)
    video[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="1 of 196 token"):
        compress_video(video, 0.9)


def budget_run(memory: TokenMemory, frames: Iterator[Tensor], count: int, fps: float = 4.0) -> dict[str, int]:
    """Feed `count` frames, counting each update's host syncs -> the most below and at capacity."""
    worst = {"below": 0, "at": 0}
    for f in range(count):
        tokens = next(frames)
        part = "at" if len(memory) >= memory.capacity else "below"
        with HostSyncs() as syncs:
            memory.add_frame(tokens, f / fps, f)
        worst[part] = max(worst[part], syncs.total)
    return worst


@pytest.mark.parametrize(("workload", "tau"), [("camera", 0.83), ("static", 0.91), ("static", 0.97)])
def test_add_frame_below_and_at_capacity_stays_within_its_budget(workload: str, tau: float) -> None:
    frames: Iterator[Tensor]
    if workload == "camera":
        frames = iter(CameraStream(196, 64, seed=1).frame, None)
    else:
        frames = camera_like_stream(196, 64, seed=1)
    memory = TokenMemory(64, tau=tau, capacity=24 if workload == "camera" else 96, window_s=1e9)
    worst = budget_run(memory, frames, 40 if tau < 0.95 else 15)
    assert memory.consolidations_total > 0  # frames at capacity were counted
    assert worst["below"] <= ADD_FRAME_BUDGET and worst["at"] <= ADD_FRAME_BUDGET, worst


def test_evicting_frames_and_frames_showing_nothing_stay_within_the_budget() -> None:
    camera = CameraStream(49, 32, seed=2)

    def frames() -> Iterator[Tensor]:
        for f in range(60):
            yield torch.zeros(0, 32) if f % 7 == 6 else camera.frame()

    memory = TokenMemory(32, tau=0.85, capacity=24, window_s=3.0)
    worst = budget_run(memory, frames(), 60)
    assert memory.evicted_total > 0 and memory.consolidations_total > 0
    assert max(worst.values()) <= ADD_FRAME_BUDGET, worst
