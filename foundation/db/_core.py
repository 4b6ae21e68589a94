"""``Database`` (engine owner) and ``DbManager`` (one transaction), plus the FastAPI dependency."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

import anyio
from fastapi import Depends, Request
from loguru import logger
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from starlette.requests import ClientDisconnect

from foundation.db._translate import translate
from foundation.exceptions import DbBusy, DbException

T = TypeVar("T")


class TransactionObserver(Protocol):
    """Called once per transaction; ``outcome`` is ``commit``, ``rollback`` or ``error``."""

    def __call__(self, outcome: str, seconds: float) -> None: ...


class Database:
    """Owns one async engine and its session factory.

    Constructing it does no I/O and creates no engine, so it can live at module level; the
    engine is created by ``await db.start()`` (call it in the app's lifespan) or on first use,
    and released by ``await db.dispose()``. A disposed Database starts again on next use.

    Keyword options (everything else goes to ``create_async_engine``):

    - ``statement_timeout`` (seconds, default 30, ``None`` disables): server-side statement
      timeout on PostgreSQL and MariaDB, plus a client-side guard a second later (asyncpg's
      ``command_timeout``, a socket read timeout for aiomysql) so that a silent network
      fails instead of hanging.
    - ``connect_timeout`` (seconds, default 10).
    - ``application_name`` (PostgreSQL; default ``"foundation"``), visible in ``pg_stat_activity``.
    - ``busy_timeout`` (SQLite, seconds, default 5): how long a writer waits for the lock.
    - ``sqlite_synchronous`` (SQLite, default ``"NORMAL"``): with WAL, NORMAL never corrupts
      and survives an application crash; a power loss may drop the last commits. ``"FULL"``
      syncs every commit (several times slower on most disks).
    - ``cleanup_timeout`` (seconds, default 5): bound on a rollback after a failure; past it the
      connection is invalidated instead of returned to the pool.
    - ``observers``: ``TransactionObserver`` callables, also reachable as the public list
      ``transaction_observers``.
    - ``retry_base_delay`` / ``retry_max_delay`` / ``retry_budget`` (seconds): defaults of
      ``run``'s backoff.
    """

    def __init__(
        self,
        url: str | URL,
        *,
        statement_timeout: float | None = 30.0,
        connect_timeout: float = 10.0,
        application_name: str = "foundation",
        busy_timeout: float = 5.0,
        sqlite_synchronous: str = "NORMAL",
        cleanup_timeout: float = 5.0,
        observers: Iterable[TransactionObserver] = (),
        retry_base_delay: float = 0.05,
        retry_max_delay: float = 1.0,
        retry_budget: float = 10.0,
        **engine_options: Any,
    ) -> None:
        self.url: URL = make_url(url)
        self.dialect: str = self.url.get_backend_name()
        self.statement_timeout = statement_timeout
        self.connect_timeout = connect_timeout
        self.application_name = application_name
        self.busy_timeout = busy_timeout
        if sqlite_synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(
                f"sqlite_synchronous must be OFF, NORMAL, FULL or EXTRA, got {sqlite_synchronous!r}"
            )
        self.sqlite_synchronous = sqlite_synchronous.upper()
        self.cleanup_timeout = cleanup_timeout
        self.retry_base_delay = retry_base_delay
        self.retry_max_delay = retry_max_delay
        self.retry_budget = retry_budget
        self.transaction_observers: list[TransactionObserver] = list(observers)
        self._engine_options = engine_options
        self._engine: AsyncEngine | None = None
        self._sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.session: Callable[..., Awaitable[AsyncSession]] = _session_dependency(
            lambda _request: self
        )
        """FastAPI dependency: ``session: AsyncSession = Depends(db.session)``.

        The transaction commits when the endpoint returns and before the response is sent,
        so a failing commit becomes the error response (it is a function-scoped dependency
        under the hood)."""

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the engine now (in the app's lifespan) rather than on first use."""
        self._ensure_engine()

    async def dispose(self) -> None:
        """Close every pooled connection; the next use (or ``start``) creates a new engine."""
        engine, self._engine, self._sessionmaker, self._loop = self._engine, None, None, None
        if engine is not None:
            await engine.dispose()

    @property
    def engine(self) -> AsyncEngine:
        """The engine, created on first access."""
        return self._ensure_engine()[0]

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        """``async_sessionmaker(engine, expire_on_commit=False)``, created with the engine."""
        return self._ensure_engine()[1]

    def _ensure_engine(self) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if self._engine is not None and self._sessionmaker is not None:
            if loop is None or self._loop is None or self._loop is loop:
                if self._loop is None:
                    self._loop = loop
                return self._engine, self._sessionmaker
            # The previous event loop (an earlier app lifecycle that skipped dispose) owns
            # these connections; they cannot be closed from here, only forgotten.
            logger.warning(
                "database engine re-created for a new event loop (dispose() was not awaited)",
                dialect=self.dialect,
            )
            self._engine.sync_engine.dispose(close=False)
        engine = self._create_engine()
        self._engine = engine
        self._sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        self._loop = loop
        return engine, self._sessionmaker

    def _create_engine(self) -> AsyncEngine:
        options: dict[str, Any] = {"pool_pre_ping": True, "hide_parameters": True}
        connect_args: dict[str, Any] = {}
        driver = self.url.get_driver_name()
        client_timeout = None if self.statement_timeout is None else self.statement_timeout + 1.0
        if self.dialect == "sqlite":
            _create_sqlite_parent(self.url)
            connect_args["timeout"] = self.busy_timeout
        else:
            options.update(pool_timeout=10.0, pool_recycle=1800)
        if driver == "asyncpg":
            server_settings = {"application_name": self.application_name}
            if self.statement_timeout is not None:
                server_settings["statement_timeout"] = str(int(self.statement_timeout * 1000))
            connect_args.update(
                timeout=self.connect_timeout,
                command_timeout=client_timeout,
                server_settings=server_settings,
            )
        elif driver == "aiomysql":
            connect_args["connect_timeout"] = self.connect_timeout
        user_connect_args = self._engine_options.get("connect_args", {})
        if "server_settings" in user_connect_args and "server_settings" in connect_args:
            merged = {**connect_args["server_settings"], **user_connect_args["server_settings"]}
            user_connect_args = {**user_connect_args, "server_settings": merged}
        options.update(self._engine_options)
        options["connect_args"] = {**connect_args, **user_connect_args}
        engine = create_async_engine(self.url, **options)
        if self.dialect == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_on_connect(self.sqlite_synchronous))
        elif driver == "aiomysql":
            event.listen(
                engine.sync_engine,
                "connect",
                _aiomysql_on_connect(self.statement_timeout, client_timeout),
            )
        return engine

    # --- units of work ---------------------------------------------------------------------

    async def run(
        self,
        fn: Callable[[AsyncSession], Awaitable[T]],
        *,
        retries: int = 3,
        budget: float | None = None,
    ) -> T:
        """Run ``fn(session)`` in its own transaction; re-run it from the start on deadlock or
        serialization failure, up to ``retries`` more times, with full-jitter exponential
        backoff, while the whole call stays within ``budget`` seconds (default
        ``retry_budget``). Then the ``DbBusy`` of the last attempt is raised. Integrity and
        other errors are never retried. ``fn`` must be safe to run again (no side effects
        outside the transaction)."""
        deadline = time.monotonic() + (self.retry_budget if budget is None else budget)
        attempt = 0
        while True:
            attempt += 1
            try:
                async with DbManager(database=self) as session:
                    return await fn(session)
            except DbBusy as exc:
                if not exc.context.get("retryable"):
                    raise
                cap = min(self.retry_max_delay, self.retry_base_delay * 2 ** (attempt - 1))
                delay = random.uniform(0.0, cap)
                exc.context["attempts"] = attempt
                if attempt > retries or time.monotonic() + delay >= deadline:
                    exc.internal_message += f"; gave up after {attempt} attempt(s)"
                    raise
                code = {k: exc.context[k] for k in ("sqlstate", "errno") if k in exc.context}
                logger.warning(
                    "transaction retried",
                    attempt=attempt,
                    delay_ms=round(delay * 1000, 3),
                    dialect=self.dialect,
                    **code,
                )
                await asyncio.sleep(delay)

    def _observe(self, outcome: str, seconds: float) -> None:
        for observer in self.transaction_observers:
            try:
                observer(outcome, seconds)
            except Exception:
                logger.opt(exception=True).warning(
                    "transaction observer failed", observer=repr(observer)
                )


