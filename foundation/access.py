"""One access line per request (``message`` = ``request finished``), replacing uvicorn's.

Pure ASGI: the status is read from ``http.response.start`` in a ``send`` wrapper; the route
template is read from the scope after the app returned. A client that went away before the
response was complete is recorded as status 499 (nginx's "client closed request"): seen when
anything inside (Starlette reading the body, ``Database.session`` before its commit, a
streaming response) received ``http.disconnect``. ASGI servers drop what is sent to a closed
connection without an error, so a disconnect that nothing inside asked about goes unseen.
Query strings are never logged (they carry tokens more often than one would like).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from foundation.logging import current_logging, log_record
from foundation.routing import route_template

ACCESS_MESSAGE = "request finished"


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, *, exclude_paths: Iterable[str] = ()) -> None:
        self.app = app
        self.exclude_paths = frozenset(exclude_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exclude_paths:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        root_path = scope.get("root_path", "")
        status = 0
        complete = False
        disconnected = False

        async def receive_wrapper() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect" and not complete:
                disconnected = True
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal status, complete
            if message["type"] == "http.response.start":
                status = message["status"]
            elif not message.get("more_body", False):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            method: str = scope["method"]
            path: str = scope["path"]
            route = route_template(scope, root_path)
            if disconnected:
                # The client went away before the response was complete (as nginx logs it).
                status = 499
            elif not complete:
                # No response at all, or one cut short after its status line (an error while
                # streaming): the client did not get what the status said, so it counts as 500.
                status = 500
            write_access_line(method, path, route, status, time.perf_counter() - start)


def write_access_line(method: str, path: str, route: str, status: int, seconds: float) -> None:
    """The request's one ``request finished`` line (foundation's direct path when its JSON
    sinks are Loguru's only handlers, through Loguru otherwise)."""
    duration_ms = round(seconds * 1000.0, 3)
    config = current_logging()
    if config is None or not config.access(
        ACCESS_MESSAGE, __name__, method, path, route, status, duration_ms
    ):
        fields = {
            "method": method,
            "path": path,
            "route": route,
            "status": status,
            "duration_ms": duration_ms,
        }
        log_record("INFO", ACCESS_MESSAGE, __name__, fields)
