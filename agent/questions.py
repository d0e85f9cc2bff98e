"""Questions over memory: time range -> memory entries -> Answerer -> answer with evidence.

Reads memory, never writes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace

import torch

from agent.errors import AnswerTimeout, InvalidRequest
from agent.models.base import Answerer
from agent.watcher import CameraRuntime
from compress.memory import EntryInfo


@dataclass(frozen=True)
class TimeRange:
    """Stream seconds since the camera was added; None means open-ended."""

    since: float | None
    until: float | None


@dataclass(frozen=True)
class EvidenceSpan:
    """One time span the answer rests on, in one camera's stream seconds and in wall-clock seconds."""

    camera_id: str
    from_s: float
    to_s: float
    from_wall: float
    to_wall: float
    frame: int | None = None  # the kept keyframe that shows it, if any


@dataclass(frozen=True)
class QuestionResult:
    """What `ask` returns to the API."""

    answer: str
    evidence: list[EvidenceSpan]
    tokens_used: int
    raw_tokens_in_range: int
    prefill_tokens: int
    latency_s: float
    cameras: list[str] = field(default_factory=list)


def resolve_range(
    camera: CameraRuntime, *, since_s: float | None, from_s: float | None, to_s: float | None
) -> TimeRange:
    """Turn the request's `since_s` (the last N seconds) or `from`/`to` (stream seconds) into a range."""
    if since_s is not None and (from_s is not None or to_s is not None):
        raise InvalidRequest("since_s", "give either since_s or from/to, not both")
    if since_s is not None:
        return TimeRange(max(0.0, camera.stream_seconds() - since_s), None)
    if from_s is not None and to_s is not None and to_s < from_s:
        raise InvalidRequest("to", f"to ({to_s}) is before from ({from_s})")
    return TimeRange(from_s, to_s)


def _select(
    tokens: torch.Tensor, entries: list[EntryInfo], budget: int | None
) -> tuple[torch.Tensor, list[EntryInfo]]:
    """Keep at most `budget` entries: the most-supported ones (member count), still in first-seen order."""
    if budget is None or len(entries) <= budget:
        return tokens, entries
    order = sorted(range(len(entries)), key=lambda i: (-entries[i].count, -entries[i].last_seen))[:budget]
    keep = sorted(order, key=lambda i: (entries[i].first_seen, entries[i].id))
    return tokens[keep], [entries[i] for i in keep]


def gather(
    cameras: Sequence[CameraRuntime], ranges: Sequence[TimeRange], budget: int | None
) -> tuple[torch.Tensor, list[EntryInfo], list[str], int]:
    """Memory tokens of every camera in its range, merged by wall-clock time.

    Returns:
        (tokens `[K, D]`, entries with times shifted to the first camera's stream seconds, the camera of each
        entry, raw member tokens in range).
    """
    base = cameras[0].added_at
    rows: list[tuple[float, int, torch.Tensor, EntryInfo, str]] = []
    raw = 0
    for camera, time_range in zip(cameras, ranges, strict=True):
        with camera.memory_lock:  # an update may be running in its worker thread
            tokens, entries = camera.memory.tokens(time_range.since, time_range.until)
        shift = camera.added_at - base
        for i, entry in enumerate(entries):
            raw += entry.count
            moved = replace(
                entry,
                first_seen=entry.first_seen + shift,
                last_seen=entry.last_seen + shift,
                intervals=tuple((a + shift, b + shift) for a, b in entry.intervals),
            )
            rows.append((moved.first_seen, len(rows), tokens[i], moved, camera.id))
    if not rows:
        dim = cameras[0].memory.dim
        return torch.zeros(0, dim), [], [], 0
    rows.sort(key=lambda r: (r[0], r[1]))
    tokens = torch.stack([r[2] for r in rows])
    entries, owners = [r[3] for r in rows], [r[4] for r in rows]
    kept_tokens, kept = _select(tokens, entries, budget)
    kept_ids = {id(e) for e in kept}
    kept_owners = [o for e, o in zip(entries, owners, strict=True) if id(e) in kept_ids]
    return kept_tokens, kept, kept_owners, raw


def _evidence(
    spans: Sequence[tuple[float, float]],
    entries: list[EntryInfo],
    owners: list[str],
    cameras: Sequence[CameraRuntime],
) -> list[EvidenceSpan]:
    """Attribute every answer span to the cameras whose entries were on camera in it (their presence
    intervals overlap it), in each camera's own seconds, each with the keyframe that shows it best."""
    by_id = {c.id: c for c in cameras}
    base = cameras[0].added_at
    out: list[EvidenceSpan] = []
    for start, end in spans:
        seen: dict[
            str, list[tuple[int, int]]
        ] = {}  # camera -> (support, evidence frame) of overlapping intervals
        for entry, owner in zip(entries, owners, strict=True):
            for (a, b), frame in zip(entry.intervals, entry.interval_frames, strict=True):
                if a <= end and b >= start:
                    seen.setdefault(owner, []).append((entry.count, frame))
        for camera_id, candidates in seen.items():
            camera = by_id[camera_id]
            shift = camera.added_at - base
            kept = (f for _, f in sorted(candidates, reverse=True) if camera.keyframes.get(f) is not None)
            out.append(
                EvidenceSpan(
                    camera_id, start - shift, end - shift, base + start, base + end, next(kept, None)
                )
            )
    return out


async def ask(
    cameras: Sequence[CameraRuntime],
    question: str,
    ranges: Sequence[TimeRange],
    *,
    answerer: Answerer,
    executor: Executor,
    timeout_s: float,
    max_memory_tokens: int | None = None,
    max_new_tokens: int = 64,
) -> QuestionResult:
    """Answer `question` from the cameras' memories in `ranges`.

    The model runs in `executor` under a timeout.
    """
    started = time.perf_counter()
    tokens, entries, owners, raw = gather(cameras, ranges, max_memory_tokens)
    loop = asyncio.get_running_loop()
    call = loop.run_in_executor(
        executor, lambda: answerer.answer(question, tokens, entries, max_new_tokens=max_new_tokens)
    )
    try:
        result = await asyncio.wait_for(call, timeout_s)
    except TimeoutError:
        raise AnswerTimeout(timeout_s) from None
    return QuestionResult(
        answer=result.text,
        evidence=_evidence(result.evidence, entries, owners, cameras),
        tokens_used=int(result.tokens_used),
        raw_tokens_in_range=raw,
        prefill_tokens=int(result.prefill_tokens),
        latency_s=time.perf_counter() - started,
        cameras=[c.id for c in cameras],
    )
