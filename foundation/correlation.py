"""Correlation IDs: asgi-correlation-id's middleware, configured strictly, and its helpers.

The upstream default validator accepts anything ``uuid.UUID()`` parses (a megabyte of hyphens
around 32 hex digits included) and echoes it unchanged. Here an incoming ID is accepted only as
32 hex digits or a canonical hyphenated UUID, at most 36 ASCII characters, and is canonicalised to
32 lower-case hex; anything else is replaced by a fresh ID and never logged. Upstream's generator
is ``uuid4().hex``; here fresh IDs are UUIDv7 (RFC 9562), so the ID itself says when the request
arrived and obsctl can look only around that time.

``asyncio.to_thread``, Starlette's threadpool, ``create_task`` and ``BackgroundTasks`` copy the
context, so the ID follows them. ``loop.run_in_executor`` and ``ThreadPoolExecutor.submit`` do not
(cpython#78195): wrap the callable with ``with_correlation`` first.
"""

from __future__ import annotations

import contextvars
import functools
import os
import re
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import httpx
from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from starlette.types import ASGIApp, Receive, Scope, Send

DEFAULT_HEADER = "X-Request-ID"
MAX_ID_LENGTH = 36

_VALID_ID = re.compile(
    r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)

P = ParamSpec("P")
R = TypeVar("R")


def get_correlation_id() -> str | None:
    """The current request's correlation ID, or ``None`` outside a request."""
    return correlation_id.get()


def is_valid_correlation_id(value: str) -> bool:
    """Strict check: 32 hex digits or a canonical hyphenated UUID, nothing else."""
    return len(value) <= MAX_ID_LENGTH and _VALID_ID.fullmatch(value) is not None


def canonical_correlation_id(value: str) -> str:
    """32 lower-case hex digits, whichever accepted form the client sent."""
    if len(value) == 32 and value.islower():
        return value
    return value.replace("-", "").lower()


def new_correlation_id() -> str:
    """A fresh UUIDv7 as 32 lower-case hex: Unix ms, version 7, variant 10, 74 random bits.

    Deliberately not monotonic (no counter, no "last + 1 ms" when the clock stands still or steps
    back): the embedded time stays the real clock reading, which is what obsctl reads back.
    Order within a millisecond is random; order events by the record's ``ts``. ``os.urandom``
    is fork-safe, so forked workers never share a random stream.
    """
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    return raw.hex()


class StrictCorrelationIdMiddleware(CorrelationIdMiddleware):
    """``CorrelationIdMiddleware`` with the strict validator and the canonicalising transformer.

    Upstream never resets the context variable, so code running after a request in the same
    task (in-process test clients, the server's own logging) would see that request's ID; here
    the previous value is restored when the request is done.
    """

    def __init__(self, app: ASGIApp, *, header_name: str = DEFAULT_HEADER) -> None:
        super().__init__(
            app,
            header_name=header_name,
            generator=new_correlation_id,
            validator=is_valid_correlation_id,
            transformer=canonical_correlation_id,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = correlation_id.set(None)
        try:
            await super().__call__(scope, receive, send)
        finally:
            correlation_id.reset(token)


def with_correlation(fn: Callable[P, R]) -> Callable[P, R]:
    """Bind ``fn`` to a copy of the current context (and so to the current correlation ID).

    For executors that do not copy context::

        await loop.run_in_executor(None, with_correlation(work), arg)
        pool.submit(with_correlation(work), arg)
    """
    context = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return context.run(fn, *args, **kwargs)

    return run


def _stamp(request: httpx.Request) -> None:
    cid = correlation_id.get()
    if cid and DEFAULT_HEADER not in request.headers:
        request.headers[DEFAULT_HEADER] = cid


def stamp_correlation_id(request: httpx.Request) -> None:
    """httpx ``request`` event hook for ``httpx.Client``: send the current ID to the next service.

    ``httpx.Client(event_hooks={"request": [stamp_correlation_id]})``; a header the caller set
    explicitly is left alone.
    """
    _stamp(request)


async def astamp_correlation_id(request: httpx.Request) -> None:
    """The same hook for ``httpx.AsyncClient`` (whose hooks must be coroutines)."""
    _stamp(request)
