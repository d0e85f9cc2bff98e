"""Kept for tests/streamer, which still imports it from here: the launcher lives in harness/ports.py."""

from harness.ports import free_port

__all__ = ["free_port"]
