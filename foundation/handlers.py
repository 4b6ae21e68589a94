"""Centralised exception handling: one safe JSON body for every error (contract 2).

``add_exception_handlers(app)`` registers handlers for the ``AppException`` family, request
validation errors and Starlette's ``HTTPException`` (router 404/405 are Starlette's, not
FastAPI's), and installs ``CatchAllMiddleware`` for everything else.

Why a middleware for unhandled errors: Starlette runs the ``Exception`` handler inside
``ServerErrorMiddleware``, *outside* all user middleware, so its response would miss the
``X-Request-ID`` header and the access line, and the exception is re-raised afterwards, so
uvicorn logs the traceback a second time. ``CatchAllMiddleware`` sits inside the correlation
and access-log middleware, answers the 500 itself, logs the traceback once and does not
re-raise. An ``Exception`` handler is still registered for errors raised outside it (in
middleware added after ``setup``): it stamps the header itself.

Each failure is logged once, at its class's level, with ``internal_code``, ``http_code`` and the
internal message; the response carries only the external message, the code and the ID.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from foundation.correlation import DEFAULT_HEADER, get_correlation_id
from foundation.exceptions import (
    AppException,
    InvalidRequest,
    MethodNotAllowed,
    RouteNotFound,
)
from foundation.logging import log_record
from foundation.openapi import document_errors
from foundation.sentry import report

#: nginx's status for "client closed request", used in the access line and the metrics.
CLIENT_CLOSED_REQUEST = 499

INTERNAL_ERROR_MESSAGE = AppException.external_message
_MAX_VALIDATION_ERRORS = 20
_MAX_LOC_CHARS = 64


@dataclass(frozen=True, slots=True)
class ErrorOptions:
    """How error bodies look; stored on ``app.state.foundation_errors``."""

    expose_codes: bool = True
    problem_json: bool = False
    header_name: str = DEFAULT_HEADER


_DEFAULT_OPTIONS = ErrorOptions()


def _options(app: Any) -> ErrorOptions:
    state = getattr(app, "state", None)
    options = getattr(state, "foundation_errors", None) if state is not None else None
    return options if isinstance(options, ErrorOptions) else _DEFAULT_OPTIONS


def _observe(app: Any, exception: str, internal_code: int, http_code: int) -> None:
    # The metrics layer installs a ``foundation.metrics.ExceptionObserver`` here.
    state = getattr(app, "state", None)
    observer = getattr(state, "foundation_exception_observer", None) if state is not None else None
    if observer is not None:
        observer(exception=exception, internal_code=internal_code, http_code=http_code)


def error_body(
    *,
    http_code: int,
    message: str,
    code: int,
    options: ErrorOptions = _DEFAULT_OPTIONS,
    errors: Sequence[dict[str, Any]] | None = None,
) -> tuple[bytes, str]:
    """The serialized error body and its media type."""
    cid = get_correlation_id()
    body: dict[str, Any]
    if options.problem_json:
        try:
            title = HTTPStatus(http_code).phrase
        except ValueError:
            title = "Error"
        body = {"type": "about:blank", "title": title, "status": http_code, "detail": message}
        media_type = "application/problem+json"
    else:
        body = {"message": message}
        media_type = "application/json"
    if options.expose_codes:
        body["code"] = code
    body["correlation_id"] = cid
    if errors:
        body["errors"] = list(errors)
    return orjson.dumps(body), media_type


def _response(
    request: Request,
    *,
    http_code: int,
    message: str,
    code: int,
    errors: Sequence[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    content, media_type = error_body(
        http_code=http_code,
        message=message,
        code=code,
        options=_options(request.app),
        errors=errors,
    )
    return Response(content, status_code=http_code, media_type=media_type, headers=headers)


def _log_app_exception(exc: AppException) -> None:
    extras: dict[str, Any] = {
        "internal_code": exc.internal_code,
        "http_code": exc.http_code,
        "external_message": exc.external_message,
        **exc.context,
    }
    log_record(
        exc.log_level,
        exc.internal_message,
        __name__,
        extras,
        exception=exc,
        with_traceback=exc.http_code >= 500,
    )


async def app_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppException)
    _log_app_exception(exc)
    _observe(request.app, type(exc).__name__, exc.internal_code, exc.http_code)
    report(
        request.app,
        exc,
        internal_code=exc.internal_code,
        http_code=exc.http_code,
        scope=request.scope,
        external_message=exc.external_message,
        context=exc.context,
    )
    return _response(
        request, http_code=exc.http_code, message=exc.external_message, code=exc.internal_code
    )


def _safe_loc(loc: Any) -> list[str | int]:
    parts = loc if isinstance(loc, list | tuple) else [loc]
    return [p if isinstance(p, int) else str(p)[:_MAX_LOC_CHARS] for p in parts]


async def validation_exception_handler(request: Request, exc: Exception) -> Response:
    """422 listing where and what kind of error, never the input or the validator's message."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": _safe_loc(err.get("loc", ())), "type": str(err.get("type", "value_error"))[:64]}
        for err in exc.errors()[:_MAX_VALIDATION_ERRORS]
    ]
    error = InvalidRequest(f"{len(exc.errors())} validation error(s)")
    log_record(
        error.log_level,
        error.internal_message,
        __name__,
        {
            "internal_code": error.internal_code,
            "http_code": error.http_code,
            "external_message": error.external_message,
            "errors": errors,
        },
        exception=error,
    )
    _observe(request.app, type(error).__name__, error.internal_code, error.http_code)
    report(
        request.app,
        error,
        internal_code=error.internal_code,
        http_code=error.http_code,
        scope=request.scope,
        external_message=error.external_message,
        context={"errors": errors},
    )
    return _response(
        request,
        http_code=error.http_code,
        message=error.external_message,
        code=error.internal_code,
        errors=errors,
    )


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette/FastAPI ``HTTPException`` (router 404/405 included) in the same envelope."""
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, ClientDisconnect):
        # FastAPI turns a body cut short by the client into a 400; nobody is there to read it,
        # and the access line records 499.
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    status = exc.status_code
    kind: type[AppException] | None = {404: RouteNotFound, 405: MethodNotAllowed}.get(status)
    if kind is not None and exc.detail == HTTPStatus(status).phrase:
        message, code, level, name = (
            kind.external_message,
            kind.internal_code,
            kind.log_level,
            kind.__name__,
        )
    else:
        # Raised by application code: its detail is meant for the client.
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        message = exc.detail if isinstance(exc.detail, str) else phrase
        code = 10000 + status if 100 <= status <= 999 else 10000
        level = "ERROR" if status >= 500 else "WARNING"
        name = "HTTPException"
    log_record(
        level,
        f"HTTP {status} {message}",
        __name__,
        {"internal_code": code, "http_code": status},
        exception={"type": name, "value": message},
    )
    _observe(request.app, name, code, status)
    # A 5xx HTTPException is captured by Sentry's Starlette integration too, before this
    # handler runs; its deduplication drops the second event of the same exception.
    report(
        request.app,
        exc,
        internal_code=code,
        http_code=status,
        scope=request.scope,
        external_message=message,
    )
    if status in (204, 304):
        return Response(status_code=status, headers=exc.headers)
    return _response(request, http_code=status, message=message, code=code, headers=exc.headers)


def _log_unhandled(exc: BaseException) -> None:
    log_record(
        "ERROR",
        f"Unhandled {type(exc).__name__}",
        __name__,
        {
            "internal_code": AppException.internal_code,
            "http_code": 500,
            "external_message": INTERNAL_ERROR_MESSAGE,
        },
        exception=exc,
        with_traceback=True,
    )


def _report_unhandled(app: Any, exc: BaseException, scope: Scope) -> None:
    report(
        app,
        exc,
        internal_code=AppException.internal_code,
        http_code=500,
        scope=scope,
        external_message=INTERNAL_ERROR_MESSAGE,
    )


async def server_error_handler(request: Request, exc: Exception) -> Response:
    """Last resort inside ``ServerErrorMiddleware`` (outside user middleware): stamp the ID."""
    _log_unhandled(exc)
    _observe(request.app, type(exc).__name__, AppException.internal_code, 500)
    _report_unhandled(request.app, exc, request.scope)
    options = _options(request.app)
    response = _response(
        request, http_code=500, message=INTERNAL_ERROR_MESSAGE, code=AppException.internal_code
    )
    cid = get_correlation_id()
    if cid:
        response.headers[options.header_name] = cid
    return response


class CatchAllMiddleware:
    """Answers unhandled exceptions with the 500 envelope, inside the correlation middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            # The client went away (Starlette raises this reading a body after the disconnect,
            # and Database.session before committing): nothing to answer, nothing to log here;
            # the access line records 499.
            return
        except Exception as exc:
            await answer_unhandled(exc, scope, receive, send, started=started)


