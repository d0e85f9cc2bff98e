"""The peers every benchmark compares against (compress/baselines.py) keep their budget and their promises."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compress import PEERS, l2norm_topk, random_drop, tome_merge, tome_plain, uniform_frames
from compress.scc import final_merge


def video(seed: int = 0, f: int = 6, n: int = 16, d: int = 8) -> torch.Tensor:
    return torch.randn(f, n, d, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=16, deadline=None)
@given(name=st.sampled_from(sorted(PEERS)), budget=st.integers(0, 120), seed=st.integers(0, 1000))
def test_every_peer_returns_exactly_the_budget_clamped_to_the_input(
    name: str, budget: int, seed: int
) -> None:
    out = PEERS[name](video(seed), budget)
    assert out.shape == (min(budget, 96), 8)


def test_uniform_sampling_keeps_evenly_spaced_whole_frames() -> None:
    frames = video(f=8)
    torch.testing.assert_close(uniform_frames(frames, 32), frames[[0, 7]].reshape(32, 8))


def test_random_drop_is_seeded_and_keeps_temporal_order() -> None:
    frames = torch.arange(96.0)[:, None].expand(96, 8).reshape(6, 16, 8)
    a, b, c = random_drop(frames, 20), random_drop(frames, 20), random_drop(frames, 20, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a[:, 0].tolist() == sorted(a[:, 0].tolist())


def test_l2norm_topk_keeps_the_largest_tokens() -> None:
    frames = video()
    frames[2, 3] *= 100
    frames[5, 0] *= 50
    out = l2norm_topk(frames, 2)
    assert torch.equal(out, torch.stack([frames[2, 3], frames[5, 0]]))


def test_tome_preserves_the_size_weighted_total() -> None:
    frames = video(3)
    out = tome_merge(frames, 10)
    # Sizes are not returned, but merging identical-direction copies must give back that token exactly.
    same = frames[0, :1].expand(6, 16, 8).clone()
    torch.testing.assert_close(tome_merge(same, 1), frames[0, :1])
    assert out.shape == (10, 8) and torch.isfinite(out).all()


def test_tome_merges_the_most_similar_pair_first() -> None:
    tokens = torch.tensor([[[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [-1.0, 0.0]]])  # A = even, B = odd
    out = tome_merge(tokens, 3)
    torch.testing.assert_close(out[0], torch.tensor([0.995, 0.05]))
    assert out.shape == (3, 2)


def test_merge_variants_apply_the_papers_final_merge_to_the_selection() -> None:
    frames = video(4)
    selected = l2norm_topk(frames, 12)
    torch.testing.assert_close(
        PEERS["l2norm+merge"](frames, 12), final_merge(frames.reshape(-1, 8), selected)
    )


@pytest.mark.parametrize("budget", [-1, 2.5, True])
def test_bad_budgets_raise(budget: object) -> None:
    with pytest.raises(ValueError, match="budget"):
        uniform_frames(video(), budget)  # type: ignore[arg-type]


def test_plain_tome_is_one_tome_round_on_its_own_output_order() -> None:
    frames = video(5)
    one = tome_plain(frames, 96 - 7)  # a single round: the same merges as the re-sorted peer, ToMe's order
    torch.testing.assert_close(one.sort(dim=0).values, tome_merge(frames, 96 - 7).sort(dim=0).values)
    tokens = torch.tensor([[[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [-1.0, 0.0]]])  # A = even, B = odd
    out = tome_plain(tokens, 3)  # kept A token first, then the B tokens (one holding the merge)
    torch.testing.assert_close(out, torch.tensor([[0.0, 1.0], [0.995, 0.05], [-1.0, 0.0]]))


def test_plain_and_resorted_tome_part_ways_after_the_first_round() -> None:
    frames = video(6, f=8, n=32)
    plain, resorted = tome_plain(frames, 40), tome_merge(frames, 40)
    assert plain.shape == resorted.shape == (40, 8)
    assert not torch.allclose(plain.sort(dim=0).values, resorted.sort(dim=0).values)
    zeros = frames.clone()
    zeros[0, :4] = 0  # zero-norm tokens score 0 instead of dividing by their norm
    assert torch.isfinite(tome_plain(zeros, 40)).all()
