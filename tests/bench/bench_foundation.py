"""Throughput of foundation's request stack and of its JSON log writer, against peers.

1. ``http``: requests per second through uvicorn (one worker, wrk on loopback) of an endpoint
   that logs one line, success path (200) and error path (409 from a domain error): bare
   FastAPI (no logging), foundation's stack (metrics off, then everything on), and the stack
   people assemble today (asgi-correlation-id + pure ASGI access log + Loguru
   ``serialize=True``). Variants alternate; medians of rounds.
2. ``asgi``: the same apps called directly in this process, CPU time per request, with each of
   foundation's layers alone on bare FastAPI (correlation ID, access line, metrics, handlers,
   the endpoint's own log line): what each layer costs, and everything on. Alternated, medians.
3. ``records``: JSON records per second written to a file (stdout off): foundation's renderer
   against Loguru's own ``serialize=True``, alternated, medians.

``BENCH_ROUNDS`` (default 3) and ``BENCH_SECONDS`` (default 5) size part 1; ``BENCH_PARTS``
(default ``http,asgi,records``) picks parts.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.bench._asgi import cpu_per_request
from tests.bench._http import alternate, report

APP = "tests.bench.apps_foundation:app"
PATHS = {"success": "/items/1", "error": "/fail/1"}
RECORDS = 50_000
# In-process rows: bare, each layer alone, then everything on (the uvicorn variants' apps).
ASGI_ROWS = (
    ("bare", "bare FastAPI"),
    ("correlation", "+ correlation ID"),
    ("access", "+ access line"),
    ("metrics", "+ metrics"),
    ("handlers", "+ handlers, catch-all"),
    ("app_log", "+ endpoint's logger.info"),
    ("foundation", "foundation, metrics off"),
    ("foundation_all", "everything on"),
)


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


def _http(rounds: int, seconds: int) -> None:
    print(f"HTTP: uvicorn 1 worker, wrk -t1 -c32, {rounds} alternated rounds of {seconds}s")
    results = alternate(
        ["bare", "foundation", "foundation_all", "assembled"],
        PATHS,
        APP,
        rounds=rounds,
        seconds=seconds,
    )
    report(results, baseline="bare")


def _asgi(rounds: int) -> None:
    from tests.bench.apps_foundation import build

    with tempfile.TemporaryDirectory() as tmp:
        apps = {name: build(name, tmp) for name, _ in ASGI_ROWS}
        timings = cpu_per_request(apps, PATHS, rounds=rounds, calls=200)
    print(f"\nin-process ASGI calls, CPU µs per request, {rounds} alternated rounds of 200")
    print("(min: the least disturbed round, steady from run to run on a loaded machine; the")
    print("median moves with the load; added = over bare FastAPI)")
    header = f"{'variant':<28}"
    for label in PATHS:
        header += f"{label + ' med':>13}{'added':>8}{'min':>8}{'added':>8}"
    print(header)
    for name, title in ASGI_ROWS:
        row = f"{title:<28}"
        for label in PATHS:
            got, bare = timings[(name, label)], timings[("bare", label)]
            med, low = statistics.median(got), min(got)
            row += f"{med:>13.1f}{med - statistics.median(bare):>8.1f}"
            row += f"{low:>8.1f}{low - min(bare):>8.1f}"
        print(row)


def _records() -> None:
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


def main() -> None:
    parts = os.environ.get("BENCH_PARTS", "http,asgi,records").split(",")
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    if "http" in parts:
        _http(rounds, int(os.environ.get("BENCH_SECONDS", "5")))
    if "asgi" in parts:
        _asgi(max(rounds * 20, 60))
    if "records" in parts:
        _records()
