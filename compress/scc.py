"""Semantic Connected Components (LLaVA-Scissor, arXiv 2506.21862): pure tensor code on any device, never I/O.

Letters follow PAPER.md: F frames, N tokens per frame, D width, K components.
Unlike the reference code, components are exact (no vertex sampling, no member ever dropped: PAPER.md D1-D3),
deterministic (D2), safe for zero-norm tokens (D4) and computed in float32 whatever the input dtype (D5).
Components come from edge lists (i < j, cos > tau) joined by vectorised min-root hooking plus pointer jumping,
so the bookkeeping costs O(edges), not O(N^2) per round, beside the similarity matmuls it cannot avoid.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

_NORM_EPS = 1e-12
# Similarity rows computed at once: bounds the [rows, n] float block (and its edge list) to ~16 MB.
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


def _unit_rows(tokens: Tensor, what: str = "tokens") -> tuple[Tensor, Tensor]:
    """`normalize` that also rejects NaN/inf, read off the norms it needs anyway (no extra pass when finite)."""
    x = tokens.float()
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)  # [..., N, 1] float32
    if x.numel() and not bool(torch.isfinite(norm).all()):
        check_finite(tokens, what)  # raises, naming the count, unless the norm merely overflowed
        raise ValueError(f"{what}: token norms overflow float32; rescale the input")
    return x / norm.clamp_min(_NORM_EPS), norm.squeeze(-1) > _NORM_EPS


def normalize(tokens: Tensor) -> tuple[Tensor, Tensor]:
    """L2-normalise rows in float32.

    Args:
        tokens: `[..., N, D]` any float dtype, finite.

    Returns:
        (`[..., N, D]` float32 unit rows (zero rows stay zero), `[..., N]` bool: row has non-zero norm).
    """
    return _unit_rows(tokens)


def cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity of every row of `a` with every row of `b`, in float32.

    Args:
        a: `[..., N, D]`; b: `[..., M, D]`.

    Returns:
        `[..., N, M]` float32; a zero-norm row has similarity 0 with everything.
    """
    return normalize(a)[0] @ normalize(b)[0].transpose(-1, -2)


def _union(parent: Tensor, src: Tensor, dst: Tensor) -> Tensor:
    """Join the edges (src, dst) into the forest `parent` (`[n]` long, every node pointing at its root).

    Each round hooks every larger root under the smallest root it shares an edge with, then pointer-jumps until
    the forest is flat again. Pointers only ever decrease, so each root stays its tree's lowest index.
    """
    while src.numel():
        a, b = parent[src], parent[dst]
        cross = a != b  # edges inside one tree are done: drop them, so rounds shrink
        src, dst, a, b = src[cross], dst[cross], a[cross], b[cross]
        if not src.numel():
            break
        parent = parent.scatter_reduce(0, torch.maximum(a, b), torch.minimum(a, b), reduce="amin")
        while True:
            jumped = parent[parent]
            if torch.equal(jumped, parent):
                break
            parent = jumped
    return parent


def _rank_roots(parent: Tensor) -> tuple[Tensor, int]:
    """Flat forest (roots = lowest index of their tree) -> (labels 0..K-1 in order of each tree's lowest index, K)."""
    rank = (parent == torch.arange(parent.numel(), device=parent.device)).long().cumsum(0)
    return rank[parent] - 1, int(rank[-1]) if rank.numel() else 0


def graph_components(adj: Tensor) -> Tensor:
    """Exact connected components of a batch of symmetric graphs, vectorised.

    Args:
        adj: `[B, n, n]` bool, symmetric (the diagonal is ignored: every node is in its own component).

    Returns:
        `[B, n]` long: per graph, labels 0..K-1 numbered in order of each component's first (lowest-index) node.
    """
    b, n, _ = adj.shape
    edges = torch.triu(adj, diagonal=1).nonzero()  # [E, 3] (graph, i, j) with i < j
    src, dst = edges[:, 0] * n + edges[:, 1], edges[:, 0] * n + edges[:, 2]
    labels = _rank_roots(_union(torch.arange(b * n, device=adj.device), src, dst))[0].view(b, n)
    return labels - labels[:, :1]  # each graph's first node starts its own numbering at 0


