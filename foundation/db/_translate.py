"""Database errors → foundation's typed exceptions, by SQLSTATE / driver error number only.

Driver messages are never parsed (they are translated into the server's language and carry
the offending values). What a typed error keeps for the log: ``dialect``, ``sqlstate`` or
``errno``, the driver's error class and, when the driver reports them as fields, the
constraint and table names. Never the SQL text, never parameter values.
"""

from __future__ import annotations

import builtins
import sqlite3
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from sqlalchemy import exc as sa_exc

from foundation.exceptions import (
    ConstraintViolation,
    DbBusy,
    DbException,
    DbUnavailable,
    DuplicateRecord,
    RecordNotFound,
    ReferenceViolation,
)

# --- PostgreSQL: SQLSTATE (asyncpg exposes it as ``sqlstate``) ---------------------------------
_PG_EXACT: dict[str, type[DbException]] = {
    "23505": DuplicateRecord,  # unique_violation
    "23P01": DuplicateRecord,  # exclusion_violation: a conflicting row exists
    "23503": ReferenceViolation,  # foreign_key_violation
    "23001": ReferenceViolation,  # restrict_violation
    "23502": ConstraintViolation,  # not_null_violation
    "23514": ConstraintViolation,  # check_violation
    "40P01": DbBusy,  # deadlock_detected
    "40001": DbBusy,  # serialization_failure
    "55P03": DbBusy,  # lock_not_available (lock_timeout, NOWAIT)
    "57014": DbUnavailable,  # query_canceled (statement_timeout)
    "57P01": DbUnavailable,  # admin_shutdown (pg_terminate_backend)
    "57P02": DbUnavailable,  # crash_shutdown
    "57P03": DbUnavailable,  # cannot_connect_now
    "53300": DbUnavailable,  # too_many_connections
    "25P03": DbUnavailable,  # idle_in_transaction_session_timeout
    "40003": DbUnavailable,  # statement_completion_unknown
}
_PG_CLASS: dict[str, type[DbException]] = {
    "08": DbUnavailable,  # connection exception
    "23": ConstraintViolation,  # any other integrity constraint violation
}
_PG_RETRYABLE = frozenset({"40P01", "40001"})

# --- MySQL / MariaDB: server and client error numbers (``args[0]`` of PyMySQL errors) ----------
_MYSQL: dict[int, type[DbException]] = {
    1062: DuplicateRecord,  # ER_DUP_ENTRY
    1586: DuplicateRecord,  # ER_DUP_ENTRY_WITH_KEY_NAME
    1022: DuplicateRecord,  # ER_DUP_KEY
    1451: ReferenceViolation,  # ER_ROW_IS_REFERENCED_2 (parent still has children)
    1452: ReferenceViolation,  # ER_NO_REFERENCED_ROW_2 (no such parent)
    1216: ReferenceViolation,  # ER_NO_REFERENCED_ROW
    1217: ReferenceViolation,  # ER_ROW_IS_REFERENCED
    1048: ConstraintViolation,  # ER_BAD_NULL_ERROR
    1364: ConstraintViolation,  # ER_NO_DEFAULT_FOR_FIELD (NOT NULL column omitted)
    3819: ConstraintViolation,  # ER_CHECK_CONSTRAINT_VIOLATED (MySQL)
    4025: ConstraintViolation,  # ER_CONSTRAINT_FAILED (MariaDB CHECK)
    1213: DbBusy,  # ER_LOCK_DEADLOCK
    1205: DbBusy,  # ER_LOCK_WAIT_TIMEOUT
    2002: DbUnavailable,  # CR_CONNECTION_ERROR
    2003: DbUnavailable,  # CR_CONN_HOST_ERROR
    2006: DbUnavailable,  # CR_SERVER_GONE_ERROR
    2013: DbUnavailable,  # CR_SERVER_LOST
    2055: DbUnavailable,  # CR_SERVER_LOST_EXTENDED
    1040: DbUnavailable,  # ER_CON_COUNT_ERROR
    1053: DbUnavailable,  # ER_SERVER_SHUTDOWN
    1927: DbUnavailable,  # ER_CONNECTION_KILLED (MariaDB)
    3024: DbUnavailable,  # ER_QUERY_TIMEOUT (MySQL max_execution_time)
    1969: DbUnavailable,  # ER_STATEMENT_TIMEOUT (MariaDB max_statement_time)
}
_MYSQL_RETRYABLE = frozenset({1213})

# --- SQLite: extended result codes (``sqlite_errorcode``) -------------------------------------
_SQLITE: dict[int, type[DbException]] = {
    2067: DuplicateRecord,  # SQLITE_CONSTRAINT_UNIQUE
    1555: DuplicateRecord,  # SQLITE_CONSTRAINT_PRIMARYKEY
    787: ReferenceViolation,  # SQLITE_CONSTRAINT_FOREIGNKEY
    1299: ConstraintViolation,  # SQLITE_CONSTRAINT_NOTNULL
    275: ConstraintViolation,  # SQLITE_CONSTRAINT_CHECK
    19: ConstraintViolation,  # SQLITE_CONSTRAINT (other)
    5: DbUnavailable,  # SQLITE_BUSY
    261: DbUnavailable,  # SQLITE_BUSY_RECOVERY
    517: DbUnavailable,  # SQLITE_BUSY_SNAPSHOT
    773: DbUnavailable,  # SQLITE_BUSY_TIMEOUT
    6: DbUnavailable,  # SQLITE_LOCKED
    262: DbUnavailable,  # SQLITE_LOCKED_SHAREDCACHE
    14: DbUnavailable,  # SQLITE_CANTOPEN
    13: DbUnavailable,  # SQLITE_FULL
}

