"""Camera ingest: URL in, sampled RGB `Frame`s out (PyAV in a thread per camera). Imports nothing of ours."""

from streamer.errors import CameraUnreachable, InvalidCameraURL, SourceClosed, StreamEnded, StreamerError
from streamer.frame import Frame
from streamer.source import Source, StatusCallback, open_source
from streamer.status import REASON_CODES, SourceStats, SourceStatus, State
from streamer.urls import redact, validate_url

__all__ = [
    "REASON_CODES",
    "CameraUnreachable",
    "Frame",
    "InvalidCameraURL",
    "Source",
    "SourceClosed",
    "SourceStats",
    "SourceStatus",
    "State",
    "StatusCallback",
    "StreamEnded",
    "StreamerError",
    "open_source",
    "redact",
    "validate_url",
]
