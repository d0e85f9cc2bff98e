"""The methods `scissor bench needles` compares, each `(frames [F, N, D], budget tokens, fps) -> Kept`.

Each keeps at most `budget` tokens of the stream and, per kept token, the time span(s) it stands for:

- memory: `TokenMemory` (incremental SCC) at capacity = budget; an entry's presence intervals.
- fifo: the newest `budget` tokens (whole recent frames, the oldest one thinned evenly), each its own frame's
  time.
- uniform: ceil(budget / N) frames spread evenly over the stream, `budget` tokens of them spread evenly, each
  its own frame's time.
- moviechat: MovieChat's long-term memory consolidation: frames streamed in, and while more than budget // N
  frames are kept the most similar ADJACENT pair (mean token-wise cosine) is replaced by its average; a merged
  frame's tokens span its members' time range.
- tome: ToMe bipartite soft matching over the pooled tokens, streamed: each chunk of max(1, budget // 4N)
  frames joins the pool and bipartite rounds (alternate split in time order, the most similar A -> B pairs
  merged, size-weighted) bring it back to the budget; a merged token spans min..max of its sources' times.
  (One chunk merges r <= budget / 4 tokens of a pool of 1.25 x budget: gentle, and a third of the per-frame
  rounds' cost.)

Benchmark-only tensor code, float32 on CPU; never I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from bench.needles.stream import Interval
from compress import EntryInfo, TokenMemory
from compress.memory_state import MAX_INTERVALS

Spans = tuple[Interval, ...]


@dataclass(frozen=True)
class Kept:
    """What a method holds at the end of the stream.

    Attributes:
        tokens: `[K, D]` float32 kept tokens (or entry means), K <= budget.
        spans: per kept token, the sorted time intervals (stream seconds, first..last frame) it stands for.
        extra: method-specific facts for the JSON (the memory's settings and counters).
    """

    tokens: Tensor
    spans: Sequence[Spans]
    extra: dict[str, Any] = field(default_factory=dict)


Method = Callable[[Tensor, int, float], Kept]


def _times(frames: Tensor, fps: float) -> Tensor:
    """Stream seconds of each frame `[F]`."""
    return torch.arange(frames.shape[0], dtype=torch.float64) / fps


def _evenly(count: int, k: int) -> Tensor:
    """`k` evenly spaced indices into range(count), k <= count."""
    return torch.linspace(0, count - 1, k).round().long()


def fifo(frames: Tensor, budget: int, fps: float) -> Kept:
    """The newest `budget` tokens: the last frames whole, the oldest kept frame thinned to fill the budget."""
    f, n, _ = frames.shape
    k = min(budget, f * n)
    q = math.ceil(k / n)
    times = _times(frames, fps)
    rows, spans = [], []
    for j, i in enumerate(range(f - q, f)):
        take = k - (q - 1) * n if j == 0 else n
        rows.append(frames[i][_evenly(n, take)].float())
        spans += [((float(times[i]), float(times[i])),)] * take
    return Kept(torch.cat(rows), spans)


def uniform(frames: Tensor, budget: int, fps: float) -> Kept:
    """ceil(budget / N) frames evenly over the stream, then `budget` evenly spaced tokens of them."""
    f, n, d = frames.shape
    k = min(budget, f * n)
    q = math.ceil(k / n)
    chosen = _evenly(f, q)
    pick = _evenly(q * n, k)
    pool = frames[chosen].reshape(q * n, d).float()
    times = _times(frames, fps)[chosen].repeat_interleave(n)[pick]
    return Kept(pool[pick], [((float(t), float(t)),) for t in times.tolist()])


def _frame_sim(a: Tensor, b: Tensor) -> float:
    """MovieChat's adjacent-frame similarity: mean over token positions of the cosine `[N, D]` x `[N, D]`."""
    return float(F.cosine_similarity(a, b, dim=-1).mean())


def moviechat(frames: Tensor, budget: int, fps: float) -> Kept:
    """MovieChat-style consolidation down to budget // N frames (at least one), streamed frame by frame."""
    f, n, _ = frames.shape
    keep = max(1, budget // n)
    times = _times(frames, fps).tolist()
    buf: list[Tensor] = []
    span: list[Interval] = []
    sims: list[float] = []  # sims[j]: frames j and j + 1
    for i in range(f):
        x = frames[i].float()
        if buf:
            sims.append(_frame_sim(buf[-1], x))
        buf.append(x)
        span.append((times[i], times[i]))
        if len(buf) > keep:  # one new frame: one merge brings it back
            j = max(range(len(sims)), key=sims.__getitem__)
            buf[j] = (buf[j] + buf[j + 1]) / 2  # MovieChat averages the pair
            span[j] = (span[j][0], span[j + 1][1])
            del buf[j + 1], span[j + 1], sims[j]
            if j > 0:
                sims[j - 1] = _frame_sim(buf[j - 1], buf[j])
            if j < len(buf) - 1:
                sims[j] = _frame_sim(buf[j], buf[j + 1])
    spans = [(s,) for s in span for _ in range(n)]
    return Kept(torch.cat(buf), spans)


def _bipartite(pool: tuple[Tensor, Tensor, Tensor, Tensor], r: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One ToMe round on (sums [T, D], sizes [T], first [T], last [T]) in time order: r A tokens go into B."""
    sums, size, t0, t1 = pool
    a, b = slice(0, None, 2), slice(1, None, 2)
    sim = F.normalize(sums[a], dim=-1) @ F.normalize(sums[b], dim=-1).T  # [A, B]
    best, match = sim.max(dim=1)
    order = best.argsort(descending=True, stable=True)
    gone, kept = order[:r], order[r:].sort().values
    into = match[gone]
    sb, zb, fb, lb = sums[b].clone(), size[b].clone(), t0[b].clone(), t1[b].clone()
    sb.index_add_(0, into, sums[a][gone])
    zb.index_add_(0, into, size[a][gone])
    fb.scatter_reduce_(0, into, t0[a][gone], reduce="amin")
    lb.scatter_reduce_(0, into, t1[a][gone], reduce="amax")
    sums = torch.cat([sums[a][kept], sb])
    size, t0, t1 = torch.cat([size[a][kept], zb]), torch.cat([t0[a][kept], fb]), torch.cat([t1[a][kept], lb])
    order = t0.argsort(stable=True)  # time order again for the next alternate split
    return sums[order], size[order], t0[order], t1[order]


def tome(frames: Tensor, budget: int, fps: float) -> Kept:
    """ToMe bipartite soft matching of the pooled memory, in chunks of max(1, budget // 4N) frames."""
    f, n, d = frames.shape
    chunk = max(1, budget // (4 * n))
    times = _times(frames, fps)
    sums, size = torch.empty(0, d), torch.empty(0)
    t0, t1 = torch.empty(0, dtype=torch.float64), torch.empty(0, dtype=torch.float64)
    for i in range(0, f, chunk):
        x = frames[i : i + chunk].float().reshape(-1, d)  # frames i.. in time order, then position
        sums, size = torch.cat([sums, x]), torch.cat([size, torch.ones(x.shape[0])])
        t = times[i : i + chunk].repeat_interleave(n)
        t0, t1 = torch.cat([t0, t]), torch.cat([t1, t])
        while sums.shape[0] > budget:  # one round (r <= T / 2) unless the budget is tiny
            r = min(sums.shape[0] - budget, sums.shape[0] // 2)
            sums, size, t0, t1 = _bipartite((sums, size, t0, t1), r)
    spans = [((a, b),) for a, b in zip(t0.tolist(), t1.tolist(), strict=True)]
    return Kept(sums / size[:, None], spans)


def entry_intervals(entry: EntryInfo) -> Spans:
    """An entry's on-camera intervals as the memory reports them (stream seconds, sorted, disjoint)."""
    return entry.intervals


def memory_method(tau: float, gap_s: float | None = None, max_intervals: int = MAX_INTERVALS) -> Method:
    """`TokenMemory` at capacity = budget, a window longer than the stream (nothing is evicted), tau `tau`,
    `gap_s` (None: the memory's own, measured from the frame spacing) and `max_intervals` per entry."""

    def memory(frames: Tensor, budget: int, fps: float) -> Kept:
        f, _, d = frames.shape
        mem = TokenMemory(
            d, tau=tau, capacity=budget, window_s=f / fps + 1.0, gap_s=gap_s, max_intervals=max_intervals
        )
        for i in range(f):
            mem.add_frame(frames[i], i / fps, i)
        means, entries = mem.tokens()
        intervals = [entry_intervals(e) for e in entries]
        extra = {
            **mem.summary(),
            "gap_s": mem.current_gap_s(),
            "max_intervals": mem.max_intervals,
            "intervals_per_entry": sum(map(len, intervals)) / max(len(intervals), 1),
            "entries_at_max_intervals": sum(len(s) >= mem.max_intervals for s in intervals),
        }
        return Kept(means, intervals, extra)

    return memory


def methods(tau: float, gap_s: float | None = None, max_intervals: int = MAX_INTERVALS) -> dict[str, Method]:
    """Every method by name, the memory first."""
    mem = memory_method(tau, gap_s, max_intervals)
    return {"memory": mem, "fifo": fifo, "uniform": uniform, "moviechat": moviechat, "tome": tome}
