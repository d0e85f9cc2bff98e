"""Semantic Connected Components (LLaVA-Scissor, arXiv 2506.21862): pure tensor code on any device, never I/O.

PAPER.md letters: F frames, N tokens per frame, D width, K components. Unlike the reference code: exact
components (D1-D3), deterministic (D2), zero-norm safe (D4), float32 maths whatever the input dtype (D5).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

# `_segment_sum`'s CSR product is beta in torch 2.13 and says so once per process; the maths is stable.
warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta", UserWarning)
_NORM_EPS = 1e-12
_BLOCK_ELEMENTS = 1 << 22  # similarity entries computed at once in the temporal step (~16 MB of float32)
_DENSE = 256  # graphs up to this many nodes are hooked from their dense adjacency (`_dense_forest`)


@dataclass(frozen=True)
class SccStats:
    """What `compress_video_with_stats` did, for metrics and benchmarks.

    Attributes:
        input_tokens: F * N.
        spatial_tokens: K1, representatives after the per-frame step.
        output_tokens: K, representatives after the temporal step (and the merge, which keeps K).
        component: LongTensor[F * N], the output index each original token's component became.
        assignment: LongTensor[F * N], the output index each token was merged into (Eq. 7); `component` if no
            merge.
    """

    input_tokens: int
    spatial_tokens: int
    output_tokens: int
    component: Tensor
    assignment: Tensor


def check_tau(tau: float) -> float:
    """Return `tau` as a float, or raise ValueError unless -1 <= tau <= 1."""
    if not -1.0 <= (tau := float(tau)) <= 1.0:  # also rejects NaN
        raise ValueError(f"tau must be a cosine threshold in [-1, 1], got {tau}")
    return tau


def check_finite(tokens: Tensor, what: str = "tokens") -> None:
    """Raise ValueError naming how many tokens (rows over the last dim) hold NaN or inf."""
    n_bad = (
        int((~torch.isfinite(tokens).all(dim=-1)).sum())
        if tokens.is_floating_point() and tokens.numel()
        else 0
    )
    if n_bad:
        raise ValueError(f"{what}: {n_bad} of {tokens[..., 0].numel()} token(s) contain NaN or inf")


def _norms(tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """`[..., N, D]` -> (float32 tokens, `[..., N]` 1/norm (0 for a zero row), a 0-dim bool: every norm is
    finite). No host sync: the caller reads the flag with its other counts (`_check_norms`)."""
    x = tokens.float()
    norm = torch.linalg.vector_norm(x, dim=-1)  # [..., N]
    return x, (norm > _NORM_EPS) / norm.clamp_min(_NORM_EPS), torch.isfinite(norm).all()


def _check_norms(finite: bool, tokens: Tensor, what: str) -> None:
    """The error for tokens whose norms `_norms` found not all finite: NaN/inf (naming the count) or a norm
    that merely overflowed float32."""
    if not finite and tokens.numel():
        check_finite(tokens, what)  # raises naming the count, unless the norm merely overflowed
        raise ValueError(f"{what}: token norms overflow float32; rescale the input")


def _inverse_norms(tokens: Tensor, what: str) -> tuple[Tensor, Tensor]:
    """`[..., N, D]` -> (float32 tokens, `[..., N]` 1/norm, 0 for a zero row); NaN/inf read off the norms (one
    host sync)."""
    x, inv, finite = _norms(tokens)
    _check_norms(bool(finite), tokens, what)  # host sync: the error must be raised here
    return x, inv


def normalize(tokens: Tensor, what: str = "tokens") -> tuple[Tensor, Tensor]:
    """`[..., N, D]` -> (float32 unit rows, zero rows stay zero; `[..., N]` non-zero mask).

    NaN/inf: ValueError (one host sync; `unit` skips the check).
    """
    x, inv = _inverse_norms(tokens, what)
    return x * inv[..., None], inv > 0


def unit(tokens: Tensor) -> Tensor:
    """`normalize(tokens)[0]` without the NaN/inf check, so without a host sync: for rows known finite."""
    x, inv, _ = _norms(tokens)
    return x * inv[..., None]


def cosine_similarity(a: Tensor, b: Tensor) -> Tensor:
    """`[..., N, D]`, `[..., M, D]` -> `[..., N, M]` float32 cosines; a zero row scores 0 with everything."""
    return normalize(a)[0] @ normalize(b)[0].transpose(-1, -2)


def _rounds(size: int) -> int:
    """Hooking rounds after which any connected set of `size` nodes is one tree: ceil(log2 size)."""
    return (size - 1).bit_length() if size > 1 else 0


def _union(parent: Tensor, src: Tensor, dst: Tensor, size: int) -> Tensor:
    """Join edges (src, dst) into the flat forest `parent` (`[n]` long, each node pointing at its root): exact
    after a fixed number of rounds, so no host sync. `size` bounds the nodes of one connected component.

    A round hooks every root under the smallest root adjacent to its tree (pointers only decrease, so each
    root stays its tree's lowest index): a tree with an edge to another either hooks or is hooked onto, so
    the trees of a component at least halve per round and ceil(log2 size) rounds join them all. Round t
    (from 0) hooks chains of at most size / 2**t roots: ceil(log2 size) - t pointer jumps flatten them."""
    if src.numel() == 0:
        return parent
    rounds = _rounds(size)
    for done in range(rounds):
        a, b = parent.gather(0, src), parent.gather(0, dst)  # gather: no thread hand-off on small tensors
        parent = parent.scatter_reduce(0, torch.maximum(a, b), torch.minimum(a, b), reduce="amin")
        for _ in range(rounds - done):  # chains of at most size / 2**done roots (the trees left)
            parent = parent.gather(0, parent)
    return parent


def _join_block(
    parent: Tensor,
    hit: Tensor,
    row0: int,
    col0: int,
    stride: int = 0,
    *,
    size: int,
    static: bool,
    symmetric: bool,
) -> tuple[Tensor, Tensor | None]:
    """Union similarity blocks into `parent`: `hit[b, r, c]` links node b*stride+row0+r with b*stride+col0+c.

    Every row's lowest and highest neighbour (`symmetric` blocks) or every row's and every column's lowest
    neighbour (triangular blocks) are joined first (found by argmax over the bytes: a fixed-size edge list);
    then only pairs still in different trees are listed (on camera-like streams few or none are left).
    `static`: that list has a fixed size (the block's rows and columns), so no host sync; returns the flag, a
    0-dim tensor, that more were left (then the caller redoes the block with static False; its sync: nonzero,
    whose length the host must know). Returns (parent, flag or None)."""
    base = torch.arange(hit.shape[0], device=hit.device)[:, None] * stride  # [B, 1]
    row_ids = base + row0 + torch.arange(hit.shape[1], device=hit.device)  # [B, r]
    col_ids = base + col0 + torch.arange(hit.shape[2], device=hit.device)  # [B, c]
    byte = hit.view(torch.uint8)
    starts, stops = [], []
    ends = ((2, False), (2, True)) if symmetric else ((2, False), (1, False))  # (dim, last), see above
    for dim, last in ends:
        own, other = (row_ids, col_ids) if dim == 2 else (col_ids, row_ids)
        # last True per row, or first True per row (column), 0 when it has none
        end = hit.shape[dim] - 1 - byte.flip(dim).argmax(dim=dim) if last else byte.argmax(dim=dim)
        has = hit.gather(dim, end.unsqueeze(dim)).squeeze(dim)  # none: the node joins itself, no edge
        starts.append(own.expand_as(end).reshape(-1))
        stops.append(torch.where(has, other.gather(1, end), own).reshape(-1))
    parent = _union(parent, torch.cat(starts), torch.cat(stops), size)
    hit &= parent[row_ids][:, :, None] != parent[col_ids][:, None, :]
    if not static:
        pairs = hit.nonzero()  # host sync: the edges left between trees, a list of data-dependent length
        src, dst = row_ids[pairs[:, 0], pairs[:, 1]], col_ids[pairs[:, 0], pairs[:, 2]]
        return _union(parent, src, dst, size), None
    room = row_ids.numel() + (0 if symmetric else col_ids.numel())
    pairs = torch.nonzero_static(hit, size=room, fill_value=-1)  # [room, 3], padded with -1
    held = pairs[:, 0] >= 0
    pairs = pairs.clamp_min(0)
    src = torch.where(held, row_ids[pairs[:, 0], pairs[:, 1]], 0)  # padding: the self-edge (0, 0)
    dst = torch.where(held, col_ids[pairs[:, 0], pairs[:, 2]], 0)
    return _union(parent, src, dst, size), hit.sum() > room


def _rank_roots(parent: Tensor) -> tuple[Tensor, Tensor]:
    """Flat forest (roots = lowest index of their tree) -> (labels 0..K-1 in order of the roots, K as a 0-dim
    tensor: the caller reads it with its other counts)."""
    rank = (parent == torch.arange(parent.numel(), device=parent.device)).long().cumsum(0)
    return rank[parent] - 1, rank[-1] if rank.numel() else rank.new_zeros(())


def _dense_forest(adj: Tensor) -> Tensor:
    """`[B, n, n]` bool symmetric graphs -> flat forest over the B*n nodes (graph b holds b*n..b*n+n-1), no
    host sync: `_union`'s rounds with each node's smallest adjacent root read off the dense rows (small
    graphs)."""
    b, n, _ = adj.shape
    parent = torch.arange(b * n, device=adj.device)
    rounds, big = _rounds(n), b * n
    for done in range(rounds):
        near = torch.where(adj, parent.view(b, 1, n), big).min(dim=2).values.view(-1)  # [B*n]; big: none
        parent = parent.scatter_reduce(0, parent, near.clamp_max(big - 1), reduce="amin")
        for _ in range(rounds - done):
            parent = parent.gather(0, parent)
    return parent


def graph_components(adj: Tensor) -> Tensor:
    """`[B, n, n]` bool symmetric graphs -> `[B, n]` exact component labels, no host sync.

    Per graph 0..K-1 in first-node order.
    """
    b, n, _ = adj.shape
    labels = _rank_roots(_dense_forest(adj))[0].view(b, n)
    return labels - labels[:, :1]  # each graph numbers from 0


def _frame_forest(x: Tensor, inv: Tensor, tau: float, static: bool) -> tuple[Tensor, Tensor | None]:
    """All frames' spatial graphs -> one F*N-node forest (and `_join_block`'s flag when `static`).

    One batched matmul, cosines scaled after it; Eq. 1 strict. A zero row's cosines are exactly 0, so only a
    negative tau needs the D4 mask."""
    f, n, _ = x.shape
    hit = (x @ x.transpose(1, 2)) * inv[:, :, None] * inv[:, None, :] > tau  # [F, N, N]
    if tau < 0:  # D4: a zero-norm token links to nothing
        nonzero = inv > 0
        hit &= nonzero[:, :, None] & nonzero[:, None, :]
    parent = torch.arange(f * n, device=x.device)  # frame b holds nodes b*N..b*N+N-1
    return _join_block(parent, hit, 0, 0, n, size=n, static=static, symmetric=True)


def _token_forest(unit_: Tensor, nonzero: Tensor, tau: float, static: bool) -> tuple[Tensor, Tensor | None]:
    """One graph over `[n, D]` unit rows -> flat forest (and whether any `static` block overflowed).

    Only the upper triangle of the similarity is computed, in row blocks."""
    n, parent = unit_.shape[0], torch.arange(unit_.shape[0], device=unit_.device)
    rows, flags = max(256, _BLOCK_ELEMENTS // max(n, 1)), []
    for start, stop in ((i, min(n, i + rows)) for i in range(0, n, rows)):  # row blocks x later columns
        hit = (unit_[start:stop] @ unit_[start:].T) > tau  # [r, n - start]
        if tau < 0:  # zero rows score exactly 0: only a negative tau links them
            hit &= nonzero[start:stop, None] & nonzero[None, start:]
        hit[:, : stop - start].triu_(diagonal=1)  # only j > i inside the diagonal block
        parent, flag = _join_block(parent, hit[None], start, start, size=n, static=static, symmetric=False)
        flags.append(flag)
    overflow = torch.stack(flags).any() if static and flags else None  # type: ignore[arg-type]
    return parent, overflow


def _components(unit_: Tensor, nonzero: Tensor, tau: float) -> tuple[Tensor, Tensor, Tensor]:
    """`_token_forest` with fixed-size edge lists -> (labels, K, redo flag), all on the device: the caller
    reads K and the flag in one go and, if the flag is set, calls `_exact_components`. Up to `_DENSE` rows
    (a frame) the whole graph is hooked densely instead: fewer, larger ops, never a redo."""
    n = unit_.shape[0]
    if n <= _DENSE:
        hit = unit_ @ unit_.T > tau
        if tau < 0:  # zero rows score exactly 0: only a negative tau links them
            hit &= nonzero[:, None] & nonzero[None, :]
        labels, k = _rank_roots(_dense_forest(hit[None]))
        return labels, k, k.new_zeros((), dtype=torch.bool)
    parent, overflow = _token_forest(unit_, nonzero, tau, static=True)
    labels, k = _rank_roots(parent)
    return labels, k, overflow if overflow is not None else k.new_zeros((), dtype=torch.bool)


def _exact_components(unit_: Tensor, nonzero: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """`_token_forest` listing every edge left (one host sync per block): (labels, K)."""
    return _rank_roots(_token_forest(unit_, nonzero, tau, static=False)[0])


def semantic_components(tokens: Tensor, tau: float) -> Tensor:
    """`[N, D]` -> `[N]` labels 0..K-1 (first-token order) of the exact components of cos(i, j) > tau (§1.1).

    Raises ValueError on a wrong rank, NaN/inf tokens (naming how many) or tau outside [-1, 1]. One host
    sync (the NaN check and the edge-list flag read together), rarely one more per block of 4M pairs."""
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be [N, D], got shape {tuple(tokens.shape)}")
    tau = check_tau(tau)
    x, inv, finite = _norms(tokens)
    unit_, nonzero = x * inv[:, None], inv > 0
    labels, _, redo = _components(unit_, nonzero, tau)
    ok, again = torch.stack([finite, redo]).tolist()  # host sync: the NaN check and the edge-list flag
    _check_norms(bool(ok), tokens, "tokens")
    return _exact_components(unit_, nonzero, tau)[0] if again else labels


def frame_components(frames: Tensor, tau: float) -> Tensor:
    """Spatial SCC of every frame at once (Eq. 5).

    `[F, N, D]` -> `[F, N]` labels, each frame numbered from 0. One host sync (NaN check and edge-list flag).
    """
    if frames.dim() != 3:
        raise ValueError(f"frames must be [F, N, D], got shape {tuple(frames.shape)}")
    tau = check_tau(tau)
    x, inv, finite = _norms(frames)
    parent, redo = _frame_forest(x, inv, tau, static=True)
    assert redo is not None
    ok, again = torch.stack([finite, redo]).tolist()  # host sync: the NaN check and the edge-list flag
    _check_norms(bool(ok), frames, "frames")
    if again:
        parent = _frame_forest(x, inv, tau, static=False)[0]
    labels = _rank_roots(parent)[0].view(frames.shape[:2])
    return labels - labels[:, :1] if labels.numel() else labels


def _counts(labels: Tensor, k: int) -> Tensor:
    """`[S]` labels in 0..k-1 -> `[k]` int64 members per label: bincount without its host sync on CUDA."""
    return torch.zeros(k, dtype=torch.long, device=labels.device).index_add_(
        0, labels, torch.ones_like(labels)
    )


def _segment_sum(values: Tensor, labels: Tensor, k: int) -> Tensor:
    """`[S, C]` float32 rows summed by label into `[k, C]`.

    A CSR one-hot product, ~3x faster than index_add on CPU.
    """
    crow = torch.cat([labels.new_zeros(1), _counts(labels, k).cumsum(0)])  # [k + 1]
    order = torch.argsort(labels, stable=True)  # members of each label in token order: deterministic sums
    ones = values.new_ones(order.shape[0])
    return torch.sparse_csr_tensor(crow, order, ones, (k, order.shape[0]), check_invariants=False) @ values


def merge_by_labels(
    values: Tensor, labels: Tensor, num: int | None = None, *, reduce: str = "mean"
) -> Tensor:
    """Reduce rows of `values` `[N, ...]` that share a label (`[N]` long in 0..num-1) -> `[num, ...]` float32.

    `reduce` is "mean" or "sum"; num defaults to labels.max() + 1 (a host sync); an empty group gives 0.
    Applies to any per-token tensor (tokens, counts, times)."""
    if labels.shape[0] != values.shape[0]:
        raise ValueError(
            f"labels [{labels.shape[0]}] and values [{values.shape[0]}] disagree on the token count"
        )
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
    k = int(labels.max()) + 1 if num is None and labels.numel() else int(num or 0)
    sums = _segment_sum(values.float().reshape(values.shape[0], -1), labels, k).view(k, *values.shape[1:])
    if reduce == "sum":
        return sums
    return sums / _counts(labels, k).clamp_min(1).to(sums).view(-1, *([1] * (values.dim() - 1)))


def _nearest(
    unit_s: Tensor, nonzero_s: Tensor, unit_t: Tensor, nonzero_t: Tensor, block: int = 4096
) -> Tensor:
    out = torch.empty(unit_s.shape[0], dtype=torch.long, device=unit_s.device)
    for start in range(0, unit_s.shape[0], block):  # bounds the [s, K] similarity to block x K floats
        sim = unit_s[start : start + block] @ unit_t.T  # [s, K]
        sim.masked_fill_(~nonzero_t[None, :], float("-inf"))  # D4: a zero representative never captures
        out[start : start + block] = sim.argmax(dim=1)
    return out.masked_fill_(~nonzero_s, -1)


def assign_to_nearest(sources: Tensor, targets: Tensor) -> Tensor:
    """`[S, D]`, `[K, D]` -> `[S]` most similar target (Eq. 7).

    Never a zero-norm target, -1 for a zero source.
    """
    return _nearest(*normalize(sources, "sources"), *normalize(targets, "targets"))


def _merge(reps: Tensor, sources: Tensor, assignment: Tensor) -> Tensor:
    """Eq. 8: (rep_j + sum of sources assigned to j) / (count_j + 1), in float32 (D5); -1 joins nothing (it
    goes to a spare label that is dropped, so no host sync)."""
    k = reps.shape[0]
    assignment = torch.where(assignment >= 0, assignment, k)
    sums = reps.float() + _segment_sum(sources.float(), assignment, k + 1)[:k]
    return sums / (_counts(assignment, k + 1)[:k].to(sums) + 1)[:, None]


def final_merge(sources: Tensor, reps: Tensor) -> Tensor:
    """Eqs. 7-8 for `[S, D]` sources and `[K, D]` representatives -> `[K, D]` float32.

    Table 4b applies it to peers. Zero-norm sources join nothing; a zero-norm representative captures nothing
    (D4)."""
    return _merge(reps, sources, assign_to_nearest(sources, reps))


def compress_video_with_stats(
    frames: Tensor, tau: float = 0.9, merge: bool = True
) -> tuple[Tensor, SccStats]:
    """`compress_video` that also returns the per-step counts and each token's destination (`SccStats`).

    Two host syncs in all (each reads the counts the next step's shapes need, with the NaN checks and the
    edge-list flags), rarely one more per redone block."""
    if frames.dim() != 3:
        raise ValueError(f"frames must be [F, N, D], got shape {tuple(frames.shape)}")
    (f, n, d), tau = frames.shape, check_tau(tau)
    if f * n == 0:
        return frames.new_zeros((0, d)), SccStats(0, 0, 0, *[frames.new_zeros(0, dtype=torch.long)] * 2)
    x, inv, finite = _norms(frames)  # [F, N, D] float32, [F, N]: norms once, reused below
    flat = x.reshape(f * n, d)  # [F*N, D] frame-major: token t = frame * N + position
    # Spatial step (Eqs. 5-6): per-frame components; frame-major root order = first-member order.
    parent, redo = _frame_forest(x, inv, tau, static=True)
    spatial, k1_ = _rank_roots(parent)  # [F*N] global spatial label
    assert redo is not None
    ok, again, k1 = torch.stack([finite.long(), redo.long(), k1_]).tolist()  # host sync: K1 shapes the rest
    _check_norms(bool(ok), frames, "frames")
    if again:
        spatial, k1_ = _rank_roots(_frame_forest(x, inv, tau, static=False)[0])
        k1 = int(k1_)  # host sync (rare): the redone count
    spatial_reps = merge_by_labels(flat, spatial, k1)  # [K1, D] plain means
    # Temporal step: SCC over the spatial representatives (earliest-token order), plain means again (§1.2).
    rep_x, rep_inv, rep_finite = _norms(spatial_reps)
    rep_unit, rep_nonzero = rep_x * rep_inv[:, None], rep_inv > 0
    temporal, k_, redo = _components(rep_unit, rep_nonzero, tau)  # [K1]
    ok, again, k = torch.stack([rep_finite.long(), redo.long(), k_]).tolist()  # host sync: K
    _check_norms(bool(ok), spatial_reps, "spatial representatives")
    if again:
        temporal, k_ = _exact_components(rep_unit, rep_nonzero, tau)
        k = int(k_)  # host sync (rare): the redone count
    reps = merge_by_labels(spatial_reps, temporal, k)  # [K, D]
    component = temporal[spatial]  # [F*N]
    if not merge:  # the temporal representatives themselves
        return reps.to(frames.dtype), SccStats(f * n, k1, k, component, component)
    reps_x, reps_inv, _ = _norms(reps)  # means of finite rows: finite
    assignment = _nearest(
        flat, inv.view(-1) > 0, reps_x * reps_inv[:, None], reps_inv > 0
    )  # Eq. 7: a source's norm never moves argmax
    assignment = torch.where(
        assignment < 0, component, assignment
    )  # zero-norm tokens keep their own component
    return _merge(reps, flat, assignment).to(frames.dtype), SccStats(f * n, k1, k, component, assignment)


def compress_video(frames: Tensor, tau: float = 0.9, merge: bool = True) -> Tensor:
    """LLaVA-Scissor's two-step compression with the final merge, exactly as PAPER.md §1.2 (exact components).

    Args:
        frames: `[F, N, D]` visual tokens of F frames, any float dtype; all maths in float32, cast back at the
            end.
        tau: cosine threshold in [-1, 1] for both the spatial and the temporal step (paper default 0.9).
        merge: apply the final merge step (Eqs. 7-8); False returns the temporal representatives.

    Returns:
        `[K, D]` in the input dtype, ordered by each component's earliest original token (frame, then
        position).

    Raises:
        ValueError: wrong rank, NaN/inf tokens (naming how many), tau outside [-1, 1].
    """
    return compress_video_with_stats(frames, tau, merge)[0]
