"""DbManager on SQLite (the embedded default), the translation table, retries, timing, and the
FastAPI dependency over HTTP. PostgreSQL and MariaDB faults: test_db_pg.py, test_db_mysql.py."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import Depends, FastAPI
from loguru import logger
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import foundation
from foundation.db import Database, DbManager, translate
from foundation.exceptions import (
    ConstraintViolation,
    DbBusy,
    DbException,
    DbUnavailable,
    DuplicateRecord,
    RecordNotFound,
    ReferenceViolation,
)
from tests.support import free_port

SCHEMA = (
    "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
    "CREATE TABLE item (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE,"
    " qty INTEGER NOT NULL DEFAULT 0 CHECK (qty >= 0),"
    " parent_id INTEGER REFERENCES parent(id))",
    "INSERT INTO parent (id) VALUES (1)",
)


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "item"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str]


@contextmanager
def captured(level: str = "DEBUG") -> Iterator[list[dict[str, Any]]]:
    """Loguru records (``record`` dicts) emitted while the block runs."""
    records: list[dict[str, Any]] = []
    handler = logger.add(lambda message: records.append(message.record), level=level)
    try:
        yield records
    finally:
        logger.remove(handler)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/data/app.db", busy_timeout=0.2)
    async with DbManager(database=database) as session:
        for statement in SCHEMA:
            await session.execute(text(statement))
    yield database
    await database.dispose()


async def count(db: Database, where: str = "1=1") -> int:
    async with db.engine.connect() as conn:
        return int(
            (await conn.execute(text(f"SELECT count(*) FROM item WHERE {where}"))).scalar_one()
        )


# --- lifecycle ---------------------------------------------------------------------------------


async def test_construction_does_no_io_and_first_use_creates_the_directory(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/nested/dir/app.db")
    assert not (tmp_path / "nested").exists()
    async with DbManager(database=db) as session:
        mode = (await session.execute(text("PRAGMA journal_mode"))).scalar_one()
        fks = (await session.execute(text("PRAGMA foreign_keys"))).scalar_one()
        sync = (await session.execute(text("PRAGMA synchronous"))).scalar_one()
    await db.dispose()
    assert (tmp_path / "nested" / "dir" / "app.db").is_file()
    assert (mode, fks, sync) == ("wal", 1, 1)  # synchronous 1 = NORMAL


def test_unknown_sqlite_synchronous_is_refused() -> None:
    with pytest.raises(ValueError, match="sqlite_synchronous"):
        Database("sqlite+aiosqlite:///x.db", sqlite_synchronous="SOMETIMES")


def test_two_app_lifecycles_on_separate_event_loops(tmp_path: Path) -> None:
    """Module-level Database, lifespan start/dispose, run twice with asyncio.run."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/app.db")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await db.start()
        yield
        await db.dispose()

    async def one_lifecycle(n: int) -> int:
        app = FastAPI(lifespan=lifespan)

        @app.post("/rows")
        async def add(session: AsyncSession = Depends(db.session)) -> dict[str, int]:  # noqa: B008
            await session.execute(text("CREATE TABLE IF NOT EXISTS t (n INTEGER)"))
            await session.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
            return {"n": n}

        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.post("/rows")).status_code == 200
            async with DbManager(database=db) as session:
                return int((await session.execute(text("SELECT count(*) FROM t"))).scalar_one())

    assert asyncio.run(one_lifecycle(1)) == 1
    assert asyncio.run(one_lifecycle(2)) == 2


# The first loop's connections cannot be closed from the second loop: they are dropped, and
# aiosqlite reports them as unclosed. That is the cost of skipping dispose(), shown here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_engine_left_undisposed_is_replaced_on_a_new_loop(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/app.db")

    async def use() -> int:
        async with DbManager(database=db) as session:
            return int((await session.execute(text("SELECT 1"))).scalar_one())

    with captured("WARNING") as records:
        assert asyncio.run(use()) == 1
        assert asyncio.run(use()) == 1  # would be "attached to a different loop" otherwise
        asyncio.run(db.dispose())
    # Finalise the dropped connections now, while this test's filter is in force; left to the
    # collector, their warning would fail whichever test happens to be running then.
    gc.collect()
    assert [r["message"] for r in records] == [
        "database engine re-created for a new event loop (dispose() was not awaited)"
    ]


