"""The typed exception hierarchy of foundation.

    AppException                500  10500  base of everything foundation turns into a response
    ├── ApiException            400  10400  the request cannot be served as asked (domain errors)
    │   ├── InvalidRequest      422  10422  body/query/path failed validation
    │   ├── RouteNotFound       404  10404  no route matches the path
    │   └── MethodNotAllowed    405  10405  the route exists, the method does not
    ├── JobQueueUnavailable     503  25001  a background job could not be handed to its queue
    └── DbException             500  20000  the database failed in a way we do not classify
        ├── RecordNotFound      404  21101  the row asked for does not exist
        ├── DuplicateRecord     409  21102  a unique constraint refused the write
        ├── ReferenceViolation  409  21103  a foreign key refused the write
        ├── ConstraintViolation 422  21104  a NOT NULL or CHECK constraint refused the write
        ├── DbBusy              503  21201  deadlock or serialization failure, retries exhausted
        └── DbUnavailable       503  21202  connection lost, pool or statement timeout

Subclasses only override class attributes. ``external_message`` is sent to clients;
``internal_message`` (class default, or per instance) and ``context`` are logged, never sent.
The class docstring says what causes the error and ``what_to_do`` what a client or support
person should do about it: the error catalogue and the OpenAPI document show both.
Every one is logged at ERROR (so ``obsctl errors top`` ranks it) unless ``log_level`` says
otherwise; route misses (404/405) log at WARNING.
Every class that sets its own ``internal_code`` is registered; a second class claiming a code
that is already taken fails at import time with ``DuplicateInternalCode``.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

_REGISTRY: dict[int, type[AppException]] = {}


class DuplicateInternalCode(TypeError):
    """Two exception classes claim the same ``internal_code``."""


class AppException(Exception):
    """An unexpected error: a bug, or a failure that no more specific error describes.

    The base of everything foundation turns into a response: a safe public face
    (``external_message``, ``internal_code``) and a detailed private one (``internal_message``,
    ``context``). The first paragraph of a class's docstring is the cause the catalogue shows.
    """

    http_code: ClassVar[int] = 500
    external_message: ClassVar[str] = "Internal server error."
    internal_code: ClassVar[int] = 10500
    internal_message: str = "Unexpected application error."
    log_level: ClassVar[str] = "ERROR"
    what_to_do: ClassVar[str] = (
        "Retry later. If it keeps failing, report the correlation_id to the service's support: "
        "the full error is logged under it."
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "internal_code" in cls.__dict__:
            _register(cls)

    def __init__(self, internal_message: str | None = None, **context: Any) -> None:
        if internal_message is not None:
            self.internal_message = internal_message
        self.context: dict[str, Any] = context
        super().__init__(self.internal_message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.internal_message!r})"


def _register(cls: type[AppException]) -> None:
    code = cls.internal_code
    other = _REGISTRY.get(code)
    if other is not None and _qualified(other) != _qualified(cls):
        raise DuplicateInternalCode(
            f"internal_code {code} of {_qualified(cls)} is already used by {_qualified(other)}; "
            "every exception class needs its own code"
        )
    _REGISTRY[code] = cls


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def explain(cls: type[AppException]) -> tuple[str, str]:
    """``(cause, what_to_do)`` of an exception class, each one paragraph on one line.

    The cause is the first paragraph of the class's own docstring only: a subclass without one
    would otherwise show its parent's, which describes a different error.
    """
    own = cls.__dict__.get("__doc__")
    doc = inspect.cleandoc(own) if isinstance(own, str) else ""
    cause = " ".join(doc.split("\n\n")[0].split())
    return cause, " ".join(str(getattr(cls, "what_to_do", "")).split())


def registered_exceptions() -> list[type[AppException]]:
    """Every exception class with its own ``internal_code``, sorted by code."""
    return [_REGISTRY[code] for code in sorted(_REGISTRY)]


_register(AppException)


class ApiException(AppException):
    """The request cannot be served as asked.

    The base of an application's domain errors: the client can usually fix them.
    """

    http_code = 400
    external_message = "The request could not be processed."
    internal_code = 10400
    internal_message = "Request rejected."
    what_to_do = (
        "Change the request as the message says; sending it again unchanged gives the same answer."
    )


class InvalidRequest(ApiException):
    """The body, query or path parameters failed validation."""

    http_code = 422
    external_message = "The request is invalid."
    internal_code = 10422
    internal_message = "Request validation failed."
    what_to_do = (
        "`errors` lists each problem: `loc` says where (body, query or path, then the field) "
        "and `type` what kind. Correct those fields and send again."
    )


class RouteNotFound(ApiException):
    """No route matches the requested path."""

    http_code = 404
    external_message = "Not found."
    internal_code = 10404
    internal_message = "No route matches the path."
    log_level = "WARNING"  # scanners hit unknown paths all day: not an error of ours
    what_to_do = "Check the path (and its prefix and trailing slash) against the API document."


class MethodNotAllowed(ApiException):
    """The path exists but does not accept this HTTP method."""

    http_code = 405
    external_message = "Method not allowed."
    internal_code = 10405
    internal_message = "The route does not accept this method."
    log_level = "WARNING"
    what_to_do = "Use one of the methods that the `Allow` header of the response lists."


class JobQueueUnavailable(AppException):
    """The broker could not be reached in time to enqueue a background job (nothing was sent)."""

    http_code = 503
    external_message = "The service is temporarily unavailable, please retry."
    internal_code = 25001
    internal_message = "Job queue unavailable."
    what_to_do = "Retry after a short wait: the job was not queued."


class DbException(AppException):
    """A database error that no more specific class describes."""

    http_code = 500
    external_message = "A database error occurred."
    internal_code = 20000
    internal_message = "Database error."


class RecordNotFound(DbException):
    """The row that was asked for does not exist."""

    http_code = 404
    external_message = "Record not found."
    internal_code = 21101
    internal_message = "No row matched the query."
    what_to_do = (
        "Check the identifier in the request; the record may never have existed or may have "
        "been deleted."
    )


class DuplicateRecord(DbException):
    """A unique constraint refused the write."""

    http_code = 409
    external_message = "A record with these values already exists."
    internal_code = 21102
    internal_message = "Unique constraint violated."
    what_to_do = (
        "Use another value for the unique field (an email already registered, say), or fetch "
        "the existing record instead of creating it again."
    )


class ReferenceViolation(DbException):
    """A foreign key refused the write (missing parent, or children still refer to it)."""

    http_code = 409
    external_message = "The record refers to, or is referred to by, another record."
    internal_code = 21103
    internal_message = "Foreign key constraint violated."
    what_to_do = (
        "Create the record referred to first (or correct its identifier); to delete, first "
        "remove the records that still refer to it."
    )


class ConstraintViolation(DbException):
    """A NOT NULL or CHECK constraint refused the write."""

    http_code = 422
    external_message = "The record does not satisfy the data rules."
    internal_code = 21104
    internal_message = "NOT NULL or CHECK constraint violated."
    what_to_do = "Send every required field, with a value the service accepts."


class DbBusy(DbException):
    """Deadlock or serialization failure that persisted through every retry."""

    http_code = 503
    external_message = "The service is busy, please retry."
    internal_code = 21201
    internal_message = "Transaction conflict persisted after retries."
    what_to_do = "Retry after a short wait: the transaction that conflicted was rolled back."


class DbUnavailable(DbException):
    """The database could not be reached in time (connection lost, pool or statement timeout)."""

    http_code = 503
    external_message = "The service is temporarily unavailable, please retry."
    internal_code = 21202
    internal_message = "Database unavailable."
    what_to_do = (
        "Retry after a short wait, with backoff. If the failure came during a commit, check "
        "whether the change was made before repeating it."
    )
