"""Shared harness for HTTP benchmarks: uvicorn on a loopback port, wrk against it, alternated."""

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

import httpx

from tests.support import free_port, stop_process


@contextmanager
def uvicorn_server(app: str, env: Mapping[str, str]) -> Iterator[str]:
    """Start ``uvicorn app`` (one worker, httptools, uvloop, no access log); yield its URL."""
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
        yield url
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


def alternate(
    variants: Sequence[str], paths: Mapping[str, str], app: str, *, rounds: int, seconds: int
) -> dict[tuple[str, str], list[float]]:
    """Run every (variant, path) once per round, variants alternating; collect req/s."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian package 'wrk')")
    results: dict[tuple[str, str], list[float]] = {}
    for number in range(rounds):
        order = list(variants) if number % 2 == 0 else list(reversed(variants))
        for variant in order:
            with tempfile.TemporaryDirectory() as tmp:
                env = {"BENCH_VARIANT": variant, "BENCH_LOG_DIR": tmp}
                with uvicorn_server(app, env) as url:
                    wrk(url + "/items/1", seconds=1)  # warm-up
                    for label, path in paths.items():
                        rate = wrk(url + path, seconds=seconds)
                        results.setdefault((variant, label), []).append(rate)
    return results


def report(results: dict[tuple[str, str], list[float]], baseline: str) -> None:
    labels = sorted({label for _, label in results})
    variants = list(dict.fromkeys(variant for variant, _ in results))
    print(f"{'variant':<18}" + "".join(f"{label + ' req/s':>20}{'ratio':>8}" for label in labels))
    for variant in variants:
        row = f"{variant:<18}"
        for label in labels:
            rate = statistics.median(results[(variant, label)])
            base = statistics.median(results[(baseline, label)])
            row += f"{rate:>20,.0f}{rate / base:>8.2f}"
        print(row)
