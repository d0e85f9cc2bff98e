"""The read path: a question -> admission -> the session's turns -> memory tokens of each camera's range ->
the answerer -> one `Answer` with its `Evidence`.

Reads memory, never writes it; knows cameras only through `MemoryReader`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

import torch

from agent.errors import AnswerTimeout, InvalidRequest, TooBusy
from agent.models.base import Answerer
from agent.outputs.metrics import Metrics
from agent.records import Answer, AskBody, Evidence, Turn
from agent.settings import Settings
from agent.state.store import Store
from compress.memory import EntryInfo

log = logging.getLogger(__name__)

ANSWER_THREAD_NICENESS = 10
HISTORY_TURNS = 5  # earlier turns of a session put before a follow-up question


@dataclass(frozen=True)
class TimeRange:
    """Stream seconds since the camera was added; None means open-ended."""

    since: float | None
    until: float | None


class MemoryReader(Protocol):
    """What a question reads of one camera (the camera pipeline is one)."""

    @property
    def id(self) -> str: ...

    @property
    def added_at(self) -> float:
        """Wall-clock second of the camera's stream second 0."""
        ...

    @property
    def token_dim(self) -> int: ...

    def stream_seconds(self) -> float:
        """Stream seconds now."""
        ...

    def read(self, since: float | None, until: float | None) -> tuple[torch.Tensor, list[EntryInfo]]:
        """Memory tokens `[K, D]` and their entries present in the range, as one consistent read."""
        ...

    def has_keyframe(self, frame: int) -> bool:
        """True while the JPEG of frame index `frame` is kept."""
        ...


class CameraLookup(Protocol):
    """Finds the cameras a question names (the camera registry is one)."""

    def readers(self, camera_ids: Sequence[str]) -> list[MemoryReader]:
        """The cameras, in order; UnknownCamera for an id it does not have."""
        ...


def time_range(camera: MemoryReader, body: AskBody) -> TimeRange:
    """The request's `since_s` (the last N seconds) or `from`/`to` (stream seconds) as a range of `camera`.

    `AskBody` has already refused a request that gives both, or `to` before `from`.
    """
    if body.since_s is not None:
        return TimeRange(max(0.0, camera.stream_seconds() - body.since_s), None)
    return TimeRange(body.from_s, body.to_s)


def _select(
    tokens: torch.Tensor, entries: list[EntryInfo], budget: int | None
) -> tuple[torch.Tensor, list[EntryInfo]]:
    """Keep at most `budget` entries: the most-supported ones (member count), still in first-seen order."""
    if budget is None or len(entries) <= budget:
        return tokens, entries
    order = sorted(range(len(entries)), key=lambda i: (-entries[i].count, -entries[i].last_seen))[:budget]
    keep = sorted(order, key=lambda i: (entries[i].first_seen, entries[i].id))
    return tokens[keep], [entries[i] for i in keep]


def clip(entry: EntryInfo, span: TimeRange) -> EntryInfo | None:
    """`entry` with only its presence intervals inside `span`, cut at its ends (first/last seen follow), so
    nothing an answer says or links to lies outside the range asked for; None when no interval is in it."""
    lo = -math.inf if span.since is None else span.since
    hi = math.inf if span.until is None else span.until
    kept = [
        ((max(a, lo), min(b, hi)), frame)
        for (a, b), frame in zip(entry.intervals, entry.interval_frames, strict=True)
        if a <= hi and b >= lo
    ]
    if not kept:
        return None
    intervals = tuple(i for i, _ in kept)
    return replace(
        entry,
        first_seen=intervals[0][0],
        last_seen=intervals[-1][1],
        intervals=intervals,
        interval_frames=tuple(f for _, f in kept),
    )


