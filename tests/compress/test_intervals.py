"""TokenMemory's on-camera intervals against brute-force oracles replaying the same stream; never touches I/O.

The oracles take from the memory only its decisions (which entries appeared in a frame, which merged into
which) and work out the intervals themselves, in plain Python, from the times at which each entry and its
merged-in ancestors appeared.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from compress import TokenMemory
from compress.intervals import fuse
from compress.memory_state import INTERVAL_CONFIG, INTERVAL_STATE, RECENT_FIELDS
from tests.compress.test_memory import concepts, frame

D = 32
Interval = tuple[float, float, int, int]  # start, end, evidence frame, its support


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Small tensor ops on 2 shared cores: OpenMP threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pick(evidence: list[tuple[int, int]]) -> tuple[int, int]:
    """(frame, support) of intervals fused into one -> its evidence: supports naming one frame add, then the
    most support wins, then the earliest frame."""
    total: dict[int, int] = defaultdict(int)
    for f, support in evidence:
        total[f] += support
    best = min(total, key=lambda f: (-total[f], f))
    return best, total[best]


def fuse_py(intervals: list[Interval], gap: float, limit: int) -> list[Interval]:
    """The documented rule one step at a time: fuse intervals within `gap` (in start order), then while over
    `limit` fuse the two adjacent intervals with the smallest gap between them (the earliest on ties)."""
    runs: list[tuple[float, float, list[tuple[int, int]]]] = []
    for start, end, f, support in sorted(intervals, key=lambda iv: iv[0]):
        if runs and start - runs[-1][1] <= gap:
            runs[-1] = (runs[-1][0], max(runs[-1][1], end), [*runs[-1][2], (f, support)])
        else:
            runs.append((start, end, [(f, support)]))
    out = [(start, end, *pick(members)) for start, end, members in runs]
    while len(out) > limit:
        gaps = [out[i + 1][0] - out[i][1] for i in range(len(out) - 1)]
        i = gaps.index(min(gaps))
        a, b = out[i], out[i + 1]
        out[i : i + 2] = [(a[0], b[1], *pick([(a[2], a[3]), (b[2], b[3])]))]
    return out


def single_linkage(times: list[float], gap: float) -> list[tuple[float, float]]:
    """Sorted times -> the intervals they form when times at most `gap` apart join (no bound)."""
    spans: list[tuple[float, float]] = []
    for t in sorted(times):
        if spans and t - spans[-1][1] <= gap:
            spans[-1] = (spans[-1][0], t)
        else:
            spans.append((t, t))
    return spans


@dataclass
class Replay:
    """Follows a memory frame by frame through a spy on its merges: per live id the oracle's intervals (the
    documented rule replayed step by step) and the raw record of (t, frame, tokens absorbed) of the entry and
    all its merged-in ancestors."""

    memory: TokenMemory
    intervals: dict[int, list[Interval]] = field(default_factory=dict)
    record: dict[int, list[tuple[float, int, int]]] = field(default_factory=dict)
    events: list[tuple[str, Any, Any]] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Spy on `_merge_rows` (who merges into whom, in order) and `_consolidate` (the counts before it)."""
        merge_rows, consolidate = TokenMemory._merge_rows, TokenMemory._consolidate
        events = self.events

        def merges(memory: TokenMemory, into: Tensor, away: Tensor, **kwargs: Any) -> None:
            if memory is self.memory and away.numel():
                ids = memory._rows["ids"]
                events.append(("merge", ids[into].tolist(), ids[away].tolist()))
            merge_rows(memory, into, away, **kwargs)

        def consolidates(memory: TokenMemory) -> Tensor:
            if memory is self.memory:
                events.append(("counts", {i.id: i.count for i in memory.tokens()[1]}, None))
            return consolidate(memory)

        monkeypatch.setattr(TokenMemory, "_merge_rows", merges)
        monkeypatch.setattr(TokenMemory, "_consolidate", consolidates)

    def add_frame(self, tokens: Tensor, t: float, f: int) -> None:
        """Feed the memory one frame and replay what it did."""
        before = {i.id: i.count for i in self.memory.tokens()[1]}
        self.events.clear()
        update = self.memory.add_frame(tokens, t, f)
        gap, limit = self.memory.current_gap_s(), self.memory.max_intervals
        for gone in update.evicted:
            del self.intervals[gone], self.record[gone]
        seen = set(update.new) | set(update.absorbed)
        counts = next((e[1] for e in self.events if e[0] == "counts"), None)
        bridged: dict[int, int] = defaultdict(int)  # tokens an entry gained from entries bridged into it
        consolidating = False
        for kind, into, away in self.events:
            if kind == "counts":
                consolidating = True
                self._appear(seen, counts, before, bridged, t, f, gap, limit)
                continue
            grouped: dict[int, list[int]] = defaultdict(list)
            for a, b in zip(into, away, strict=True):
                grouped[a].append(b)
                if not consolidating:
                    bridged[a] += before[b]
            for a, bs in grouped.items():
                merged = self.intervals[a] + [iv for b in bs for iv in self.intervals.pop(b)]
                self.intervals[a] = fuse_py(merged, gap, limit)
                self.record[a] += [r for b in bs for r in self.record.pop(b)]
        if counts is None:  # a frame showing nothing: no consolidation either
            assert not seen

    def _appear(
        self,
        seen: set[int],
        counts: dict[int, int] | None,
        before: dict[int, int],
        bridged: dict[int, int],
        t: float,
        f: int,
        gap: float,
        limit: int,
    ) -> None:
        """The frame's appearances: each seen entry took what its count gained beyond the bridged entries'."""
        assert counts is not None
        for i in sorted(seen):
            took = counts[i] - before.get(i, 0) - bridged[i]
            ivs = self.intervals.setdefault(i, [])
            self.record.setdefault(i, []).append((t, f, took))
            if ivs and t - ivs[-1][1] <= gap:
                start, _, best, support = ivs[-1]
                ivs[-1] = (start, t, *((f, took) if took > support else (best, support)))
            else:
                self.intervals[i] = fuse_py([*ivs, (t, t, f, took)], -math.inf, limit)

    def check(self) -> None:
        """The memory's intervals and evidence equal the replayed ones, entry by entry."""
        infos = {i.id: i for i in self.memory.tokens()[1]}
        assert set(infos) == set(self.intervals)
        for i, info in infos.items():
            assert list(info.intervals) == [(a, b) for a, b, _, _ in self.intervals[i]], i
            assert list(info.interval_frames) == [e for _, _, e, _ in self.intervals[i]], i
        support: dict[int, int] = defaultdict(int)
        for ivs in self.intervals.values():
            for _, _, e, s in ivs:
                support[e] += s
        assert self.memory.live_evidence() == dict(support)


