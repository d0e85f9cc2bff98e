"""The answer worker: one low-priority thread that runs model answers one at a time, users' questions before
prompt rules' (a rule's question waits while any user question does, so rules never starve users).

Only scheduling: admission (how many may wait) is `agent.questions`'.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Final, TypeVar

log = logging.getLogger(__name__)

USER: Final = 0  # a person's question
RULE: Final = 1  # a prompt rule's question: only when no user question waits
ANSWER_THREAD_NICENESS: Final = 10
T = TypeVar("T")


class AnswerQueue:
    """Runs submitted calls on one thread, lowest priority value first, in submission order within one.

    A call whose future was cancelled before it started (its question timed out, its rule was removed) is
    skipped, never run.
    """

    def __init__(self, name: str = "scissor-answer") -> None:
        self._heap: list[tuple[int, int, Future[Any], Callable[[], Any]]] = []
        self._order = itertools.count()
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], T], *, priority: int) -> Future[T]:
        """Queue `call`; its future holds the result or the exception it raised."""
        future: Future[T] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("the answer queue is closed")
            heapq.heappush(self._heap, (priority, next(self._order), future, call))
            self._ready.notify()
        return future

    def close(self) -> None:
        """Stop taking calls; the ones queued are cancelled, the one running is abandoned."""
        with self._ready:
            self._closed = True
            for _, _, future, _ in self._heap:
                future.cancel()
            self._heap.clear()
            self._ready.notify()

    def _run(self) -> None:
        _lower_thread_priority()
        while True:
            with self._ready:
                while not self._heap and not self._closed:
                    self._ready.wait()
                if self._closed:
                    return
                _, _, future, call = heapq.heappop(self._heap)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to the asker, who raises it
                future.set_exception(exc)


def _lower_thread_priority() -> None:
    """Run the answer worker at a lower CPU priority than ingest and encoding.

    Linux threads have their own nice. Questions are bursty and can wait a little; frames cannot (they are
    dropped when the encoder falls behind).
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), ANSWER_THREAD_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not permitted: keep the default priority
        log.debug("could not lower the answer thread's priority")
