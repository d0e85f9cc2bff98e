"""TokenMemory invariants on synthetic streams (concepts that appear, vanish, return); never touches I/O."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

import compress.memory as memory_module
from compress import TokenMemory, compress_video
from compress.memory import EntryInfo, MemoryUpdate
from compress.memory_state import INTERVAL_CONFIG, INTERVAL_STATE, RECENT_FIELDS

D = 32


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Small tensor ops on 2 shared cores: OpenMP threads only add contention (10x slower under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def concepts(count: int, seed: int = 0, dim: int = D) -> Tensor:
    """`[count, dim]` random unit directions (nearly orthogonal: pairwise cos well below 0.9)."""
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(count, dim, generator=g)
    unit: Tensor = c / c.norm(dim=1, keepdim=True)
    return unit


def frame(centers: Tensor, shown: list[int], per: int = 8, noise: float = 0.03, seed: int = 0) -> Tensor:
    """`[len(shown) * per, D]` tokens: `per` noisy copies of each shown concept (cos to its center ~0.99)."""
    g = torch.Generator().manual_seed(seed)
    base = centers[torch.tensor(shown)].repeat_interleave(per, dim=0)
    return base + noise * torch.randn(base.shape, generator=g)


def stream(memory: TokenMemory, frames: int, seed: int = 0, fps: float = 2.0) -> list[MemoryUpdate]:
    """Feed a camera-like stream: a fixed background plus objects from a pool that come, go and return."""
    centers = concepts(60, seed)
    g = torch.Generator().manual_seed(seed + 1)
    updates = []
    for f in range(frames):
        scene = (f // 40) % 5  # five scenes cycle, so objects vanish and come back
        objects = (10 + scene * 10 + torch.randperm(10, generator=g)[:3]).tolist()
        updates.append(
            memory.add_frame(frame(centers, [0, 1, 2, *objects], seed=seed * 100_000 + f), f / fps, f)
        )
    return updates


def stored_tokens(memory: TokenMemory) -> int:
    return sum(info.count for info in memory.tokens()[1])


def kept_tokens(memory: TokenMemory) -> int:
    """What the counters say the memory holds: tokens in, less those evicted and the zero-norm ones."""
    s = memory.summary()
    return (
        int(s["tokens_in_total"] or 0)
        - int(s["tokens_evicted_total"] or 0)
        - int(s["tokens_zero_total"] or 0)
    )


@pytest.mark.parametrize("frames", [600, pytest.param(5000, marks=pytest.mark.slow)])
def test_capacity_and_window_are_never_exceeded_on_a_long_stream(frames: int) -> None:
    memory = TokenMemory(D, tau=0.9, capacity=12, window_s=30.0)
    centers = concepts(60)
    for f in range(frames):  # a new object every third frame; old ones return 57 objects later
        shown = [0, 1, 2 + (f // 3) % 57, 2 + (f // 5) % 57]
        memory.add_frame(frame(centers, shown, per=3, seed=f), f / 2.0, f)
        assert len(memory) <= 12
        _, infos = memory.tokens()
        assert all(info.last_seen >= f / 2.0 - 30.0 for info in infos)
    assert memory.consolidations_total > 0
    assert memory.evicted_total > 0


def test_member_counts_are_conserved_through_bridges_consolidation_and_eviction() -> None:
    memory = TokenMemory(D, tau=0.9, capacity=10, window_s=25.0)
    stream(memory, 200)
    s = memory.summary()
    assert s["consolidations_total"] and s["evicted_total"]
    assert stored_tokens(memory) == s["tokens_stored"]
    assert s["tokens_stored"] == kept_tokens(memory)


def test_first_seen_never_exceeds_last_seen_and_entries_come_ordered_by_first_seen() -> None:
    memory = TokenMemory(D, tau=0.9, capacity=16, window_s=60.0)
    stream(memory, 250)
    _, infos = memory.tokens()
    assert all(info.first_seen <= info.last_seen for info in infos)
    keys = [(info.first_seen, info.id) for info in infos]
    assert keys == sorted(keys)
    assert all(list(info.evidence) == sorted(info.evidence) and len(info.evidence) <= 4 for info in infos)


def test_ids_increase_and_are_never_reused() -> None:
    memory = TokenMemory(D, tau=0.9, capacity=8, window_s=20.0)
    seen: list[int] = []
    for update in stream(memory, 150):
        seen += list(update.new)
    assert seen == sorted(seen) and len(seen) == len(set(seen))


def test_a_concept_that_returns_within_the_window_merges_back_into_its_entry() -> None:
    centers = concepts(10)
    memory = TokenMemory(D, tau=0.9, capacity=64, window_s=100.0)
    first = memory.add_frame(frame(centers, [0, 5], seed=1), 0.0, 0)
    dog = first.new[1]
    for f in range(1, 20):  # the dog (concept 5) leaves for a while
        memory.add_frame(frame(centers, [0], seed=f + 1), float(f), f)
    back = memory.add_frame(frame(centers, [0, 5], seed=99), 20.0, 20)
    assert back.new == () and dog in back.absorbed
    info = next(i for i in memory.tokens()[1] if i.id == dog)
    assert (info.first_seen, info.last_seen, info.frames, info.evidence) == (0.0, 20.0, 2, (0, 20))


def test_a_concept_that_returns_after_the_window_gets_a_new_entry() -> None:
    centers = concepts(10)
    memory = TokenMemory(D, tau=0.9, capacity=64, window_s=10.0)
    dog = memory.add_frame(frame(centers, [0, 5], seed=1), 0.0, 0).new[1]
    evictions = [memory.add_frame(frame(centers, [0], seed=f + 1), float(f), f).evicted for f in range(1, 20)]
    back = memory.add_frame(frame(centers, [0, 5], seed=99), 20.0, 20)
    assert (dog,) in evictions
    assert len(back.new) == 1 and back.new[0] > dog and back.novelty == pytest.approx(0.5)


def test_novelty_is_one_for_a_new_scene_and_zero_for_a_repeated_frame() -> None:
    centers = concepts(20)
    memory = TokenMemory(D, tau=0.9)
    tokens = frame(centers, [0, 1, 2, 3])
    assert memory.add_frame(tokens, 0.0, 0).novelty == 1.0
    repeat = memory.add_frame(tokens, 1.0, 1)
    assert repeat.novelty == 0.0 and repeat.new == ()
    assert memory.add_frame(frame(centers, [10, 11, 12, 13], seed=5), 2.0, 2).novelty == 1.0


def test_two_entries_bridged_by_one_new_component_become_one() -> None:
    a, b = concepts(2)
    mid = (a + b) / (a + b).norm()
    memory = TokenMemory(D, tau=0.5, capacity=64)  # cos(a, b) ~ 0, cos(mid, a) = cos(mid, b) ~ 0.71
    ids = (
        memory.add_frame(torch.stack([a, a]), 0.0, 0).new + memory.add_frame(torch.stack([b, b]), 1.0, 1).new
    )
    update = memory.add_frame(mid[None], 2.0, 2)
    assert update.merged_away == (ids[1],) and ids[0] in update.absorbed and len(memory) == 1
    assert memory.tokens()[1][0].count == 5 and memory.bridged_total == 1


def test_consolidation_merges_the_most_similar_pair_counts_weighted() -> None:
    c = concepts(3)
    near = c[0] * 0.8 + c[1] * 0.6  # cos with c[0] = 0.8 < tau: a separate entry, but the closest pair
    memory = TokenMemory(D, tau=0.9, capacity=2)
    memory.add_frame(torch.stack([c[0], c[0], c[0]]), 0.0, 0)
    memory.add_frame(near[None], 1.0, 1)
    update = memory.add_frame(c[2][None], 2.0, 2)
    means, infos = memory.tokens()
    assert update.merged_away == (1,) and [i.id for i in infos] == [0, 2]
    assert infos[0].count == 4 and (infos[0].first_seen, infos[0].last_seen) == (0.0, 1.0)
    torch.testing.assert_close(means[0], (3 * c[0] + near) / 4)


def busy_stream(memory: TokenMemory, frames: int, noise: float, seed: int = 5) -> list[MemoryUpdate]:
    """Several never-seen objects per frame beside a fixed background: every frame overflows a small memory by
    several entries, so consolidation merges several pairs per frame."""
    centers = concepts(400, seed)
    g = torch.Generator().manual_seed(seed)
    updates = []
    for f in range(frames):
        shown = [0, 1, *torch.randint(2, 400, (6,), generator=g).tolist()]
        updates.append(memory.add_frame(frame(centers, shown, per=3, noise=noise, seed=f), float(f), f))
    return updates


@pytest.mark.parametrize(("tau", "noise"), [(0.9, 0.03), (0.5, 0.25)])
def test_consolidation_rounds_equal_merging_one_pair_at_a_time(
    monkeypatch: pytest.MonkeyPatch, tau: float, noise: float
) -> None:
    round_sizes: list[int] = []
    apply_pairs = TokenMemory._apply_pairs

    def spy(self: TokenMemory, a: Tensor, *args: object) -> None:
        round_sizes.append(a.numel())
        apply_pairs(self, a, *args)  # type: ignore[arg-type]  # the spy passes the round through unchanged

    monkeypatch.setattr(TokenMemory, "_apply_pairs", spy)

    def run(pairs_per_round: int) -> tuple[list[tuple[object, ...]], tuple[Tensor, list[EntryInfo]]]:
        monkeypatch.setattr(memory_module, "_ROUND_PAIRS", pairs_per_round)
        memory = TokenMemory(D, tau=tau, capacity=16, window_s=1e9, consolidation="exact")
        updates = busy_stream(memory, 80, noise)
        sets: list[tuple[object, ...]] = [
            (u.new, sorted(u.absorbed), sorted(u.merged_away), u.novelty) for u in updates
        ]
        return sets, memory.tokens()

    one_sets, (one_means, one_infos) = run(1)  # the definition: merge the most similar pair, refresh, repeat
    assert round_sizes and max(round_sizes) == 1
    round_sizes.clear()
    sets, (means, infos) = run(32)
    assert max(round_sizes) >= 3  # rounds really merged several pairs at once
    assert sets == one_sets and infos == one_infos
    torch.testing.assert_close(means, one_means, rtol=0, atol=1e-6)


def cache_deferred(memory: TokenMemory) -> int:
    """Assert every cached nearest neighbour is exact, or -1 with a bound on its best (a list the frame's
    consolidation emptied: the next frame's refresh relists it in its own pass); returns how many are -1."""
    rows, m = memory._rows, len(memory)
    unit = rows["unit"][:m]
    sims = (unit @ unit.T).fill_diagonal_(float("-inf"))
    best = sims.max(dim=1).values
    cached, neighbour = rows["nn_sim"][:m], rows["nn_idx"][:m]
    known = neighbour >= 0
    assert bool((cached[~known] >= best[~known] - 1e-5).all())
    torch.testing.assert_close(cached[known], best[known], rtol=0, atol=1e-5)
    torch.testing.assert_close(sims[torch.arange(m), neighbour][known], best[known], rtol=0, atol=1e-5)
    return int((~known).sum())


def test_the_neighbour_cache_stays_exact_through_bridges_consolidation_and_eviction() -> None:
    memory = TokenMemory(D, tau=0.9, capacity=10, window_s=25.0)
    centers = concepts(60, seed=2)
    for f in range(150):
        memory.add_frame(frame(centers, [0, 1, 2 + f % 57, 2 + (3 * f) % 57], seed=f), f / 2.0, f)
        cache_deferred(memory)


def test_lists_a_consolidation_empties_wait_for_the_next_frames_refresh_and_change_no_merge() -> None:
    memory = TokenMemory(D, tau=0.5, capacity=16, window_s=1e9, consolidation="exact")
    deferred = 0
    centers = concepts(400, 5)
    g = torch.Generator().manual_seed(5)
    for f in range(80):  # busy_stream's frames, the cache checked after each
        shown = [0, 1, *torch.randint(2, 400, (6,), generator=g).tolist()]
        memory.add_frame(frame(centers, shown, per=3, noise=0.25, seed=f), float(f), f)
        deferred += cache_deferred(memory)
    assert deferred  # some lists did wait (the merges themselves: the one-pair-at-a-time test above)
    copy = TokenMemory.from_bytes(memory.to_bytes())  # a waiting list survives a snapshot as its bound
    assert torch.equal(copy._rows["nn_sim"][: len(copy)], memory._rows["nn_sim"][: len(memory)])
    assert torch.equal(copy._rows["nn_idx"][: len(copy)], memory._rows["nn_idx"][: len(memory)])


def test_the_pruned_final_merge_equals_scoring_every_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(candidates: int) -> tuple[Tensor, list[EntryInfo]]:
        monkeypatch.setattr(memory_module, "_CANDIDATES", candidates)
        memory = TokenMemory(D, tau=0.5, capacity=40, window_s=1e9)
        g = torch.Generator().manual_seed(3)
        centers = concepts(30, seed=3)
        for f in range(
            30
        ):  # loose components of noisy tokens: a component's best entry is often not its tokens'
            shown = torch.randint(0, 30, (6,), generator=g).tolist()
            memory.add_frame(frame(centers, shown, per=5, noise=0.15, seed=f), float(f), f)
        return memory.tokens()

    pruned = run(1)  # one candidate per component: the angle bound must send tokens to the full scoring
    full = run(10_000)  # every entry is a candidate: plain argmax over all entries (Eq. 7)
    assert pruned[1] == full[1]
    torch.testing.assert_close(pruned[0], full[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("gap_s", [None, 1.0])
def test_round_trip_through_bytes_is_exact_and_continues_identically(gap_s: float | None) -> None:
    memory = TokenMemory(D, tau=0.9, capacity=10, window_s=25.0, gap_s=gap_s, max_intervals=3)
    stream(memory, 120)
    copy = TokenMemory.from_bytes(memory.to_bytes(), dim=D)
    (a, infos_a), (b, infos_b) = memory.tokens(), copy.tokens()
    assert torch.equal(a, b) and infos_a == infos_b and memory.summary() == copy.summary()
    assert any(len(info.intervals) > 1 for info in infos_a)  # the intervals travelled, not just first..last
    assert (copy.gap_s, copy.max_intervals, copy.spacing_s) == (gap_s, 3, memory.spacing_s)
    assert copy.live_evidence() == memory.live_evidence()
    centers = concepts(60, seed=7)
    for f in range(120, 160):
        tokens = frame(centers, [0, f % 60, (3 * f) % 60], seed=f)
        t = f / 2.0 + (3.0 if f >= 140 else 0.0)  # a stall: the spacing estimates move identically
        assert memory.add_frame(tokens, t, f) == copy.add_frame(tokens, t, f)
        assert memory.tokens()[1] == copy.tokens()[1]
    assert torch.equal(memory.tokens()[0], copy.tokens()[0])
    assert memory.live_evidence() == copy.live_evidence() and memory.current_gap_s() == copy.current_gap_s()


def test_a_state_of_another_dim_or_a_corrupt_blob_is_refused_with_a_clear_error() -> None:
    memory = TokenMemory(D)
    memory.add_frame(frame(concepts(4), [0, 1]), 0.0, 0)
    blob = memory.to_bytes()
    with pytest.raises(ValueError, match="dim 32, expected 64"):
        TokenMemory.from_bytes(blob, dim=64)
    for bad in (b"", b"not a snapshot", blob[: len(blob) // 2]):
        with pytest.raises(ValueError, match="not a TokenMemory snapshot"):
            TokenMemory.from_bytes(bad)
    state = memory.state_dict()
    state["counts"] = state["counts"] * 0
    with pytest.raises(ValueError, match="inconsistent"):
        TokenMemory.from_state_dict(state)
    with pytest.raises(ValueError, match="version"):
        TokenMemory.from_state_dict({"weights": torch.zeros(3)})
    state = memory.state_dict()
    state["recent_unit"] = state["recent_unit"][:, :5]
    with pytest.raises(ValueError, match="recent"):
        TokenMemory.from_state_dict(state)


def test_a_version_1_snapshot_still_loads() -> None:
    memory = TokenMemory(D)
    memory.add_frame(frame(concepts(4), [0, 1]), 0.0, 0)
    newer = RECENT_FIELDS + INTERVAL_STATE + INTERVAL_CONFIG  # what versions 2 and 3 added
    state = {k: v for k, v in memory.state_dict().items() if k not in newer}
    old = TokenMemory.from_state_dict({**state, "version": 1})
    assert old.tokens()[1] == memory.tokens()[1]
    old.add_frame(frame(concepts(4), [0, 1], seed=1), 1.0, 1)  # no previous look known: joins by the mean
    assert len(old) == 2


def drifting(frames: int, step: float, seed: int = 0) -> Tensor:
    """`[frames, 8, D]`: one region whose direction turns by `step` radians per frame (neighbours agree at
    cos(step); after a while the region points far from where it started)."""
    a, b = concepts(2, seed)
    b = b - (a @ b) * a
    b = b / b.norm()
    angles = torch.arange(frames) * step
    centers = torch.cos(angles)[:, None] * a + torch.sin(angles)[:, None] * b
    return torch.stack([frame(c[None], [0], per=8, noise=0.005, seed=f) for f, c in enumerate(centers)])


def test_a_slowly_drifting_region_stays_one_entry_as_in_batch_scc() -> None:
    clip = drifting(30, step=0.1)  # consecutive frames agree at cos 0.995; first and last at cos -0.97
    assert compress_video(clip, 0.9).shape[0] == 1  # batch SCC chains the frames into one component
    memory = TokenMemory(D, tau=0.9)
    for f in range(15):
        memory.add_frame(clip[f], float(f), f)
    copy = TokenMemory.from_bytes(memory.to_bytes())  # the previous frame's look is part of the snapshot
    for f in range(15, 30):
        assert memory.add_frame(clip[f], float(f), f).novelty == 0.0
        copy.add_frame(clip[f], float(f), f)
    assert len(memory) == len(copy) == 1
    assert memory.tokens()[1][0].count == 30 * 8


def test_chaining_only_reaches_back_one_frame() -> None:
    clip = drifting(3, step=0.7)  # cos 0.76 between neighbours: below tau, so no chain at all
    memory = TokenMemory(D, tau=0.9)
    for f in range(3):
        memory.add_frame(clip[f], float(f), f)
    assert len(memory) == 3
    clip = drifting(8, step=0.15)
    for gap in (False, True):
        memory = TokenMemory(D, tau=0.9)
        for f in range(6):
            memory.add_frame(clip[f], float(f), f)
        if gap:
            memory.add_frame(torch.zeros(4, D), 6.0, 6)  # a frame showing nothing: frame 5's look is gone
        memory.add_frame(clip[7], 7.0, 7)  # cos 0.955 to frame 5's look, about 0.78 to the entry's mean
        assert len(memory) == (2 if gap else 1)


def test_nan_tokens_and_backward_time_raise_and_change_nothing() -> None:
    memory = TokenMemory(D)
    memory.add_frame(frame(concepts(4), [0, 1]), 5.0, 0)
    before = memory.state_dict()
    bad = frame(concepts(4), [2])
    bad[3, 7] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        memory.add_frame(bad, 6.0, 1)
    with pytest.raises(ValueError, match="backwards"):
        memory.add_frame(frame(concepts(4), [2]), 4.0, 1)
    with pytest.raises(ValueError, match=r"\[N, 32\]"):
        memory.add_frame(torch.zeros(3, 16), 6.0, 1)
    after = memory.state_dict()
    assert all(
        torch.equal(v, after[k]) if isinstance(v, Tensor) else v == after[k] for k, v in before.items()
    )


def test_zero_norm_tokens_are_counted_but_never_capture_tokens() -> None:
    centers = concepts(4)
    memory = TokenMemory(D, tau=0.9)
    padded = torch.cat([torch.zeros(5, D), frame(centers, [0, 1])])
    update = memory.add_frame(padded, 0.0, 0)
    assert len(update.new) == 2 and update.novelty == 1.0
    assert memory.add_frame(torch.zeros(4, D), 1.0, 1).new == ()
    means, infos = memory.tokens()
    assert [i.count for i in infos] == [8, 8] and bool((means.norm(dim=1) > 0.9).all())
    assert memory.summary()["tokens_zero_total"] == 9


def test_tokens_returns_entries_overlapping_the_interval() -> None:
    centers = concepts(6)
    memory = TokenMemory(D, tau=0.9, window_s=1e9)
    for f, shown in enumerate([[0], [1], [2], [1]]):
        memory.add_frame(frame(centers, shown, seed=f), 10.0 * f, f)
    assert [i.id for i in memory.tokens(since=15.0)[1]] == [1, 2]
    assert [i.id for i in memory.tokens(until=5.0)[1]] == [0]
    assert [i.id for i in memory.tokens(since=12.0, until=18.0)[1]] == [1]
    means, infos = memory.tokens(since=100.0)
    assert means.shape == (0, D) and infos == []


def test_evidence_keeps_the_first_frame_and_the_newest_ones() -> None:
    centers = concepts(2)
    memory = TokenMemory(D, tau=0.9, evidence_frames=3)
    for f in range(10):
        memory.add_frame(frame(centers, [0], seed=f), float(f), 100 + f)
    assert memory.tokens()[1][0].evidence == (100, 108, 109)


def test_invalid_configuration_is_refused() -> None:
    bad: list[dict[str, object]] = [{"capacity": 0}, {"window_s": 0.0}, {"tau": 1.5}, {"evidence_frames": 0}]
    bad += [{"gap_s": -1.0}, {"gap_s": float("nan")}, {"max_intervals": 0}, {"max_intervals": 1.5}]
    for kwargs in bad:
        with pytest.raises(ValueError):
            TokenMemory(D, **kwargs)  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(
    capacity=st.integers(1, 6),
    window=st.floats(1.0, 20.0),
    tau=st.floats(0.3, 0.95),
    shows=st.lists(st.lists(st.integers(0, 7), min_size=0, max_size=4), min_size=1, max_size=25),
)
def test_bounds_and_conservation_hold_for_any_small_stream(
    capacity: int, window: float, tau: float, shows: list[list[int]]
) -> None:
    centers = concepts(8, dim=8)
    memory = TokenMemory(8, tau=tau, capacity=capacity, window_s=window)
    for f, shown in enumerate(shows):
        tokens = frame(centers, shown, per=3, noise=0.1, seed=f) if shown else torch.zeros(0, 8)
        update = memory.add_frame(tokens, float(f), f)
        assert 0.0 <= update.novelty <= 1.0 and len(memory) <= capacity
        assert stored_tokens(memory) == kept_tokens(memory)
        assert all(f - window <= i.last_seen and i.first_seen <= i.last_seen for i in memory.tokens()[1])


@pytest.mark.parametrize("consolidation", ["forest", "matching", "exact"])
def test_every_consolidation_rule_conserves_counts_and_sums_and_keeps_the_cache_exact(
    consolidation: str,
) -> None:
    memory = TokenMemory(D, tau=0.9, capacity=10, window_s=1e9, consolidation=consolidation)
    centers = concepts(60, seed=2)
    summed = torch.zeros(D, dtype=torch.float64)
    for f in range(120):
        tokens = frame(centers, [0, 1, 2 + f % 57, 2 + (3 * f) % 57], seed=f)
        memory.add_frame(tokens, f / 2.0, f)
        summed += tokens.double().sum(dim=0)
        if consolidation != "exact":
            assert cache_deferred(memory) == 0  # forest and matching passes relist every list they empty
        assert stored_tokens(memory) == kept_tokens(memory) == 32 * (f + 1)
        held = memory._rows["sums"][: len(memory)].double().sum(dim=0)
        torch.testing.assert_close(held, summed, rtol=0, atol=1e-3)
    assert memory.consolidations_total > 100


def brute_forest(units: Tensor, ids: list[int], need: int) -> list[set[int]]:
    """The forest rule from scratch on `[M, D]` entry units: every entry's nearest other entry by a full
    cosine matrix; a link i -> j counts when j's own best is at least as similar (ties: toward the higher
    row); the `need` most similar links merge, each tree into one entry. -> the trees (sets of ids)."""
    sims = (units @ units.T).fill_diagonal_(float("-inf"))
    best, nearest = sims.max(dim=1)
    links = [
        (float(best[i]), i, int(nearest[i]))
        for i in range(len(ids))
        if best[nearest[i]] > best[i] or (best[nearest[i]] == best[i] and nearest[i] > i)
    ]
    parent = list(range(len(ids)))
    for _, i, j in sorted(links, reverse=True)[:need]:
        parent[i] = j

    def root(i: int) -> int:
        return i if parent[i] == i else root(parent[i])

    trees: dict[int, set[int]] = {}
    for i, entry in enumerate(ids):
        trees.setdefault(root(i), set()).add(entry)
    return list(trees.values())


def test_forest_consolidation_equals_the_brute_force_rule_merging_trees_counts_weighted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked = 0
    consolidate = TokenMemory._consolidate

    def oracle(memory: TokenMemory) -> Tensor:
        nonlocal checked
        m, rows = len(memory), memory._rows
        need = m - memory.capacity
        if need <= 0:
            return consolidate(memory)
        ids = rows["ids"][:m].tolist()
        sums, counts = rows["sums"][:m].clone(), rows["counts"][:m].clone()
        trees = brute_forest(rows["unit"][:m], ids, need)
        row_of = {entry: r for r, entry in enumerate(ids)}
        gone = consolidate(memory)
        means, infos = memory.tokens()
        assert len(infos) == memory.capacity and len(gone) == need
        for info, mean in zip(infos, means, strict=True):
            tree = next(t for t in trees if info.id in t)
            assert info.id == min(tree)  # the oldest id survives
            members = torch.tensor([row_of[e] for e in tree])
            assert info.count == int(counts[members].sum())
            torch.testing.assert_close(mean, sums[members].sum(0) / counts[members].sum(), rtol=0, atol=1e-5)
        assert sorted(gone.tolist()) == sorted(e for t in trees for e in t if e != min(t))
        checked += 1
        return gone

    monkeypatch.setattr(TokenMemory, "_consolidate", oracle)
    memory = TokenMemory(D, tau=0.5, capacity=16, window_s=1e9, consolidation="forest")
    updates = busy_stream(memory, 60, noise=0.25)
    assert checked > 30 and max(len(u.merged_away) for u in updates) >= 4
    assert memory.consolidation_passes == 1


@pytest.mark.parametrize(("capacity", "most"), [(40, 1), (10, 2)])
def test_forest_consolidation_takes_a_bounded_number_of_passes_whatever_the_number_of_merges(
    capacity: int, most: int
) -> None:
    # each tree of nearest-neighbour links has a mutual pair at its top, so M entries hold >= M / 2 links:
    # one pass while a frame adds at most `capacity` entries, else one per halving of M
    centers = concepts(400, seed=7)
    memory = TokenMemory(
        D, tau=0.99, capacity=capacity, window_s=1e9, consolidation="forest"
    )  # every token its own entry
    passes = []
    for f in range(20):
        memory.add_frame(frame(centers, list(range(20 * f, 20 * f + 20)), per=2, noise=0.1, seed=f), f, f)
        passes.append(memory.consolidation_passes)
    assert max(passes) == most and memory.consolidations_total >= 19 * 40 - capacity
