"""DbManager against a real MariaDB/MySQL (127.0.0.1:3306, db ``test``, user ``root``):
integrity mapping by errno, a real deadlock retried, a killed connection, the server-side
statement timeout and a network black hole (aiomysql has no read timeout of its own)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aiomysql
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from foundation.db import Database, DbManager
from foundation.exceptions import (
    ConstraintViolation,
    DbException,
    DbUnavailable,
    DuplicateRecord,
    ReferenceViolation,
)
from tests.foundation.test_db_proxy import FaultProxy
from tests.support import missing_backend, port_open

pytestmark = pytest.mark.mysql

HOST, PORT = "127.0.0.1", 3306


def url(port: int = PORT) -> str:
    return f"mysql+aiomysql://root@{HOST}:{port}/test"


@pytest.fixture
async def admin() -> AsyncIterator[aiomysql.Connection]:
    if not port_open(HOST, PORT):
        missing_backend(f"MariaDB/MySQL is not listening on {HOST}:{PORT}")
    conn = await aiomysql.connect(
        host=HOST, port=PORT, user="root", password="", db="test", autocommit=True
    )
    yield conn
    conn.close()


async def q(admin: aiomysql.Connection, sql: str) -> object:
    async with admin.cursor() as cursor:
        await cursor.execute(sql)
        row = await cursor.fetchone()
        return None if row is None else row[0]


@pytest.fixture
async def tables(admin: aiomysql.Connection) -> AsyncIterator[str]:
    name = f"dbt_{uuid.uuid4().hex[:12]}"
    for sql in (
        f"CREATE TABLE {name}_parent (id INT PRIMARY KEY) ENGINE=InnoDB",
        f"CREATE TABLE {name} (id INT AUTO_INCREMENT PRIMARY KEY,"
        f" email VARCHAR(100) NOT NULL UNIQUE, qty INT NOT NULL DEFAULT 0 CHECK (qty >= 0),"
        f" note VARCHAR(10) NOT NULL, parent_id INT NULL,"
        f" FOREIGN KEY (parent_id) REFERENCES {name}_parent(id)) ENGINE=InnoDB",
        f"CREATE TABLE {name}_acct (id INT PRIMARY KEY, balance INT NOT NULL) ENGINE=InnoDB",
        f"INSERT INTO {name}_parent VALUES (1)",
        f"INSERT INTO {name} (email, note, parent_id) VALUES ('dup@x', '', 1)",
        f"INSERT INTO {name}_acct VALUES (1, 100), (2, 100)",
    ):
        await q(admin, sql)
    yield name
    await q(admin, f"DROP TABLE IF EXISTS {name}, {name}_acct, {name}_parent")


@pytest.fixture
async def db(tables: str) -> AsyncIterator[Database]:
    database = Database(url(), statement_timeout=5)
    yield database
    await database.dispose()


@pytest.mark.parametrize(
    ("statement", "expected", "errno"),
    [
        ("INSERT INTO {t} (email, note) VALUES ('dup@x', '')", DuplicateRecord, 1062),
        (
            "INSERT INTO {t} (email, note, parent_id) VALUES ('f@x', '', 9)",
            ReferenceViolation,
            1452,
        ),
        ("DELETE FROM {t}_parent WHERE id = 1", ReferenceViolation, 1451),
        ("INSERT INTO {t} (email, note) VALUES (NULL, '')", ConstraintViolation, 1048),
        ("INSERT INTO {t} (email) VALUES ('nonote@x')", ConstraintViolation, 1364),
        ("INSERT INTO {t} (email, note, qty) VALUES ('neg@x', '', -1)", ConstraintViolation, 4025),
    ],
)
async def test_integrity_errors_are_typed_by_errno(
    db: Database,
    admin: aiomysql.Connection,
    tables: str,
    statement: str,
    expected: type[DbException],
    errno: int,
) -> None:
    with pytest.raises(expected) as caught:
        async with DbManager(database=db) as session:
            await session.execute(text(f"INSERT INTO {tables} (email, note) VALUES ('p@x', '')"))
            await session.execute(text(statement.format(t=tables)))
    assert type(caught.value) is expected
    assert caught.value.context["errno"] == errno
    assert caught.value.context["dialect"] == "mysql"
    assert "dup@x" not in caught.value.internal_message + repr(caught.value.context)
    assert await q(admin, f"SELECT count(*) FROM {tables} WHERE email = 'p@x'") == 0


async def test_real_deadlock_is_retried_and_both_succeed(
    db: Database, admin: aiomysql.Connection, tables: str
) -> None:
    acct = f"{tables}_acct"
    barrier = asyncio.Barrier(2)
    attempts: list[int] = []

    def transfer(src: int, dst: int) -> Callable[[AsyncSession], Awaitable[None]]:
        async def work(session: AsyncSession) -> None:
            attempts.append(src)
            await session.execute(
                text(f"UPDATE {acct} SET balance = balance - 10 WHERE id = :i"), {"i": src}
            )
            if attempts.count(src) == 1:
                async with asyncio.timeout(5):
                    await barrier.wait()
            await session.execute(
                text(f"UPDATE {acct} SET balance = balance + 10 WHERE id = :i"), {"i": dst}
            )

        return work

    async with asyncio.timeout(20):
        await asyncio.gather(db.run(transfer(1, 2)), db.run(transfer(2, 1)))
    assert len(attempts) == 3
    assert await q(admin, f"SELECT sum(balance) FROM {acct}") == 200
    assert await q(admin, f"SELECT balance FROM {acct} WHERE id = 1") == 100


async def test_killed_connection_is_unavailable_and_the_pool_recovers(
    db: Database, admin: aiomysql.Connection, tables: str
) -> None:
    with pytest.raises(DbUnavailable):
        async with DbManager(database=db) as session:
            await session.execute(text(f"INSERT INTO {tables} (email, note) VALUES ('k@x', '')"))
            conn_id = (await session.execute(text("SELECT CONNECTION_ID()"))).scalar_one()
            await q(admin, f"KILL {int(conn_id)}")
            await session.execute(text("SELECT 1"))
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert await q(admin, f"SELECT count(*) FROM {tables} WHERE email = 'k@x'") == 0
    async with DbManager(database=db) as session:
        await session.execute(text(f"INSERT INTO {tables} (email, note) VALUES ('ok@x', '')"))
    assert await q(admin, f"SELECT count(*) FROM {tables} WHERE email = 'ok@x'") == 1


async def test_server_statement_timeout_is_unavailable(tables: str) -> None:
    db = Database(url(), statement_timeout=0.5)
    started = time.monotonic()
    try:
        with pytest.raises(DbUnavailable) as caught:
            async with DbManager(database=db) as session:
                await session.execute(text(f"SELECT count(*) FROM {tables} WHERE SLEEP(3) = 0"))
        assert caught.value.context["errno"] == 1969
        assert time.monotonic() - started < 2.5
    finally:
        await db.dispose()


async def test_network_black_hole_fails_within_the_read_timeout(
    admin: aiomysql.Connection, tables: str
) -> None:
    proxy = FaultProxy(PORT)
    await proxy.start()
    db = Database(url(proxy.port), statement_timeout=1, cleanup_timeout=1)
    try:
        async with DbManager(database=db) as session:
            await session.execute(text("SELECT 1"))
        started = time.monotonic()
        with pytest.raises(DbUnavailable) as caught:
            async with DbManager(database=db) as session:
                await session.execute(
                    text(f"INSERT INTO {tables} (email, note) VALUES ('hole@x', '')")
                )
                proxy.blackhole = True
                await session.execute(text("SELECT 1"))
        assert caught.value.context["errno"] == 2013
        assert time.monotonic() - started < 1 + 1 + 1 + 1.5
        assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        proxy.blackhole = False
        async with DbManager(database=db) as session:
            await session.execute(text(f"INSERT INTO {tables} (email, note) VALUES ('b@x', '')"))
        async with asyncio.timeout(10):  # the server rolls back once it notices the dead client
            while await q(admin, f"SELECT count(*) FROM {tables} WHERE email = 'hole@x'"):
                await asyncio.sleep(0.1)
        assert await q(admin, f"SELECT count(*) FROM {tables} WHERE email = 'b@x'") == 1
    finally:
        await db.dispose()
        await proxy.close()