# --- commit / rollback -------------------------------------------------------------------------


async def test_commit_on_success_and_rollback_on_application_error(db: Database) -> None:
    async with DbManager(database=db) as session:
        await session.execute(text("INSERT INTO item (email) VALUES ('a@x')"))
    with pytest.raises(ValueError, match="business rule"):
        async with DbManager(database=db) as session:
            await session.execute(text("INSERT INTO item (email) VALUES ('b@x')"))
            raise ValueError("business rule")
    assert await count(db) == 1
    assert await count(db, "email = 'b@x'") == 0
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_orm_objects_stay_readable_after_commit(db: Database) -> None:
    """expire_on_commit=False: no reload after the block (it would be MissingGreenlet)."""
    async with DbManager(database=db) as session:
        item = Item(email="kept@x")
        session.add(item)
    assert (item.id, item.email) == (1, "kept@x")


@pytest.mark.parametrize(
    ("statement", "expected", "errno"),
    [
        ("INSERT INTO item (email) VALUES ('dup@x')", DuplicateRecord, 2067),
        ("INSERT INTO parent (id) VALUES (1)", DuplicateRecord, 1555),
        ("INSERT INTO item (email, parent_id) VALUES ('fk@x', 99)", ReferenceViolation, 787),
        ("INSERT INTO item (email) VALUES (NULL)", ConstraintViolation, 1299),
        ("INSERT INTO item (email, qty) VALUES ('neg@x', -1)", ConstraintViolation, 275),
    ],
)
async def test_sqlite_integrity_errors_are_typed(
    db: Database, statement: str, expected: type[DbException], errno: int
) -> None:
    async with DbManager(database=db) as session:
        await session.execute(text("INSERT INTO item (email) VALUES ('dup@x')"))
    with pytest.raises(expected) as caught:
        async with DbManager(database=db) as session:
            await session.execute(text("INSERT INTO item (email) VALUES ('partial@x')"))
            await session.execute(text(statement))
    error = caught.value
    assert type(error) is expected
    assert error.context["errno"] == errno
    assert error.context["dialect"] == "sqlite"
    assert isinstance(error.__cause__, sa_exc.IntegrityError)
    assert "dup@x" not in error.internal_message and "INSERT" not in error.internal_message
    assert await count(db, "email = 'partial@x'") == 0  # no partial write


async def test_unique_violation_raised_by_commit_is_typed(db: Database) -> None:
    """The ORM flushes inside commit(): the error comes from commit, not from the block."""
    async with DbManager(database=db) as session:
        session.add(Item(email="c@x"))
    manager = DbManager(database=db)
    with pytest.raises(DuplicateRecord):
        async with manager as session:
            session.add(Item(email="ok@x"))
            session.add(Item(email="c@x"))
    assert manager.failed and isinstance(manager.error, DuplicateRecord)
    assert await count(db, "email = 'ok@x'") == 0


async def test_deferred_foreign_key_violation_at_commit_is_typed(db: Database) -> None:
    """SQLite checks deferred foreign keys in COMMIT itself (error code 787 from commit)."""
    with pytest.raises(ReferenceViolation) as caught:
        async with DbManager(database=db) as session:
            await session.execute(text("PRAGMA defer_foreign_keys = ON"))
            await session.execute(text("INSERT INTO item (email, parent_id) VALUES ('d@x', 7)"))
    assert caught.value.context["errno"] == 787
    assert await count(db, "email = 'd@x'") == 0


async def test_no_row_is_record_not_found(db: Database) -> None:
    with pytest.raises(RecordNotFound) as caught:
        async with DbManager(database=db) as session:
            (await session.execute(text("SELECT id FROM item WHERE id = 42"))).scalar_one()
    assert caught.value.http_code == 404
    assert isinstance(caught.value.__cause__, sa_exc.NoResultFound)


