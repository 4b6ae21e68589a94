"""Rotation off the request path: the longest log call, records/s, and the archive's cost.

1. Logging as fast as one thread can for ``OBS_BENCH_ROTATION_SECONDS`` (default 30) per side,
   rotating every ``OBS_BENCH_ROTATION_MB`` (default 50) with gz compression, through
   foundation's JSON writer, on two sinks measured in the same run, sides alternated:
   *before*: Loguru's own file sink (its rotation, and its level-9 gzip inside the log call
   that rotates), exactly as foundation configured it before (byte-counting size rule,
   unbuffered); *now*: foundation's rotating file (rename in the call, compression in its
   background thread); and *no rotation* (foundation's file, never rotated): the floor a loaded
   machine's scheduler sets. Reported: the longest single log call (wall, and the CPU time it
   took: load-independent), the longest of the calls that rotated, the 99.99th percentile,
   records per second over the run and per CPU second of the logging thread; then records/s
   again in ``OBS_BENCH_SLICES`` (default 12) alternated 2 s slices per side, median of the
   per-slice ratios (load on a shared machine moves slower than that).
2. The archive alone, on the same realistic input (``tests/bench/loggen.py``, 50 MB): Loguru's
   gz (``gzip.open`` level 9, one member) against foundation's multi-member archive; size and
   CPU seconds, ``OBS_BENCH_ROUNDS`` (default 3) alternated rounds, medians.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any, TextIO

SECONDS = float(os.environ.get("OBS_BENCH_ROTATION_SECONDS", "30"))
ROTATION_MB = int(os.environ.get("OBS_BENCH_ROTATION_MB", "50"))
ROUNDS = int(os.environ.get("OBS_BENCH_ROUNDS", "3"))
SLICES = int(os.environ.get("OBS_BENCH_SLICES", "12"))
SLICE_SECONDS = 2.0


class _SizeRotation:
    """foundation's size rule for Loguru's sink before this change (bytes counted per file)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._file: object | None = None
        self._size = 0

    def __call__(self, message: str, file: TextIO) -> bool:
        if file is not self._file:
            self._file = file
            file.seek(0, os.SEEK_END)
            self._size = file.tell()
        self._size += len(message)
        return self._size > self.limit


