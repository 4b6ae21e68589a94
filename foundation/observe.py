"""The access line, the metrics and the catch-all as one layer around each request.

``setup`` installs ``RequestObserver`` where the three parts would otherwise be three layers
(access line → metrics → catch-all): one ``send`` wrapper, one ``receive`` wrapper and one
clock reading per request instead of three of each (each wrapping layer costs about 1 µs a
request). Each part keeps the behaviour of its own middleware, which stays for apps that
wire the parts by hand (``AccessLogMiddleware``, ``MetricsMiddleware``, ``CatchAllMiddleware``):

- access line: the status sent, 499 when the client went away before the response was
  complete, 500 when no complete response left; no line for the excluded paths (``/metrics``);
- metrics: the status sent, 499 or 500 for a response cut short, 500 when an exception got
  through; ``GET``/``HEAD`` of the metrics path is answered here, and counted nowhere;
- catch-all: an unhandled exception is logged once, counted, reported and answered with the
  500 envelope (through this layer, so the line and the series see that 500).

The two notions of "complete" differ as their middlewares' do (the access line counts any final
message, the metrics only the last body) and are kept apart.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from foundation.access import write_access_line
from foundation.handlers import answer_unhandled
from foundation.metrics import KNOWN_METHODS, AppMetrics, serve_metrics
from foundation.routing import route_template


class RequestObserver:
    """Pure ASGI: the access line (``access``), the HTTP series (``metrics``) and the catch-all.

    Sits inside the correlation-ID middleware, so the ID and the trace are set for all three.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        access: bool = True,
        exclude_paths: Iterable[str] = (),
        metrics: AppMetrics | None = None,
        metrics_path: str = "/metrics",
    ) -> None:
        self.app = app
        self.access = access
        self.exclude_paths = frozenset(exclude_paths)
        self.metrics = metrics
        self.metrics_path = metrics_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        metrics = self.metrics
        if metrics is not None and path == self.metrics_path and method in ("GET", "HEAD"):
            await serve_metrics(metrics, scope, send)
            return
        log = self.access and path not in self.exclude_paths
        # route_template needs root_path as it was before any Mount extended it.
        root_path: str = scope.get("root_path", "")
        status = 0
        started = False
        complete = False  # the access line's: a final message of any kind
        body_complete = False  # the metrics': the last body message
        gone_early = False  # the access line's: a disconnect before the response was complete
        gone = False  # the metrics': a disconnect at any time

        async def receive_wrapper() -> Message:
            nonlocal gone, gone_early
            message = await receive()
            if message["type"] == "http.disconnect":
                gone = True
                if not complete:
                    gone_early = True
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started, complete, body_complete
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                started = True
            elif not message.get("more_body", False):
                complete = True
                body_complete = kind == "http.response.body" or body_complete
            await send(message)

        counted = method if method in KNOWN_METHODS else "OTHER"
        if metrics is not None:
            metrics.http.started(counted)
        begun = time.perf_counter()
        escaped = False
        try:
            try:
                await self.app(scope, receive_wrapper, send_wrapper)
            except ClientDisconnect:
                pass  # nothing to answer or log (the catch-all's rule): the line says 499
            except Exception as exc:
                await answer_unhandled(exc, scope, receive_wrapper, send_wrapper, started=started)
        except Exception:
            escaped = True  # the 500 could not be sent: the metrics count a 500 all the same
            raise
        finally:
            now = time.perf_counter()
            route = route_template(scope, root_path)
            if metrics is not None:
                if not body_complete:
                    counted_status = 499 if gone else 500
                else:
                    counted_status = 500 if escaped or not started else status
                metrics.http.finished(counted, route, counted_status, now - begun, now)
            if log:
                if gone_early:
                    status = 499
                elif not complete:
                    status = 500
                write_access_line(method, path, route, status, now - begun)