def _frame_forest(unit: Tensor, nonzero: Tensor, tau: float) -> Tensor:
    """Spatial graphs of all frames at once (one batched matmul) -> flat forest over the F * N tokens."""
    f, n, _ = unit.shape
    hit = (unit @ unit.transpose(1, 2)) > tau  # [F, N, N] Eq. 1, strict
    if not bool(nonzero.all()):  # D4: a zero-norm token links to nothing (only when tau < 0 could it)
        hit &= nonzero[:, :, None] & nonzero[:, None, :]
    edges = torch.triu(hit, diagonal=1).nonzero()  # [E, 3] (frame, i, j), i < j
    src, dst = edges[:, 0] * n + edges[:, 1], edges[:, 0] * n + edges[:, 2]
    return _union(torch.arange(f * n, device=unit.device), src, dst)


def _token_forest(unit: Tensor, nonzero: Tensor, tau: float) -> Tensor:
    """One graph over `[n, D]` unit rows -> flat forest, computing only the upper triangle of the similarity.

    Row blocks against the columns at or after them: about half the FLOPs of the full n x n matmul. Pairs
    already joined by earlier blocks are masked before listing edges, so dense graphs stay cheap too.
    """
    n = unit.shape[0]
    parent = torch.arange(n, device=unit.device)
    rows, edges, all_nonzero = max(256, _BLOCK_ELEMENTS // max(n, 1)), 0, bool(nonzero.all())
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        hit = (unit[start:stop] @ unit[start:].T) > tau  # [r, n - start]
        if not all_nonzero:
            hit &= nonzero[start:stop, None] & nonzero[None, start:]
        hit[:, : stop - start].triu_(diagonal=1)  # only j > i inside the diagonal block
        if edges > n:  # a dense graph so far: pairs already in one tree add nothing, drop them before listing
            hit &= parent[start:stop, None] != parent[None, start:]
        pairs = hit.nonzero()  # [E, 2]
        edges += pairs.shape[0]
        parent = _union(parent, pairs[:, 0] + start, pairs[:, 1] + start)
    return parent


def semantic_components(tokens: Tensor, tau: float) -> Tensor:
    """Label every token with its connected component in the graph cos(i, j) > tau (PAPER.md §1.1, exact).

    Args:
        tokens: `[N, D]` any float dtype, finite.
        tau: cosine threshold in [-1, 1].

    Returns:
        `[N]` long labels 0..K-1, numbered in order of each component's first token.

    Raises:
        ValueError: wrong rank, NaN/inf tokens (naming how many), tau outside [-1, 1].
    """
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be [N, D], got shape {tuple(tokens.shape)}")
    tau = check_tau(tau)
    unit, nonzero = _unit_rows(tokens)
    if tokens.shape[0] <= 1:
        return torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)
    return _rank_roots(_token_forest(unit, nonzero, tau))[0]


def frame_components(frames: Tensor, tau: float) -> Tensor:
    """Spatial SCC of every frame at once (Eq. 5). `[F, N, D]` -> `[F, N]` labels, each frame numbered from 0."""
    if frames.dim() != 3:
        raise ValueError(f"frames must be [F, N, D], got shape {tuple(frames.shape)}")
    tau = check_tau(tau)
    f, n, _ = frames.shape
    if f * n == 0:
        return torch.zeros((f, n), dtype=torch.long, device=frames.device)
    unit, nonzero = _unit_rows(frames, "frames")
    labels = _rank_roots(_frame_forest(unit, nonzero, tau))[0].view(f, n)
    return labels - labels[:, :1]


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
    sums = torch.zeros((k, *x.shape[1:]), dtype=torch.float32, device=x.device).index_add_(0, labels, x)
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
    return _assign(*_unit_rows(sources, "sources"), *_unit_rows(targets, "targets"), block)


