"""Stopping background tasks for sure.

A cancel can be lost: on Python 3.11, `asyncio.wait_for` returns its result and drops a cancel that lands as
the call it guards completes (fixed in 3.12). A loop that awaited such a call then runs on, and whoever
cancelled it once and awaited it waits forever: the cluster service's stop did, closing the state store.
"""

from __future__ import annotations

import asyncio

RECANCEL_EVERY_S = 1.0  # seconds between cancels of a task that has not ended yet


async def cancel_and_wait(*tasks: asyncio.Task[None]) -> None:
    """Cancel `tasks` and wait until every one has ended, cancelling again any that swallowed the cancel.
    Their exceptions are not raised (they are the tasks' own business and already logged there)."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_EVERY_S)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" warning
