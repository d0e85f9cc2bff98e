"""The local write-ahead file: every change Redis has not confirmed (cameras, rules, queued and delivered
alerts, retained topics to clear), one JSON line each, fsync'd before the change is acknowledged.

No decisions: `ResilientStore` appends while it cannot write to Redis, replays the file at start, and empties
it once Redis holds everything again. Values arrive already encoded (camera URLs sealed).
"""

from __future__ import annotations

import fcntl
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

    A line torn by a crash mid-write is skipped on replay; every line before it is kept. `compact` replaces
    the file atomically with a shorter list of changes that replays to the same state.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        new = not path.exists()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if new:  # the file's directory entry must be durable too
            _fsync_dir(path.parent)
        self.pending = os.fstat(self._fd).st_size > 0  # True while the file holds changes
        self.lines = self.path.read_bytes().count(b"\n") if self.pending else 0

    def append(self, change: Change) -> None:
        """Write one change and fsync it."""
        os.write(self._fd, _line(change))
        os.fsync(self._fd)
        self.pending = True
        self.lines += 1

    def compact(self, changes: list[Change], *, lock: bool = False) -> None:
        """Replace the file with `changes` (written, fsync'd, renamed over it: a crash leaves one or the
        other); `lock` takes the exclusive lock on the new file before it replaces the old one."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"".join(_line(c) for c in changes))
            os.fsync(fd)
            if lock:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)
        except BaseException:
            os.close(fd)
            raise
        os.close(self._fd)
        self._fd, self.lines, self.pending = fd, len(changes), bool(changes)

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
            self.pending, self.lines = False, 0

    def fileno(self) -> int:
        """The open file descriptor (for locking)."""
        return self._fd

    def close(self) -> None:
        """Close the file (its content stays for the next start)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _line(change: Change) -> bytes:
    text = json.dumps({"k": change.kind, "id": change.key, "v": change.value}, separators=(",", ":"))
    return text.encode() + b"\n"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
