"""The read path: a question -> admission -> the session's turns -> memory tokens of each camera's range ->
the answerer -> one `Answer` with its `Evidence`.

Reads memory, never writes it; knows cameras only through `MemoryReader`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

import torch

from agent.answer_queue import RULE, USER, AnswerQueue
from agent.errors import AnswerTimeout, InvalidRequest, TooBusy
from agent.models.base import (
    Answerer,
    AskContext,
    CameraView,
    ContextAnswerer,
    PeopleSeen,
    Reply,
    clip_entry,
    evidence_spans,
)
from agent.outputs.metrics import Metrics
from agent.phrases import RangePhrase, find_range
from agent.records import Answer, AskBody, Evidence, Turn
from agent.settings import Settings
from agent.state.store import Store
from compress.memory import EntryInfo

HISTORY_TURNS = 5  # earlier turns of a session put before a follow-up question (answerers without context)


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

    def keyframe_time(self, frame: int) -> float | None:
        """The stream second of frame index `frame` while its JPEG is kept, else None."""
        ...

    def people(self, since: float | None, until: float | None) -> PeopleSeen | None:
        """What the camera's person / face detector saw in the range; None when it has no detector."""
        ...


class CameraLookup(Protocol):
    """Finds the cameras a question names (the camera registry is one)."""

    def readers(self, camera_ids: Sequence[str]) -> list[MemoryReader]:
        """The cameras, in order; UnknownCamera for an id it does not have."""
        ...


def time_range(camera: MemoryReader, body: AskBody, phrase: RangePhrase | None = None) -> TimeRange:
    """The request's `since_s` (the last N seconds) or `from`/`to` (stream seconds), narrowed by the range
    the question itself names (`phrase`), as a range of `camera`: where both bound a side, the narrower wins.

    `AskBody` has already refused a request that gives both since_s and from/to, or `to` before `from`.

    Raises:
        InvalidRequest: the question's range and the request's do not overlap (nothing could answer both).
    """
    now = camera.stream_seconds()
    since: float | None
    until: float | None
    if body.since_s is not None:
        since, until = max(0.0, now - body.since_s), None
    else:
        since, until = body.from_s, body.to_s
    if phrase is None:
        return TimeRange(since, until)
    p_since, p_until = phrase.bounds(now)
    both_since = [t for t in (since, p_since) if t is not None]
    both_until = [t for t in (until, p_until) if t is not None]
    narrowed = TimeRange(max(both_since) if both_since else None, min(both_until) if both_until else None)
    if narrowed.since is not None and narrowed.until is not None and narrowed.until < narrowed.since:
        asked = f"since_s={body.since_s:g}" if body.since_s is not None else _from_to(body)
        raise InvalidRequest(
            "question",
            f"the question's range {phrase.text!r} and the request's {asked} do not overlap on camera "
            f"{camera.id}; give one range or ranges that overlap",
        )
    return narrowed


def _from_to(body: AskBody) -> str:
    parts = [
        f"from={body.from_s:g}" if body.from_s is not None else "",
        f"to={body.to_s:g}" if body.to_s else "",
    ]
    return " ".join(p for p in parts if p)


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
    return clip_entry(entry, lo, hi)


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


def views(
    cameras: Sequence[MemoryReader], ranges: Sequence[TimeRange], entries: list[EntryInfo], owners: list[str]
) -> tuple[CameraView, ...]:
    """Each camera as an answer names it: its offset on the entries' time line, the range asked in its own
    seconds (open ends closed at what its memory holds and at now), its wall clock."""
    base = cameras[0].added_at
    out = []
    for camera, span in zip(cameras, ranges, strict=True):
        offset = camera.added_at - base
        mine = [
            (e.first_seen - offset, e.last_seen - offset)
            for e, o in zip(entries, owners, strict=True)
            if o == camera.id
        ]
        now = camera.stream_seconds()
        lo = span.since if span.since is not None else min((a for a, _ in mine), default=0.0)
        newest = max([now, *(b for _, b in mine)])  # never past now (nor before the newest entry it holds)
        hi = max(lo, min(span.until, newest) if span.until is not None else newest)
        out.append(CameraView(camera.id, offset, max(0.0, lo), max(0.0, hi), camera.added_at))
    return tuple(out)