def gather(
    cameras: Sequence[MemoryReader], ranges: Sequence[TimeRange], budget: int | None
) -> tuple[torch.Tensor, list[EntryInfo], list[str], int]:
    """Memory tokens of every camera in its range, merged by wall-clock time.

    Returns:
        (tokens `[K, D]`, entries with times shifted to the first camera's stream seconds, the camera of each
        entry, raw member tokens in range).
    """
    base = cameras[0].added_at
    rows: list[tuple[float, int, torch.Tensor, EntryInfo, str]] = []
    raw = 0
    for camera, span in zip(cameras, ranges, strict=True):
        tokens, entries = camera.read(span.since, span.until)
        shift = camera.added_at - base
        for i, entry in enumerate(entries):
            clipped = clip(entry, span)
            if clipped is None:
                continue
            raw += entry.count
            moved = replace(
                clipped,
                first_seen=clipped.first_seen + shift,
                last_seen=clipped.last_seen + shift,
                intervals=tuple((a + shift, b + shift) for a, b in clipped.intervals),
            )
            rows.append((moved.first_seen, len(rows), tokens[i], moved, camera.id))
    if not rows:
        return torch.zeros(0, cameras[0].token_dim), [], [], 0
    rows.sort(key=lambda r: (r[0], r[1]))
    tokens = torch.stack([r[2] for r in rows])
    entries, owners = [r[3] for r in rows], [r[4] for r in rows]
    kept_tokens, kept = _select(tokens, entries, budget)
    kept_ids = {id(e) for e in kept}
    kept_owners = [o for e, o in zip(entries, owners, strict=True) if id(e) in kept_ids]
    return kept_tokens, kept, kept_owners, raw


def evidence(
    spans: Sequence[tuple[float, float]],
    entries: list[EntryInfo],
    owners: list[str],
    cameras: Sequence[MemoryReader],
) -> list[Evidence]:
    """Attribute every answer span to the cameras whose entries were on camera in it (their presence
    intervals overlap it), in each camera's own seconds, each with the keyframe that shows it best."""
    by_id = {c.id: c for c in cameras}
    base = cameras[0].added_at
    out: list[Evidence] = []
    for start, end in spans:
        seen: dict[
            str, list[tuple[int, int]]
        ] = {}  # camera -> (support, evidence frame) of overlapping spans
        for entry, owner in zip(entries, owners, strict=True):
            for (a, b), frame in zip(entry.intervals, entry.interval_frames, strict=True):
                if a <= end and b >= start:
                    seen.setdefault(owner, []).append((entry.count, frame))
        for camera_id, candidates in seen.items():
            camera = by_id[camera_id]
            shift = camera.added_at - base
            kept = (f for _, f in sorted(candidates, reverse=True) if camera.has_keyframe(f))
            best = next(kept, None)
            out.append(
                Evidence(
                    camera=camera_id,
                    from_s=start - shift,
                    to_s=end - shift,
                    from_time=datetime.fromtimestamp(base + start, UTC),
                    to_time=datetime.fromtimestamp(base + end, UTC),
                    snapshot_url=None if best is None else f"/cameras/{camera_id}/snapshot?frame={best}",
                )
            )
    return out


