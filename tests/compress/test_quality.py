"""coverage and its helpers (compress/quality.py) measure what a compression kept."""

from __future__ import annotations

import pytest
import torch

from compress import compress_video, coverage, nearest_cosine, retention, worst_coverage


def test_keeping_every_token_covers_fully() -> None:
    frames = torch.randn(4, 10, 16)
    assert coverage(frames, frames.reshape(-1, 16)) == pytest.approx(1.0, abs=1e-5)


def test_coverage_is_the_mean_best_cosine() -> None:
    original = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    retained = torch.tensor([[1.0, 0.0]])
    assert nearest_cosine(original, retained).tolist() == pytest.approx([1.0, 0.0, 2**-0.5])
    assert coverage(original, retained) == pytest.approx((1 + 0 + 2**-0.5) / 3)


def test_nothing_retained_covers_nothing_and_empty_originals_raise() -> None:
    assert coverage(torch.randn(5, 4), torch.empty(0, 4)) == 0.0
    with pytest.raises(ValueError, match="empty"):
        coverage(torch.empty(0, 4), torch.randn(2, 4))
    with pytest.raises(ValueError, match="width"):
        coverage(torch.randn(3, 4), torch.randn(2, 5))


def test_more_retained_tokens_never_cover_less() -> None:
    frames = torch.randn(8, 49, 32, generator=torch.Generator().manual_seed(0))
    few, many = compress_video(frames, 0.1), compress_video(frames, 0.3)
    assert retention(frames, few) < retention(frames, many) <= 1.0
    assert coverage(frames, torch.cat([few, many])) >= coverage(frames, few)


def test_worst_coverage_is_below_the_mean() -> None:
    frames = torch.randn(4, 30, 16)
    kept = frames[0]
    assert worst_coverage(frames, kept) <= coverage(frames, kept)
