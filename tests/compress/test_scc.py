"""Properties of exact SCC and the paper's two-step compressor (compress/scc.py), checked against scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import connected_components

from compress import (
    compress_video,
    compress_video_with_stats,
    graph_components,
    merge_by_labels,
    semantic_components,
)
from compress.scc import cosine_similarity, final_merge, frame_components

FAST = settings(max_examples=25, deadline=None)


def clustered(seed: int, n: int, d: int, clusters: int, noise: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d, generator=g)
    return centres[torch.randint(0, clusters, (n,), generator=g)] + noise * torch.randn(n, d, generator=g)


def scipy_labels(tokens: torch.Tensor, tau: float) -> np.ndarray:
    """Reference partition: scipy's connected components, renumbered in first-member order."""
    adj = (cosine_similarity(tokens, tokens) > tau).numpy()
    _, raw = connected_components(scipy.sparse.csr_matrix(adj), directed=False)
    first: dict[int, int] = {}
    return np.array([first.setdefault(int(c), len(first)) for c in raw], dtype=np.int64)


def path_graph(n: int) -> torch.Tensor:
    adj = torch.zeros(1, n, n, dtype=torch.bool)
    i = torch.arange(n - 1)
    adj[0, i, i + 1] = adj[0, i + 1, i] = True
    return adj


token_sets = st.builds(
    clustered,
    seed=st.integers(0, 10_000),
    n=st.integers(2, 120),
    d=st.integers(2, 24),
    clusters=st.integers(1, 8),
    noise=st.floats(0.05, 1.5),
)


@FAST
@given(tokens=token_sets, tau=st.floats(-0.5, 0.99))
def test_components_equal_scipys_exact_partition(tokens: torch.Tensor, tau: float) -> None:
    assert semantic_components(tokens, tau).numpy().tolist() == scipy_labels(tokens, tau).tolist()


@FAST
@given(seed=st.integers(0, 10_000), n=st.integers(2, 60), p=st.floats(0.0, 0.3))
def test_graph_components_match_scipy_on_random_graphs(seed: int, n: int, p: float) -> None:
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((n, n)) < p, 1)
    adj = upper | upper.T
    _, raw = connected_components(scipy.sparse.csr_matrix(adj), directed=False)
    first: dict[int, int] = {}
    expected = [first.setdefault(int(c), len(first)) for c in raw]
    assert graph_components(torch.from_numpy(adj)[None])[0].tolist() == expected


@pytest.mark.parametrize("n", [26, 729, 4000])
def test_a_path_graph_is_one_component_with_every_member(n: int) -> None:
    assert graph_components(path_graph(n))[0].tolist() == [0] * n


def test_a_band_graph_of_any_width_is_one_component() -> None:
    n = 729
    i = torch.arange(n)
    adj = ((i[:, None] - i[None, :]).abs() <= 3)[None]
    assert torch.equal(graph_components(adj)[0], torch.zeros(n, dtype=torch.long))


def test_a_chain_of_tokens_joins_transitively_though_its_ends_are_dissimilar() -> None:
    angles = torch.linspace(
        0, 3.0, 40
    )  # neighbours 0.077 rad apart: cos ~ 0.997; the ends point opposite ways
    tokens = torch.stack([angles.cos(), angles.sin()], dim=1)
    assert float(cosine_similarity(tokens[:1], tokens[-1:])) < 0
    assert semantic_components(tokens, 0.99).tolist() == [0] * 40


@FAST
@given(tokens=token_sets, tau=st.floats(0.0, 0.99), seed=st.integers(0, 1000))
def test_permuting_tokens_permutes_the_partition(tokens: torch.Tensor, tau: float, seed: int) -> None:
    perm = torch.randperm(tokens.shape[0], generator=torch.Generator().manual_seed(seed))
    labels, permuted = semantic_components(tokens, tau), semantic_components(tokens[perm], tau)
    same = labels[perm][:, None] == labels[perm][None, :]
    assert torch.equal(same, permuted[:, None] == permuted[None, :])


@FAST
@given(tokens=token_sets, taus=st.lists(st.floats(-0.9, 0.999), min_size=2, max_size=5))
def test_a_single_pass_never_loses_components_as_tau_rises(tokens: torch.Tensor, taus: list[float]) -> None:
    counts = [int(semantic_components(tokens, t).max()) + 1 for t in sorted(taus)]
    assert counts == sorted(counts)


@FAST
@given(tokens=token_sets, tau=st.floats(0.0, 0.99))
def test_labels_are_numbered_in_first_member_order(tokens: torch.Tensor, tau: float) -> None:
    labels = semantic_components(tokens, tau)
    firsts = [int((labels == k).nonzero()[0]) for k in range(int(labels.max()) + 1)]
    assert firsts == sorted(firsts)


@FAST
@given(tokens=token_sets, tau=st.floats(0.0, 0.99))
def test_size_weighted_mean_of_component_means_is_the_mean_of_all_tokens(
    tokens: torch.Tensor, tau: float
) -> None:
    labels = semantic_components(tokens, tau)
    means = merge_by_labels(tokens, labels)
    sizes = torch.bincount(labels).float()
    torch.testing.assert_close(
        (means * sizes[:, None]).sum(0) / sizes.sum(), tokens.mean(0), atol=1e-5, rtol=1e-5
    )


@FAST
@given(seed=st.integers(0, 10_000), f=st.integers(1, 5), n=st.integers(1, 30), tau=st.floats(0.0, 0.99))
def test_frame_components_equal_per_frame_scipy_partitions(seed: int, f: int, n: int, tau: float) -> None:
    frames = clustered(seed, f * n, 8, 4, 0.6).view(f, n, 8)
    labels = frame_components(frames, tau)
    for i in range(f):
        assert labels[i].tolist() == scipy_labels(frames[i], tau).tolist()