class Questions:
    """Answers questions over camera memories: at most `max_pending` at once (more get 429, so answers never
    starve ingest), on one low-priority thread, each within `timeout_s`; sessions keep the turns.

    Args:
        answerer: the model that answers.
        store: where session turns live.
        metrics: answer latency and token counts per camera.
    """

    def __init__(
        self,
        *,
        answerer: Answerer,
        store: Store,
        metrics: Metrics,
        max_question_chars: int = 2000,
        max_pending: int = 8,
        timeout_s: float = 60.0,
        session_ttl_s: float = 1800.0,
    ) -> None:
        self._answerer, self._store, self._metrics = answerer, store, metrics
        self.max_question_chars, self.max_pending = max_question_chars, max_pending
        self.timeout_s, self.session_ttl_s = timeout_s, session_ttl_s
        self._pending = 0
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="scissor-answer", initializer=_lower_thread_priority
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, answerer: Answerer, store: Store, metrics: Metrics
    ) -> Questions:
        """The questions `settings.api` and `settings.state` describe."""
        return cls(
            answerer=answerer,
            store=store,
            metrics=metrics,
            max_question_chars=settings.api.max_question_chars,
            max_pending=settings.api.max_pending_questions,
            timeout_s=settings.api.answer_timeout_s,
            session_ttl_s=settings.state.session_ttl_s,
        )

    def close(self) -> None:
        """Release the answer thread (a question still running there is abandoned)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def ask(self, body: AskBody, camera_ids: list[str], cameras: CameraLookup) -> Answer:
        """Answer `body.question` over the named cameras' memories; a session keeps the turn."""
        if len(body.question) > self.max_question_chars:
            raise InvalidRequest("question", f"longer than {self.max_question_chars} characters")
        readers = cameras.readers(camera_ids)
        ranges = [time_range(c, body) for c in readers]
        if self._pending >= self.max_pending:
            raise TooBusy(self.max_pending)
        self._pending += 1
        try:
            return await self._ask(body, readers, ranges)
        finally:
            self._pending -= 1

    async def _ask(self, body: AskBody, cameras: list[MemoryReader], ranges: list[TimeRange]) -> Answer:
        history = await self._store.turns(body.session_id) if body.session_id else []
        try:
            answer = await self.answer(
                cameras,
                _with_history(body.question, history),
                ranges,
                max_memory_tokens=body.max_memory_tokens,
                max_new_tokens=body.max_new_tokens,
                session_id=body.session_id,
            )
        except Exception:
            for c in cameras:
                self._metrics.answered(c.id, 0.0, 0, 0, ok=False)
            raise
        if body.session_id:
            turn = Turn(
                question=body.question, answer=answer.answer, cameras=answer.cameras, evidence=answer.evidence
            )
            await self._store.append_turn(body.session_id, turn, self.session_ttl_s)
        return answer

    async def answer(
        self,
        cameras: Sequence[MemoryReader],
        question: str,
        ranges: Sequence[TimeRange],
        *,
        max_memory_tokens: int | None = None,
        max_new_tokens: int = 64,
        session_id: str | None = None,
    ) -> Answer:
        """Answer `question` from the cameras' memories in `ranges`, without admission control (prompt rules
        ask here); the model runs on the answer thread under the timeout."""
        started = time.perf_counter()
        tokens, entries, owners, raw = gather(cameras, ranges, max_memory_tokens)
        call = asyncio.get_running_loop().run_in_executor(
            self._pool,
            lambda: self._answerer.answer(question, tokens, entries, max_new_tokens=max_new_tokens),
        )
        try:
            reply = await asyncio.wait_for(call, self.timeout_s)
        except TimeoutError:
            raise AnswerTimeout(self.timeout_s) from None
        answer = Answer(
            answer=reply.text,
            evidence=evidence(reply.evidence, entries, owners, cameras),
            tokens_used=int(reply.tokens_used),
            raw_tokens_in_range=raw,
            prefill_tokens=int(reply.prefill_tokens),
            latency_s=time.perf_counter() - started,
            session_id=session_id,
            cameras=[c.id for c in cameras],
        )
        for c in cameras:
            self._metrics.answered(c.id, answer.latency_s, answer.prefill_tokens, answer.tokens_used, ok=True)
        return answer


def _with_history(question: str, history: list[Turn]) -> str:
    if not history:
        return question
    lines = [f"Q: {t.question}\nA: {t.answer}" for t in history[-HISTORY_TURNS:]]
    return "Earlier in this conversation:\n" + "\n".join(lines) + f"\n\nQuestion: {question}"


def _lower_thread_priority() -> None:
    """Run the answer worker at a lower CPU priority than ingest and encoding.

    Linux threads have their own nice. Questions are bursty and can wait a little; frames cannot (they are
    dropped when the encoder falls behind).
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ANSWER_THREAD_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not permitted: keep the default priority
        log.debug("could not lower the answer thread's priority")