class DbManager:
    """One transaction: ``async with DbManager(database=db) as session: ...``.

    Commits when the block ends normally; rolls back on any exception (cancellation
    included) and always returns the connection to the pool. Database errors, from a
    statement or from the commit, are raised as foundation's typed errors (``DuplicateRecord``,
    ``DbUnavailable``, …) with the driver error as ``__cause__``; other exceptions pass through
    unchanged after the rollback.

    With ``suppress_exc=True`` a database error is logged (ERROR, with its ``internal_code``)
    and swallowed; afterwards ``failed`` is True and ``error`` holds the typed error.
    Non-database exceptions (bugs, cancellation) are never swallowed.
    """

    def __init__(self, database: Database, *, suppress_exc: bool = False) -> None:
        self.database = database
        self.suppress_exc = suppress_exc
        self.failed = False
        self.error: BaseException | None = None
        self._session: AsyncSession | None = None
        self._started = 0.0

    # The seed spelling, ``Depends(DbManager.get_session)``: the Database is found on
    # ``request.app.state.database``.
    get_session: Callable[..., Awaitable[AsyncSession]]

    async def __aenter__(self) -> AsyncSession:
        if self._session is not None:
            raise RuntimeError("DbManager is already in use; create one per transaction")
        self.failed = False
        self.error = None
        self._started = time.perf_counter()
        self._session = self.database.sessionmaker()
        return self._session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        session, self._session = self._session, None
        assert session is not None, "__aexit__ without __aenter__"
        try:
            if exc is None:
                try:
                    await session.commit()
                except BaseException as commit_exc:
                    await self._discard(session)
                    if self._handle(commit_exc):
                        return True
                    raise
                self._finish("commit")
                return False
            await self._discard(session)
            return self._handle(exc)
        finally:
            # Shielded (a cancelled task must still hand its connection back) and bounded.
            with anyio.move_on_after(self.database.cleanup_timeout, shield=True):
                await session.close()

    def _handle(self, exc: BaseException) -> bool:
        """Record the failure; raise the typed error, swallow it, or let ``exc`` through."""
        self.failed = True
        translation = (
            None
            if isinstance(exc, DbException | asyncio.CancelledError)
            else translate(exc, dialect=self.database.dialect)
        )
        if translation is None:
            self.error = exc
            self._finish("rollback")
            if self.suppress_exc and isinstance(exc, DbException):
                self._log_suppressed(exc)
                return True
            return False
        error = translation.error
        self.error = error
        self._finish("error")
        if self.suppress_exc:
            error.__cause__ = exc
            self._log_suppressed(error)
            return True
        raise error from exc

    def _log_suppressed(self, error: DbException) -> None:
        logger.bind(
            internal_code=error.internal_code,
            http_code=error.http_code,
            exception_type=type(error).__name__,
            **error.context,
        ).log(error.log_level, error.internal_message)

    def _finish(self, outcome: str) -> None:
        seconds = time.perf_counter() - self._started
        logger.debug(
            "transaction committed" if outcome == "commit" else "transaction rolled back",
            duration_ms=round(seconds * 1000, 3),
            outcome=outcome,
            dialect=self.database.dialect,
        )
        if self.database.transaction_observers:
            self.database._observe(outcome, seconds)

    async def _discard(self, session: AsyncSession) -> None:
        """Roll back; if that fails or hangs, invalidate the connection instead, so that the
        pool never receives a connection in an unknown state. Shielded: this runs while the
        task is being cancelled, and anyio re-delivers cancellation at every await."""
        with anyio.move_on_after(self.database.cleanup_timeout, shield=True):
            try:
                await session.rollback()
                return
            except Exception as exc:
                logger.debug(
                    "rollback failed, invalidating the connection",
                    error=type(exc).__name__,
                    dialect=self.database.dialect,
                )
        with anyio.move_on_after(self.database.cleanup_timeout, shield=True):
            try:
                await session.invalidate()
            except Exception as exc:
                logger.debug(
                    "invalidating the connection failed",
                    error=type(exc).__name__,
                    dialect=self.database.dialect,
                )