async def answer_unhandled(
    exc: Exception, scope: Scope, receive: Receive, send: Send, *, started: bool
) -> None:
    """What the catch-all does with an exception that reached it: log it once (with its
    traceback), count and report it, and answer the 500 envelope if the response has not
    started."""
    _log_unhandled(exc)
    app = scope.get("app")
    _observe(app, type(exc).__name__, AppException.internal_code, 500)
    _report_unhandled(app, exc, scope)
    if started:
        # Too late for a 500: the status line is gone. Close the stream; the client sees a
        # truncated response. Re-raising would log the traceback twice.
        return
    content, media_type = error_body(
        http_code=500,
        message=INTERNAL_ERROR_MESSAGE,
        code=AppException.internal_code,
        options=_options(app),
    )
    await Response(content, status_code=500, media_type=media_type)(scope, receive, send)


def add_exception_handlers(
    app: FastAPI,
    *,
    expose_codes: bool = True,
    problem_json: bool = False,
    header_name: str = DEFAULT_HEADER,
    catch_all: bool = True,
) -> None:
    """Register foundation's handlers and the catch-all on ``app``.

    Call before adding the correlation-ID middleware (``foundation.setup`` does this in order):
    middleware added later wraps what was added earlier. The app's OpenAPI document then
    describes these error responses (``foundation.openapi``). ``catch_all=False`` leaves the
    catch-all to a layer that includes it (``foundation.observe.RequestObserver``).
    """
    app.state.foundation_errors = ErrorOptions(
        expose_codes=expose_codes, problem_json=problem_json, header_name=header_name
    )
    app.add_exception_handler(AppException, app_exception_handler)
    app.add_exception_handler(RequestValidationError, validation_exception_handler)
    app.add_exception_handler(StarletteHTTPException, http_exception_handler)
    app.add_exception_handler(Exception, server_error_handler)
    if catch_all:
        app.add_middleware(CatchAllMiddleware)
    document_errors(app)