_DRIVER_MODULES = ("asyncpg", "aiomysql", "asyncmy", "aiosqlite", "sqlalchemy", "pymysql")


@dataclass(frozen=True, slots=True)
class Translation:
    """The typed error for a foreign one, and whether re-running the transaction may help."""

    error: DbException
    retryable: bool


def _driver_error(exc: BaseException) -> BaseException:
    """The innermost error the driver raised (SQLAlchemy's ``orig``, then adapter causes)."""
    inner: BaseException = exc
    if isinstance(exc, sa_exc.DBAPIError) and isinstance(exc.orig, BaseException):
        inner = exc.orig
    # SQLAlchemy's asyncpg adapter wraps asyncpg's own exception as the cause.
    cause = inner.__cause__
    if cause is not None and type(cause).__module__.startswith("asyncpg"):
        return cause
    return inner


def _sqlstate(err: BaseException) -> str | None:
    for attr in ("sqlstate", "pgcode"):
        value = getattr(err, attr, None)
        if isinstance(value, str) and len(value) == 5:
            return value
    return None


def _mysql_errno(err: BaseException) -> int | None:
    module = type(err).__module__
    if not module.startswith(("pymysql", "asyncmy")):
        return None
    if err.args and isinstance(err.args[0], int):
        return int(err.args[0])
    return None


def _sqlite_code(err: BaseException) -> int | None:
    if isinstance(err, sqlite3.Error):
        code = getattr(err, "sqlite_errorcode", None)
        if isinstance(code, int):
            return code
    return None


def _raised_by_driver(tb: TracebackType | None) -> bool:
    """True when a traceback passes through the database stack (asyncpg's bare timeout)."""
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if isinstance(module, str) and module.partition(".")[0] in _DRIVER_MODULES:
            return True
        tb = tb.tb_next
    return False


def translate(exc: BaseException, *, dialect: str) -> Translation | None:
    """The typed error for ``exc``, or ``None`` when ``exc`` is not a database error.

    ``None`` means: let the original exception through unchanged (application errors,
    cancellation, programming errors of the caller).
    """
    if isinstance(exc, DbException):
        return Translation(exc, retryable=bool(exc.context.get("retryable", False)))
    context: dict[str, Any] = {"dialect": dialect}
    if isinstance(exc, sa_exc.NoResultFound):
        return Translation(RecordNotFound(**context), retryable=False)
    if isinstance(exc, sa_exc.MultipleResultsFound):
        return Translation(
            DbException("Query returned more than one row where one was expected.", **context),
            retryable=False,
        )
    if isinstance(exc, sa_exc.TimeoutError):
        # QueuePool: every connection checked out for pool_timeout seconds.
        return Translation(
            DbUnavailable(
                "Connection pool exhausted (pool timeout).", reason="pool_timeout", **context
            ),
            retryable=False,
        )
    if isinstance(exc, OSError):
        # asyncpg's command_timeout raises a bare TimeoutError that SQLAlchemy does not wrap;
        # refused or reset connections can escape as plain OSError too. Only errors raised
        # inside the database stack count: an application's own timeout stays its own.
        if not _raised_by_driver(exc.__traceback__):
            return None
        if isinstance(exc, builtins.TimeoutError):
            message, reason = "Database call timed out (client-side timeout).", "timeout"
        else:
            message, reason = f"Database connection failed ({type(exc).__name__}).", "connection"
        return Translation(DbUnavailable(message, reason=reason, **context), retryable=False)
    if not isinstance(exc, sa_exc.DBAPIError | sqlite3.Error):
        if isinstance(exc, sa_exc.SQLAlchemyError) and not isinstance(
            exc, sa_exc.InvalidRequestError | sa_exc.ArgumentError | sa_exc.CompileError
        ):
            return Translation(
                DbException(f"SQLAlchemy error {type(exc).__name__}.", **context),
                retryable=False,
            )
        return None

    driver = _driver_error(exc)
    context["driver_error"] = type(driver).__name__
    for field in ("constraint_name", "table_name"):
        value = getattr(driver, field, None)
        if isinstance(value, str):
            context[field.removesuffix("_name")] = value
    invalidated = isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
    if invalidated:
        context["connection_invalidated"] = True

    cls: type[DbException] | None = None
    retryable = False
    code_text: str
    # MySQL errors carry a SQLSTATE too, but a coarse one (23000 for every integrity error):
    # the errno decides there.
    if (errno := _mysql_errno(driver)) is not None:
        context["errno"] = errno
        code_text = f"errno {errno}"
        cls = _MYSQL.get(errno)
        retryable = errno in _MYSQL_RETRYABLE
    elif (sqlstate := _sqlstate(driver)) is not None:
        context["sqlstate"] = sqlstate
        code_text = f"sqlstate {sqlstate}"
        cls = _PG_EXACT.get(sqlstate) or _PG_CLASS.get(sqlstate[:2])
        retryable = sqlstate in _PG_RETRYABLE
    elif (code := _sqlite_code(driver)) is not None:
        context["errno"] = code
        code_text = f"code {code}"
        cls = _SQLITE.get(code)
    else:
        code_text = "no error code"

    if cls is None:
        # Lost connections without a code (asyncpg's ConnectionDoesNotExistError surfaces
        # as InterfaceError with connection_invalidated) are still outages.
        cls = DbUnavailable if invalidated else DbException
    if retryable:
        context["retryable"] = True
    message = f"{cls.internal_message} ({dialect} {code_text}, {context['driver_error']})"
    return Translation(cls(message, **context), retryable=retryable)