def camera(frames: int, seed: int = 0, fps: float = 2.0) -> Iterator[tuple[Tensor, float, int]]:
    """test_memory's camera-like stream (a background plus objects that come, go and return)."""
    centers = concepts(60, seed)
    g = torch.Generator().manual_seed(seed + 1)
    for f in range(frames):
        scene = (f // 40) % 5
        objects = (10 + scene * 10 + torch.randperm(10, generator=g)[:3]).tolist()
        yield frame(centers, [0, 1, 2, *objects], seed=seed * 100_000 + f), f / fps, f


def invariants(memory: TokenMemory) -> None:
    """Sorted, disjoint, spanning first_seen..last_seen, at most max_intervals, one evidence frame each."""
    for info in memory.tokens()[1]:
        ivs = info.intervals
        assert 1 <= len(ivs) <= memory.max_intervals and len(info.interval_frames) == len(ivs)
        assert ivs[0][0] == info.first_seen and ivs[-1][1] == info.last_seen
        assert all(a <= b for a, b in ivs)
        assert all(ivs[k][1] < ivs[k + 1][0] for k in range(len(ivs) - 1))


@pytest.mark.parametrize(
    ("tau", "capacity", "gap_s"), [(0.9, 10, 1.0), (0.9, 10, 0.5), (0.5, 16, 2.0), (0.9, 10, math.inf)]
)
def test_intervals_equal_the_fused_record_of_the_entry_and_its_ancestors(
    monkeypatch: pytest.MonkeyPatch, tau: float, capacity: int, gap_s: float
) -> None:
    memory = TokenMemory(D, tau=tau, capacity=capacity, window_s=25.0, gap_s=gap_s, max_intervals=64)
    replay = Replay(memory)
    replay.install(monkeypatch)
    for tokens, t, f in camera(200) if tau == 0.9 else busy(120):  # busy at tau 0.5: bridges
        replay.add_frame(tokens, t, f)
        for info in memory.tokens()[1]:
            assert len(info.intervals) < 64  # so the bound never applied
            times = [r[0] for r in replay.record[info.id]]
            assert list(info.intervals) == single_linkage(times, gap_s), info.id
            spans = info.intervals
            moments = {r[1]: r[0] for r in replay.record[info.id]}
            assert all(a <= moments[e] <= b for (a, b), e in zip(spans, info.interval_frames, strict=True))
    assert memory.consolidations_total > 0
    assert memory.evicted_total > 0 if tau == 0.9 else memory.bridged_total > 0  # the busy stream bridges
    assert any(len(info.intervals) > 1 for info in memory.tokens()[1]) or gap_s == math.inf


def busy(frames: int, noise: float = 0.25, seed: int = 5) -> Iterator[tuple[Tensor, float, int]]:
    """test_memory's busy stream: several never-seen objects per frame beside a fixed background (noisy enough
    at tau 0.5 that components bridge entries)."""
    centers = concepts(400, seed)
    g = torch.Generator().manual_seed(seed)
    for f in range(frames):
        shown = [0, 1, *torch.randint(2, 400, (6,), generator=g).tolist()]
        yield frame(centers, shown, per=3, noise=noise, seed=f), float(f), f


def test_evidence_is_the_frame_with_the_most_tokens_when_nothing_merges() -> None:
    centers = concepts(4)
    memory = TokenMemory(D, tau=0.9, capacity=64, gap_s=1.5)
    per = [
        2,
        5,
        3,
        5,
        1,
        4,
        4,
    ]  # concept 0 shown with this many tokens at t = 0, 1, 2, then 10, 11, then 20, 21
    times = [0.0, 1.0, 2.0, 10.0, 11.0, 20.0, 21.0]
    for f, (n, t) in enumerate(zip(per, times, strict=True)):
        memory.add_frame(frame(centers, [0], per=n, seed=f), t, 100 + f)
    (info,) = memory.tokens()[1]
    assert info.intervals == ((0.0, 2.0), (10.0, 11.0), (20.0, 21.0))
    assert info.interval_frames == (101, 103, 105)  # the most tokens; ties: the earliest
    assert memory.live_evidence() == {101: 5, 103: 5, 105: 4}


@pytest.mark.parametrize(("gap_s", "limit"), [(0.6, 2), (1.0, 3), (None, 2), (0.0, 1)])
def test_the_max_intervals_bound_follows_the_rule_step_by_step(
    monkeypatch: pytest.MonkeyPatch, gap_s: float | None, limit: int
) -> None:
    memory = TokenMemory(D, tau=0.9, capacity=10, window_s=40.0, gap_s=gap_s, max_intervals=limit)
    replay = Replay(memory)
    replay.install(monkeypatch)
    for tokens, t, f in camera(220, fps=2.0):
        replay.add_frame(
            tokens, t + (7.0 if f >= 150 else 0.0), f
        )  # a stall: the measured gap sees through it
        replay.check()
        invariants(memory)
    assert memory.consolidations_total > 0
    assert any(len(info.intervals) == limit for info in memory.tokens()[1])


def test_the_bound_fuses_the_closest_pair_and_keeps_the_better_supported_evidence() -> None:
    centers = concepts(2)
    memory = TokenMemory(D, tau=0.9, gap_s=0.5, max_intervals=3)
    for f, (t, n) in enumerate([(0.0, 2), (10.0, 6), (13.0, 3), (30.0, 1)]):  # gaps 10, 3, 17
        memory.add_frame(frame(centers, [0], per=n, seed=f), t, f)
    (info,) = memory.tokens()[1]
    assert info.intervals == ((0.0, 0.0), (10.0, 13.0), (30.0, 30.0)) and info.interval_frames == (0, 1, 3)
    memory.add_frame(frame(centers, [0], per=9, seed=9), 32.0, 4)  # gap 2 to [30, 30]: the closest now
    (info,) = memory.tokens()[1]
    assert info.intervals == ((0.0, 0.0), (10.0, 13.0), (30.0, 32.0)) and info.interval_frames == (0, 1, 4)


def test_an_entry_that_comes_back_after_a_gap_gets_two_intervals_and_the_gap_does_not_return_it() -> None:
    centers = concepts(10)
    memory = TokenMemory(D, tau=0.9, capacity=64, window_s=100.0)  # gap measured: 3.5 x 1 s
    dog = memory.add_frame(frame(centers, [0, 5], seed=1), 0.0, 0).new[1]
    memory.add_frame(frame(centers, [0, 5], seed=2), 1.0, 1)
    for f in range(2, 20):  # the dog leaves for a while
        memory.add_frame(frame(centers, [0], seed=f + 1), float(f), f)
    assert dog in memory.add_frame(frame(centers, [0, 5], seed=99), 20.0, 20).absorbed
    info = next(i for i in memory.tokens()[1] if i.id == dog)
    assert info.intervals == ((0.0, 1.0), (20.0, 20.0)) and info.interval_frames[1] == 20
    assert (info.first_seen, info.last_seen) == (0.0, 20.0)
    assert dog not in [i.id for i in memory.tokens(since=5.0, until=15.0)[1]]
    assert dog in [i.id for i in memory.tokens(since=0.5, until=15.0)[1]]
    assert dog in [i.id for i in memory.tokens(since=15.0, until=20.0)[1]]


def test_the_measured_gap_spans_two_missed_frames_and_ignores_a_stall() -> None:
    centers = concepts(4)
    memory = TokenMemory(D, tau=0.9, capacity=64, window_s=1e9)
    assert memory.current_gap_s() == 0.0 and memory.spacing_s is None
    shown = [[0, 1]] * 3 + [[0]] * 2 + [[0, 1]] + [[0]] * 3 + [[0, 1]]  # concept 1 misses 2, then 3 frames
    for f, s in enumerate(shown):
        memory.add_frame(frame(centers, s, seed=f), f * 0.5, f)
    assert memory.spacing_s == 0.5 and memory.current_gap_s() == 1.75
    _, one = memory.tokens()[1]
    assert one.intervals == ((0.0, 2.5), (4.5, 4.5))
    memory.add_frame(frame(centers, [0], seed=50), 60.0, 10)  # a stall of a minute
    memory.add_frame(frame(centers, [0], seed=51), 60.0, 11)  # a repeated t says nothing about the spacing
    assert memory.spacing_s == 0.5


@settings(max_examples=40, deadline=None)
@given(
    capacity=st.integers(1, 6),
    gap=st.one_of(st.none(), st.sampled_from([0.0, 0.5, 1.0, 2.5, math.inf])),
    limit=st.integers(1, 4),
    tau=st.floats(0.3, 0.95),
    steps=st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.0, 3.0, 10.0]), min_size=1, max_size=30),
    shows=st.lists(st.lists(st.integers(0, 7), max_size=4), min_size=30, max_size=30),
    window=st.floats(2.0, 40.0),
)
def test_any_small_stream_keeps_the_invariants_and_equals_the_replayed_rule(
    capacity: int,
    gap: float | None,
    limit: int,
    tau: float,
    steps: list[float],
    shows: list[list[int]],
    window: float,
) -> None:
    centers = concepts(8, dim=8)
    memory = TokenMemory(8, tau=tau, capacity=capacity, window_s=window, gap_s=gap, max_intervals=limit)
    replay = Replay(memory)
    with pytest.MonkeyPatch.context() as monkeypatch:
        replay.install(monkeypatch)
        t = 0.0
        for f, step in enumerate(steps):
            t += step
            shown = shows[f]
            tokens = frame(centers, shown, per=3, noise=0.1, seed=f) if shown else torch.zeros(0, 8)
            replay.add_frame(tokens, t, f)
            invariants(memory)
            replay.check()
        query_matches_brute_force(memory, [0.0, t / 3, t / 2, t - 1.0, t, t + 1.0])


