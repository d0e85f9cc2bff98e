"""Semantic Connected Components (LLaVA-Scissor, arXiv 2506.21862): pure tensor code on any device, never I/O.

Letters follow PAPER.md: F frames, N tokens per frame, D width, K components.
Unlike the reference code, components are exact (no vertex sampling, no member ever dropped: PAPER.md D1-D3),
deterministic (D2), safe for zero-norm tokens (D4) and computed in float32 whatever the input dtype (D5).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

_NORM_EPS = 1e-12
# Row blocks for the dense min-label step, so a 6272-node graph never materialises an N x N int64 matrix at once.
_BLOCK_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class SccStats:
    """What `compress_video_with_stats` did, for metrics and benchmarks.

    Attributes:
        input_tokens: F * N.
        spatial_tokens: K1, representatives after the per-frame step.
        output_tokens: K, representatives after the temporal step (and the merge, which keeps K).
        component: LongTensor[F * N], the output index each original token's component became.
        assignment: LongTensor[F * N], the output index each original token was merged into (Eq. 7); equals
            `component` when `merge=False`.
    """

    input_tokens: int
    spatial_tokens: int
    output_tokens: int
    component: Tensor
    assignment: Tensor


def check_tau(tau: float) -> float:
    """Return `tau` as a float, or raise ValueError unless -1 <= tau <= 1."""
    tau = float(tau)
    if not -1.0 <= tau <= 1.0:  # also rejects NaN
        raise ValueError(f"tau must be a cosine threshold in [-1, 1], got {tau}")
    return tau


def check_finite(tokens: Tensor, what: str = "tokens") -> None:
    """Raise ValueError naming how many tokens (rows over the last dim) hold NaN or inf."""
    if tokens.numel() == 0 or not tokens.is_floating_point():
        return
    bad = ~torch.isfinite(tokens).all(dim=-1)
    n_bad = int(bad.sum())
    if n_bad:
        raise ValueError(f"{what}: {n_bad} of {bad.numel()} token(s) contain NaN or inf")


def normalize(tokens: Tensor) -> tuple[Tensor, Tensor]:
    """L2-normalise rows in float32.

    Args:
        tokens: `[..., N, D]` any float dtype.

    Returns:
        (`[..., N, D]` float32 unit rows (zero rows stay zero), `[..., N]` bool: row has non-zero norm).
    """
    x = tokens.float()
    norm = x.norm(dim=-1, keepdim=True)
    return x / norm.clamp_min(_NORM_EPS), norm.squeeze(-1) > _NORM_EPS


def cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity of every row of `a` with every row of `b`, in float32.

    Args:
        a: `[..., N, D]`; b: `[..., M, D]`.

    Returns:
        `[..., N, M]` float32; a zero-norm row has similarity 0 with everything.
    """
    return normalize(a)[0] @ normalize(b)[0].transpose(-1, -2)


def _adjacency(tokens: Tensor, tau: float) -> Tensor:
    """`[B, n, D]` -> `[B, n, n]` bool graph cos > tau (strict, Eq. 1); zero-norm tokens link only to themselves."""
    unit, nonzero = normalize(tokens)
    adj = (unit @ unit.transpose(-1, -2)) > tau  # [B, n, n]
    adj &= nonzero[:, :, None] & nonzero[:, None, :]
    adj |= torch.eye(adj.shape[-1], dtype=torch.bool, device=adj.device)
    return adj