def _assign(unit_s: Tensor, nonzero_s: Tensor, unit_t: Tensor, nonzero_t: Tensor, block: int = 4096) -> Tensor:
    out = torch.empty(unit_s.shape[0], dtype=torch.long, device=unit_s.device)
    mask_zero = not bool(nonzero_t.all())
    for start in range(0, unit_s.shape[0], block):  # bounds the [S, K] similarity to block x K floats
        sim = unit_s[start : start + block] @ unit_t.T  # [s, K]
        if mask_zero:  # D4: a zero representative never captures the merge
            sim.masked_fill_(~nonzero_t[None, :], float("-inf"))
        out[start : start + block] = sim.argmax(dim=1)
    return out.masked_fill_(~nonzero_s, -1)


def compress_video_with_stats(frames: Tensor, tau: float = 0.9, merge: bool = True) -> tuple[Tensor, SccStats]:
    """`compress_video` that also reports the per-step counts and each token's destination.

    See `compress_video` for arguments; returns `(tokens [K, D], SccStats)`.
    """
    if frames.dim() != 3:
        raise ValueError(f"frames must be [F, N, D], got shape {tuple(frames.shape)}")
    f, n, d = frames.shape
    tau = check_tau(tau)
    if f * n == 0:
        empty = torch.empty(0, dtype=torch.long, device=frames.device)
        return frames.new_zeros((0, d)), SccStats(0, 0, 0, empty, empty)
    unit, nonzero = _unit_rows(frames, "frames")  # [F, N, D] float32, [F, N]; normalised once, reused below
    flat = frames.reshape(f * n, d).float()  # [F*N, D] frame-major: token t = frame * N + position
    # Spatial step (Eqs. 5-6): per-frame components; frame-major root order = first-member order.
    spatial, k1 = _rank_roots(_frame_forest(unit, nonzero, tau))  # [F*N] global spatial label
    spatial_reps = merge_by_labels(flat, spatial, k1)  # [K1, D] plain means
    # Temporal step: SCC over the spatial representatives, plain means again (PAPER.md §1.2).
    temporal, k = _rank_roots(_token_forest(*_unit_rows(spatial_reps), tau))  # [K1] earliest-token order
    reps = merge_by_labels(spatial_reps, temporal, k)  # [K, D]
    component = temporal[spatial]  # [F*N]
    if not merge:
        return reps.to(frames.dtype), SccStats(f * n, k1, k, component, component)
    # Final merge; zero-norm tokens stay in their own (zero) component.
    assignment = _assign(unit.view(f * n, d), nonzero.view(-1), *_unit_rows(reps))
    assignment = torch.where(assignment < 0, component, assignment)
    return _merge(reps, flat, assignment).to(frames.dtype), SccStats(f * n, k1, k, component, assignment)


def _merge(reps: Tensor, sources: Tensor, assignment: Tensor) -> Tensor:
    """Eq. 8: (rep_j + sum of the sources assigned to j) / (count_j + 1), in float32 (D5); -1 joins nothing."""
    keep = assignment >= 0
    if not bool(keep.all()):
        sources, assignment = sources[keep], assignment[keep]
    sums = reps.float().index_add(0, assignment, sources.float())
    return sums / (torch.bincount(assignment, minlength=reps.shape[0]).to(sums) + 1)[:, None]


def final_merge(sources: Tensor, reps: Tensor) -> Tensor:
    """The paper's final merge (Eqs. 7-8) of any token set into any representatives (Table 4b applies it to peers).

    Args:
        sources: `[S, D]` original tokens; reps: `[K, D]` representatives (K >= 1 when S >= 1).

    Returns:
        `[K, D]` float32: each representative averaged with the sources most similar to it, counting itself once.
        Zero-norm sources join nothing; a zero-norm representative captures nothing (D4).
    """
    return _merge(reps, sources, assign_to_nearest(sources, reps))


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