def query_matches_brute_force(memory: TokenMemory, times: list[float]) -> None:
    """`tokens(since, until)` for every pair of `times` (and open ends) equals filtering every entry's
    intervals, in the same order (first_seen, then id)."""
    _, every = memory.tokens()
    ends: list[float | None] = [None, *times]
    for since in ends:
        for until in ends:
            lo = -math.inf if since is None else since
            hi = math.inf if until is None else until
            want = [i for i in every if any(a <= hi and b >= lo for a, b in i.intervals)]
            means, got = memory.tokens(since, until)
            assert got == want and means.shape[0] == len(got)


def test_queries_return_exactly_the_entries_on_camera_then(monkeypatch: pytest.MonkeyPatch) -> None:
    memory = TokenMemory(D, tau=0.9, capacity=12, window_s=1e9, gap_s=1.0, max_intervals=4)
    for tokens, t, f in camera(240):
        memory.add_frame(tokens, t, f)
    assert sum(len(i.intervals) > 1 for i in memory.tokens()[1]) > 3
    query_matches_brute_force(memory, [k * 7.5 for k in range(17)] + [19.9, 20.0, 20.1, 60.25])


def old_state(memory: TokenMemory, version: int) -> dict[str, Any]:
    """The memory's state as version 1 or 2 wrote it (version 3 only added fields)."""
    newer = INTERVAL_STATE + INTERVAL_CONFIG + (RECENT_FIELDS if version == 1 else ())
    return {**{k: v for k, v in memory.state_dict().items() if k not in newer}, "version": version}


