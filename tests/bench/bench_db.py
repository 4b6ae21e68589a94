"""Per-transaction overhead of DbManager against the same work on a bare AsyncSession.

One transaction = one INSERT + COMMIT. The sides alternate within each round (A B, then B A)
so that drift on a noisy machine hits both; the figure reported is the median over rounds of
the per-round ratio. Logging is configured as in production (INFO: DbManager's DEBUG line is
filtered out). A third side adds the metrics observer (a prometheus_client Histogram).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from loguru import logger
from prometheus_client import CollectorRegistry, Histogram
from sqlalchemy import text

from foundation.db import Database, DbManager
from tests.support import port_open

ROUNDS = 11
CHUNKS = 4  # per round and side, interleaved
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"

Side = Callable[[Database, str, int], Awaitable[None]]


async def bare(db: Database, table: str, n: int) -> None:
    stmt = text(f"INSERT INTO {table} (v) VALUES (:v)")
    for i in range(n):
        async with db.sessionmaker() as session:
            await session.execute(stmt, {"v": i})
            await session.commit()


async def managed(db: Database, table: str, n: int) -> None:
    stmt = text(f"INSERT INTO {table} (v) VALUES (:v)")
    for i in range(n):
        async with DbManager(database=db) as session:
            await session.execute(stmt, {"v": i})


async def _timed(side: Side, db: Database, table: str, n: int) -> tuple[float, float]:
    """Wall and CPU seconds (CPU of the whole process: the aiosqlite thread included)."""
    wall, cpu = time.perf_counter(), time.process_time()
    await side(db, table, n)
    return time.perf_counter() - wall, time.process_time() - cpu


async def _measure(
    db: Database, table: str, chunk: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    registry = CollectorRegistry()
    histogram = Histogram(
        "db_transaction_duration_seconds", "bench", ["outcome"], registry=registry
    )

    def observe(outcome: str, seconds: float) -> None:
        histogram.labels(outcome).observe(seconds)

    async def managed_with_metrics(db: Database, table: str, n: int) -> None:
        # Same Database (same pooled connection) as the other sides: on SQLite a second
        # connection would pay for re-reading pages the other one changed.
        db.transaction_observers.append(observe)
        try:
            await managed(db, table, n)
        finally:
            db.transaction_observers.remove(observe)

    per_tx: dict[str, list[float]] = {"bare": [], "DbManager": [], "DbManager+metrics": []}
    cpu_tx: dict[str, list[float]] = {label: [] for label in per_tx}
    sides: list[tuple[str, Side]] = [
        ("bare", bare),
        ("DbManager", managed),
        ("DbManager+metrics", managed_with_metrics),
    ]
    await managed(db, table, 20)  # warm-up: connection, prepared statements
    await bare(db, table, 20)
    for round_no in range(ROUNDS):
        totals = dict.fromkeys(per_tx, 0.0)
        cpu_totals = dict.fromkeys(per_tx, 0.0)
        # Interleave small chunks (A B C, then C B A, ...) so that drift hits every side.
        for chunk_no in range(CHUNKS):
            order = sides if (round_no + chunk_no) % 2 == 0 else list(reversed(sides))
            for label, side in order:
                wall, cpu = await _timed(side, db, table, chunk)
                totals[label] += wall
                cpu_totals[label] += cpu
        for label, figures in per_tx.items():
            figures.append(totals[label] / (chunk * CHUNKS))
            cpu_tx[label].append(cpu_totals[label] / (chunk * CHUNKS))
    return per_tx, cpu_tx


def _ratio(values: list[float], base: list[float]) -> float:
    return statistics.median(v / b for v, b in zip(values, base, strict=True))


def _report(backend: str, figures: tuple[dict[str, list[float]], dict[str, list[float]]]) -> None:
    per_tx, cpu_tx = figures
    print(f"\n{backend}: {ROUNDS} rounds of interleaved chunks; per transaction (insert + commit)")
    print(
        f"  {'side':<18} {'wall µs':>8} {'min':>7} {'max':>7} {'wall ratio':>10}"
        f" {'CPU µs':>8} {'CPU ratio':>9}"
    )
    for label, values in per_tx.items():
        print(
            f"  {label:<18} {statistics.median(values) * 1e6:>8.0f} {min(values) * 1e6:>7.0f}"
            f" {max(values) * 1e6:>7.0f} {_ratio(values, per_tx['bare']):>9.3f}x"
            f" {statistics.median(cpu_tx[label]) * 1e6:>8.0f}"
            f" {_ratio(cpu_tx[label], cpu_tx['bare']):>8.3f}x"
        )


async def _sqlite(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        try:
            async with DbManager(database=db) as session:
                await session.execute(text("CREATE TABLE bench (id INTEGER PRIMARY KEY, v INT)"))
            _report("SQLite (aiosqlite, WAL)", await _measure(db, "bench", n))
        finally:
            await db.dispose()


async def _postgres(n: int) -> None:
    if not port_open("127.0.0.1", 5432):
        print("\nPostgreSQL: skipped (nothing listening on 127.0.0.1:5432)")
        return
    table = f"bench_{uuid.uuid4().hex[:12]}"
    db = Database(PG_URL, application_name="bench_db")
    try:
        async with DbManager(database=db) as session:
            await session.execute(text(f"CREATE TABLE {table} (id serial PRIMARY KEY, v int)"))
        _report("PostgreSQL (asyncpg)", await _measure(db, table, n))
    finally:
        async with DbManager(database=db) as session:
            await session.execute(text(f"DROP TABLE IF EXISTS {table}"))
        await db.dispose()


def main() -> None:
    logger.remove()
    logger.add(sys.stderr, level="INFO")  # production level: the DEBUG line is filtered
    asyncio.run(_sqlite(15))
    asyncio.run(_postgres(15))


if __name__ == "__main__":
    main()
