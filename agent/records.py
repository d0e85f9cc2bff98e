"""Every record the API, MQTT, server-sent events and Redis send or receive (pydantic): data, never I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# Topic suffixes may nest with "/", never carry MQTT wildcards or empty levels.
TOPIC_PATTERN = r"^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64}){0,3}$"

CameraId = Annotated[str, Field(pattern=ID_PATTERN, description="camera id: 1-64 of A-Z a-z 0-9 _ -")]
RuleId = Annotated[str, Field(pattern=ID_PATTERN, description="rule id: 1-64 of A-Z a-z 0-9 _ -")]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
OptionValue = str | int | float | bool


def utc_now() -> datetime:
    """Return the current wall-clock time, timezone-aware UTC (every record's `time`)."""
    return datetime.now(UTC)


def new_id() -> str:
    """Return a fresh unique id (uuid4 hex, 32 characters) for alerts, rules and events."""
    return uuid.uuid4().hex


class Record(BaseModel):
    """Base of all wire records: unknown keys are refused, NaN and infinities too."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


Seconds = Annotated[float, Field(ge=0.0, le=1e9, allow_inf_nan=False)]


class CameraSpec(Record):
    """What a user asks for when adding a camera (`POST /cameras`)."""

    id: CameraId
    url: str = Field(
        min_length=1, max_length=2048, description="stream URL (rtsp://, http(s)://, file:// if enabled)"
    )
    fps: float | None = Field(
        None, gt=0.0, le=60.0, description="target sampling rate in frames/s (None: default)"
    )
    options: dict[str, OptionValue] = Field(
        default_factory=dict, max_length=32, description="per-camera overrides (tau, capacity, window_s, ...)"
    )


class CameraPatch(Record):
    """Fields of a camera to change (`PATCH /cameras/{id}`); the camera restarts its ingest with them."""

    url: str | None = Field(None, min_length=1, max_length=2048)
    fps: float | None = Field(None, gt=0.0, le=60.0)
    options: dict[str, OptionValue] | None = Field(None, max_length=32)


CameraState = Literal["starting", "online", "offline", "stopped", "ended", "failed"]


class CameraStatus(Record):
    """A camera's live status (`GET /cameras/{id}`, MQTT `scissor/<camera>/status`). `url` is redacted."""

    id: CameraId
    url: str = Field(description="the stream URL with credentials redacted")
    state: CameraState
    reason: str | None = Field(None, description="why the camera is in this state, when not online")
    fps_in: float = Field(0.0, ge=0.0, description="frames/s decoded")
    fps_out: float = Field(0.0, ge=0.0, description="frames/s written to memory")
    frames_dropped: int = Field(0, ge=0)
    reconnects: int = Field(0, ge=0)
    memory_entries: int = Field(0, ge=0)
    compression_ratio: float = Field(
        0.0,
        ge=0.0,
        description="raw tokens the memory holds now (its live entries' members) / entries holding them",
    )
    insecure_tls: bool = Field(False, description="certificates of this camera are not verified (opt-out)")
    node: str | None = Field(
        None, description="the Ray node id the pipeline runs on (cluster mode; else null)"
    )
    time: datetime = Field(default_factory=utc_now)


class NoveltyParams(Record):
    """A novelty rule fires when the share of a frame's tokens unmatched in memory reaches `threshold`."""

    threshold: Probability = Field(description="novelty in [0, 1] at or above which a frame counts as YES")


class LabelParams(Record):
    """A label rule fires when the caller-computed probability of `label` reaches `min_score`."""

    label: str = Field(min_length=1, max_length=64, description="class name, synonym or group, e.g. 'cat'")
    min_score: Probability = Field(
        0.5, description="probability in [0, 1] at or above which the label counts"
    )


class PromptParams(Record):
    """A prompt rule asks the answerer a yes/no question over the last `window_s` of memory."""

    question: str = Field(
        min_length=1, max_length=500, description="a yes/no question, e.g. 'is a door open?'"
    )
    every_s: float = Field(30.0, gt=0.0, le=86400.0, description="ask at least this often, in seconds")
    novelty_threshold: Probability = Field(
        0.3, description="novelty that counts as a scene change (ask early)"
    )
    min_interval_s: float = Field(2.0, ge=0.0, description="never ask more often than this, in seconds")
    window_s: float = Field(10.0, gt=0.0, le=3600.0, description="seconds of memory the question looks at")


RuleKind = Literal["novelty", "label", "prompt"]
RuleParams = NoveltyParams | LabelParams | PromptParams
PARAMS_BY_KIND: dict[str, type[Record]] = {
    "novelty": NoveltyParams,
    "label": LabelParams,
    "prompt": PromptParams,
}


class RuleSpec(Record):
    """A standing query on one camera (`POST /rules`). Alerts fire on NO->YES transitions only.

    `consecutive` agreeing checks are needed to raise, `clear_after` disagreeing ones to clear (hysteresis).
    """

    camera_id: CameraId
    kind: RuleKind
    params: RuleParams
    cooldown_s: float = Field(
        60.0, ge=0.0, le=86400.0, description="seconds after a delivered alert with no new one"
    )
    consecutive: int = Field(
        1, ge=1, le=1000, description="agreeing checks in a row before the condition is raised"
    )
    clear_after: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="disagreeing checks in a row before it clears (None: same as consecutive)",
    )
    repeat_s: float | None = Field(
        None,
        gt=0.0,
        le=86400.0,
        description="while the condition persists, re-alert this often (escalation + 1)",
    )
    topic: str | None = Field(
        None, pattern=TOPIC_PATTERN, description="MQTT topic suffix replacing the rule id"
    )
    name: str | None = Field(
        None, min_length=1, max_length=80, description="a name people read; alerts carry it"
    )

    @field_validator("params", mode="before")
    @classmethod
    def _params_of_kind(cls, value: Any, info: ValidationInfo) -> Any:
        # The kind decides the params model, so errors name the right fields instead of a 3-way union.
        kind = info.data.get("kind")
        if isinstance(value, dict) and kind in PARAMS_BY_KIND:
            return PARAMS_BY_KIND[kind].model_validate(value)
        return value

    @model_validator(mode="after")
    def _params_match_kind(self) -> RuleSpec:
        if not isinstance(self.params, PARAMS_BY_KIND[self.kind]):
            # pydantic wants ValueError (not TypeError)
            raise ValueError(f"params do not fit kind {self.kind!r}")
        return self

    @property
    def clear_checks(self) -> int:
        """Disagreeing checks in a row that clear a raised condition."""
        return self.clear_after if self.clear_after is not None else self.consecutive

    @property
    def condition(self) -> str:
        """The rule's kind and what it watches for, as people read it: `label:bicycle`, `novelty>=0.5`,
        `prompt:"is a door open?"` (a question over 60 characters is cut, ending in "…")."""
        params = self.params
        if isinstance(params, LabelParams):
            return f"label:{params.label}"
        if isinstance(params, NoveltyParams):
            return f"novelty>={params.threshold:g}"
        question = params.question if len(params.question) <= 60 else params.question[:59] + "…"
        return f'prompt:"{question}"'

    @property
    def title(self) -> str:
        """What logs, alerts and the console call the rule: its name, else its `condition`, never the id."""
        return self.name or self.condition