@FAST
@given(seed=st.integers(0, 10_000), f=st.integers(1, 5), n=st.integers(1, 30), tau=st.floats(0.0, 0.99))
def test_compress_video_follows_the_papers_three_steps(seed: int, f: int, n: int, tau: float) -> None:
    frames = clustered(seed, f * n, 8, 4, 0.6).view(f, n, 8)
    # Spelled out step by step from docs/method.md §1.2 with scipy components.
    spatial = [merge_by_labels(fr, torch.from_numpy(scipy_labels(fr, tau))) for fr in frames]
    t_prime = torch.cat(spatial)
    reps = merge_by_labels(t_prime, torch.from_numpy(scipy_labels(t_prime, tau)))
    flat = frames.reshape(-1, 8)
    assign = cosine_similarity(flat, reps).argmax(dim=1)
    expected = (reps + torch.zeros_like(reps).index_add_(0, assign, flat)) / (
        torch.bincount(assign, minlength=reps.shape[0]) + 1
    )[:, None]
    out, stats = compress_video_with_stats(frames, tau)
    assert stats.spatial_tokens == t_prime.shape[0] and stats.output_tokens == reps.shape[0]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(compress_video(frames, tau, merge=False), reps, atol=1e-5, rtol=1e-5)


def test_the_merge_averages_each_representative_with_the_tokens_nearest_to_it() -> None:
    reps = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    sources = torch.tensor([[2.0, 0.1], [4.0, -0.1], [0.1, 3.0]])
    expected = torch.tensor([[(1 + 2 + 4) / 3, 0.0], [0.1 / 2, (1 + 3) / 2]])
    torch.testing.assert_close(final_merge(sources, reps), expected)


def test_identical_tokens_compress_to_that_one_token() -> None:
    token = torch.randn(896)
    out = compress_video(token.expand(8, 196, 896).clone(), 0.9)
    assert out.shape == (1, 896)
    torch.testing.assert_close(out[0], token, atol=1e-4, rtol=1e-4)


def test_orthogonal_tokens_all_stay() -> None:
    frames = torch.eye(64).view(4, 16, 64)
    out = compress_video(frames, 0.5)
    torch.testing.assert_close(out, torch.eye(64))


def test_a_zero_token_is_its_own_singleton_and_never_captures_the_merge() -> None:
    frames = torch.randn(8, 196, 32, generator=torch.Generator().manual_seed(0)).abs()  # all pairwise cos > 0
    frames[3, 17] = 0
    out, stats = compress_video_with_stats(frames, 0.0)
    assert stats.output_tokens == 2  # everything else joins one component
    zero_slot = int(stats.component[3 * 196 + 17])
    assert int((stats.assignment == zero_slot).sum()) == 1  # only the zero token itself
    assert float(out[zero_slot].abs().max()) == 0.0
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_tokens_raise_naming_how_many(bad: float) -> None:
    frames = torch.randn(2, 10, 8)
    frames[0, 1, 2] = bad
    frames[1, 5, 0] = bad
    with pytest.raises(ValueError, match="2 of 20 token"):
        compress_video(frames)
    with pytest.raises(ValueError, match="1 of 10 token"):
        semantic_components(frames[0], 0.9)


def test_fp16_tokens_summed_by_the_thousand_stay_finite_and_accurate() -> None:
    frames = torch.full((16, 196, 8), 30.0, dtype=torch.float16)  # 3136 x 30 would overflow an fp16 sum
    out = compress_video(frames, 0.9)
    assert out.dtype == torch.float16 and out.shape == (1, 8)
    assert torch.equal(out, torch.full((1, 8), 30.0, dtype=torch.float16))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_gives_the_float32_partition(dtype: torch.dtype) -> None:
    frames = clustered(3, 4 * 49, 64, 5, 0.4).view(4, 49, 64).to(dtype)
    low, low_stats = compress_video_with_stats(frames, 0.8)
    _, ref_stats = compress_video_with_stats(frames.float(), 0.8)
    assert low.dtype == dtype and torch.equal(low_stats.component, ref_stats.component)


def test_empty_and_one_token_inputs_return_empty_and_that_token() -> None:
    assert compress_video(torch.empty(0, 196, 16)).shape == (0, 16)
    assert semantic_components(torch.empty(0, 4), 0.9).shape == (0,)
    one = torch.randn(1, 1, 16)
    torch.testing.assert_close(compress_video(one), one[0])
    assert semantic_components(one[0], 0.9).tolist() == [0]


def test_wrong_shapes_and_taus_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"\[F, N, D\]"):
        compress_video(torch.randn(4, 8))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        semantic_components(torch.randn(2, 4, 8), 0.9)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        compress_video(torch.randn(2, 4, 8), tau=1.5)
    with pytest.raises(ValueError, match="disagree"):
        merge_by_labels(torch.randn(4, 2), torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("d", [896, 3584])
def test_paper_widths_give_exact_partitions(d: int) -> None:
    tokens = clustered(7, 300, d, 12, 0.5)
    tau = 0.75
    assert semantic_components(tokens, tau).tolist() == scipy_labels(tokens, tau).tolist()
    assert compress_video(tokens.view(3, 100, d), tau).shape[1] == d


def test_compression_is_deterministic() -> None:
    frames = clustered(11, 8 * 49, 32, 6, 0.8).view(8, 49, 32)
    assert torch.equal(compress_video(frames, 0.7), compress_video(frames, 0.7))
