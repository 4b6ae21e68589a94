"""Lookups off the event loop, bounded: threads, waiting room, time limit, shared duplicates.

A lookup scans files or pages through Loki: seconds of blocking work. :class:`Lookups` runs it
on a small thread pool so that the event loop keeps answering other pages, lets at most
``max_pending`` lookups run or wait at once (beyond that: :class:`Busy`, a 503 the user can
retry), answers :class:`TooSlow` after ``timeout`` seconds (the scan finishes in the background
and its thread is then free again), and gives the lookups of one key made while it runs the
same result from one scan. Memory is therefore bounded by ``threads`` scans, whatever the
number of people asking.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

__all__ = ["Busy", "Lookups", "TooSlow"]

T = TypeVar("T")


class Busy(Exception):
    """Too many lookups running or waiting."""


class TooSlow(Exception):
    """The lookup did not finish within the time limit."""


class Lookups:
    def __init__(self, *, threads: int = 2, max_pending: int = 64, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.max_pending = max_pending
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="obsctl-lookup")
        self._running: dict[Hashable, asyncio.Future[Any]] = {}

    @property
    def pending(self) -> int:
        return len(self._running)

    async def run(self, key: Hashable, work: Callable[[], T]) -> T:
        """The result of ``work()`` (or of the identical lookup already running under ``key``)."""
        future = self._running.get(key)
        if future is None:
            if len(self._running) >= self.max_pending:
                raise Busy
            future = asyncio.get_running_loop().run_in_executor(self._pool, work)
            self._running[key] = future
            future.add_done_callback(lambda done: self._finished(key, done))
        try:
            result = await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            raise TooSlow from None
        return cast("T", result)

    def _finished(self, key: Hashable, done: asyncio.Future[Any]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # retrieved: a lookup nobody waited for is not reported as lost

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