class Rule(RuleSpec):
    """A stored rule: its spec plus the id the service gave it."""

    id: RuleId = Field(default_factory=new_id)
    created: datetime = Field(default_factory=utc_now)

    @classmethod
    def from_spec(cls, spec: RuleSpec, rule_id: str | None = None) -> Rule:
        """Return the stored form of `spec`, with `rule_id` or a fresh id."""
        extra = {"id": rule_id} if rule_id is not None else {}
        return cls.model_validate({**spec.model_dump(), **extra})


class Evidence(Record):
    """A time span of memory that supports an answer or alert, with a keyframe to look at."""

    camera: CameraId | None = None
    from_s: float = Field(alias="from", description="stream seconds since the camera was added")
    to_s: float = Field(alias="to", description="stream seconds since the camera was added")
    from_time: datetime | None = None
    to_time: datetime | None = None
    snapshot_url: str | None = None
    labels: list[str] = Field(default_factory=list)

    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, populate_by_name=True, serialize_by_alias=True
    )

    @model_validator(mode="after")
    def _ordered(self) -> Evidence:
        if self.to_s < self.from_s:
            raise ValueError("evidence 'to' is before 'from'")
        return self


class Alert(Record):
    """One alert, as published on MQTT `scissor/<camera>/alerts/<rule>` and on `/events`.

    `id` is unique per alert so subscribers can drop the duplicates QoS 1 may deliver.
    """

    id: str = Field(default_factory=new_id)
    camera: CameraId
    rule: RuleId
    kind: RuleKind
    time: datetime = Field(default_factory=utc_now)
    stream_s: float = Field(0.0, description="stream seconds of the observation that fired")
    score: float = Field(description="novelty, label probability, or 1.0/0.0 for a prompt answer")
    label: str | None = None
    answer: str | None = None
    evidence: list[Evidence] = Field(default_factory=list)
    snapshot_url: str | None = None
    escalation: int = Field(0, ge=0, description="0 for the first alert of an episode, +1 per repeat")
    topic: str | None = Field(None, pattern=TOPIC_PATTERN)
    rule_name: str | None = Field(None, max_length=80, description="the rule's name, when it has one")
    rule_title: str | None = Field(
        None,
        max_length=120,
        description="what people read for the rule: its name, else its kind and condition "
        '(label:bicycle, novelty>=0.5, prompt:"is a door open?"); null in alerts from before it existed',
    )


