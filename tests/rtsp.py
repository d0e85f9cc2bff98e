"""Kept for tests/streamer, which still imports it from here: the launcher lives in harness/rtsp.py."""

from harness.rtsp import RtspServer, RtspServerError

__all__ = ["RtspServer", "RtspServerError"]