@pytest.mark.parametrize("version", [1, 2])
def test_a_version_1_or_2_snapshot_loads_with_one_interval_per_entry(version: int) -> None:
    memory = TokenMemory(D, tau=0.9, capacity=10, window_s=25.0, gap_s=1.0)
    stream_ = list(camera(150))
    for tokens, t, f in stream_[:120]:
        memory.add_frame(tokens, t, f)
    old = TokenMemory.from_state_dict(old_state(memory, version))
    infos, old_infos = memory.tokens()[1], old.tokens()[1]
    assert any(len(i.intervals) > 1 for i in infos)
    assert [(i.id, i.count, i.first_seen, i.last_seen, i.evidence) for i in infos] == [
        (i.id, i.count, i.first_seen, i.last_seen, i.evidence) for i in old_infos
    ]
    assert all(
        i.intervals == ((i.first_seen, i.last_seen),) and i.interval_frames == (i.evidence[0],)
        for i in old_infos
    )
    assert (old.gap_s, old.max_intervals, old.spacing_s) == (None, 16, None)
    assert set(old.live_evidence()) == {i.evidence[0] for i in old_infos}
    for tokens, t, f in stream_[120:]:
        old.add_frame(tokens, t, f)
        invariants(old)
    copy = TokenMemory.from_bytes(old.to_bytes())  # now a version 3 snapshot
    assert copy.state_dict()["version"] == 3 and copy.tokens()[1] == old.tokens()[1]


