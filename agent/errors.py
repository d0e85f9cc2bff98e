"""Every error the service raises on purpose, each with its data and its HTTP status; never holds a secret.

Model loading has its own errors (`agent.models.ModelError`): they happen before any request.
"""

from __future__ import annotations

from typing import Any


class AgentError(Exception):
    """Base of every error the service raises on purpose.

    Attributes:
        status: the HTTP status the API maps this error to (one handler reads it).
        detail: a sentence safe to show a client (no secrets, no stack trace).
        data: the error's structured fields, added to the JSON body.
    """

    status: int = 400

    def __init__(self, detail: str, **data: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.data: dict[str, Any] = data

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON body `{error, detail, **data}` the API sends for this error."""
        return {"error": type(self).__name__, "detail": self.detail, **self.data}


class Unauthorized(AgentError):
    """Missing or wrong bearer token."""

    status = 401

    def __init__(self, reason: str) -> None:
        super().__init__(reason)


class UnknownCamera(AgentError):
    """A request named a camera the service does not have."""

    status = 404

    def __init__(self, camera_id: str) -> None:
        super().__init__(f"no camera with id {camera_id!r}", camera_id=camera_id)
        self.camera_id = camera_id


class UnknownRule(AgentError):
    """A request named a rule the service does not have."""

    status = 404

    def __init__(self, rule_id: str) -> None:
        super().__init__(f"no rule with id {rule_id!r}", rule_id=rule_id)
        self.rule_id = rule_id


class KeyframeGone(AgentError):
    """A keyframe link names a frame the camera no longer keeps (its memory stopped naming it as evidence)."""

    status = 404

    def __init__(self, camera_id: str, what: str) -> None:
        super().__init__(
            f"camera {camera_id!r} keeps no keyframe {what}: it is not, or no longer, evidence of its memory",
            camera_id=camera_id,
        )
        self.camera_id = camera_id


class CameraExists(AgentError):
    """A camera with this id is already registered."""

    status = 409

    def __init__(self, camera_id: str) -> None:
        super().__init__(f"a camera with id {camera_id!r} already exists", camera_id=camera_id)
        self.camera_id = camera_id


class InvalidRequest(AgentError):
    """A well-formed request asks for something impossible; `field` names the culprit."""

    status = 422

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", field=field)
        self.field = field
        self.reason = reason


class AnswerTimeout(AgentError):
    """The answerer did not finish within the configured time."""

    status = 504

    def __init__(self, timeout_s: float) -> None:
        super().__init__(f"no answer within {timeout_s:g} s", timeout_s=timeout_s)
        self.timeout_s = timeout_s


class StateUnavailable(AgentError):
    """The state store (Redis) cannot be reached; `reason` says why, without credentials."""

    status = 503

    def __init__(self, reason: str) -> None:
        super().__init__(f"state store unavailable: {reason}", reason=reason)
        self.reason = reason


class InvalidStateUrl(AgentError):
    """The state URL's scheme is not one the store speaks (memory://, redis://, rediss://, unix://)."""

    status = 500

    def __init__(self, scheme: str) -> None:
        super().__init__(f"unsupported state URL scheme {scheme!r}", scheme=scheme)
        self.scheme = scheme


class TooBusy(AgentError):
    """More questions are in flight than the service takes at once; the client should retry later."""

    status = 429

    def __init__(self, limit: int) -> None:
        super().__init__(f"{limit} questions are already being answered; retry shortly", limit=limit)
        self.limit = limit


class QuotaExceeded(AgentError):
    """A request would take the instance past a count an operator set (`setting`, a `SCISSOR_LIMITS__*`
    name): more cameras or rules than allowed, or more memory than the instance may preallocate."""

    status = 409

    def __init__(self, setting: str, limit: int, what: str) -> None:
        super().__init__(f"{what}: the limit is {limit} ({setting})", setting=setting, limit=limit)
        self.setting = setting
        self.limit = limit


class UntrustedHost(AgentError):
    """The request's Host header names a host this API does not answer for (`SCISSOR_API__TRUSTED_HOSTS`):
    a DNS-rebinding page, or a name the operator has not listed."""

    status = 400

    def __init__(self) -> None:
        super().__init__("Host header not accepted here; see SCISSOR_API__TRUSTED_HOSTS")
