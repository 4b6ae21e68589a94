"""OpenTelemetry, when the application uses it (never a dependency of foundation).

FastAPI pulls in ``opentelemetry-api``, which alone records nothing: without an SDK
``TracerProvider`` the current span is either invalid or a ``NonRecordingSpan`` holding the
*caller's* context (its span-id is the incoming parent-id, not ours), so neither is logged as
our span. A span counts as the SDK's when its context is valid and local (``is_remote`` false);
once one is seen, or an SDK provider is installed, ``enabled`` turns on for the process and log
lines carry the SDK's current trace and span.

Costs nothing measurable while the API is absent or idle: ``detect`` looks at OpenTelemetry's
context (an empty mapping unless some instrumentation put a span in it) once per request, and
``detect_provider`` at the global provider once per middleware stack.
"""

from __future__ import annotations

import sys
from typing import Any

try:  # pragma: no branch - both sides are exercised by the test matrix
    from opentelemetry import context as _context
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - FastAPI >= 0.160 depends on opentelemetry-api
    _context = None  # type: ignore[assignment]
    _trace = None  # type: ignore[assignment]

#: The attribute put on the request's server span, so a tracing backend can search by it.
CORRELATION_ATTRIBUTE = "correlation_id"

#: True once the process has an OpenTelemetry SDK at work (never turned off again).
enabled = False


def detect_provider() -> bool:
    """Turn ``enabled`` on if an SDK ``TracerProvider`` is installed globally (checked when the
    middleware stack is built, at the first request: apps install theirs before serving)."""
    global enabled  # noqa: PLW0603 - one process-wide switch, flipped once
    if _trace is not None and not enabled:
        provider = _trace.get_tracer_provider()
        if not isinstance(provider, _trace.ProxyTracerProvider | _trace.NoOpTracerProvider):
            enabled = True
    return enabled


def detect() -> bool:
    """Whether an SDK is at work now (checked per request until it first is): some
    instrumentation put a span (or baggage) into OpenTelemetry's context."""
    global enabled  # noqa: PLW0603 - one process-wide switch, flipped once
    if enabled:
        return True
    if _context is not None and _context.get_current():
        enabled = True
    return enabled


def request_span() -> Any | None:
    """The SDK's current span (the request's server span under FastAPI instrumentation)."""
    if not enabled:
        return None
    span = _trace.get_current_span()
    context = span.get_span_context()
    if context.is_valid and not context.is_remote:
        return span
    return None


def current_ids() -> tuple[str, str, int, str] | None:
    """``(trace_id, span_id, flags, tracestate)`` of the SDK's current span, if it is ours."""
    context = _trace.get_current_span().get_span_context()
    if not context.is_valid or context.is_remote:
        return None
    return (
        format(context.trace_id, "032x"),
        format(context.span_id, "016x"),
        int(context.trace_flags),
        context.trace_state.to_header() if context.trace_state else "",
    )


def span_ids(span: Any) -> tuple[str, str, int, str]:
    context = span.get_span_context()
    return (
        format(context.trace_id, "032x"),
        format(context.span_id, "016x"),
        int(context.trace_flags),
        context.trace_state.to_header() if context.trace_state else "",
    )


def mark_request(span: Any, correlation_id: str) -> None:
    """Put the correlation ID on the request's server span (if it is recording)."""
    if span.is_recording():
        span.set_attribute(CORRELATION_ATTRIBUTE, correlation_id)


def httpx_instrumented() -> bool:
    """Whether ``opentelemetry-instrumentation-httpx`` instruments every client.

    Its transport wrapper then writes ``traceparent`` itself (with its client span), after the
    event hooks ran; foundation's hooks leave the trace headers to it.
    """
    module = sys.modules.get("opentelemetry.instrumentation.httpx")
    if module is None:
        return False
    try:
        return bool(module.HTTPXClientInstrumentor().is_instrumented_by_opentelemetry)
    except Exception:  # a changed instrumentation API must not break outgoing calls
        return False