def _session_dependency(
    resolve: Callable[[Request], Database],
) -> Callable[..., Awaitable[AsyncSession]]:
    """A FastAPI dependency yielding a session whose transaction ends before the response.

    FastAPI (0.118+) runs the exit code of ``yield`` dependencies after the response has been
    sent, unless the dependency is declared with ``scope="function"``. Users write a plain
    ``Depends(db.session)``, so the scope is set here, on an inner generator; the outer
    callable is a coroutine, which FastAPI allows to depend on a function-scoped generator.
    """

    async def transaction(request: Request) -> AsyncIterator[AsyncSession]:
        async with DbManager(database=resolve(request)) as session:
            yield session
            # A client that went away gets no answer: its write is rolled back, not committed
            # behind its back (the access line records 499). One non-blocking receive.
            if await request.is_disconnected():
                raise ClientDisconnect

    # A default, not Annotated[...]: annotations are strings here and FastAPI resolves them
    # in module globals, where the local ``transaction`` does not exist.
    async def session(
        session: AsyncSession = Depends(transaction, scope="function"),  # noqa: B008
    ) -> AsyncSession:
        return session

    return session


def _app_database(request: Request) -> Database:
    database = getattr(request.app.state, "database", None)
    if not isinstance(database, Database):
        raise RuntimeError(
            "DbManager.get_session needs app.state.database = Database(...); "
            "or use Depends(db.session)"
        )
    return database