EventKind = Literal[
    "alert", "status", "novelty", "stream_up", "stream_down", "camera_added", "camera_removed", "info"
]


class Event(Record):
    """A camera or service event (`scissor/<camera>/events`, `/events`)."""

    id: str = Field(default_factory=new_id)
    kind: EventKind
    camera: CameraId | None = None
    time: datetime = Field(default_factory=utc_now)
    message: str = Field("", max_length=2000)
    data: dict[str, Any] = Field(default_factory=dict)


class Turn(Record):
    """One question and its answer in a Q&A session (kept in Redis with a sliding TTL)."""

    question: str
    answer: str
    cameras: list[CameraId] = Field(default_factory=list)
    time: datetime = Field(default_factory=utc_now)
    evidence: list[Evidence] = Field(default_factory=list)
    subject: str | None = Field(None, max_length=200, description="what the answer was about ('bicycle')")
    kind: str | None = Field(
        None, max_length=32, description="the kind of question ('how_long', 'first', ...)"
    )


class MemoryEntry(Record):
    """One memory entry as users see it (`GET /cameras/{id}/memory`)."""

    id: int
    first_seen_s: float
    last_seen_s: float
    tokens: int = Field(description="member tokens merged into the entry")
    frames: int
    evidence_frames: list[int]
    intervals: list[tuple[float, float]] = Field(
        default_factory=list, description="stream-second intervals in which the entry was on camera"
    )
    interval_frames: list[int] = Field(
        default_factory=list, description="per interval, its evidence frame (`snapshot?frame=N`)"
    )
    labels: list[tuple[str, float]] = Field(default_factory=list, description="top labels (embedded backend)")


class MemorySummary(Record):
    """A camera's memory: size, compression and entries in a time range."""

    camera: str
    entries: int
    capacity: int
    window_s: float
    tokens_in_total: int
    compression_ratio: float = Field(
        description="raw tokens the memory holds now (its live entries' members) / entries holding them"
    )
    stats: dict[str, Any] = Field(default_factory=dict)
    items: list[MemoryEntry] = Field(default_factory=list)


class MemorySaved(Record):
    """A camera's memory written to the state store now (`POST /cameras/{id}/memory/snapshot`)."""

    camera: str
    bytes: int = Field(description="size of the memory blob")
    entries: int


class AskBody(Record):
    """A question about one camera's recent footage (`POST /cameras/{id}/ask`); the one place its time range
    is checked."""

    question: str = Field(min_length=1, max_length=100_000, description="the question, in plain language")
    since_s: Seconds | None = Field(None, description="look at the last N seconds (default: whole memory)")
    from_s: Seconds | None = Field(
        None, alias="from", description="stream seconds since the camera was added"
    )
    to_s: Seconds | None = Field(None, alias="to", description="stream seconds since the camera was added")
    session_id: str | None = Field(
        None, pattern=ID_PATTERN, description="follow-ups in a session see prior turns"
    )
    max_memory_tokens: int | None = Field(
        None, ge=1, le=65_536, description="most memory tokens handed to the model"
    )
    max_new_tokens: int = Field(64, ge=1, le=1024)

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    @model_validator(mode="after")
    def _one_range(self) -> AskBody:
        if self.since_s is not None and (self.from_s is not None or self.to_s is not None):
            raise ValueError("give either since_s or from/to, not both")
        if self.from_s is not None and self.to_s is not None and self.to_s < self.from_s:
            raise ValueError("'to' is before 'from'")
        return self


class MultiAskBody(AskBody):
    """One question across several cameras (`POST /ask`); memories are merged by time."""

    cameras: list[CameraId] = Field(min_length=1, max_length=64)


class Answer(Record):
    """An answer with the evidence it rests on (`POST /cameras/{id}/ask`, `POST /ask`)."""

    answer: str
    evidence: list[Evidence]
    tokens_used: int = Field(description="memory tokens handed to the model")
    raw_tokens_in_range: int = Field(description="frame tokens those memory tokens summarise")
    prefill_tokens: int
    latency_s: float
    session_id: str | None = None
    cameras: list[str]
    kind: str | None = Field(
        None,
        description="the kind of question answered (yesno, first, last, every, how_long, how_many, what, "
        "beyond); a 'last' answer lists its evidence newest first",
    )