def _timed(target: Any, name: str, into: list[int]) -> None:
    """Wrap ``target.name`` to record how long each call takes (the rotating calls)."""
    real = getattr(target, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        begin = time.perf_counter_ns()
        try:
            return real(*args, **kwargs)
        finally:
            into.append(time.perf_counter_ns() - begin)

    setattr(target, name, timed)


def _install(side: str, directory: Path, rotations: list[int], limit: int) -> Any:
    """foundation's logging with the file sink of ``side``; returns what to drain, if any."""
    from loguru._file_sink import FileSink

    from foundation import logging as flog

    if side in {"now", "no rotation"}:
        rotating = side == "now"
        config = flog.configure_logging(
            service="bench", log_dir=directory, log_stdout=False, intercept_stdlib=False,
            rotation=limit if rotating else None, retention=None,
            compression="gz" if rotating else None, env={},
        )  # fmt: skip
        target = config.sinks[0]._target  # the RotatingFile
        _timed(target, "_rotate", rotations)
        return target
    config = flog.configure_logging(
        service="bench", log_dir=None, log_stdout=False, intercept_stdlib=False, env={}
    )
    sink = FileSink(  # type: ignore[no-untyped-call]
        str(directory / "bench.jsonl"), rotation=_SizeRotation(limit), retention=None,
        compression="gz", delay=True, mode="ab", buffering=0, encoding=None,
    )  # fmt: skip
    _timed(sink, "_terminate_file", rotations)
    guarded = flog._GuardedSink(sink, "bench.jsonl", binary=True)
    flog._add_json_handler(guarded, config.renderer, "INFO")
    return None


def _log_for(
    side: str, directory: Path, seconds: float = SECONDS, limit: int = ROTATION_MB * 1_000_000
) -> dict[str, float]:
    from loguru import logger

    rotations: list[int] = []
    sink = _install(side, directory, rotations, limit)
    durations = array("q")
    record = durations.append
    clock = time.perf_counter_ns
    path = "/products/{}"
    stop_at = time.perf_counter() + seconds
    started = time.perf_counter()
    cpu_started = time.thread_time()
    number = 0
    cpu_clock = time.thread_time_ns
    longest_cpu = 0
    while True:
        for _ in range(1000):
            number += 1
            cpu_begin = cpu_clock()
            begin = clock()
            logger.info(
                "item looked up", item_id=number, user="ada", path=path, cache="hit",
                duration_ms=1.25, sku="A-1234-XYZ",
            )  # fmt: skip
            record(clock() - begin)
            # CPU time of the call: what the call itself costs, without the time the scheduler
            # of a loaded machine gave to other processes meanwhile.
            cpu_spent = cpu_clock() - cpu_begin
            if cpu_spent > longest_cpu:
                longest_cpu = cpu_spent
        if time.perf_counter() >= stop_at:
            break
    elapsed = time.perf_counter() - started
    cpu = time.thread_time() - cpu_started
    drain_started = time.perf_counter()
    if sink is not None:
        sink.drain(600.0)
    drain = time.perf_counter() - drain_started
    logger.remove()
    names = [p.name for p in directory.iterdir()]
    ordered = sorted(durations)
    return {
        "longest_ms": ordered[-1] / 1e6,
        "longest_cpu_ms": longest_cpu / 1e6,
        "p9999_ms": ordered[int(len(ordered) * 0.9999)] / 1e6,
        "records_per_s": number / elapsed,
        "records_per_cpu_s": number / cpu,
        "archives": sum(n.endswith(".gz") for n in names),
        "rotating_ms": max(rotations, default=0) / 1e6,
        "drain_s": drain,
    }


def _archive_costs(sample: Path, work: Path) -> dict[str, list[tuple[int, float]]]:
    import gzip
    from functools import partial

    from loguru._file_sink import Compression

    from foundation.logfiles import compress_rotated

    loguru_gz = partial(Compression.copy_compress, opener=gzip.open, mode="wb")
    costs: dict[str, list[tuple[int, float]]] = {"Loguru gz (level 9)": [], "foundation": []}
    sides = list(costs)
    for number in range(ROUNDS):
        for side in sides if number % 2 == 0 else reversed(sides):
            source = work / "shop.2026-11-26T04-31-59-123456Z.jsonl"
            shutil.copyfile(sample, source)
            cpu = time.process_time()
            if side == "foundation":
                compress_rotated(str(source))
            else:
                loguru_gz(str(source), f"{source}.gz")
            cpu = time.process_time() - cpu
            archive = Path(f"{source}.gz")
            costs[side].append((archive.stat().st_size, cpu))
            archive.unlink()
            source.unlink(missing_ok=True)
    return costs


def main() -> None:
    from tests.bench import loggen

    print(
        f"1. logging for {SECONDS:.0f} s per side, {ROTATION_MB} MB rotation, gz; "
        f"{ROUNDS} alternated rounds"
    )
    results: dict[str, list[dict[str, float]]] = {"before": [], "now": [], "no rotation": []}
    sides = list(results)
    for number in range(ROUNDS):
        for side in sides if number % 2 == 0 else reversed(sides):
            with tempfile.TemporaryDirectory() as tmp:
                outcome = _log_for(side, Path(tmp))
            results[side].append(outcome)
            print(
                f"   round {number + 1} {side:<11} longest {outcome['longest_ms']:8.2f} ms "
                f"(CPU {outcome['longest_cpu_ms']:7.2f} ms) "
                f"(rotating call {outcome['rotating_ms']:8.2f} ms)  "
                f"p99.99 {outcome['p9999_ms']:6.2f} ms  {outcome['records_per_s']:8,.0f} rec/s "
                f"({outcome['records_per_cpu_s']:8,.0f} per CPU s)  "
                f"{outcome['archives']:.0f} archives, drained {outcome['drain_s']:.1f} s later",
                flush=True,
            )
    base = statistics.median(r["records_per_s"] for r in results["before"])
    base_cpu = statistics.median(r["records_per_cpu_s"] for r in results["before"])
    print(
        f"   {'side':<12}{'longest ms':>11}{'CPU ms':>8}{'rotating ms':>12}{'p99.99 ms':>10}"
        f"{'records/s':>11}{'ratio':>7}{'per CPU s':>11}{'ratio':>7}   (medians over rounds)"
    )
    for side, runs in results.items():
        rate = statistics.median(r["records_per_s"] for r in runs)
        per_cpu = statistics.median(r["records_per_cpu_s"] for r in runs)
        print(
            f"   {side:<12}{statistics.median(r['longest_ms'] for r in runs):>11.2f}"
            f"{statistics.median(r['longest_cpu_ms'] for r in runs):>8.2f}"
            f"{statistics.median(r['rotating_ms'] for r in runs):>12.2f}"
            f"{statistics.median(r['p9999_ms'] for r in runs):>10.2f}{rate:>11,.0f}"
            f"{rate / base:>7.2f}{per_cpu:>11,.0f}{per_cpu / base_cpu:>7.2f}"
        )

    print(
        f"\n   records/s again, in {SLICES} alternated slices of {SLICE_SECONDS} s per side "
        "(10 MB rotation): finer alternation, steadier on a shared machine"
    )
    ratios: dict[str, list[float]] = {"now": [], "no rotation": []}
    rates: dict[str, list[float]] = {"before": [], "now": [], "no rotation": []}
    for number in range(SLICES):
        slice_rates: dict[str, float] = {}
        for side in sides if number % 2 == 0 else reversed(sides):
            with tempfile.TemporaryDirectory() as tmp:
                outcome = _log_for(side, Path(tmp), SLICE_SECONDS, 10_000_000)
            slice_rates[side] = outcome["records_per_s"]
            rates[side].append(outcome["records_per_s"])
        for side, values in ratios.items():
            values.append(slice_rates[side] / slice_rates["before"])
    for side, values in rates.items():
        ratio = statistics.median(ratios[side]) if side in ratios else 1.0
        print(f"   {side:<12}{statistics.median(values):>11,.0f} records/s{ratio:>7.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample.jsonl"
        loggen.generate(str(sample), 50 << 20)
        work = Path(tmp) / "work"
        work.mkdir()
        costs = _archive_costs(sample, work)
    size_in = 50 << 20
    print(
        f"\n2. one archive of the same {size_in >> 20} MiB realistic log, {ROUNDS} alternated "
        "rounds"
    )
    base_size = statistics.median(size for size, _ in costs["Loguru gz (level 9)"])
    base_cpu = statistics.median(cpu for _, cpu in costs["Loguru gz (level 9)"])
    print(f"   {'writer':<22}{'bytes':>12}{'size':>8}{'CPU s':>8}{'time':>7}")
    for side, values in costs.items():
        size = statistics.median(s for s, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(
            f"   {side:<22}{size:>12,.0f}{size / base_size:>8.3f}{cpu:>8.2f}{cpu / base_cpu:>7.2f}"
        )
