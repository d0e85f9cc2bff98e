"""The process's log setup: one stream handler whose filter caps how often one call site may log, so a flood
(a "Too many open files" accept error per connection attempt, a camera refusing every few seconds) cannot
fill the disk.

Holds no service logic and never drops a record silently: the first record after a capped stretch says how
many like it were left out. Never writes a credential: every formatted record (tracebacks included) goes
through `streamer.urls.redact`, and libraries that log whole request URLs at INFO (httpx) log warnings only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from streamer.urls import redact

LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# WARNING and above from one call site: this many records per window, then a count. A real outage still shows
# its first lines in full (tracebacks included); 483,285 accept-error tracebacks a minute become 20 + a count.
BURST_RECORDS: Final = 20
WINDOW_S: Final = 60.0
CAPPED_FROM_LEVEL: Final = logging.WARNING
# Loggers of libraries that put whole URLs (user:password@, ?password=) into their INFO/DEBUG records: httpx
# logs "HTTP Request: GET <url>" for every camera pre-flight and redirect hop, httpcore its connections.
QUIET_LIBRARIES: Final = ("httpx", "httpcore")


@dataclass(slots=True)
class _Site:
    """One call site's current window: when it opened, records let through, records left out."""

    opened: float
    passed: int = 0
    suppressed: int = 0


class RateLimitFilter(logging.Filter):
    """Let at most `burst` records of level >= `from_level` through per `window_s` from one call site
    (logger, file, line, level); count the rest and say so on the first record let through afterwards.

    A call site, not a message, is the key: asyncio's exception handler puts the socket into each message, so
    no two accept errors read alike, yet they all come from one line. INFO and DEBUG pass untouched (fifty
    cameras starting at once log fifty lines from one site, and should).

    Args:
        burst: records let through per window and call site.
        window_s: the window's length in seconds.
        from_level: the lowest level capped.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        *,
        burst: int = BURST_RECORDS,
        window_s: float = WINDOW_S,
        from_level: int = CAPPED_FROM_LEVEL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if burst < 1 or window_s <= 0:
            raise ValueError("burst must be >= 1 and window_s > 0")
        self.burst, self.window_s, self.from_level, self.clock = burst, window_s, from_level, clock
        self._sites: dict[tuple[str, str, int, int], _Site] = {}
        self.suppressed_total = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.from_level:
            return True
        now = self.clock()
        key = (record.name, record.pathname, record.lineno, record.levelno)
        site = self._sites.get(key)
        if site is None or now - site.opened >= self.window_s:
            left_out = site.suppressed if site is not None else 0
            self._sites[key] = _Site(opened=now, passed=1)
            if left_out:
                _mention_left_out(record, left_out, self.window_s)
            return True
        if site.passed < self.burst:
            site.passed += 1
            return True
        site.suppressed += 1
        self.suppressed_total += 1
        return False


def _mention_left_out(record: logging.LogRecord, count: int, window_s: float) -> None:
    # The record's own text, formatted once, then the count; args cleared so it is not formatted twice.
    record.msg = f"{record.getMessage()} [{count} more like this left out in the last {window_s:g} s]"
    record.args = None


def report_left_out() -> int:
    """Log, once, how many records the root handlers' rate limits left out in all (a flood that stopped before
    its window closed is otherwise never counted); return that number. Called as the process ends."""
    left_out = sum(
        f.suppressed_total
        for handler in logging.getLogger().handlers
        for f in handler.filters
        if isinstance(f, RateLimitFilter)
    )
    if left_out:
        logging.getLogger(__name__).warning("%d log records were left out by the rate limit", left_out)
    return left_out


class RedactingFormatter(logging.Formatter):
    """The usual formatter, then `redact` over the whole text: a URL a library (or an exception message, or a
    traceback) carries loses its user name, password and secret query parameters before it is written."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str) -> RateLimitFilter:
    """Log to stderr at `level` through one handler carrying a `RateLimitFilter` and a `RedactingFormatter`;
    return the filter. `QUIET_LIBRARIES` log warnings and above only, whatever `level` is.

    The filter and the formatter sit on the handler, not on a logger, so they see records of every logger
    that propagates to the root (uvicorn's, asyncio's, httpx's, FFmpeg's through PyAV, ours).
    """
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter(LOG_FORMAT))
    capped = RateLimitFilter()
    handler.addFilter(capped)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    return capped
