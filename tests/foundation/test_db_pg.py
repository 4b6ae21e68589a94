"""DbManager against a real PostgreSQL (127.0.0.1:5432, db ``test``, user ``postgres``):
integrity mapping, killed backends, stale pools, deadlocks, serialization failures,
cancellation, black holes and resets through a loopback proxy, pool exhaustion, timeouts,
lifecycles, and the commit-before-response dependency over real HTTP (uvicorn)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import Depends, FastAPI
from loguru import logger
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

import foundation
from foundation.db import Database, DbManager
from foundation.exceptions import (
    ConstraintViolation,
    DbException,
    DbUnavailable,
    DuplicateRecord,
    ReferenceViolation,
)
from tests.foundation.test_db_proxy import FaultProxy
from tests.support import free_port, missing_backend, port_open

pytestmark = pytest.mark.pg

HOST, PORT = "127.0.0.1", 5432
ADMIN_DSN = f"postgresql://postgres@{HOST}:{PORT}/test"


def url(port: int = PORT) -> str:
    return f"postgresql+asyncpg://postgres@{HOST}:{port}/test"


@pytest.fixture
async def admin() -> AsyncIterator[asyncpg.Connection]:
    if not port_open(HOST, PORT):
        missing_backend(f"PostgreSQL is not listening on {HOST}:{PORT}")
    conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
    yield conn
    await conn.close()


@pytest.fixture
def name() -> str:
    """Unique per test: table names and application_name (tests of others run concurrently)."""
    return f"dbt_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def tables(admin: asyncpg.Connection, name: str) -> AsyncIterator[str]:
    await admin.execute(
        f"""
        CREATE TABLE {name}_parent (id int PRIMARY KEY);
        CREATE TABLE {name} (
            id serial PRIMARY KEY,
            email text NOT NULL CONSTRAINT {name}_email_key UNIQUE,
            qty int NOT NULL DEFAULT 0 CONSTRAINT {name}_qty_check CHECK (qty >= 0),
            parent_id int REFERENCES {name}_parent(id)
        );
        CREATE TABLE {name}_acct (id int PRIMARY KEY, balance int NOT NULL);
        INSERT INTO {name}_parent VALUES (1);
        INSERT INTO {name}_acct VALUES (1, 100), (2, 100);
        """
    )
    yield name
    await admin.execute(
        f"DROP TABLE IF EXISTS {name}, {name}_parent, {name}_acct, {name}_deferred CASCADE"
    )


@pytest.fixture
async def db(tables: str, name: str) -> AsyncIterator[Database]:
    database = Database(url(), application_name=name, statement_timeout=5)
    yield database
    await database.dispose()


async def rows(admin: asyncpg.Connection, table: str, where: str = "true") -> int:
    return int(await admin.fetchval(f"SELECT count(*) FROM {table} WHERE {where}"))


async def backends(admin: asyncpg.Connection, name: str, state: str | None = None) -> int:
    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
    if state is not None:
        return int(await admin.fetchval(query + " AND state = $2", name, state))
    return int(await admin.fetchval(query, name))


def checked_out(db: Database) -> int:
    return int(db.engine.pool.checkedout())  # type: ignore[attr-defined]


# --- integrity mapping -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected", "sqlstate", "constraint"),
    [
        ("('dup@x', 0, NULL)", DuplicateRecord, "23505", "_email_key"),
        ("('fk@x', 0, 99)", ReferenceViolation, "23503", "_parent_id_fkey"),
        ("(NULL, 0, NULL)", ConstraintViolation, "23502", None),
        ("('neg@x', -1, NULL)", ConstraintViolation, "23514", "_qty_check"),
    ],
)
async def test_integrity_errors_are_typed(
    db: Database,
    admin: asyncpg.Connection,
    tables: str,
    values: str,
    expected: type[DbException],
    sqlstate: str,
    constraint: str | None,
) -> None:
    await admin.execute(f"INSERT INTO {tables} (email) VALUES ('dup@x')")
    with pytest.raises(expected) as caught:
        async with DbManager(database=db) as session:
            await session.execute(text(f"INSERT INTO {tables} (email) VALUES ('partial@x')"))
            await session.execute(
                text(f"INSERT INTO {tables} (email, qty, parent_id) VALUES {values}")
            )
    error = caught.value
    assert type(error) is expected
    assert (error.context["sqlstate"], error.context["dialect"]) == (sqlstate, "postgresql")
    if constraint is not None:
        assert error.context["constraint"] == f"{tables}{constraint}"
    assert isinstance(error.__cause__, sa_exc.IntegrityError)
    assert "dup@x" not in repr(error.context) + error.internal_message
    assert await rows(admin, tables, "email = 'partial@x'") == 0
    assert checked_out(db) == 0


# --- commit before the response, over real HTTP ------------------------------------------------


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(app, host=HOST, port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.02)
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(10):
            await task


async def test_deferred_unique_violation_at_commit_answers_409_over_http(
    admin: asyncpg.Connection, name: str, tables: str
) -> None:
    """The COMMIT statement itself fails (DEFERRABLE INITIALLY DEFERRED): the client gets 409,
    never a 200, and nothing of the request is persisted."""
    deferred = f"{name}_deferred"
    await admin.execute(
        f"CREATE TABLE {deferred} (id serial PRIMARY KEY, email text NOT NULL,"
        f" CONSTRAINT {deferred}_email_key UNIQUE (email) DEFERRABLE INITIALLY DEFERRED);"
        f" INSERT INTO {deferred} (email) VALUES ('taken@x')"
    )
    db = Database(url(), application_name=name)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await db.start()
        yield
        await db.dispose()

    app = FastAPI(lifespan=lifespan)
    foundation.setup(app, service="dbtest", log_dir="logs", log_stdout=False)
    statements: list[str] = []

    @app.post("/signup/{email}")
    async def signup(
        email: str,
        session: AsyncSession = Depends(db.session),  # noqa: B008
    ) -> dict[str, str]:
        await session.execute(text(f"INSERT INTO {tables} (email) VALUES (:e)"), {"e": email})
        await session.execute(text(f"INSERT INTO {deferred} (email) VALUES (:e)"), {"e": email})
        statements.append(email)  # both statements succeeded: only COMMIT can refuse
        return {"email": email}

    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        refused = await client.post("/signup/taken@x")
        accepted = await client.post("/signup/new@x")
    assert statements == ["taken@x", "new@x"]
    assert refused.status_code == 409
    assert refused.json()["code"] == 21102
    assert refused.json()["correlation_id"] == refused.headers["x-request-id"]
    assert "taken" not in refused.text and "INSERT" not in refused.text
    assert accepted.status_code == 200
    assert await rows(admin, tables, "email = 'taken@x'") == 0  # first insert rolled back
    assert await rows(admin, tables, "email = 'new@x'") == 1
    assert await backends(admin, name) == 0  # lifespan disposed the engine


# --- lost connections --------------------------------------------------------------------------


async def test_backend_killed_mid_transaction_is_unavailable_and_the_pool_recovers(
    db: Database, admin: asyncpg.Connection, tables: str
) -> None:
    with pytest.raises(DbUnavailable) as caught:
        async with DbManager(database=db) as session:
            await session.execute(text(f"INSERT INTO {tables} (email) VALUES ('killed@x')"))
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    assert caught.value.http_code == 503
    assert await rows(admin, tables, "email = 'killed@x'") == 0
    assert checked_out(db) == 0
    async with DbManager(database=db) as session:
        await session.execute(text(f"INSERT INTO {tables} (email) VALUES ('after@x')"))
    assert await rows(admin, tables, "email = 'after@x'") == 1


async def test_kill_at_a_precise_statement_by_trigger(
    db: Database, admin: asyncpg.Connection, tables: str, name: str
) -> None:
    await admin.execute(
        f"""
        CREATE FUNCTION {name}_die() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$;
        CREATE TRIGGER {name}_die AFTER INSERT ON {tables}
        FOR EACH ROW WHEN (NEW.email = 'die@x') EXECUTE FUNCTION {name}_die();
        """
    )
    try:
        with pytest.raises(DbUnavailable) as caught:
            async with DbManager(database=db) as session:
                await session.execute(text(f"INSERT INTO {tables} (email) VALUES ('before@x')"))
                await session.execute(text(f"INSERT INTO {tables} (email) VALUES ('die@x')"))
        assert caught.value.context.get("sqlstate") == "57P01" or caught.value.context.get(
            "connection_invalidated"
        )
        assert await rows(admin, tables) == 0
        assert checked_out(db) == 0
    finally:
        await admin.execute(f"DROP FUNCTION {name}_die() CASCADE")


async def test_idle_pool_connections_killed_by_the_server_are_replaced(
    db: Database, admin: asyncpg.Connection, tables: str, name: str
) -> None:
    """pool_pre_ping: a restart or idle kill costs no failed request."""
    async with DbManager(database=db) as session:
        await session.execute(text("SELECT 1"))
    assert await backends(admin, name, "idle") == 1
    await admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", name
    )
    async with DbManager(database=db) as session:
        await session.execute(text(f"INSERT INTO {tables} (email) VALUES ('fresh@x')"))
    assert await rows(admin, tables, "email = 'fresh@x'") == 1


async def test_control_without_pre_ping_the_first_request_after_an_idle_kill_fails(
    admin: asyncpg.Connection, tables: str, name: str
) -> None:
    db = Database(url(), application_name=name, pool_pre_ping=False)
    try:
        async with DbManager(database=db) as session:
            await session.execute(text("SELECT 1"))
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            name,
        )
        with pytest.raises(DbUnavailable):
            async with DbManager(database=db) as session:
                await session.execute(text("SELECT 1"))
        async with DbManager(database=db) as session:  # the dead connection was discarded
            assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await db.dispose()


# --- deadlocks and serialization failures ------------------------------------------------------


async def test_real_deadlock_is_retried_and_both_transfers_succeed(
    db: Database, admin: asyncpg.Connection, tables: str
) -> None:
    acct = f"{tables}_acct"
    barrier = asyncio.Barrier(2)
    attempts: list[int] = []

    def transfer(src: int, dst: int) -> Callable[[AsyncSession], Awaitable[None]]:
        async def work(session: AsyncSession) -> None:
            attempts.append(src)
            await session.execute(text("SET LOCAL deadlock_timeout = '100ms'"))
            await session.execute(
                text(f"UPDATE {acct} SET balance = balance - 10 WHERE id = :i"), {"i": src}
            )
            if attempts.count(src) == 1:  # only the first attempts meet at the barrier
                async with asyncio.timeout(5):
                    await barrier.wait()
            await session.execute(
                text(f"UPDATE {acct} SET balance = balance + 10 WHERE id = :i"), {"i": dst}
            )

        return work

    records: list[dict[str, Any]] = []
    handler = logger.add(lambda m: records.append(m.record), level="WARNING")
    try:
        async with asyncio.timeout(20):
            await asyncio.gather(db.run(transfer(1, 2)), db.run(transfer(2, 1)))
    finally:
        logger.remove(handler)
    assert len(attempts) == 3  # one of the two ran twice
    retried = [r["extra"] for r in records if r["message"] == "transaction retried"]
    assert [r["sqlstate"] for r in retried] == ["40P01"]
    assert await admin.fetchval(f"SELECT sum(balance) FROM {acct}") == 200
    assert await admin.fetchval(f"SELECT balance FROM {acct} WHERE id = 1") == 100


async def test_serialization_failure_is_retried(
    db: Database, admin: asyncpg.Connection, tables: str
) -> None:
    acct = f"{tables}_acct"
    barrier = asyncio.Barrier(2)
    first_attempts = 0

    async def add_ten(session: AsyncSession) -> None:
        nonlocal first_attempts
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        balance = (
            await session.execute(text(f"SELECT balance FROM {acct} WHERE id = 1"))
        ).scalar_one()
        if first_attempts < 2:
            first_attempts += 1
            async with asyncio.timeout(5):
                await barrier.wait()  # both have read 100
        await session.execute(
            text(f"UPDATE {acct} SET balance = :b WHERE id = 1"), {"b": balance + 10}
        )

    async with asyncio.timeout(20):
        await asyncio.gather(db.run(add_ten), db.run(add_ten))
    assert await admin.fetchval(f"SELECT balance FROM {acct} WHERE id = 1") == 120  # no lost update


# --- cancellation and timeouts -----------------------------------------------------------------


async def test_cancellation_during_a_statement_leaves_nothing_behind(
    db: Database, admin: asyncpg.Connection, tables: str, name: str
) -> None:
    async def slow_write() -> None:
        async with DbManager(database=db) as session:
            await session.execute(text(f"INSERT INTO {tables} (email) VALUES ('slow@x')"))
            await session.execute(text("SELECT pg_sleep(5)"))

    for _ in range(3):
        task = asyncio.create_task(slow_write())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    for _ in range(3):
        with anyio.move_on_after(0.3) as scope:
            await slow_write()
        assert scope.cancelled_caught
    assert checked_out(db) == 0
    assert await backends(admin, name, "idle in transaction") == 0
    assert await rows(admin, tables, "email = 'slow@x'") == 0
    started = time.monotonic()
    async with DbManager(database=db) as session:
        await session.execute(text(f"INSERT INTO {tables} (email) VALUES ('next@x')"))
    assert time.monotonic() - started < 2
    # no server backend keeps sleeping for a cancelled client
    async with asyncio.timeout(5):
        while await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
            " AND query LIKE 'SELECT pg_sleep%' AND state = 'active'",
            name,
        ):
            await asyncio.sleep(0.05)


async def test_server_statement_timeout_is_unavailable(tables: str, name: str) -> None:
    db = Database(url(), application_name=name, statement_timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(DbUnavailable) as caught:
            async with DbManager(database=db) as session:
                await session.execute(text("SELECT pg_sleep(3)"))
        assert caught.value.context["sqlstate"] == "57014"
        assert time.monotonic() - started < 2.5
    finally:
        await db.dispose()


async def test_network_black_hole_fails_within_the_timeout(
    admin: asyncpg.Connection, tables: str, name: str
) -> None:
    proxy = FaultProxy(PORT)
    await proxy.start()
    db = Database(url(proxy.port), application_name=name, statement_timeout=1, cleanup_timeout=1)
    try:
        async with DbManager(database=db) as session:
            await session.execute(text("SELECT 1"))
        started = time.monotonic()
        with pytest.raises(DbUnavailable) as caught:
            async with DbManager(database=db) as session:
                await session.execute(text(f"INSERT INTO {tables} (email) VALUES ('hole@x')"))
                proxy.blackhole = True
                await session.execute(text("SELECT 1"))
        elapsed = time.monotonic() - started
        assert caught.value.context["reason"] == "timeout"
        assert isinstance(caught.value.__cause__, TimeoutError)
        assert elapsed < 1 + 1 + 1 + 1.5  # client timeout (statement + 1 s) + cleanup bound
        assert checked_out(db) == 0
        proxy.blackhole = False
        async with DbManager(database=db) as session:
            await session.execute(text(f"INSERT INTO {tables} (email) VALUES ('back@x')"))
        assert await rows(admin, tables, "email = 'hole@x'") == 0
        assert await rows(admin, tables, "email = 'back@x'") == 1
    finally:
        await db.dispose()
        await proxy.close()


async def test_tcp_reset_mid_transaction_is_unavailable_and_recovers(
    admin: asyncpg.Connection, tables: str, name: str
) -> None:
    proxy = FaultProxy(PORT)
    await proxy.start()
    db = Database(url(proxy.port), application_name=name, statement_timeout=2)
    try:
        started = time.monotonic()
        with pytest.raises(DbUnavailable):
            async with DbManager(database=db) as session:
                await session.execute(text(f"INSERT INTO {tables} (email) VALUES ('rst@x')"))
                proxy.reset()
                await session.execute(text("SELECT 1"))
        assert time.monotonic() - started < 3
        assert checked_out(db) == 0
        async with DbManager(database=db) as session:
            await session.execute(text(f"INSERT INTO {tables} (email) VALUES ('ok@x')"))
        async with asyncio.timeout(5):  # the server notices the reset connection and rolls back
            while await rows(admin, tables, "email = 'rst@x'") or await backends(
                admin, name, "idle in transaction"
            ):
                await asyncio.sleep(0.05)
        assert await rows(admin, tables, "email = 'ok@x'") == 1
    finally:
        await db.dispose()
        await proxy.close()


async def test_pool_exhaustion_is_unavailable_after_the_pool_timeout(
    tables: str, name: str
) -> None:
    db = Database(url(), application_name=name, pool_size=2, max_overflow=0, pool_timeout=1)
    try:
        async with DbManager(database=db) as one, DbManager(database=db) as two:
            await one.execute(text("SELECT 1"))
            await two.execute(text("SELECT 1"))
            started = time.monotonic()
            with pytest.raises(DbUnavailable) as caught:
                async with DbManager(database=db) as three:
                    await three.execute(text("SELECT 1"))
            elapsed = time.monotonic() - started
        assert caught.value.context["reason"] == "pool_timeout"
        assert 0.9 <= elapsed < 3
        async with DbManager(database=db) as session:
            assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await db.dispose()


# --- lifecycle ---------------------------------------------------------------------------------


def test_two_lifecycles_on_separate_loops_leave_no_server_connection(name: str) -> None:
    if not port_open(HOST, PORT):
        missing_backend(f"PostgreSQL is not listening on {HOST}:{PORT}")
    db = Database(url(), application_name=name)  # module-level style: one object, two apps

    async def lifecycle() -> tuple[int, int]:
        await db.start()
        async with DbManager(database=db) as session:
            await session.execute(text("SELECT 1"))
        conn = await asyncpg.connect(ADMIN_DSN, timeout=5)
        try:
            during = await backends(conn, name)
            await db.dispose()
            return during, await backends(conn, name)
        finally:
            await conn.close()

    assert asyncio.run(lifecycle()) == (1, 0)
    assert asyncio.run(lifecycle()) == (1, 0)


async def test_serialization_failure_at_commit_answers_503_over_http(
    admin: asyncpg.Connection, name: str, tables: str
) -> None:
    """SERIALIZABLE write skew: the other transaction commits first, so this request's COMMIT
    fails with 40001. The client gets 503 (DbBusy), not a 200, and the write is gone."""
    acct = f"{tables}_acct"
    other = await asyncpg.connect(ADMIN_DSN, timeout=5)
    db = Database(url(), application_name=name)
    app = FastAPI()
    foundation.setup(app, service="dbtest", log_dir=None, log_stdout=False)

    @app.post("/withdraw")
    async def withdraw(session: AsyncSession = Depends(db.session)) -> dict[str, int]:  # noqa: B008
        await session.connection(execution_options={"isolation_level": "SERIALIZABLE"})
        total = (await session.execute(text(f"SELECT sum(balance) FROM {acct}"))).scalar_one()
        await session.execute(text(f"UPDATE {acct} SET balance = balance - 150 WHERE id = 1"))
        await other.execute("COMMIT")  # the concurrent withdrawal wins the race
        return {"total_before": int(total)}

    try:
        await other.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        await other.fetchval(f"SELECT sum(balance) FROM {acct}")
        await other.execute(f"UPDATE {acct} SET balance = balance - 150 WHERE id = 2")
        async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
            response = await client.post("/withdraw")
    finally:
        await other.close()
        await db.dispose()
    assert response.status_code == 503
    assert response.json()["code"] == 21201
    assert await admin.fetchval(f"SELECT balance FROM {acct} WHERE id = 1") == 100
    assert await admin.fetchval(f"SELECT balance FROM {acct} WHERE id = 2") == -50
