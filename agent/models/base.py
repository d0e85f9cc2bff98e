"""Encoder/Answerer protocols, the Reply they give, the Backend bundle: interfaces only, never model code."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
from torch import Tensor

if TYPE_CHECKING:
    from agent.models.labels import Labeler
    from compress.memory import EntryInfo


class ModelError(Exception):
    """Base class of agent.models errors."""


class BackendNotFound(ModelError, ValueError):
    """`load_backend` was given a name that is neither a known backend nor an existing model directory."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = list(known)
        super().__init__(
            f"unknown model backend {name!r}: choose one of {', '.join(self.known)}, "
            "or give a local LLaVA-OneVision directory / Hugging Face model id (llava_onevision:ID_OR_PATH)"
        )


class WeightsNotFound(ModelError, FileNotFoundError):
    """A backend's weights are not on this machine (offline mode, missing directory or package)."""


@dataclass(frozen=True)
class Reply:
    """What an Answerer says; the service turns it into the `records.Answer` users get.

    Attributes:
        text: the answer.
        evidence: (from_s, to_s) stream-time ranges the answer rests on.
        tokens_used: K, the visual tokens handed to the answerer.
        prefill_tokens: prompt length the language model prefilled (text + K); 0 when no language model ran.
        latency_s: wall time of the answer call.
        rows: the entries (rows of the tokens handed in) the answer rests on; None when the answerer cannot
            say (then evidence is attributed by time overlap).
        subject: what the answer was about ("bicycle"), kept by a session for a follow-up's "it".
        kind: the kind of question answered ("yesno", "first", "last", "every", "how_long", "how_many",
            "what"), kept by a session for an elliptical follow-up ("and a car?").
    """

    text: str
    evidence: list[tuple[float, float]] = field(default_factory=list)
    tokens_used: int = 0
    prefill_tokens: int = 0
    latency_s: float = 0.0
    rows: tuple[int, ...] | None = None
    subject: str | None = None
    kind: str | None = None


@dataclass(frozen=True)
class CameraView:
    """One camera of a question as an answer names it.

    Attributes:
        id: the camera id.
        offset_s: where its stream second 0 lies on the entries' time line (the first camera's seconds):
            an entry time minus `offset_s` is this camera's own stream seconds.
        lo: start of the range asked for, in its own stream seconds (finite).
        hi: end of that range, never past now, in its own stream seconds.
        wall0: wall-clock second (Unix time) of its stream second 0; None: stream seconds only.
    """

    id: str
    offset_s: float
    lo: float
    hi: float
    wall0: float | None = None


@dataclass(frozen=True)
class PeopleSeen:
    """What one camera's person / face detector saw in the range asked, in its own stream seconds.

    Attributes:
        detector: the detector's name ("mediapipe").
        person: runs of sampled frames with a person, (start, end, most people on one frame); `persons` is a
            lower bound (faces counted, or 1 for a body without a face).
        face: runs with a face, (start, end, most faces on one frame).
        covered: the first and last sampled second in the range, None when it ran on no frame there.
    """

    detector: str
    person: tuple[tuple[float, float, int], ...]
    face: tuple[tuple[float, float, int], ...]
    covered: tuple[float, float] | None
    samples: tuple[tuple[float, int, int], ...] = ()  # every sampled frame: (t, persons, faces)


@dataclass(frozen=True)
class AskContext:
    """What a question is asked over beyond its tokens, for answerers that say which camera and when.

    Attributes:
        cameras: the cameras asked, the first one's seconds being the entries' time line.
        owners: per entry, the index in `cameras` of the camera it belongs to.
        subject: the session's previous subject (a follow-up's "it"), None outside a session.
        kind: the session's previous kind of question.
        range_text: the time-range phrase the question carried ("in the last 10 seconds"), taken out of it.
        people: per camera, what its person / face detector saw in the range (None: it has none); empty
            when the asker knows of no detector.
    """

    cameras: tuple[CameraView, ...]
    owners: tuple[int, ...]
    subject: str | None = None
    kind: str | None = None
    range_text: str | None = None
    people: tuple[PeopleSeen | None, ...] = ()


def clip_entry(entry: EntryInfo, lo: float, hi: float) -> EntryInfo | None:
    """`entry` with only its presence intervals inside [lo, hi], cut at its ends (first/last seen follow);
    None when no interval is in it."""
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


def evidence_spans(entries: Sequence[EntryInfo], gap_s: float = 1.0) -> list[tuple[float, float]]:
    """Merge entries' presence intervals that overlap or lie within `gap_s` of each other."""
    spans = sorted((float(a), float(b)) for e in entries for a, b in e.intervals)
    merged: list[tuple[float, float]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1] + gap_s:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


@runtime_checkable
class Encoder(Protocol):
    """Turns frames into visual tokens."""

    def encode(self, frames: Sequence[np.ndarray]) -> Tensor:
        """Encode F RGB frames `uint8[H, W, 3]` into tokens `Tensor[F, N, D]` (float32, CPU)."""
        ...


@runtime_checkable
class Answerer(Protocol):
    """Answers a question from memory tokens and their entries' metadata."""

    def answer(
        self, question: str, tokens: Tensor, entries: Sequence[EntryInfo], *, max_new_tokens: int = 64
    ) -> Reply:
        """Answer `question` from tokens `[K, D]` (one row per entry, in `entries` order)."""
        ...


@runtime_checkable
class ContextAnswerer(Protocol):
    """An Answerer that also takes an `AskContext`: the session's subject, the cameras and their ranges."""

    def answer_in_context(
        self,
        question: str,
        tokens: Tensor,
        entries: Sequence[EntryInfo],
        context: AskContext,
        *,
        max_new_tokens: int = 64,
    ) -> Reply:
        """Answer `question` (its time-range phrase taken out) from tokens `[K, D]` in `context`."""
        ...


@dataclass
class Backend:
    """A loaded model backend: what the service and the streamer need to know about it.

    Attributes:
        name: backend name ("embedded", "tiny", "llava_onevision").
        encoder: frames -> tokens.
        answerer: question + tokens -> Reply.
        token_dim: D.
        tokens_per_frame: N.
        frame_size: (width, height) the encoder wants (the streamer resizes at decode).
        default_tau: the SCC / memory similarity threshold suited to this backend's tokens.
        labeler: ImageNet labeler for label-capable backends, else None.
    """

    name: str
    encoder: Encoder
    answerer: Answerer
    token_dim: int
    tokens_per_frame: int
    frame_size: tuple[int, int]
    default_tau: float
    labeler: Labeler | None = None