def test_live_evidence_names_exactly_the_interval_frames_of_live_entries() -> None:
    memory = TokenMemory(D, tau=0.9, capacity=10, window_s=25.0, gap_s=1.0, max_intervals=3)
    for tokens, t, f in camera(200):
        memory.add_frame(tokens, t, f)
        infos = memory.tokens()[1]
        evidence = memory.live_evidence()
        assert set(evidence) == {e for i in infos for e in i.interval_frames}
        assert all(s >= 0 for s in evidence.values())
    assert len(evidence) > len(infos)  # several intervals, several frames per entry
    assert sum(evidence.values()) <= sum(i.count for i in infos)


def test_corrupt_intervals_in_a_snapshot_are_refused() -> None:
    memory = TokenMemory(D, tau=0.9, capacity=10, window_s=25.0, gap_s=1.0, max_intervals=3)
    for tokens, t, f in camera(120):
        memory.add_frame(tokens, t, f)
    good = memory.state_dict()
    k = int(torch.nonzero(good["iv_count"] > 1)[0])  # an entry with several intervals
    first = int(good["iv_count"][:k].sum())

    def swapped(s: dict[str, Any]) -> None:
        s["iv_start"][first : first + 2] = s["iv_start"][first : first + 2].flip(0).clone()

    def overlapping(s: dict[str, Any]) -> None:
        s["iv_end"][first] = s["iv_start"][first + 1] + 0.1

    def unspanned(s: dict[str, Any]) -> None:
        s["iv_start"][0] -= 1.0

    def too_many(s: dict[str, Any]) -> None:
        s["max_intervals"] = 1

    def short(s: dict[str, Any]) -> None:
        s["iv_frame"] = s["iv_frame"][:-1]

    def no_interval(s: dict[str, Any]) -> None:
        s["iv_count"][k] = 0

    def bad_gap(s: dict[str, Any]) -> None:
        s["gap_s"] = -1.0

    def bad_spacings(s: dict[str, Any]) -> None:
        s["spacings"] = torch.tensor([0.5, -0.5], dtype=torch.float64)

    breakers: list[Callable[[dict[str, Any]], None]] = [
        swapped,
        overlapping,
        unspanned,
        too_many,
        short,
        no_interval,
        bad_gap,
        bad_spacings,
    ]
    for breaker in breakers:
        state = {n: v.clone() if isinstance(v, Tensor) else v for n, v in good.items()}
        breaker(state)
        with pytest.raises(ValueError, match="TokenMemory state"):
            TokenMemory.from_state_dict(state)
    TokenMemory.from_state_dict(good)  # the untouched state still loads


