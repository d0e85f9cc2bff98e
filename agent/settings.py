"""One settings model for the service (env `SCISSOR_*`, optional YAML/TOML file).

Never reads files at import.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from cryptography.fernet import Fernet
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from streamer.policy import DEFAULT_ALLOW_NETS, TargetPolicy, parse_nets
from streamer.urls import redact

ENV_PREFIX = "SCISSOR_"
CONFIG_ENV = "SCISSOR_CONFIG"
KNOWN_BACKENDS = ("embedded", "tiny", "llava_onevision")
WEAK_TOKENS = frozenset({"changeme", "changethis", "secret", "password", "token", "scissor", "admin"})
_SECRET_WORDS = ("password", "token", "secret", "encryption_key")
_config_file: ContextVar[Path | None] = ContextVar("scissor_config_file", default=None)


class SettingsError(ValueError):
    """Settings could not be loaded: `lines` holds one readable line per problem (secrets masked)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("invalid settings:\n" + "\n".join(f"  {line}" for line in lines))
        self.lines = lines


class Section(BaseModel):
    """A nested settings section: unknown keys are typos and fail."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class CameraDefaults(Section):
    """Per-camera defaults, used when `POST /cameras` does not override them."""

    fps: float = Field(2.0, gt=0.0, le=60.0, description="frames per second sampled from each camera")
    tau: float = Field(
        0.9,
        gt=0.0,
        lt=1.0,
        description="SCC cosine threshold (0-1); when unset, the backend's own (embedded 0.8, LLaVA 0.9)",
    )
    capacity_entries: int = Field(2048, ge=1, le=1_000_000, description="most memory entries kept per camera")
    window_s: float = Field(600.0, gt=0.0, description="seconds of footage each camera's memory covers")
    allow_nets: list[str] = Field(
        list(DEFAULT_ALLOW_NETS),
        description="networks (CIDR, JSON list) camera URLs may point into; link-local and metadata never",
    )
    ca_file: Path | None = Field(
        None, description="CA bundle for rtsps:// and https:// cameras (default: system)"
    )
    keyframes_kept: int = Field(
        1024, ge=1, le=100_000, description="most JPEG keyframes kept per camera as evidence"
    )
    keyframe_max_side: int = Field(
        640, ge=64, le=4096, description="longest side of a keyframe, in pixels (the camera's aspect ratio)"
    )
    keyframe_budget_bytes: int = Field(
        16 << 20,
        ge=64 << 10,
        le=1 << 34,
        description="JPEG bytes of evidence keyframes kept per camera (least-supported, oldest go first)",
    )

    @field_validator("allow_nets")
    @classmethod
    def _cidrs(cls, nets: list[str]) -> list[str]:
        parse_nets(nets)  # ValueError naming the one that does not parse
        return nets

    @field_validator("ca_file")
    @classmethod
    def _ca_file_exists(cls, path: Path | None) -> Path | None:
        # Checked at start, not at the first TLS camera (which would fail later, one camera at a time).
        if path is not None and not path.is_file():
            raise ValueError(f"CA bundle {str(path)!r} does not exist")
        return path

    def target_policy(self) -> TargetPolicy:
        """The camera-target policy these defaults describe."""
        return TargetPolicy.from_cidrs(self.allow_nets)


class RedisOptions(Section):
    """Redis connection options beyond the URL."""

    password: SecretStr | None = Field(None, description="Redis password (overrides one in the URL)")
    key_prefix: str = Field("scissor", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="prefix of every key")
    tls_ca_file: Path | None = Field(None, description="CA bundle for rediss:// (file path)")
    tls_cert_file: Path | None = Field(None, description="client certificate for rediss:// (file path)")
    tls_key_file: Path | None = Field(None, description="client key for rediss:// (file path)")
    socket_timeout_s: float = Field(2.0, gt=0.0, le=60.0, description="seconds before a Redis call gives up")
    encryption_key: SecretStr | None = Field(
        None,
        description="Fernet key encrypting camera URLs in Redis and the local write-ahead file "
        "(unset: a key generated once in SCISSOR_STATE__DIR, mode 0600)",
    )

    @field_validator("encryption_key")
    @classmethod
    def _fernet_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                Fernet(value.get_secret_value())
            except ValueError:
                raise ValueError(
                    "must be a Fernet key (32 url-safe base64-encoded bytes), e.g. from python -c "
                    "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
                ) from None
        return value


class MqttOptions(Section):
    """MQTT options beyond the URL."""

    username: str | None = Field(None, max_length=256, description="broker user (overrides one in the URL)")
    password: SecretStr | None = Field(None, description="broker password (overrides one in the URL)")
    client_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="MQTT client identifier (unset: scissor-<host>-<random>, unique per process)",
    )
    topic_root: str = Field(
        "scissor", pattern=r"^[A-Za-z0-9_-]{1,64}$", description="first level of every topic"
    )
    tls_ca_file: Path | None = Field(None, description="CA bundle for mqtts:// (file path)")
    tls_cert_file: Path | None = Field(None, description="client certificate for mqtts:// (file path)")
    tls_key_file: Path | None = Field(None, description="client key for mqtts:// (file path)")
    tls_insecure: bool = Field(False, description="skip broker hostname verification (testing only)")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds")
    outbox_max_alerts: int = Field(
        10_000, ge=1, le=1_000_000, description="alerts queued while the broker is down"
    )
    backoff_max_s: float = Field(
        10.0, gt=0.0, le=600.0, description="longest wait between reconnect attempts"
    )


class ApiOptions(Section):
    """HTTP API limits."""

    max_question_chars: int = Field(
        2000, ge=1, le=100_000, description="longest question accepted, in characters"
    )
    trusted_hosts: list[str] = Field(
        [],
        max_length=64,
        description="Host header values (names or addresses, no port) the API answers; others get 400 "
        "(DNS rebinding). Empty: the listen address, localhost, 127.0.0.1 and ::1, or any host when "
        "listening on all interfaces (0.0.0.0, ::); '*' accepts any",
    )
    answer_timeout_s: float = Field(
        60.0, gt=0.0, le=3600.0, description="seconds before a question times out"
    )
    max_body_bytes: int = Field(1_000_000, ge=1024, description="largest request body accepted, in bytes")
    max_pending_questions: int = Field(
        8, ge=1, le=1024, description="questions answered or waiting at once; more get 429 (keeps ingest fed)"
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0.0,
        le=600.0,
        description="seconds a connection may take to send a request's line and headers, then it is closed",
    )
    keepalive_timeout_s: int = Field(
        5, ge=1, le=600, description="seconds an idle keep-alive connection stays open between requests"
    )
    max_concurrency: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="open connections or requests at once; a request beyond them gets 503",
    )
    backlog: int = Field(2048, ge=1, le=65535, description="connections the kernel queues before accept")
    max_header_bytes: int = Field(
        16384, ge=1024, le=1 << 20, description="largest request line plus headers, in bytes (400 beyond)"
    )


class LimitsOptions(Section):
    """Quotas: what one instance, one camera and one rule may take. Checked when a camera or rule is added
    or changed; a request past one is refused (409 for a count, 422 for a size) naming the setting."""

    max_cameras: int = Field(32, ge=1, le=10_000, description="cameras one instance watches at once")
    max_rules_per_camera: int = Field(32, ge=1, le=10_000, description="rules one camera may have")
    prompt_rule_min_interval_s: float = Field(
        1.0,
        ge=0.0,
        le=86_400.0,
        description="smallest every_s and min_interval_s a prompt rule may ask at, in seconds",
    )
    alerts_per_camera_per_min: int = Field(
        60,
        ge=1,
        le=100_000,
        description="alerts one camera's rules may raise in any 60 s; more wait (counted as suppressed)",
    )
    memory_bytes_per_camera: int = Field(
        256 << 20,
        ge=1 << 20,
        le=1 << 40,
        description="bytes one camera's token memory may preallocate (capacity x per-entry bytes, ~8 x D)",
    )
    memory_bytes_total: int = Field(
        2 << 30,
        ge=1 << 20,
        le=1 << 44,
        description="bytes every camera's token memory together may preallocate",
    )
    max_source_pixels: int = Field(
        7680 * 4320,
        ge=64 * 64,
        le=1 << 30,
        description="largest camera picture (width x height) decoded; a larger source stops as unsupported",
    )


class StateOptions(Section):
    """Persistence cadence and Q&A session lifetime."""

    snapshot_interval_s: float = Field(
        30.0, gt=0.0, description="seconds between memory snapshots to the store"
    )
    session_ttl_s: float = Field(1800.0, gt=0.0, description="idle seconds before a Q&A session is forgotten")
    session_max_turns: int = Field(50, ge=1, le=10_000, description="turns kept per Q&A session")
    sync_retry_s: float = Field(1.0, gt=0.0, le=60.0, description="seconds between Redis reconnect attempts")
    dir: Path | None = Field(
        None,
        description="local directory for the write-ahead file (changes and alerts Redis has not confirmed) "
        "and the generated encryption key (unset: $XDG_STATE_HOME/scissor or ~/.local/state/scissor)",
    )


class LlavaOptions(Section):
    """How the LLaVA-OneVision (and tiny) backends build the prompt from memory tokens."""

    video_newline: bool = Field(
        True,
        description="append the checkpoint's image_newline row after the memory tokens, as transformers "
        "closes every video (false: leave it out)",
    )
    time_markers: bool = Field(True, description="write 't=12s' before each group of memory tokens")
    marker_bucket_s: float = Field(10.0, gt=0.0, le=3600.0, description="seconds one time marker groups")
    context_overflow: Literal["drop_oldest", "error"] = Field(
        "drop_oldest",
        description="a prompt over the model's context: drop_oldest leaves out the earliest-seen memory "
        "tokens until it fits | error refuses the question",
    )


class PeopleOptions(Section):
    """The optional person / face detector (MediaPipe in its own worker process, docs/people.md)."""

    backend: Literal["off", "auto", "mediapipe"] = Field(
        "off",
        description="off | auto: MediaPipe when its interpreter (python) exists, else off | mediapipe: "
        "required, refused at start without it",
    )
    python: Path | None = Field(
        None,
        description="interpreter of the venv holding mediapipe (scripts/people-venv; unset: .venv-people "
        "in the checkout)",
    )
    fps: float = Field(1.0, gt=0.0, le=30.0, description="frames per second per camera the detector runs on")
    min_face_score: float = Field(0.5, gt=0.0, lt=1.0, description="lowest face detection score counted")
    min_pose_score: float = Field(
        0.8, gt=0.0, lt=1.0, description="lowest body (pose) detection score counted as a person"
    )
    face_model: Literal["short", "full"] = Field(
        "full", description="face detection model: short (faces within ~2 m) | full (up to ~5 m)"
    )
    detections_kept: int = Field(
        4096, ge=1, le=1_000_000, description="most detections kept per camera (the oldest go first)"
    )


class RayOptions(Section):
    """Cluster mode (`SCISSOR_ENGINE=ray`): where the Ray cluster is and what each camera actor declares."""

    address: str = Field(
        "",
        max_length=512,
        description="Ray cluster to join: host:port of its GCS, `auto` (the cluster this machine belongs "
        "to), or empty (start a one-machine Ray here)",
    )
    node_ip: str = Field(
        "127.0.0.1",
        min_length=1,
        max_length=64,
        description="address this process's Ray node and driver use (loopback keeps a one-machine Ray off "
        "the network; a node's LAN address to join a multi-machine cluster)",
    )
    namespace: str = Field(
        "scissor", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Ray namespace of the camera actors"
    )
    camera_cpus: float = Field(0.5, gt=0.0, le=64.0, description="CPUs each camera actor declares")
    camera_gpus: float = Field(
        0.25,
        ge=0.0,
        le=8.0,
        description="GPU fraction each camera actor declares when the backend runs on CUDA",
    )
    failover_timeout_s: float = Field(
        10.0,
        gt=0.0,
        le=600.0,
        description="seconds a call to a camera actor may take before it counts as down",
    )
    encoder: Literal["node", "camera"] = Field(
        "node",
        description="node: one encoder actor per node batches the frames of every camera on that node (one "
        "model copy per node) | camera: each camera actor encodes its own frames (tokens stay on its device)",
    )
    encoder_cpus: float = Field(
        0.0,
        ge=0.0,
        le=64.0,
        description="CPUs a node's encoder actor declares (0: the cameras' own CPUs cover their encoding, so "
        "a node full of cameras still places its encoder)",
    )
    encoder_gpus: float = Field(
        0.5,
        ge=0.0,
        le=8.0,
        description="GPU fraction a node's encoder actor declares when the backend runs on CUDA",
    )


class Settings(BaseSettings):
    """Every setting of `scissor serve`; env `SCISSOR_<NAME>` and `SCISSOR_<SECTION>__<NAME>`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    backend: str = Field("embedded", description="embedded | tiny | llava_onevision | a model path or hub id")
    device: str = Field("auto", description="compute device: auto | cpu | cuda | cuda:N | mps")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="weights dtype: auto (float16 on CUDA, float32 on CPU) | float32 | bfloat16 | float16",
    )
    redis_url: str = Field("memory://", description="state store: memory:// | redis:// | rediss:// | unix://")
    mqtt_url: str = Field("none", description="broker: none | mqtt://user:pass@host:port | mqtts://...")
    host: str = Field("127.0.0.1", min_length=1, description="HTTP listen address")
    port: int = Field(8080, ge=1, le=65535, description="HTTP listen port")
    api_token: SecretStr | None = Field(None, description="bearer token every route but /healthz requires")
    allow_file_urls: bool = Field(False, description="accept file:// camera URLs from the API (demo only)")
    allow_unauthenticated: bool = Field(
        False,
        description="serve a non-loopback address without SCISSOR_API_TOKEN (refused at start otherwise)",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log verbosity")
    torch_threads: int = Field(
        0, ge=0, le=256, description="torch intra-op threads per process (0: half the cores, at least 1)"
    )
    camera: CameraDefaults = Field(default_factory=CameraDefaults, description="per-camera defaults")
    redis: RedisOptions = Field(default_factory=RedisOptions, description="Redis options")
    mqtt: MqttOptions = Field(default_factory=MqttOptions, description="MQTT options")
    api: ApiOptions = Field(default_factory=ApiOptions, description="HTTP API limits")
    limits: LimitsOptions = Field(default_factory=LimitsOptions, description="quotas per instance and camera")
    state: StateOptions = Field(default_factory=StateOptions, description="persistence and sessions")
    engine: Literal["local", "ray"] = Field(
        "local", description="local: one process | ray: camera pipelines as actors on a Ray cluster"
    )
    ray: RayOptions = Field(default_factory=RayOptions, description="cluster mode (SCISSOR_ENGINE=ray)")
    llava: LlavaOptions = Field(default_factory=LlavaOptions, description="LLaVA-OneVision prompt options")
    people: PeopleOptions = Field(
        default_factory=PeopleOptions, description="person and face detection (docs/people.md)"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: explicit arguments, then the environment, then the config file, then defaults.
        return init_settings, env_settings, _FileSource(settings_cls)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value in KNOWN_BACKENDS or Path(value).exists() or re.fullmatch(r"[\w.-]+/[\w.-]+", value):
            return value
        raise ValueError(
            f"must be one of {', '.join(KNOWN_BACKENDS)}, an existing model path, or an org/name id"
        )

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            return value
        raise ValueError("must be auto, cpu, mps, cuda or cuda:N")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"memory", "redis", "rediss", "unix"}:
            raise ValueError("scheme must be memory://, redis://, rediss:// or unix://")
        if parts.scheme in {"redis", "rediss"}:
            _check_host_port(value)
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        if value == "none":
            return value
        if urlsplit(value).scheme not in {"mqtt", "mqtts"}:
            raise ValueError("must be none, mqtt://[user[:password]@]host[:port] or mqtts://...")
        _check_host_port(value)
        return value

    @field_validator("api_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            token = value.get_secret_value()
            if len(token) < 16 or token.lower() in WEAK_TOKENS:
                raise ValueError("must be at least 16 characters and not a well-known default")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        mqtt = urlsplit(self.mqtt_url)
        if (mqtt.password or self.mqtt.password) and not (mqtt.username or self.mqtt.username):
            raise ValueError("an MQTT password requires an MQTT username")
        mqtt_tls = (self.mqtt.tls_ca_file, self.mqtt.tls_cert_file, self.mqtt.tls_key_file)
        if any(mqtt_tls) and mqtt.scheme != "mqtts":
            raise ValueError("MQTT TLS files need an mqtts:// URL")
        redis_tls = (self.redis.tls_ca_file, self.redis.tls_cert_file, self.redis.tls_key_file)
        if any(redis_tls) and urlsplit(self.redis_url).scheme != "rediss":
            raise ValueError("Redis TLS files need a rediss:// URL")
        for path in (*mqtt_tls, *redis_tls):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file {str(path)!r} does not exist")
        return self

    @property
    def mqtt_enabled(self) -> bool:
        """True when a broker is configured (mqtt_url is not `none`)."""
        return self.mqtt_url != "none"

    @property
    def redis_enabled(self) -> bool:
        """True when state goes to Redis (redis_url is not `memory://`)."""
        return not self.redis_url.startswith("memory:")


def _check_host_port(url: str) -> None:
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError("needs a host")
    try:
        parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
    except ValueError:
        raise ValueError("port must be a number in 1-65535") from None


class _FileSource(PydanticBaseSettingsSource):
    """Reads the YAML or TOML file named by `load_settings(config_file=...)` or `SCISSOR_CONFIG`."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole mapping

    def __call__(self) -> dict[str, Any]:
        path = _config_file.get()
        return {} if path is None else read_config_file(path)


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a YAML (.yaml/.yml) or TOML (.toml) settings file into a mapping.

    Raises:
        SettingsError: the file is missing, has another extension, or does not parse to a mapping.
    """
    if not path.is_file():
        raise SettingsError([f"config file {str(path)!r} does not exist"])
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in {".yaml", ".yml"}:
            data = yaml.safe_load(text) or {}
        elif path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise SettingsError([f"config file {str(path)!r}: use a .yaml, .yml or .toml file"])
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError([f"config file {str(path)!r} does not parse: {exc}"]) from None
    if not isinstance(data, dict):
        raise SettingsError([f"config file {str(path)!r} must hold a mapping of settings"])
    return data


def env_names() -> Iterator[tuple[str, str, Any]]:
    """Yield (env name, key path, field info) for every setting, sections included."""
    for name, info in Settings.model_fields.items():
        section = info.annotation
        if isinstance(section, type) and issubclass(section, Section):
            for sub, sub_info in section.model_fields.items():
                yield f"{ENV_PREFIX}{name}__{sub}".upper(), f"{name}.{sub}", sub_info
        else:
            yield f"{ENV_PREFIX}{name}".upper(), name, info


def _unknown_env(environ: Mapping[str, str]) -> list[str]:
    known = {env for env, _, _ in env_names()} | {CONFIG_ENV}
    known |= {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}  # a whole section as JSON
    return sorted(k for k in environ if k.upper().startswith(ENV_PREFIX) and k.upper() not in known)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build `Settings` from overrides, the environment, then a config file.

    Unknown `SCISSOR_*` names are refused.

    Args:
        config_file: a YAML or TOML file; when None, the path in `SCISSOR_CONFIG` if set.
        **overrides: values that win over every other source (as `scissor demo` sets its defaults).

    Raises:
        SettingsError: with one line per failing key path, value (secrets masked) and message.
    """
    unknown = _unknown_env(os.environ)
    if unknown:
        raise SettingsError([f"{name}: not a setting (typo?)" for name in unknown])
    path = config_file if config_file is not None else os.environ.get(CONFIG_ENV)
    token = _config_file.set(Path(path) if path else None)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(validation_lines(exc)) from None
    except SourceError as exc:  # a section given as malformed JSON, e.g. SCISSOR_MQTT='{not json'
        raise SettingsError([f"{exc}: a whole section must be a JSON object"]) from None
    finally:
        _config_file.reset(token)


def _shown(path: str, value: Any) -> str:
    if isinstance(value, SecretStr) or any(word in path for word in _SECRET_WORDS):
        return "'***'"
    if isinstance(value, str) and "://" in value:
        return repr(redact(value))
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def validation_lines(exc: ValidationError) -> list[str]:
    """Return one line per error of `exc`: key path, env name, value (secrets masked), message."""
    lines = []
    for err in exc.errors():
        path = ".".join(str(part) for part in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if not path:  # a cross-field rule: its input is the whole mapping, secrets included, so omit it
            lines.append(f"settings: {message}")
            continue
        env = ENV_PREFIX + path.replace(".", "__").upper()
        lines.append(f"{path} ({env}) = {_shown(path, err.get('input'))}: {message}")
    return lines


def format_validation_error(exc: ValidationError | SettingsError) -> str:
    """Return the error as readable text, one line per failing key path (what `scissor serve` prints)."""
    lines = exc.lines if isinstance(exc, SettingsError) else validation_lines(exc)
    return "invalid settings:\n" + "\n".join(f"  {line}" for line in lines)


def settings_markdown_table() -> str:
    """Return a Markdown table of every setting: env name, default and description (for the README)."""
    rows = ["| env | default | description |", "|---|---|---|"]
    for env, _, info in env_names():
        default = "" if info.is_required() or info.default is None else info.default
        if info.default_factory is not None:
            default = ""
        description = (info.description or "").replace("|", "\\|")
        shown = f"`{default}`" if default != "" else ""
        rows.append(f"| `{env}` | {shown} | {description} |")
    return "\n".join(rows)
