"""Turns PyAV/OS exceptions into a reason code and an actionable, redacted sentence.

Never touches the network.
"""

from __future__ import annotations

import errno
import socket

import av

from streamer.errors import CameraUnreachable
from streamer.urls import host_and_port, is_file_url, redact

# Exceptions a PyAV open/demux/decode can raise for bad input or a bad network (docs/design.md, "Ingest"):
# av.FFmpegError covers ExitError (interrupt timeout) and InvalidDataError (a ValueError), OSError the rest.
AV_ERRORS: tuple[type[BaseException], ...] = (av.FFmpegError, OSError)


def classify(
    exc: BaseException, *, camera_id: str, url: str, elapsed_s: float, timeout_s: float, phase: str
) -> CameraUnreachable:
    """Describe why opening or reading `url` failed.

    Args:
        exc: what PyAV (or the resolver) raised.
        camera_id: for the error record.
        url: the camera URL (credentials allowed: everything returned is redacted).
        elapsed_s: how long the failed call took (a failure at the timeout is a timeout whatever its type).
        timeout_s: the timeout in force for that call.
        phase: ``"open"`` or ``"read"``.

    Returns:
        A CameraUnreachable with `code`, `reason` and `retryable` filled in.
    """
    local = is_file_url(url)
    code, reason = _describe(exc, url=url, elapsed_s=elapsed_s, timeout_s=timeout_s, phase=phase, local=local)
    # Local files do not heal by retrying; a network camera may come back or be reconfigured.
    return CameraUnreachable(camera_id, code, redact(reason), retryable=not local)


def _describe(
    exc: BaseException, *, url: str, elapsed_s: float, timeout_s: float, phase: str, local: bool
) -> tuple[str, str]:
    host, port = host_and_port(url) if not local else ("", 0)
    what = "the file" if local else f"the camera at {host}:{port}"
    if isinstance(exc, socket.gaierror):
        return "dns", f"DNS lookup failed for host {host!r}: check the camera address ({exc.strerror})"
    if isinstance(exc, av.HTTPUnauthorizedError):
        return "unauthorized", "401 unauthorized: the camera rejected the user name or password in the URL"
    if isinstance(exc, av.HTTPForbiddenError):
        return "forbidden", "403 forbidden: this camera user may not view the stream"
    if isinstance(exc, av.HTTPNotFoundError):
        return "not_found", "404 not found: the camera has no stream at this path; check the URL path"
    if isinstance(exc, av.HTTPError):
        return "server_error", f"the camera answered with an error: {_message(exc)}"
    if isinstance(exc, ConnectionRefusedError):
        return (
            "refused",
            f"connection refused by {host}:{port}: is the camera on, and is {port} its stream port?",
        )
    if isinstance(exc, OSError) and exc.errno in {errno.ENETUNREACH, errno.EHOSTUNREACH}:
        return "unreachable", f"no route to {host}:{port}: check the address and the network"
    if not local and (isinstance(exc, (TimeoutError, av.ExitError)) or elapsed_s >= 0.9 * timeout_s):
        doing = "to answer" if phase == "open" else "to send video"
        return "timeout", f"timed out after {elapsed_s:.1f} s waiting for {what} {doing}"
    if isinstance(exc, FileNotFoundError) and local:
        return "file_not_found", "the video file does not exist"
    if isinstance(exc, (av.DecoderNotFoundError, av.DemuxerNotFoundError, av.ProtocolNotFoundError)):
        return "unsupported", f"unsupported by this FFmpeg build: {_message(exc)}"
    if isinstance(exc, av.InvalidDataError):
        if local:
            return "invalid_data", "the file is not a playable video (corrupt, truncated or not a video file)"
        return (
            "invalid_data",
            f"{what} sent data that is not a playable video stream (wrong port or protocol?)",
        )
    if isinstance(exc, (OSError, av.FFmpegError)):
        return "io_error", f"I/O error with {what}: {_message(exc)}"
    return "internal", f"unexpected {type(exc).__name__}: {_message(exc)}"


def _message(exc: BaseException) -> str:
    # FFmpeg errors carry (errno, message, filename); the filename is the URL, so keep only the message.
    text = getattr(exc, "strerror", None) or str(exc)
    return redact(str(text))