async def test_sqlite_busy_is_unavailable_within_the_busy_timeout(
    db: Database, tmp_path: Path
) -> None:
    blocker = sqlite3.connect(tmp_path / "data" / "app.db", isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(DbUnavailable) as caught:
            async with DbManager(database=db) as session:
                await session.execute(text("INSERT INTO item (email) VALUES ('w@x')"))
        elapsed = time.monotonic() - started
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert caught.value.context["errno"] == 5
    assert elapsed < 5
    async with DbManager(database=db) as session:  # the pool recovered
        await session.execute(text("INSERT INTO item (email) VALUES ('w@x')"))
    assert await count(db, "email = 'w@x'") == 1


async def test_cancellation_rolls_back_and_returns_the_connection(db: Database) -> None:
    entered = asyncio.Event()

    async def writer() -> None:
        async with DbManager(database=db) as session:
            await session.execute(text("INSERT INTO item (email) VALUES ('cancel@x')"))
            entered.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(writer())
    async with asyncio.timeout(5):
        await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert await count(db, "email = 'cancel@x'") == 0


async def test_timeout_raised_by_application_code_is_not_a_database_error(db: Database) -> None:
    with pytest.raises(TimeoutError) as caught:
        async with DbManager(database=db) as session:
            await session.execute(text("INSERT INTO item (email) VALUES ('t@x')"))
            raise TimeoutError("upstream API")
    assert not isinstance(caught.value, DbException)
    assert await count(db, "email = 't@x'") == 0


async def test_manager_is_not_reentrant(db: Database) -> None:
    manager = DbManager(database=db)
    async with manager:
        with pytest.raises(RuntimeError, match="already in use"):
            await manager.__aenter__()


# --- suppress_exc ------------------------------------------------------------------------------


async def test_suppress_exc_logs_the_typed_error_and_reports_failure(db: Database) -> None:
    manager = DbManager(database=db, suppress_exc=True)
    with captured("ERROR") as records:
        async with manager as session:
            await session.execute(text("INSERT INTO item (email) VALUES (NULL)"))
    assert manager.failed
    assert isinstance(manager.error, ConstraintViolation)
    [record] = records
    assert record["extra"]["internal_code"] == 21104
    assert record["extra"]["errno"] == 1299
    assert record["extra"]["dialect"] == "sqlite"
    # a later, successful block resets the state
    async with manager as session:
        await session.execute(text("INSERT INTO item (email) VALUES ('fine@x')"))
    assert not manager.failed and manager.error is None


async def test_suppress_exc_never_swallows_bugs(db: Database) -> None:
    manager = DbManager(database=db, suppress_exc=True)
    with pytest.raises(KeyError):
        async with manager as session:
            await session.execute(text("INSERT INTO item (email) VALUES ('bug@x')"))
            raise KeyError("bug")
    assert manager.failed and isinstance(manager.error, KeyError)
    assert await count(db, "email = 'bug@x'") == 0


# --- timing and observers ----------------------------------------------------------------------


async def test_every_transaction_is_timed_logged_and_observed(db: Database) -> None:
    seen: list[tuple[str, float]] = []

    def broken(_outcome: str, _seconds: float) -> None:
        raise RuntimeError("observer bug")

    db.transaction_observers.extend([lambda o, s: seen.append((o, s)), broken])
    with captured("DEBUG") as records:
        async with DbManager(database=db) as session:
            await session.execute(text("INSERT INTO item (email) VALUES ('o@x')"))
        with pytest.raises(LookupError):
            async with DbManager(database=db):
                raise LookupError
        with pytest.raises(DuplicateRecord):
            async with DbManager(database=db) as session:
                await session.execute(text("INSERT INTO item (email) VALUES ('o@x')"))
    assert [o for o, _ in seen] == ["commit", "rollback", "error"]
    assert all(0 <= s < 5 for _, s in seen)
    ends = ("transaction committed", "transaction rolled back")
    lines = [r for r in records if r["message"] in ends]
    assert [(r["message"], r["extra"]["outcome"]) for r in lines] == [
        ("transaction committed", "commit"),
        ("transaction rolled back", "rollback"),
        ("transaction rolled back", "error"),
    ]
    assert all(r["extra"]["dialect"] == "sqlite" and r["extra"]["duration_ms"] >= 0 for r in lines)
    failures = [r for r in records if r["message"] == "transaction observer failed"]
    assert len(failures) == 3 and all(r["level"].name == "WARNING" for r in failures)


async def test_observers_given_to_the_constructor(tmp_path: Path) -> None:
    seen: list[str] = []
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/o.db", observers=[lambda o, _s: seen.append(o)])
    async with DbManager(database=db):
        pass
    await db.dispose()
    assert seen == ["commit"]


# --- retries -----------------------------------------------------------------------------------


class _FakeDriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__("fake")
        self.sqlstate = sqlstate


def _conflict(sqlstate: str = "40P01") -> sa_exc.DBAPIError:
    return sa_exc.DBAPIError("UPDATE ...", None, _FakeDriverError(sqlstate))


async def test_run_retries_the_whole_transaction_until_it_succeeds(db: Database) -> None:
    attempts = 0

    async def work(session: AsyncSession) -> int:
        nonlocal attempts
        attempts += 1
        await session.execute(text("INSERT INTO item (email) VALUES (:e)"), {"e": f"r{attempts}@x"})
        if attempts < 3:
            raise _conflict("40001")
        return attempts

    with captured("WARNING") as records:
        assert await db.run(work, retries=3) == 3
    assert await count(db) == 1  # attempts 1 and 2 were rolled back
    assert await count(db, "email = 'r3@x'") == 1
    retried = [r["extra"] for r in records if r["message"] == "transaction retried"]
    assert [(r["attempt"], r["sqlstate"]) for r in retried] == [(1, "40001"), (2, "40001")]


async def test_run_gives_up_after_the_retries_with_db_busy(db: Database) -> None:
    attempts = 0

    async def always_deadlocked(session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        raise _conflict()

    db.retry_base_delay = 0.01
    started = time.monotonic()
    with pytest.raises(DbBusy) as caught:
        await db.run(always_deadlocked, retries=3)
    assert attempts == 4
    assert time.monotonic() - started < 1.0  # at most 0.01 + 0.02 + 0.04 of backoff
    assert caught.value.http_code == 503
    assert caught.value.context["attempts"] == 4
    assert "gave up after 4 attempt(s)" in caught.value.internal_message


async def test_run_stops_when_the_time_budget_is_spent(db: Database) -> None:
    attempts = 0

    async def always_deadlocked(session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.15)
        raise _conflict()

    started = time.monotonic()
    with pytest.raises(DbBusy):
        await db.run(always_deadlocked, retries=100, budget=0.5)
    assert time.monotonic() - started < 1.5
    assert 1 <= attempts <= 4


async def test_run_never_retries_integrity_errors(db: Database) -> None:
    attempts = 0

    async def duplicate(session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        await session.execute(text("INSERT INTO parent (id) VALUES (1)"))

    with pytest.raises(DuplicateRecord):
        await db.run(duplicate, retries=3)
    assert attempts == 1


# --- translation table (no server needed; the servers are exercised in the other files) --------


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__("server text that is never parsed")
        self.sqlstate = sqlstate


def _mysql_error(errno: int) -> Exception:
    from pymysql.err import OperationalError  # type: ignore[import-untyped]

    return OperationalError(errno, "server text that is never parsed")  # type: ignore[no-any-return]


def _sqlite_error(code: int) -> sqlite3.Error:
    error = sqlite3.IntegrityError("server text that is never parsed")
    error.sqlite_errorcode = code
    return error


@pytest.mark.parametrize(
    ("driver_error", "dialect", "expected", "retryable"),
    [
        (_PgError("23505"), "postgresql", DuplicateRecord, False),
        (_PgError("23503"), "postgresql", ReferenceViolation, False),
        (_PgError("23502"), "postgresql", ConstraintViolation, False),
        (_PgError("23514"), "postgresql", ConstraintViolation, False),
        (_PgError("40P01"), "postgresql", DbBusy, True),
        (_PgError("40001"), "postgresql", DbBusy, True),
        (_PgError("08006"), "postgresql", DbUnavailable, False),
        (_PgError("57P01"), "postgresql", DbUnavailable, False),
        (_PgError("57014"), "postgresql", DbUnavailable, False),
        (_PgError("42P01"), "postgresql", DbException, False),
        (_mysql_error(1062), "mysql", DuplicateRecord, False),
        (_mysql_error(1452), "mysql", ReferenceViolation, False),
        (_mysql_error(1451), "mysql", ReferenceViolation, False),
        (_mysql_error(1048), "mysql", ConstraintViolation, False),
        (_mysql_error(1364), "mysql", ConstraintViolation, False),
        (_mysql_error(3819), "mysql", ConstraintViolation, False),
        (_mysql_error(4025), "mysql", ConstraintViolation, False),
        (_mysql_error(1213), "mysql", DbBusy, True),
        (_mysql_error(2006), "mysql", DbUnavailable, False),
        (_mysql_error(2013), "mysql", DbUnavailable, False),
        (_mysql_error(3024), "mysql", DbUnavailable, False),
        (_mysql_error(1969), "mysql", DbUnavailable, False),
        (_mysql_error(1146), "mysql", DbException, False),
        (_sqlite_error(2067), "sqlite", DuplicateRecord, False),
        (_sqlite_error(1555), "sqlite", DuplicateRecord, False),
        (_sqlite_error(787), "sqlite", ReferenceViolation, False),
        (_sqlite_error(1299), "sqlite", ConstraintViolation, False),
        (_sqlite_error(275), "sqlite", ConstraintViolation, False),
        (_sqlite_error(5), "sqlite", DbUnavailable, False),
        (_sqlite_error(517), "sqlite", DbUnavailable, False),
    ],
    ids=lambda v: (
        str(getattr(v, "sqlstate", None) or getattr(v, "sqlite_errorcode", None) or v.args[0])
        if isinstance(v, Exception)
        else None
    ),
)
def test_translation_by_code_never_by_message(
    driver_error: Exception, dialect: str, expected: type[DbException], retryable: bool
) -> None:
    wrapped = sa_exc.DBAPIError("SELECT secret FROM t WHERE v = 'pii'", {"v": "pii"}, driver_error)
    translation = translate(wrapped, dialect=dialect)
    assert translation is not None
    assert type(translation.error) is expected
    assert translation.retryable is retryable
    logged = orjson.dumps(translation.error.context).decode() + translation.error.internal_message
    assert "pii" not in logged and "never parsed" not in logged and "SELECT" not in logged


def test_pool_timeout_and_invalidated_connections_are_unavailable() -> None:
    pool = translate(sa_exc.TimeoutError("QueuePool limit"), dialect="postgresql")
    assert pool is not None and type(pool.error) is DbUnavailable
    lost = sa_exc.DBAPIError("SELECT 1", None, Exception("no code"), connection_invalidated=True)
    translated = translate(lost, dialect="postgresql")
    assert translated is not None and type(translated.error) is DbUnavailable


# --- FastAPI dependency over HTTP --------------------------------------------------------------


def _app(db: Database, *, naive: bool = False) -> FastAPI:
    app = FastAPI()
    foundation.setup(app, service="dbtest", log_dir="logs", log_level="DEBUG", log_stdout=False)

    async def naive_session() -> AsyncIterator[AsyncSession]:
        async with DbManager(database=db) as session:  # request scope: exits after the response
            yield session

    dependency = naive_session if naive else db.session

    # Annotations are strings here (__future__), so closures' dependencies go in defaults.
    @app.post("/items/{email}")
    async def create(
        email: str,
        session: AsyncSession = Depends(dependency),  # noqa: B008
    ) -> dict[str, str]:
        session.add(Item(email=email))  # flushed, and refused, by the commit
        return {"email": email}

    @app.get("/items/{item_id}")
    async def read(
        item_id: int,
        session: AsyncSession = Depends(DbManager.get_session),  # noqa: B008
    ) -> dict[str, str]:
        item = (await session.execute(select(Item).where(Item.id == item_id))).scalar_one()
        return {"email": item.email}

    app.state.database = db
    return app


def _log_lines() -> list[dict[str, Any]]:
    return [
        orjson.loads(line)
        for f in Path("logs").glob("*.jsonl")
        for line in f.read_bytes().splitlines()
    ]


async def test_commit_failure_changes_the_response_to_409(db: Database) -> None:
    app = _app(db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        created = await client.post("/items/taken@x")
        duplicate = await client.post("/items/taken@x", headers={"X-Request-ID": "a" * 32})
        missing = await client.get("/items/999")
        found = await client.get("/items/1")
    assert created.status_code == 200
    assert duplicate.status_code == 409
    assert duplicate.json() == {
        "message": "A record with these values already exists.",
        "code": 21102,
        "correlation_id": "a" * 32,
    }
    assert "taken" not in duplicate.text and "INSERT" not in duplicate.text
    assert missing.status_code == 404 and missing.json()["code"] == 21101
    assert found.json() == {"email": "taken@x"}
    assert await count(db, "email = 'taken@x'") == 1
    [line] = [x for x in _log_lines() if x.get("internal_code") == 21102]
    assert line["correlation_id"] == "a" * 32
    assert (line["level"], line["errno"], line["dialect"]) == ("ERROR", 2067, "sqlite")
    assert "taken@x" not in orjson.dumps(line).decode()
    committed = [x for x in _log_lines() if x["message"] == "transaction committed"]
    assert committed and all(x["dialect"] == "sqlite" and "duration_ms" in x for x in committed)


async def test_control_a_request_scoped_dependency_answers_200_for_a_rolled_back_write(
    db: Database,
) -> None:
    """Why db.session exists: FastAPI runs plain yield-dependency exits after the response."""
    app = _app(db, naive=True)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.post("/items/taken@x")).status_code == 200
        lied = await client.post("/items/taken@x")
    assert lied.status_code == 200  # the client was told it worked ...
    assert await count(db, "email = 'taken@x'") == 1  # ... but the second write is not there


async def test_get_session_without_app_state_database_is_a_500(db: Database) -> None:
    app = _app(db)
    del app.state.database
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/items/1")
    assert response.status_code == 500
    assert "app.state.database" not in response.text


@pytest.mark.parametrize(
    "scheme", ["postgresql+asyncpg://postgres@", "mysql+aiomysql://root@"], ids=["pg", "mysql"]
)
async def test_server_down_is_unavailable_not_a_crash(scheme: str) -> None:
    """Nothing listens on the port: a 503-class error, quickly, with the connection reason."""
    db = Database(f"{scheme}127.0.0.1:{free_port()}/test", connect_timeout=2)
    started = time.monotonic()
    try:
        with pytest.raises(DbUnavailable) as caught:
            async with DbManager(database=db) as session:
                await session.execute(text("SELECT 1"))
    finally:
        await db.dispose()
    assert time.monotonic() - started < 3
    assert caught.value.http_code == 503


async def test_setup_with_database_exports_the_transaction_histogram(db: Database) -> None:
    app = FastAPI()
    foundation.setup(app, service="dbtest", database=db, log_dir=None, log_stdout=False)

    @app.post("/items/{email}")
    async def create(
        email: str,
        session: AsyncSession = Depends(db.session),  # noqa: B008
    ) -> dict[str, str]:
        session.add(Item(email=email))
        return {"email": email}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.post("/items/m@x")).status_code == 200
        assert (await client.post("/items/m@x")).status_code == 409
        exposition = (await client.get("/metrics")).text
    assert 'db_transaction_duration_seconds_count{outcome="commit"} 1.0' in exposition
    assert 'db_transaction_duration_seconds_count{outcome="error"} 1.0' in exposition
