"""The correlation-ID middleware as it was before trace context (issue 11), kept as the peer
of today's in ``bench_tracecontext``: upstream ``CorrelationIdMiddleware`` with the strict
validator and transformer, and the context variable reset after the request."""

from __future__ import annotations

from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from starlette.types import ASGIApp, Receive, Scope, Send

from foundation.correlation import (
    canonical_correlation_id,
    is_valid_correlation_id,
    new_correlation_id,
)


class CorrelationBeforeTrace(CorrelationIdMiddleware):
    def __init__(self, app: ASGIApp) -> None:
        super().__init__(
            app,
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