def supported_evidence(
    rows: Sequence[int],
    spans: Sequence[tuple[float, float]],
    entries: list[EntryInfo],
    owners: list[str],
    cameras: Sequence[MemoryReader],
    gap_s: float = 1.0,
) -> list[Evidence]:
    """Evidence from the entries an answer rests on only: per camera, their presence intervals inside the
    answer's `spans` merged (`gap_s`), in that camera's own seconds, each with the kept keyframe of its
    best-supported interval; a camera none of them belongs to gives none."""
    base = cameras[0].added_at
    out: list[Evidence] = []
    for camera in cameras:
        shift = camera.added_at - base
        mine = [
            cut
            for r in rows
            if owners[r] == camera.id
            for a, b in spans
            if (cut := clip_entry(entries[r], a, b)) is not None
        ]
        for start, end in evidence_spans(mine, gap_s):
            frames = [
                (e.count, f)
                for e in mine
                for (a, b), f in zip(e.intervals, e.interval_frames, strict=True)
                if a <= end and b >= start
            ]
            best = snapshot_inside(camera, frames, start - shift, end - shift)
            out.append(
                Evidence(
                    camera=camera.id,
                    from_s=max(0.0, start - shift),
                    to_s=max(0.0, end - shift),
                    from_time=datetime.fromtimestamp(base + start, UTC),
                    to_time=datetime.fromtimestamp(base + end, UTC),
                    snapshot_url=None if best is None else f"/cameras/{camera.id}/snapshot?frame={best}",
                )
            )
    return sorted(out, key=lambda e: (e.from_time or datetime.min.replace(tzinfo=UTC), e.camera or ""))


def snapshot_inside(
    camera: MemoryReader, candidates: Sequence[tuple[int, int]], lo: float, hi: float
) -> int | None:
    """The best-supported of (support, frame index) `candidates` whose kept keyframe lies inside [lo, hi] (the
    camera's own seconds), else the one nearest inside by time: an evidence snapshot never shows a moment
    outside the span it illustrates (None: no snapshot)."""
    inside = []
    for support, frame in candidates:
        t = camera.keyframe_time(frame) if frame >= 0 else None
        if t is not None and lo - 1e-6 <= t <= hi + 1e-6:
            inside.append((support, -abs(t - (lo + hi) / 2), frame))
    return max(inside)[2] if inside else None


def evidence(
    spans: Sequence[tuple[float, float]],
    entries: list[EntryInfo],
    owners: list[str],
    cameras: Sequence[MemoryReader],
) -> list[Evidence]:
    """Attribute every answer span to the cameras whose entries were on camera in it (their presence
    intervals overlap it), in each camera's own seconds (cut at its second 0), each with the keyframe that
    shows it best. For answerers that cannot say which entries they rest on (`Reply.rows` None)."""
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
            best = snapshot_inside(camera, candidates, start - shift, end - shift)
            out.append(
                Evidence(
                    camera=camera_id,
                    from_s=max(0.0, start - shift),
                    to_s=max(0.0, end - shift),
                    from_time=datetime.fromtimestamp(base + start, UTC),
                    to_time=datetime.fromtimestamp(base + end, UTC),
                    snapshot_url=None if best is None else f"/cameras/{camera_id}/snapshot?frame={best}",
                )
            )
    return out


class PromptDropped(Exception):
    """A prompt rule's question was not asked: the answer slots rules may take were all in use."""


