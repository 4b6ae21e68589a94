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
import itertools
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import httpx
from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from asgi_correlation_id.middleware import FAILED_VALIDATION_MESSAGE
from asgi_correlation_id.middleware import logger as _logger
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from foundation import otel, tracecontext
from foundation.tracecontext import TRACEPARENT, TRACESTATE, TraceContext

DEFAULT_HEADER = "X-Request-ID"
MAX_ID_LENGTH = 36
_ZERO_ID = "0" * 32

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


_POOL_IDS = 256  # IDs' worth of random bytes read from the OS at once


def _fresh_pool() -> tuple[bytes, Callable[[], int]]:
    """Random bytes for ``_POOL_IDS`` IDs and a counter handing out each slot once."""
    return os.urandom(10 * _POOL_IDS), itertools.count().__next__


_pool = _fresh_pool()


def _discard_pool() -> None:
    global _pool  # noqa: PLW0603 - the process's pool, replaced whole
    _pool = _fresh_pool()


# A forked child (gunicorn --preload, Celery prefork) must not reuse its parent's bytes.
os.register_at_fork(after_in_child=_discard_pool)


def new_correlation_id() -> str:
    """A fresh UUIDv7 as 32 lower-case hex: Unix ms, version 7, variant 10, 74 random bits.

    Deliberately not monotonic (no counter, no "last + 1 ms" when the clock stands still or steps
    back): the embedded time stays the real clock reading, which is what obsctl reads back.
    Order within a millisecond is random; order events by the record's ``ts``.

    The random bits are ``os.urandom``'s, read for 256 IDs at a time (one system call per ID cost
    more than the rest of this function). Threads take slots through the counter bound to the
    bytes it indexes (one tuple, read at once), so no two IDs share a slot; a forked child
    discards the pool it inherited.
    """
    global _pool  # noqa: PLW0603 - the process's pool, replaced whole
    pool, take = _pool
    slot = take()
    if slot >= _POOL_IDS:
        pool, take = _pool = _fresh_pool()
        slot = take()
    start = slot * 10
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + pool[start : start + 10])
    raw[6] = 0x70 | (raw[6] & 0x0F)
    raw[8] = 0x80 | (raw[8] & 0x3F)
    return raw.hex()


class StrictCorrelationIdMiddleware(CorrelationIdMiddleware):
    """``CorrelationIdMiddleware`` with the strict validator, the canonicalising transformer,
    and W3C trace context (contract 7).

    Changes from upstream's ``__call__`` (rewritten here; its fields and Sentry hook are kept):

    - Upstream never resets the context variable, so code running after a request in the same
      task (in-process test clients, the server's own logging) would see that request's ID;
      here the previous values are restored when the request is done.
    - The headers are read in one pass over the scope: the ID header, ``traceparent`` (two or
      more fields are invalid: a new trace starts) and every ``tracestate`` field, in order.
    - One ID in the common cases: a trace foundation starts uses the correlation ID as its
      trace-id; a request with a valid ``traceparent`` and no usable ID header gets the
      trace-id as its correlation ID; both present: both kept. With an OpenTelemetry SDK span
      active (``foundation.otel``), the request joins that span's trace instead, and the span
      gets the correlation ID as an attribute.
    - Per request, only what the strict rules need: a missing ID header is appended to a copy
      of the header list (no ``MutableHeaders`` copy and scan), and the trace a request starts
      takes its 32-hex ID without ``start_trace``'s pattern check (it is valid by construction
      unless all zeros).
    - Upstream's Sentry hook (the ``transaction_id`` tag) runs only while a Sentry client is
      active (``_while_sentry_active``).
    """

    def __init__(self, app: ASGIApp, *, header_name: str = DEFAULT_HEADER) -> None:
        super().__init__(
            app,
            header_name=header_name,
            generator=new_correlation_id,
            validator=is_valid_correlation_id,
            transformer=canonical_correlation_id,
        )
        self._key = header_name.lower().encode("latin-1")
        self._answer_name = header_name.encode("latin-1")
        self.sentry_extension = _while_sentry_active(self.sentry_extension)
        otel.detect_provider()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        key = self._key
        raw_id: bytes | None = None
        traceparent: bytes | None = None
        duplicated = False
        tracestate: list[bytes] | None = None
        for name, value in scope["headers"]:
            if name == key:
                if raw_id is None:
                    raw_id = value
            elif name == b"traceparent":
                duplicated = traceparent is not None
                traceparent = value
            elif name == b"tracestate":
                if tracestate is None:
                    tracestate = [value]
                else:
                    tracestate.append(value)

        header_value = raw_id.decode("latin-1") if raw_id else None
        cid: str | None = None
        if header_value and is_valid_correlation_id(header_value):
            cid = canonical_correlation_id(header_value)
        rejected = bool(header_value) and cid is None
        parent = None
        if traceparent is not None and not duplicated:
            parent = tracecontext.parse_traceparent(traceparent.decode("latin-1"))

        span = otel.request_span() if otel.detect() else None
        if span is not None:
            trace_id, span_id, flags, state = otel.span_ids(span)
            trace = TraceContext(trace_id, span_id, flags, state)
        elif parent is not None:
            state = ""
            if tracestate is not None:
                state = tracecontext.parse_tracestate(v.decode("latin-1") for v in tracestate)
            trace = TraceContext(
                parent.trace_id, tracecontext.new_span_id(), parent.flags, state, parent.parent_id
            )
        else:
            trace = None
        if cid is None:
            cid = trace.trace_id if trace is not None else new_correlation_id()
        if trace is None:
            # cid is 32 lower-case hex here (canonical or fresh): a valid trace-id unless all
            # zeros, so start_trace's pattern check is left to that case.
            if cid == _ZERO_ID:
                trace = tracecontext.start_trace(cid)
            else:
                trace = TraceContext(cid, tracecontext.new_span_id(), tracecontext.DEFAULT_FLAGS)
        if span is not None:
            otel.mark_request(span, cid)
        if rejected:
            _logger.warning(FAILED_VALIDATION_MESSAGE, cid)

        value = cid.encode("latin-1")
        if cid != header_value and self.update_request_header:
            if raw_id is None:
                # No such header: append it to a copy of the list (what MutableHeaders does
                # after copying the list and scanning it for the name).
                scope["headers"] = [*scope["headers"], (key, value)]
            else:
                MutableHeaders(scope=scope)[self.header_name] = cid
        self.sentry_extension(cid)
        answer = (self._answer_name, value)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), answer]
            await send(message)

        cid_token = correlation_id.set(cid)
        trace_token = tracecontext._current.set(trace)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            tracecontext._current.reset(trace_token)
            correlation_id.reset(cid_token)


