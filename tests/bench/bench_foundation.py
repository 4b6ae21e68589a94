"""Throughput of foundation's request stack and of its JSON log writer, against peers.

1. ``http``: requests per second through uvicorn (one worker, wrk on loopback) of an endpoint
   that logs one line (success, 200), the same endpoint logging nothing (silent: the stack
   alone), and the error path (409 from a domain error), with the server's own CPU time per
   request and its garbage collections (``tests.bench._http``): bare
   FastAPI (no logging), foundation's stack (metrics off, then everything on), and the stack
   people assemble today (asgi-correlation-id + pure ASGI access log + Loguru
   ``serialize=True``). Variants alternate; medians of rounds.
2. ``asgi``: the same apps called directly in this process, CPU time per request, with each of
   foundation's layers alone on bare FastAPI (correlation ID, access line, metrics, handlers,
   the endpoint's own log line): what each layer costs, and everything on. Alternated, medians.
3. ``records``: JSON records per second written to a file (stdout off): foundation's renderer
   against Loguru's own ``serialize=True``, in CPU time of the logging thread and wall time,
   alternated rounds.

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
# success: the endpoint logs one line of its own; silent: it logs nothing, so only the stack
# (correlation, trace context, access line, handlers, metrics) is measured; error: a 409.
PATHS = {"success": "/items/1", "silent": "/silent/1", "error": "/fail/1"}
RECORDS = 5_000
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


def _configure_records(kind: str, directory: Path) -> None:
    from loguru import logger

    from foundation.logging import configure_logging

    logger.remove()
    if kind == "foundation":
        configure_logging(
            service="bench", log_dir=directory, log_stdout=False, intercept_stdlib=False, env={}
        )
    elif kind == "loguru":
        logger.add(directory / "loguru.log", serialize=True, level="INFO")
    else:
        # Floors, for what is left to cut: Loguru building its record for a handler whose
        # filter drops it ("record"), and the same with one write(2) of a line of
        # foundation's size from that filter ("record + write"): what any writer that keeps
        # Loguru's API and writes each line unbuffered costs before it renders a byte.
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / "floor.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        line = b"x" * 310 + b"\n"

        def drop(record: object) -> bool:
            return False

        def write(record: object) -> bool:
            os.write(fd, line)
            return False

        logger.add(lambda message: None, filter=drop if kind == "record" else write)


def _records_per_second(count: int) -> tuple[float, float]:
    """(records per CPU second of this thread, per wall second) for ``count`` records."""
    from loguru import logger

    wall, cpu = time.perf_counter(), time.thread_time()
    for number in range(count):
        logger.info("item looked up", item_id=number, user="ada")
    return count / (time.thread_time() - cpu), count / (time.perf_counter() - wall)


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
    from loguru import logger

    rounds = 20
    print(f"\nJSON records/s to a file, {rounds} alternated rounds of {RECORDS:,} records")
    print("(CPU: records per CPU second of the logging thread, best round and median; wall:")
    print("median of rounds, which the other load on a shared machine moves most)")
    kinds = ("foundation", "loguru serialize", "record", "record + write")
    cpu: dict[str, list[float]] = {kind: [] for kind in kinds}
    wall: dict[str, list[float]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        for number in range(rounds):
            for kind in kinds if number % 2 == 0 else reversed(kinds):
                name = kind.split()[0] if kind != "record + write" else "write"
                _configure_records(name, Path(tmp) / f"{number}-{name}")
                by_cpu, by_wall = _records_per_second(RECORDS)
                cpu[kind].append(by_cpu)
                wall[kind].append(by_wall)
        logger.remove()
    best = max(cpu["loguru serialize"])
    med = statistics.median(cpu["loguru serialize"])
    med_wall = statistics.median(wall["loguru serialize"])
    print(
        f"{'':<18}{'CPU best':>12}{'ratio':>7}{'CPU median':>12}{'ratio':>7}{'µs/rec':>8}"
        f"{'wall':>10}{'ratio':>7}"
    )
    for kind in kinds:
        top, mid, w = max(cpu[kind]), statistics.median(cpu[kind]), statistics.median(wall[kind])
        print(
            f"{kind:<18}{top:>12,.0f}{top / best:>6.2f}x{mid:>12,.0f}{mid / med:>6.2f}x"
            f"{1e6 / mid:>8.2f}{w:>10,.0f}{w / med_wall:>6.2f}x"
        )


def main() -> None:
    parts = os.environ.get("BENCH_PARTS", "http,asgi,records").split(",")
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    if "http" in parts:
        _http(rounds, int(os.environ.get("BENCH_SECONDS", "5")))
    if "asgi" in parts:
        _asgi(max(rounds * 20, 60))
    if "records" in parts:
        _records()
