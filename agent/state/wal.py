"""The local write-ahead file: every change Redis has not confirmed (cameras, rules, queued and delivered
alerts, retained topics to clear), one JSON line each, fsync'd before the change is acknowledged.

No decisions: `ResilientStore` appends while it cannot write to Redis, replays the file at start, and empties
it once Redis holds everything again. Values arrive already encoded (camera URLs sealed).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    """One change: the value (encoded text) a key of a kind now has, or None when it was deleted."""

    kind: str
    key: str
    value: str | None


class WriteAheadFile:
    """An append-only file of `Change`s (mode 0600); each `append` is on disk (fsync) when it returns.

    A line torn by a crash mid-write is skipped on replay; every line before it is kept.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        new = not path.exists()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if new:  # the file's directory entry must be durable too
            _fsync_dir(path.parent)
        self.pending = os.fstat(self._fd).st_size > 0  # True while the file holds changes

    def append(self, change: Change) -> None:
        """Write one change and fsync it."""
        line = json.dumps({"k": change.kind, "id": change.key, "v": change.value}, separators=(",", ":"))
        os.write(self._fd, line.encode() + b"\n")
        os.fsync(self._fd)
        self.pending = True

    def replay(self) -> list[Change]:
        """Every change in the file, oldest first (a torn last line skipped, with a warning)."""
        changes = []
        for number, raw in enumerate(self.path.read_bytes().splitlines(), start=1):
            try:
                item = json.loads(raw)
                changes.append(Change(str(item["k"]), str(item["id"]), item["v"]))
            except (ValueError, KeyError, TypeError):
                log.warning("write-ahead file %s: line %d is torn or malformed, skipped", self.path, number)
        return changes

    def clear(self) -> None:
        """Empty the file (Redis holds every change in it)."""
        if self.pending:
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
            self.pending = False

    def fileno(self) -> int:
        """The open file descriptor (for locking)."""
        return self._fd

    def close(self) -> None:
        """Close the file (its content stays for the next start)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
