"""Named errors of the ingest stage; they carry redacted URLs only, never credentials."""

from __future__ import annotations


class StreamerError(Exception):
    """Base class of every error the streamer package raises."""


class InvalidCameraURL(StreamerError, ValueError):
    """A camera URL was rejected before any connection was attempted.

    Attributes:
        url: the offending URL, redacted.
        reason: what is wrong with it, in words a user can act on.
    """

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"invalid camera URL {url!r}: {reason}")
        self.url = url
        self.reason = reason


class CameraUnreachable(StreamerError):
    """A camera could not be opened or read; `code` is one of `streamer.source.REASON_CODES`.

    Attributes:
        camera_id: the camera's id.
        code: a short machine-readable cause (``"refused"``, ``"unauthorized"``, ``"timeout"``, ...).
        reason: the human-readable cause, redacted.
        retryable: whether trying again later can help (a live camera may come back; a corrupt file won't).
    """

    def __init__(self, camera_id: str, code: str, reason: str, *, retryable: bool = True) -> None:
        super().__init__(f"camera {camera_id!r}: {reason}")
        self.camera_id = camera_id
        self.code = code
        self.reason = reason
        self.retryable = retryable


class StreamEnded(StreamerError):
    """The stream ended normally: end of a file, or a live server closing the connection."""


class SourceClosed(StreamerError):
    """An operation needs a running source but it was already closed."""