DbManager.get_session = staticmethod(_session_dependency(_app_database))


def _create_sqlite_parent(url: URL) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    Path(database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_on_connect(synchronous: str) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
        finally:
            cursor.close()

    return on_connect


def _aiomysql_on_connect(
    statement_timeout: float | None, read_timeout: float | None
) -> Callable[[Any, Any], None]:
    """Per connection: MariaDB's server-side ``max_statement_time`` and a client-side read
    timeout. aiomysql has no read timeout, so without one a silent network (a black hole)
    hangs a request forever; past it the connection is closed and the error is PyMySQL's
    2013 "lost connection", which SQLAlchemy treats as a disconnect."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        raw = dbapi_connection.driver_connection
        if statement_timeout is not None and "mariadb" in str(raw.get_server_info()).lower():
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"SET SESSION max_statement_time = {float(statement_timeout)}")
            finally:
                cursor.close()
        if read_timeout is not None:
            raw._read_bytes = _timed_reader(raw, read_timeout)

    return on_connect


def _timed_reader(raw: Any, timeout: float) -> Callable[[int], Awaitable[bytes]]:
    from pymysql.err import OperationalError  # type: ignore[import-untyped]

    read = raw._read_bytes

    async def read_bytes(num_bytes: int) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                data: bytes = await read(num_bytes)
                return data
        except TimeoutError as exc:
            raw.close()
            raise OperationalError(
                2013, "Lost connection to MySQL server during query (read timeout)"
            ) from exc

    return read_bytes