def _min_neighbour_label(adj: Tensor, parent: Tensor) -> Tensor:
    """For every node, the smallest `parent` label among its neighbours (itself included). `[B, n]`."""
    b, n, _ = adj.shape
    rows = max(1, _BLOCK_ELEMENTS // max(1, b * n))
    out = torch.empty_like(parent)
    labels = parent[:, None, :]  # [B, 1, n]
    for start in range(0, n, rows):  # blocks of rows, not nodes: a handful of iterations at most
        block = adj[:, start : start + rows]  # [B, r, n]
        out[:, start : start + rows] = torch.where(block, labels, n).amin(dim=-1)
    return out


def graph_components(adj: Tensor) -> Tensor:
    """Exact connected components of a batch of symmetric graphs, vectorised (min-label hooking + pointer jumping).

    Args:
        adj: `[B, n, n]` bool, symmetric, diagonal true.

    Returns:
        `[B, n]` long: per graph, labels 0..K-1 numbered in order of each component's first (lowest-index) node.
    """
    b, n, _ = adj.shape
    parent = torch.arange(n, device=adj.device).expand(b, n).contiguous()
    if n == 0:
        return parent
    while True:
        smallest = _min_neighbour_label(adj, parent)  # <= parent, since every node is its own neighbour
        hooked = torch.minimum(parent, smallest).scatter_reduce(1, parent, smallest, reduce="amin")
        while True:  # pointer jumping until every node points at a root
            jumped = hooked.gather(1, hooked)
            if torch.equal(jumped, hooked):
                break
            hooked = jumped
        if torch.equal(hooked, parent):
            break
        parent = hooked
    # At the fixed point every node holds its component's lowest index; rank the roots to number components.
    is_root = parent == torch.arange(n, device=adj.device)
    rank = is_root.long().cumsum(dim=1) - 1
    return rank.gather(1, parent)


def semantic_components(tokens: Tensor, tau: float) -> Tensor:
    """Label every token with its connected component in the graph cos(i, j) > tau (PAPER.md §1.1, exact).

    Args:
        tokens: `[N, D]` any float dtype, finite.
        tau: cosine threshold in [-1, 1].

    Returns:
        `[N]` long labels 0..K-1, numbered in order of each component's first token.
    """
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be [N, D], got shape {tuple(tokens.shape)}")
    tau = check_tau(tau)
    check_finite(tokens)
    n = tokens.shape[0]
    if n <= 1:
        return torch.zeros(n, dtype=torch.long, device=tokens.device)
    return graph_components(_adjacency(tokens[None], tau))[0]


def frame_components(frames: Tensor, tau: float) -> Tensor:
    """Spatial SCC of every frame at once (Eq. 5). `[F, N, D]` -> `[F, N]` labels, each frame numbered from 0."""
    if frames.dim() != 3:
        raise ValueError(f"frames must be [F, N, D], got shape {tuple(frames.shape)}")
    tau = check_tau(tau)
    check_finite(frames, "frames")
    return graph_components(_adjacency(frames, tau))


def merge_by_labels(values: Tensor, labels: Tensor, num: int | None = None, *, reduce: str = "mean") -> Tensor:
    """Reduce rows that share a label, in float32; the grouping can be applied to any per-token tensor.

    Args:
        values: `[N, ...]`, e.g. tokens `[N, D]`, counts `[N]`.
        labels: `[N]` long in 0..num-1.
        num: number of groups (default `labels.max() + 1`).
        reduce: "mean" or "sum".

    Returns:
        `[num, ...]` float32 group means or sums (an empty group gives 0).
    """
    if labels.shape[0] != values.shape[0]:
        raise ValueError(f"labels [{labels.shape[0]}] and values [{values.shape[0]}] disagree on the token count")
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
    k = int(labels.max()) + 1 if num is None and labels.numel() else int(num or 0)
    x = values.float()
    index = labels.view(-1, *([1] * (x.dim() - 1))).expand_as(x)
    sums = torch.zeros((k, *x.shape[1:]), dtype=torch.float32, device=x.device).scatter_add_(0, index, x)
    if reduce == "sum":
        return sums
    counts = torch.bincount(labels, minlength=k).clamp_min(1).to(sums)
    return sums / counts.view(-1, *([1] * (x.dim() - 1)))


def assign_to_nearest(sources: Tensor, targets: Tensor, *, block: int = 4096) -> Tensor:
    """Index of the most similar target for every source (Eq. 7), never a zero-norm target unless nothing else exists.

    Args:
        sources: `[S, D]`; targets: `[K, D]` with K >= 1.

    Returns:
        `[S]` long in 0..K-1. A zero-norm source gets -1 (it is similar to nothing).
    """
    unit_t, nonzero_t = normalize(targets)
    out = torch.empty(sources.shape[0], dtype=torch.long, device=sources.device)
    for start in range(0, sources.shape[0], block):  # bounds the [S, K] similarity to block x K floats
        unit_s, nonzero_s = normalize(sources[start : start + block])
        sim = unit_s @ unit_t.T  # [s, K]
        sim.masked_fill_(~nonzero_t[None, :], float("-inf"))  # D4: a zero representative never captures the merge
        best = sim.argmax(dim=1)
        out[start : start + block] = torch.where(nonzero_s, best, -1)
    return out


def compress_video_with_stats(frames: Tensor, tau: float = 0.9, merge: bool = True) -> tuple[Tensor, SccStats]:
    """`compress_video` that also reports the per-step counts and each token's destination.

    See `compress_video` for arguments; returns `(tokens [K, D], SccStats)`.
    """
    if frames.dim() != 3:
        raise ValueError(f"frames must be [F, N, D], got shape {tuple(frames.shape)}")
    f, n, d = frames.shape
    tau = check_tau(tau)
    check_finite(frames, "frames")
    flat = frames.reshape(f * n, d).float()  # [F*N, D] frame-major: token t = frame * N + position
    if f * n == 0:
        empty = torch.empty(0, dtype=torch.long, device=frames.device)
        return frames.new_zeros((0, d)), SccStats(0, 0, 0, empty, empty)
    # Spatial step (Eqs. 5-6): per-frame components, plain-mean representatives, concatenated frame by frame.
    local = frame_components(frames, tau)  # [F, N]
    per_frame = local.amax(dim=1) + 1  # [F] components in each frame
    offsets = torch.cumsum(per_frame, 0) - per_frame
    spatial = (local + offsets[:, None]).reshape(-1)  # [F*N] global spatial label, frame-major first-member order
    k1 = int(per_frame.sum())
    spatial_reps = merge_by_labels(flat, spatial, k1)  # [K1, D]
    # Temporal step: SCC over the spatial representatives, plain means again (PAPER.md §1.2).
    temporal = semantic_components(spatial_reps, tau)  # [K1]; first-member order = earliest original token order
    k = int(temporal.max()) + 1
    reps = merge_by_labels(spatial_reps, temporal, k)  # [K, D]
    component = temporal[spatial]  # [F*N]
    if not merge:
        return reps.to(frames.dtype), SccStats(f * n, k1, k, component, component)
    # Final merge (Eqs. 7-8): every original token joins its most similar representative; the representative
    # counts as one extra member. Zero-norm tokens stay in their own (zero) component.
    assignment = assign_to_nearest(flat, reps)
    assignment = torch.where(assignment < 0, component, assignment)
    sums = reps.clone().index_add_(0, assignment, flat)  # float32 accumulation (D5)
    counts = torch.bincount(assignment, minlength=k).to(sums) + 1
    out = sums / counts[:, None]
    return out.to(frames.dtype), SccStats(f * n, k1, k, component, assignment)


def compress_video(frames: Tensor, tau: float = 0.9, merge: bool = True) -> Tensor:
    """LLaVA-Scissor's two-step compression with the final merge, exactly as PAPER.md §1.2 (exact components).

    Args:
        frames: `[F, N, D]` visual tokens of F frames, any float dtype; all maths in float32, cast back at the end.
        tau: cosine threshold in [-1, 1] for both the spatial and the temporal step (paper default 0.9).
        merge: apply the final merge step (Eqs. 7-8); False returns the temporal representatives.

    Returns:
        `[K, D]` in the input dtype, ordered by each component's earliest original token (frame, then position).

    Raises:
        ValueError: wrong rank, NaN/inf tokens (naming how many), tau outside [-1, 1].
    """
    return compress_video_with_stats(frames, tau, merge)[0]