def test_fuse_unites_overlaps_and_bounds_by_the_smallest_gaps() -> None:
    inf = math.inf
    spans = torch.tensor(
        [[[20, 21], [0, 1], [10, 11], [inf, inf]], [[5, 6], [1, 2], [3, 3.5], [1.5, 2.5]]],
        dtype=torch.float64,
    )
    evidence = torch.tensor([[[20, 2], [0, 3], [10, 1], [-1, -1]], [[5, 2], [2, 2], [3, 4], [2, 3]]])
    out, chosen = fuse(spans, evidence, 0.5, 2)
    assert fuse(spans[:0], evidence[:0], 0.5, 2)[0].shape == (0, 2, 2)  # no rows: nothing to do
    assert out.tolist() == [[[0, 11], [20, 21]], [[1, 3.5], [5, 6]]]  # tie of gaps 9 / 9: the earlier fuses
    assert chosen.tolist() == [[[0, 3], [20, 2]], [[2, 5], [5, 2]]]  # frames 1 and 2 fused: 2 + 3 for frame 2
    for row in range(2):
        ivs = [
            (*s, *e) for s, e in zip(spans[row].tolist(), evidence[row].tolist(), strict=True) if s[0] < inf
        ]
        want = fuse_py([(a, b, int(c), int(d)) for a, b, c, d in ivs], 0.5, 2)
        assert [
            tuple(s) + tuple(e) for s, e in zip(out[row].tolist(), chosen[row].tolist(), strict=True)
        ] == [(a, b, c, d) for a, b, c, d in want]
