"""Throughput of foundation's request stack and of its JSON log writer, against peers.

1. Requests per second through uvicorn (one worker, wrk on loopback) of an endpoint that logs
   one line, success path (200) and error path (409 from a domain error): bare FastAPI (no
   logging), foundation's stack (metrics off, then everything on), and the stack people
   assemble today (asgi-correlation-id + pure ASGI access log + Loguru ``serialize=True``).
   Variants alternate; medians of rounds.
2. JSON records per second written to a file (stdout off): foundation's renderer against
   Loguru's own ``serialize=True``, alternated, medians.

``BENCH_ROUNDS`` (default 3) and ``BENCH_SECONDS`` (default 5) size part 1.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.bench._http import alternate, report

APP = "tests.bench.apps_foundation:app"
RECORDS = 50_000


def _records_per_second(kind: str, directory: Path) -> float:
    from loguru import logger

    from foundation.logging import configure_logging

    if kind == "foundation":
        configure_logging(
            service="bench", log_dir=directory, log_stdout=False, intercept_stdlib=False, env={}
        )
    else:
        logger.remove()
        logger.add(directory / "loguru.log", serialize=True, level="INFO")
    started = time.perf_counter()
    for number in range(RECORDS):
        logger.info("item looked up", item_id=number, user="ada")
    elapsed = time.perf_counter() - started
    logger.remove()
    return RECORDS / elapsed


def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    seconds = int(os.environ.get("BENCH_SECONDS", "5"))
    print(f"HTTP: uvicorn 1 worker, wrk -t1 -c32, {rounds} alternated rounds of {seconds}s")
    results = alternate(
        ["bare", "foundation", "foundation_all", "assembled"],
        {"success": "/items/1", "error": "/fail/1"},
        APP,
        rounds=rounds,
        seconds=seconds,
    )
    report(results, baseline="bare")

    print(f"\nJSON records/s to a file, {RECORDS:,} records, 5 alternated rounds")
    rates: dict[str, list[float]] = {"foundation": [], "loguru serialize": []}
    for number in range(5):
        order = ["foundation", "loguru serialize"]
        for kind in order if number % 2 == 0 else reversed(order):
            with tempfile.TemporaryDirectory() as tmp:
                rates[kind].append(_records_per_second(kind.split()[0], Path(tmp)))
    base = statistics.median(rates["loguru serialize"])
    for kind, values in rates.items():
        rate = statistics.median(values)
        print(f"{kind:<18}{rate:>12,.0f} records/s{rate / base:>8.2f}x")