class Questions:
    """Answers questions over camera memories on one low-priority answer thread, each within `timeout_s`;
    sessions keep the turns and their subject.

    Admission is shared by people and prompt rules: at most `max_pending` user questions at once (more get
    429, so answers never starve ingest); a prompt rule's question only while fewer than `max_pending - 1`
    questions of any kind are in (at least one), else it is dropped (`PromptDropped`), never queued behind
    users; and the answer thread always runs a waiting user question before any rule's.

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
        self._users = 0  # user questions admitted and not answered
        self._rules = 0  # prompt-rule questions admitted and not answered
        self._queue = AnswerQueue()

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

    @property
    def rule_slots(self) -> int:
        """Questions in at once (any kind) from which on a prompt rule's is dropped: max_pending - 1, >= 1."""
        return max(1, self.max_pending - 1)

    def close(self) -> None:
        """Release the answer thread (a question still running there is abandoned)."""
        self._queue.close()

    async def ask(self, body: AskBody, camera_ids: list[str], cameras: CameraLookup) -> Answer:
        """Answer `body.question` over the named cameras' memories in the range asked for (the request's and
        the question's own, "in the last 10 seconds"); a session keeps the turn."""
        if len(body.question) > self.max_question_chars:
            raise InvalidRequest("question", f"longer than {self.max_question_chars} characters")
        try:
            question, phrase = find_range(body.question)
        except ValueError as exc:
            raise InvalidRequest("question", str(exc)) from None
        readers = cameras.readers(camera_ids)
        ranges = [time_range(c, body, phrase) for c in readers]
        if self._users >= self.max_pending:
            raise TooBusy(self.max_pending)
        self._users += 1
        try:
            return await self._ask(body, question, phrase, readers, ranges)
        finally:
            self._users -= 1

    async def _ask(
        self,
        body: AskBody,
        question: str,
        phrase: RangePhrase | None,
        cameras: list[MemoryReader],
        ranges: list[TimeRange],
    ) -> Answer:
        history = await self._store.turns(body.session_id) if body.session_id else []
        subject = next((t.subject for t in reversed(history) if t.subject), None)
        kind = next((t.kind for t in reversed(history) if t.kind), None)
        answer, reply = await self._answer(
            cameras,
            ranges,
            plain=_with_history(body.question, history),
            question=question,
            context=(subject, kind, phrase.text if phrase else None),
            priority=USER,
            max_memory_tokens=body.max_memory_tokens,
            max_new_tokens=body.max_new_tokens,
            session_id=body.session_id,
        )
        if body.session_id:
            turn = Turn(
                question=body.question,
                answer=answer.answer,
                cameras=answer.cameras,
                evidence=answer.evidence,
                subject=reply.subject or subject,
                kind=reply.kind or kind,
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
    ) -> Answer:
        """A prompt rule's question over the cameras' memories in `ranges`: admitted only while fewer than
        `rule_slots` questions are in, answered after every waiting user question.

        Raises:
            PromptDropped: no slot was free (the rule skips this check).
        """
        if self._users + self._rules >= self.rule_slots:
            raise PromptDropped(
                f"{self._users + self._rules} questions in, {self.rule_slots} allowed with rules"
            )
        self._rules += 1
        try:
            try:
                text, phrase = find_range(question)
            except ValueError:
                text, phrase = question, None
            if phrase is not None:  # the rule's own words may narrow its window, never widen it
                ranges = [
                    _narrow(r, phrase, c.stream_seconds()) for c, r in zip(cameras, ranges, strict=True)
                ]
            answer, _ = await self._answer(
                cameras,
                ranges,
                plain=question,
                question=text,
                context=(None, None, phrase.text if phrase else None),
                priority=RULE,
                max_memory_tokens=max_memory_tokens,
                max_new_tokens=max_new_tokens,
                session_id=None,
            )
            return answer
        finally:
            self._rules -= 1

    async def _answer(
        self,
        cameras: Sequence[MemoryReader],
        ranges: Sequence[TimeRange],
        *,
        plain: str,
        question: str,
        context: tuple[str | None, str | None, str | None],
        priority: int,
        max_memory_tokens: int | None,
        max_new_tokens: int,
        session_id: str | None,
    ) -> tuple[Answer, Reply]:
        """Run the answerer on the answer thread under the timeout: an answerer taking context gets the
        question without its range phrase plus the session's subject; any other gets `plain` (with the
        session's earlier turns written out)."""
        started = time.perf_counter()
        tokens, entries, owners, raw = gather(cameras, ranges, max_memory_tokens)
        answerer = self._answerer
        if isinstance(answerer, ContextAnswerer):
            index = {c.id: i for i, c in enumerate(cameras)}
            subject, kind, range_text = context
            ctx = AskContext(
                cameras=views(cameras, ranges, entries, owners),
                owners=tuple(index[o] for o in owners),
                subject=subject,
                kind=kind,
                range_text=range_text,
                people=tuple(c.people(r.since, r.until) for c, r in zip(cameras, ranges, strict=True)),
            )
            call = self._queue.submit(
                lambda: answerer.answer_in_context(
                    question, tokens, entries, ctx, max_new_tokens=max_new_tokens
                ),
                priority=priority,
            )
        else:
            call = self._queue.submit(
                lambda: answerer.answer(plain, tokens, entries, max_new_tokens=max_new_tokens),
                priority=priority,
            )
        try:
            reply = await asyncio.wait_for(asyncio.wrap_future(call), self.timeout_s)
        except TimeoutError:
            call.cancel()
            for c in cameras:
                self._metrics.answered(c.id, time.perf_counter() - started, 0, 0, ok=False)
            raise AnswerTimeout(self.timeout_s) from None
        except Exception:
            for c in cameras:
                self._metrics.answered(c.id, 0.0, 0, 0, ok=False)
            raise
        if reply.rows is not None:
            found = supported_evidence(reply.rows, reply.evidence, entries, owners, cameras)
        else:
            found = evidence(reply.evidence, entries, owners, cameras)
        if reply.kind == "last":  # the newest sighting is the one asked about
            found.sort(key=lambda e: (e.to_s, e.from_s), reverse=True)
        answer = Answer(
            answer=reply.text,
            evidence=found,
            tokens_used=int(reply.tokens_used),
            raw_tokens_in_range=raw,
            prefill_tokens=int(reply.prefill_tokens),
            latency_s=time.perf_counter() - started,
            session_id=session_id,
            cameras=[c.id for c in cameras],
            kind=reply.kind,
        )
        for c in cameras:
            self._metrics.answered(c.id, answer.latency_s, answer.prefill_tokens, answer.tokens_used, ok=True)
        return answer, reply


def _narrow(span: TimeRange, phrase: RangePhrase, now: float) -> TimeRange:
    since, until = phrase.bounds(now)
    lo = max(t for t in (span.since, since, -math.inf) if t is not None)
    hi = min(t for t in (span.until, until, math.inf) if t is not None)
    if hi < lo:
        return TimeRange(lo, lo)
    return TimeRange(None if lo == -math.inf else lo, None if hi == math.inf else hi)


def _with_history(question: str, history: list[Turn]) -> str:
    if not history:
        return question
    lines = [f"Q: {t.question}\nA: {t.answer}" for t in history[-HISTORY_TURNS:]]
    return "Earlier in this conversation:\n" + "\n".join(lines) + f"\n\nQuestion: {question}"
