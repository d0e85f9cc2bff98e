"""compress_to_budget honours the budget even where the count is not monotone in tau (docs/method.md, D7)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from compress import compress_to_budget, compress_to_budget_with_stats, compress_video_with_stats


def clustered(seed: int, f: int, n: int, d: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(6, d, generator=g)
    idx = torch.randint(0, 6, (f * n,), generator=g)
    return (centres[idx] + 0.7 * torch.randn(f * n, d, generator=g)).view(f, n, d)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), budget=st.integers(1, 36))
def test_output_never_exceeds_the_budget(seed: int, budget: int) -> None:
    frames = clustered(seed, 3, 12, 8)
    out, stats = compress_to_budget_with_stats(frames, max_tokens=budget)
    assert out.shape[0] <= budget
    assert out.shape[0] == stats.scc.output_tokens
    assert compress_video_with_stats(frames, stats.tau)[1].output_tokens == out.shape[0]


def test_the_search_lands_close_to_the_budget_on_a_smooth_workload() -> None:
    frames = clustered(1, 8, 49, 32)
    out, stats = compress_to_budget_with_stats(frames, retention=0.25)
    assert stats.budget == 98
    assert 0.9 * 98 <= out.shape[0] <= 98


def test_a_non_monotone_instance_still_gets_a_count_within_budget() -> None:
    # docs/method.md, D7: the two-step count is not monotone in tau. Seed 2: 4 tokens at tau 0.82, 2 at 0.84.
    frames = torch.randn(2, 4, 2, generator=torch.Generator().manual_seed(2))
    low, high = (compress_video_with_stats(frames, t, merge=False)[1].output_tokens for t in (0.82, 0.84))
    assert high < low
    for budget in range(1, 9):
        assert compress_to_budget(frames, max_tokens=budget).shape[0] <= budget


def test_a_budget_above_the_input_is_clamped_to_all_tokens() -> None:
    frames = torch.eye(12).view(3, 4, 12)
    out, stats = compress_to_budget_with_stats(frames, max_tokens=1000)
    assert stats.budget == 12 and out.shape[0] == 12


def test_the_stats_report_the_chosen_tau_and_search_steps() -> None:
    frames = clustered(5, 4, 20, 8)
    _, stats = compress_to_budget_with_stats(frames, max_tokens=10)
    assert -1.0 <= stats.tau <= 1.0 and 2 <= stats.steps <= 24


def test_a_budget_below_the_zero_token_singletons_raises() -> None:
    frames = torch.randn(2, 5, 4)
    frames[0, :3] = 0  # three zero tokens are singletons at every tau: at least 4 outputs
    with pytest.raises(ValueError, match="fewest tokens"):
        compress_to_budget(frames, max_tokens=2)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"retention": 0.5, "max_tokens": 3}, {"retention": 0.0}, {"retention": 1.5}, {"max_tokens": 0}],
)
def test_bad_budget_arguments_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        compress_to_budget(torch.randn(2, 4, 8), **kwargs)  # type: ignore[arg-type]
