"""Stopping background tasks for sure, when a cancel gets lost."""

from __future__ import annotations

import asyncio

from agent.tasks import cancel_and_wait


async def test_cancel_and_wait_ends_a_task_that_swallows_its_first_cancel() -> None:
    cancels = 0

    async def loop_losing_a_cancel() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels += 1
                if cancels > 1:
                    raise  # the first cancel is lost, as in wait_for's race; the second ends it

    task = asyncio.create_task(loop_losing_a_cancel())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task), 5)
    assert task.cancelled() and cancels == 2
