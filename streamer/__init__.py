"""Camera ingest: URL in, sampled RGB `Frame`s out (PyAV in a thread per camera). Imports nothing of ours.

`Frame`, `Source` and `open_source` (numpy, PyAV) load on first use, so importing the URL rules and the
policy (as the settings do) stays light and `scissor serve` can refuse bad settings before PyAV loads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from streamer.errors import CameraUnreachable, InvalidCameraURL, SourceClosed, StreamEnded, StreamerError
from streamer.status import REASON_CODES, SourceStats, SourceStatus, State
from streamer.urls import redact, validate_url

if TYPE_CHECKING:
    from streamer.frame import Frame
    from streamer.source import Source, StatusCallback, open_source

_LAZY = {
    "Frame": "streamer.frame",
    "Source": "streamer.source",
    "StatusCallback": "streamer.source",
    "open_source": "streamer.source",
}


def __getattr__(name: str) -> Any:
    # PEP 562: the heavy half of the package is imported when one of its names is first asked for.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'streamer' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
