"""Shared harness for HTTP benchmarks: uvicorn on a loopback port, wrk against it, alternated.

Besides wrk's rate, each run records what the server process itself spent: its CPU time per
request (user + system, every thread, from ``/proc``), which other load on a shared machine
moves less than the rate, and, where the app serves ``GC_PATH`` (the bench apps do), how often
its garbage collector ran per 10,000 requests: a count no load can move. Neither is visible to
in-process benchmarks, whose requests share one task (see ``tests.bench.apps_foundation``).
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support import free_port, stop_process

GC_PATH = "/bench/gc"  # the collections per generation, as gc.get_stats() counts them


@dataclass(slots=True)
class Server:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time of the whole process (all threads) so far."""
        # Fields after the command name: state is field 3, utime 14, stime 15 (proc(5)).
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def gc_collections(self) -> list[int] | None:
        response = httpx.get(self.url + GC_PATH, timeout=10)
        return list(response.json()) if response.status_code == 200 else None


@dataclass(slots=True)
class Run:
    """One wrk run against one server: its rate and what the server spent on it."""

    rate: float
    cpu_us: float  # server CPU per request
    gc_per_10k: list[float] | None = None  # collections per generation


@contextmanager
def uvicorn_server(app: str, env: Mapping[str, str]) -> Iterator[Server]:
    """Start ``uvicorn app`` (one worker, httptools, uvloop, no access log); yield it."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--http",
            "httptools",
            "--loop",
            "uvloop",
        ],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # a loaded 2-core machine can take 20 s and more
        while True:
            try:
                httpx.get(url + "/items/1", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"uvicorn {app} did not start") from None
                time.sleep(0.1)
        yield Server(url, proc.pid)
    finally:
        stop_process(proc)


def wrk(url: str, *, seconds: int = 5, connections: int = 32) -> float:
    """Requests per second reported by ``wrk`` (one thread: the server has the other core)."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    return float(match.group(1))


def measured_wrk(server: Server, path: str, *, seconds: int) -> Run:
    """``wrk`` against ``path``, with the server's CPU time and collections over the run."""
    collections = server.gc_collections()
    cpu = server.cpu_seconds()
    rate = wrk(server.url + path, seconds=seconds)
    spent = server.cpu_seconds() - cpu
    after = server.gc_collections()
    requests = rate * seconds
    per_10k = None
    if collections is not None and after is not None:
        per_10k = [(b - a) * 10_000 / requests for a, b in zip(collections, after, strict=True)]
    return Run(rate, spent / requests * 1e6, per_10k)


def alternate(
    variants: Sequence[str], paths: Mapping[str, str], app: str, *, rounds: int, seconds: int
) -> dict[tuple[str, str], list[Run]]:
    """Run every (variant, path) once per round, variants alternating; collect the runs."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian package 'wrk')")
    results: dict[tuple[str, str], list[Run]] = {}
    for number in range(rounds):
        order = list(variants) if number % 2 == 0 else list(reversed(variants))
        for variant in order:
            with tempfile.TemporaryDirectory() as tmp:
                env = {"BENCH_VARIANT": variant, "BENCH_LOG_DIR": tmp}
                with uvicorn_server(app, env) as server:
                    wrk(server.url + "/items/1", seconds=1)  # warm-up
                    for label, path in paths.items():
                        run = measured_wrk(server, path, seconds=seconds)
                        results.setdefault((variant, label), []).append(run)
    return results


def report(results: dict[tuple[str, str], list[Run]], baseline: str) -> None:
    """Medians: req/s and its ratio to the baseline; the server's CPU µs per request and its
    ratio (baseline / variant, so both ratios read "share of the baseline's throughput");
    collections per 10k requests of generations 0 and 2."""
    labels = sorted({label for _, label in results})
    variants = list(dict.fromkeys(variant for variant, _ in results))
    print(
        f"{'variant':<22}"
        + "".join(
            f"{label + ' req/s':>16}{'ratio':>7}{'CPU µs':>8}{'ratio':>7}{'gc0/10k':>9}{'gc2':>6}"
            for label in labels
        )
    )
    for variant in variants:
        row = f"{variant:<22}"
        for label in labels:
            runs, base = results[(variant, label)], results[(baseline, label)]
            rate = statistics.median(run.rate for run in runs)
            cpu = statistics.median(run.cpu_us for run in runs)
            base_rate = statistics.median(run.rate for run in base)
            base_cpu = statistics.median(run.cpu_us for run in base)
            row += f"{rate:>16,.0f}{rate / base_rate:>7.2f}{cpu:>8.1f}{base_cpu / cpu:>7.2f}"
            gcs = [run.gc_per_10k for run in runs if run.gc_per_10k is not None]
            if gcs:
                row += f"{statistics.median(g[0] for g in gcs):>9.1f}"
                row += f"{statistics.median(g[2] for g in gcs):>6.2f}"
            else:
                row += f"{'-':>9}{'-':>6}"
        print(row)