def _while_sentry_active(hook: Callable[[str], None]) -> Callable[[str], None]:
    """Upstream's Sentry hook, called only while a Sentry client is active.

    Upstream calls it on every request whenever ``sentry_sdk`` is installed. Without an active
    client it tags a scope no event will ever use, and under a real server that scope is new
    for every request: each request runs in a task of its own, whose context has no Sentry
    isolation scope yet, so ``get_isolation_scope()`` builds one (dozens of dicts, lists and
    deques). In-process benchmarks reuse one task and never see it; under uvicorn and wrk those
    objects made the garbage collector run about ten times as often as for bare FastAPI, and
    its full collections cost more than the rest of the middleware. The check is per request,
    so a client initialised after ``setup`` gets the tag from then on. It reads the global
    scope, where ``sentry_sdk.init`` puts the client (``is_initialized()`` also walks two
    context variables: several µs in a request's task against 0.1 µs).
    """
    sdk = sys.modules.get("sentry_sdk")  # imported by upstream's extension when installed
    if sdk is None:
        return hook
    global_scope: Callable[[], Any] = sdk.get_global_scope

    def set_transaction_id(cid: str) -> None:
        if global_scope().client.is_active():
            hook(cid)

    return set_transaction_id


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
    headers = request.headers
    cid = correlation_id.get()
    if cid and DEFAULT_HEADER not in headers:
        headers[DEFAULT_HEADER] = cid
    # A traceparent already there (set by the caller) is left alone, and so is its tracestate;
    # OpenTelemetry's httpx instrumentation writes its own after the hooks ran.
    if TRACEPARENT in headers or (otel.enabled and otel.httpx_instrumented()):
        return
    trace = tracecontext.outgoing_trace_headers()
    if trace:
        headers[TRACEPARENT] = trace[TRACEPARENT]
        state = trace.get(TRACESTATE)
        if state and TRACESTATE not in headers:
            headers[TRACESTATE] = state


def stamp_correlation_id(request: httpx.Request) -> None:
    """httpx ``request`` event hook for ``httpx.Client``: send the current ID and trace context
    (``X-Request-ID``, ``traceparent`` with a new span-id per call whose parent is the current
    span, ``tracestate``) to the next service.

    ``httpx.Client(event_hooks={"request": [stamp_correlation_id]})``; a header the caller set
    explicitly is left alone.
    """
    _stamp(request)


async def astamp_correlation_id(request: httpx.Request) -> None:
    """The same hook for ``httpx.AsyncClient`` (whose hooks must be coroutines)."""
    _stamp(request)
