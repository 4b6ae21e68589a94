"""The error contract in the OpenAPI document: which errors each operation can answer, and how.

FastAPI documents one error, a 422 with its own ``HTTPValidationError`` body
(``{"detail": [...]}``) that foundation never sends. ``document_errors(app)`` (called by
``add_exception_handlers``, so by ``setup``) wraps ``app.openapi`` so that the document says
what the handlers really answer:

- the error body is a component schema: ``ErrorResponse`` (``ProblemDetails`` with
  ``problem_json``, served as ``application/problem+json``), with ``code`` only when codes are
  exposed, and ``ValidationIssue`` for the items of a 422's ``errors``;
- every operation documents 500; an operation with parameters or a body 422 (in place of
  ``HTTPValidationError``); one with a body 400 (FastAPI's "There was an error parsing the
  body"); one with path parameters 404 (routing answers it when a value does
  not fit the template, a ``%2F`` say); every one 503 when a ``Database`` is attached. A 405
  needs a method the operation does not have, so no operation documents it;
- ``responses=error_responses(OutOfStock, RecordNotFound)`` on a route adds the domain errors it
  raises, grouped by status, one named example per code carrying its external message;
- descriptions give each code's cause and what to do, as in the error catalogue (``explain``).

Responses the application documented itself are left as they are. FastAPI builds the document
on the first request for it and keeps it (``app.openapi_schema``); the rewrite runs inside that
build, once, so requests pay nothing. The pure part is ``rewrite_document``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI

from foundation.correlation import DEFAULT_HEADER
from foundation.exceptions import (
    AppException,
    DbBusy,
    DbException,
    DbUnavailable,
    InvalidRequest,
    RouteNotFound,
    explain,
)

_REF = "#/components/schemas/"
# The key an ``error_responses`` entry carries until the document is rewritten: the qualified
# names of the classes it declares (FastAPI copies response dicts, so no class objects).
_MARKER = "x-foundation-errors"
_DECLARED: dict[str, type[AppException]] = {}
_METHODS = frozenset(("get", "put", "post", "delete", "options", "head", "patch", "trace"))
SAMPLE_CORRELATION_ID = "019a6f3c2b1e7d40a5c9e2f18b3d4c5e"
_SAMPLE_ISSUES = ({"loc": ["body", "email"], "type": "string_pattern_mismatch"},)


@dataclass(frozen=True, slots=True)
class ErrorDocOptions:
    """What the document must say; mirrors the handlers' ``ErrorOptions``."""

    expose_codes: bool = True
    problem_json: bool = False
    header_name: str = DEFAULT_HEADER
    database: bool = False


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def error_responses(*exceptions: type[AppException]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the errors it raises, grouped by status.

    ``@app.post("/orders", responses=foundation.error_responses(OutOfStock, RecordNotFound))``.
    Merge with other responses as a dict (``{**error_responses(...), 200: {...}}``).
    """
    grouped: dict[int | str, dict[str, Any]] = {}
    for cls in exceptions:
        if not (isinstance(cls, type) and issubclass(cls, AppException)):
            raise TypeError(f"error_responses() takes AppException subclasses, not {cls!r}")
        name = _qualified(cls)
        _DECLARED[name] = cls
        entry = grouped.setdefault(cls.http_code, {"description": _phrase(cls.http_code)})
        names = entry.setdefault(_MARKER, [])
        if name not in names:
            names.append(name)
    return grouped


def document_errors(app: FastAPI, *, database: bool | None = None) -> None:
    """Make ``app.openapi()`` document foundation's error responses (once per app).

    ``database=True`` documents 503 everywhere; left ``None``, an app with
    ``app.state.database`` set gets it too.
    """
    if database is not None:
        app.state.foundation_openapi_database = database
    if getattr(app.state, "foundation_openapi_installed", False):
        return
    app.state.foundation_openapi_installed = True
    build: Callable[[], dict[str, Any]] = app.openapi
    # The document last rewritten, held (an id() could be reused by the next build once an
    # app drops its cache with ``app.openapi_schema = None``).
    rewritten: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        document = build()  # FastAPI's own build, cached in app.openapi_schema
        if not rewritten or rewritten[0] is not document:
            rewrite_document(document, _doc_options(app))
            rewritten[:] = [document]
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _doc_options(app: FastAPI) -> ErrorDocOptions:
    errors = getattr(app.state, "foundation_errors", None)
    database = getattr(app.state, "foundation_openapi_database", None)
    if database is None:
        database = getattr(app.state, "database", None) is not None
    return ErrorDocOptions(
        expose_codes=getattr(errors, "expose_codes", True),
        problem_json=getattr(errors, "problem_json", False),
        header_name=getattr(errors, "header_name", DEFAULT_HEADER),
        database=bool(database),
    )


# -- the pure rewrite ----------------------------------------------------------------------------


def rewrite_document(document: dict[str, Any], options: ErrorDocOptions) -> dict[str, Any]:
    """Rewrite an OpenAPI document (as FastAPI builds it) in place; returns it."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    openapi_30 = str(document.get("openapi", "3.1")).startswith("3.0")
    issue_name = _free_name(schemas, "ValidationIssue", _issue_schema())
    schemas[issue_name] = _issue_schema()
    body = _body_schema(options, openapi_30, issue_name)
    body_name = _free_name(schemas, body["title"], body)
    schemas[body_name] = body
    media = "application/problem+json" if options.problem_json else "application/json"
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method in _METHODS and isinstance(operation, dict):
                _rewrite_operation(path, operation, options, media, _REF + body_name)
    _drop_unreferenced(document, ("HTTPValidationError", "ValidationError"))
    return document


@dataclass(frozen=True, slots=True)
class _Entry:
    """One code as the document shows it."""

    name: str
    code: int
    message: str
    cause: str
    what_to_do: str
    validation: bool = False


def _entry(cls: type[AppException]) -> _Entry:
    known = _ENTRIES.get(cls)
    if known is not None:
        return known
    cause, what_to_do = explain(cls)
    _ENTRIES[cls] = entry = _Entry(
        name=cls.__name__,
        code=cls.internal_code,
        message=cls.external_message,
        cause=cause,
        what_to_do=what_to_do,
        validation=issubclass(cls, InvalidRequest),
    )
    return entry


_ENTRIES: dict[type[AppException], _Entry] = {}


# FastAPI raises ``HTTPException(400, "There was an error parsing the body")`` when a body
# cannot be read at all (bytes that are not valid in their encoding); the handler answers it with
# that detail and code 10000 + status, like any HTTPException.
_BODY_PARSE_ERROR = _Entry(
    name="BodyParseError",
    code=10400,
    message="There was an error parsing the body",
    cause="The body could not be read at all (bytes not valid in the encoding it declares).",
    what_to_do="Send the body as UTF-8 JSON, as the operation's request body describes.",
)


def _rewrite_operation(
    path: str, operation: dict[str, Any], options: ErrorDocOptions, media: str, ref: str
) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    wanted: dict[str, list[_Entry]] = {}
    ours: set[str] = set()
    for status, response in responses.items():
        names = response.pop(_MARKER, None) if isinstance(response, dict) else None
        if names:
            ours.add(status)
            wanted[status] = [_entry(_DECLARED[name]) for name in names if name in _DECLARED]
    if "requestBody" in operation:
        wanted.setdefault("400", []).append(_BODY_PARSE_ERROR)
    if _is_fastapi_422(responses.get("422")):
        ours.add("422")
        wanted.setdefault("422", []).insert(0, _entry(InvalidRequest))
    if "{" in path:
        wanted.setdefault("404", []).append(_entry(RouteNotFound))
    server: tuple[type[AppException], ...] = (AppException,)
    if options.database:
        server = (AppException, DbException)
        wanted.setdefault("503", []).extend(map(_entry, (DbBusy, DbUnavailable)))
    wanted.setdefault("500", []).extend(map(_entry, server))
    for status, entries in wanted.items():
        if status in responses and status not in ours:
            continue  # documented by the application: its word stands
        unique = list({entry.code: entry for entry in entries}.values())
        responses[status] = _response(int(status), unique, options, media, ref)
    operation["responses"] = dict(sorted(responses.items(), key=_status_order))


def _status_order(item: tuple[str, Any]) -> tuple[int, str]:
    status = item[0]
    return (0, status) if status[:1].isdigit() else (1, status)


def _is_fastapi_422(response: Any) -> bool:
    if not isinstance(response, dict):
        return False
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return isinstance(schema, dict) and schema.get("$ref") == _REF + "HTTPValidationError"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _response(
    status: int, entries: list[_Entry], options: ErrorDocOptions, media: str, ref: str
) -> dict[str, Any]:
    lines = []
    examples: dict[str, Any] = {}
    for entry in entries:
        advice = f"What to do: {entry.what_to_do}" if entry.what_to_do else ""
        text = " ".join(part for part in (entry.cause, advice) if part)
        lines.append(f'- **{entry.code}** `{entry.name}` ("{entry.message}"): {text}'.rstrip())
        name = entry.name if entry.name not in examples else f"{entry.name}_{entry.code}"
        examples[name] = {
            "summary": f"{entry.code}: {entry.message}",
            "description": text,
            "value": _example_body(status, entry, options),
        }
    return {
        "description": f"{_phrase(status)}.\n\n" + "\n".join(lines),
        "headers": {
            options.header_name: {
                "description": "The request's correlation ID (also in the body).",
                "schema": {"type": "string"},
            }
        },
        "content": {media: {"schema": {"$ref": ref}, "examples": examples}},
    }


def _example_body(status: int, entry: _Entry, options: ErrorDocOptions) -> dict[str, Any]:
    body: dict[str, Any]
    if options.problem_json:
        body = {"type": "about:blank", "title": _phrase(status), "status": status}
        body["detail"] = entry.message
    else:
        body = {"message": entry.message}
    if options.expose_codes:
        body["code"] = entry.code
    body["correlation_id"] = SAMPLE_CORRELATION_ID
    if entry.validation:
        body["errors"] = [dict(issue) for issue in _SAMPLE_ISSUES]
    return body


def _issue_schema() -> dict[str, Any]:
    return {
        "title": "ValidationIssue",
        "type": "object",
        "description": "Where a request failed validation and what kind of failure; never the "
        "input value.",
        "properties": {
            "loc": {
                "type": "array",
                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "description": "body, query, path or header, then the field's path.",
            },
            "type": {"type": "string", "description": "pydantic's error type."},
        },
        "required": ["loc", "type"],
        "additionalProperties": False,
    }


def _body_schema(options: ErrorDocOptions, openapi_30: bool, issue_name: str) -> dict[str, Any]:
    cid: dict[str, Any] = (
        {"type": "string", "nullable": True}
        if openapi_30
        else {"anyOf": [{"type": "string"}, {"type": "null"}]}
    )
    cid["description"] = "The request's correlation ID: quote it to support."
    properties: dict[str, Any]
    if options.problem_json:
        properties = {
            "type": {"type": "string", "description": "Always about:blank."},
            "title": {"type": "string", "description": "The HTTP status phrase."},
            "status": {"type": "integer", "description": "The HTTP status code."},
            "detail": {"type": "string", "description": "What went wrong, safe to show."},
        }
        title = "ProblemDetails"
        description = "An error, as RFC 9457 problem details with foundation's extension members."
    else:
        properties = {
            "message": {"type": "string", "description": "What went wrong, safe to show."}
        }
        title = "ErrorResponse"
        description = "Every error response of this service has this body."
    if options.expose_codes:
        properties["code"] = {
            "type": "integer",
            "description": "Which error: the same code always means the same error (see the error "
            "catalogue).",
        }
    properties["correlation_id"] = cid
    properties["errors"] = {
        "type": "array",
        "items": {"$ref": _REF + issue_name},
        "description": "On validation errors (422) only: each field that failed.",
    }
    required = [key for key in properties if key != "errors"]
    return {
        "title": title,
        "type": "object",
        "description": description,
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _free_name(schemas: dict[str, Any], preferred: str, schema: dict[str, Any]) -> str:
    """``preferred``, unless the application has a different schema of that name."""
    existing = schemas.get(preferred)
    if existing is None or existing == schema:
        return preferred
    return f"Foundation{preferred}"


def _drop_unreferenced(document: dict[str, Any], names: tuple[str, ...]) -> None:
    schemas = document.get("components", {}).get("schemas", {})
    for name in names:  # in order: HTTPValidationError is what refers to ValidationError
        if name in schemas:
            others = {k: v for k, v in schemas.items() if k != name}
            rest = {**document, "components": {**document["components"], "schemas": others}}
            if (f'"{_REF}{name}"').encode() not in orjson.dumps(rest):
                del schemas[name]
