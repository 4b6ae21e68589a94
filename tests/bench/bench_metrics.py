"""Throughput cost of foundation's metrics middleware against its peers, same app, same run.

Each variant is the same FastAPI app served by uvicorn (one worker, httptools, uvloop) on
127.0.0.1 and loaded by ``wrk`` (one thread, 32 connections); variants alternate in every
round, reversed every other round, and the table shows medians and ratios to bare FastAPI.

    bare            FastAPI alone
    foundation      + foundation's MetricsMiddleware and /metrics (install_metrics)
    instrumentator  + prometheus-fastapi-instrumentator (instrument + expose)
    exporter        + starlette-exporter's PrometheusMiddleware and /metrics
    all             foundation.setup: correlation ID, access line to a file, handlers, metrics

``success`` is ``GET /items/{id}`` (200); ``error`` is ``GET /fail/{id}``, a 409 raised as an
exception (an ``HTTPException`` for the peers, a foundation ``ApiException`` for ``all``).
Tune with ``BENCH_ROUNDS`` (default 5) and ``BENCH_SECONDS`` (default 3).

Because wrk on a shared two-core machine is noisy, a second table times the same apps called
directly as ASGI callables in this process (no sockets, no HTTP parsing): microseconds per
request, alternated, median of rounds, and the time each variant adds to bare FastAPI.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException

from tests.support import free_port, stop_process

VARIANTS = ("bare", "foundation", "instrumentator", "exporter", "all")
PATHS = {"success": "/items/1", "error": "/fail/1"}
ERROR_VARIANTS = ("bare", "foundation", "all")


def create_app() -> FastAPI:
    """The app under test; ``BENCH_METRICS_VARIANT`` picks the instrumentation."""
    variant = os.environ.get("BENCH_METRICS_VARIANT", "bare")
    app = FastAPI()
    fail: type[Exception] | None = None

    if variant == "all":
        import foundation

        class OutOfStock(foundation.ApiException):
            http_code = 409
            external_message = "This product is out of stock."
            internal_code = 39998
            internal_message = "Stock check failed."

        fail = OutOfStock

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/fail/{item_id}")
    async def failing(item_id: int) -> dict[str, int]:
        if fail is not None:
            raise fail(internal_message=f"sku={item_id}")
        raise HTTPException(status_code=409, detail="This product is out of stock.")

    if variant == "foundation":
        from foundation.metrics import install_metrics

        install_metrics(app)
    elif variant == "instrumentator":
        from prometheus_fastapi_instrumentator import Instrumentator

        Instrumentator().instrument(app).expose(app)
    elif variant == "exporter":
        from starlette_exporter import PrometheusMiddleware, handle_metrics

        app.add_middleware(PrometheusMiddleware)
        app.add_route("/metrics", handle_metrics)
    elif variant == "all":
        import foundation

        foundation.setup(
            app,
            service="bench",
            log_dir=os.environ.get("BENCH_LOG_DIR", "var/bench/log"),
            log_stdout=False,
            env={},
        )
    elif variant != "bare":
        raise SystemExit(f"unknown BENCH_METRICS_VARIANT {variant!r}")
    return app


@contextmanager
def _server(variant: str, log_dir: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {**os.environ, "BENCH_METRICS_VARIANT": variant, "BENCH_LOG_DIR": log_dir}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    argv = [sys.executable, "-m", "uvicorn", "--factory", "tests.bench.bench_metrics:create_app"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    argv += ["--log-level", "warning", "--http", "httptools", "--loop", "uvloop"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + PATHS["success"], timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"uvicorn ({variant}) did not start on {url}")
            time.sleep(0.1)
        yield url, proc.pid
    finally:
        stop_process(proc)


def _wrk(url: str, seconds: int) -> tuple[float, int]:
    """``wrk`` one thread, 32 connections: (requests per second, requests completed)."""
    out = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{seconds}s", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if rate is None or total is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    return float(rate.group(1)), int(total.group(1))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _in_process(rounds: int, calls: int = 2000) -> dict[str, list[float]]:
    """CPU microseconds per direct ASGI call of ``GET /items/1``, variants alternated."""
    apps: dict[str, Any] = {}
    for variant in ("bare", "foundation", "instrumentator", "exporter"):
        os.environ["BENCH_METRICS_VARIANT"] = variant
        apps[variant] = create_app()
    os.environ.pop("BENCH_METRICS_VARIANT", None)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/items/1",
        "raw_path": b"/items/1",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        return None

    async def run(app: Any, n: int) -> float:
        # CPU time of this thread: other processes on a shared machine barely disturb it.
        started = time.thread_time()
        for _ in range(n):
            await app(dict(scope), receive, send)
        return (time.thread_time() - started) / n * 1e6

    async def rounds_of_all() -> dict[str, list[float]]:
        timings: dict[str, list[float]] = {}
        for app in apps.values():
            await run(app, 500)  # warm-up: lazy router setup, label children
        for number in range(rounds):
            order = list(apps) if number % 2 == 0 else list(reversed(apps))
            for variant in order:
                timings.setdefault(variant, []).append(await run(apps[variant], calls))
        return timings

    return asyncio.run(rounds_of_all())


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian package wrk)")
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    seconds = int(os.environ.get("BENCH_SECONDS", "3"))
    rates: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}
    for number in range(rounds):
        order = VARIANTS if number % 2 == 0 else tuple(reversed(VARIANTS))
        for variant in order:
            with tempfile.TemporaryDirectory() as log_dir, _server(variant, log_dir) as server:
                url, pid = server
                _wrk(url + PATHS["success"], 1)  # warm-up
                for label, path in PATHS.items():
                    if label == "error" and variant not in ERROR_VARIANTS:
                        continue
                    before = _cpu_seconds(pid)
                    rate, done = _wrk(url + path, seconds)
                    used = _cpu_seconds(pid) - before
                    rates.setdefault((variant, label), []).append(rate)
                    cpu.setdefault((variant, label), []).append(used / done * 1e6)
        print(f"round {number + 1}/{rounds} done", file=sys.stderr, flush=True)
    print(f"wrk -t1 -c32 -d{seconds}s, {rounds} alternated rounds, medians")
    print("req/s: throughput; cpu us/req: the server's own CPU time per request, which other")
    print("load on a shared machine disturbs far less; ratio = bare / variant")
    header = f"{'variant':<16}"
    for label in PATHS:
        header += f"{label + ' req/s':>15}{'ratio':>7}{'cpu us/req':>12}{'ratio':>7}"
    print(header)
    for variant in VARIANTS:
        row = f"{variant:<16}"
        for label in PATHS:
            got = rates.get((variant, label))
            if not got:
                row += f"{'-':>15}{'-':>7}{'-':>12}{'-':>7}"
                continue
            median = statistics.median(got)
            base = statistics.median(rates[("bare", label)])
            us = statistics.median(cpu[(variant, label)])
            base_us = statistics.median(cpu[("bare", label)])
            row += f"{median:>15,.0f}{median / base:>7.2f}{us:>12.1f}{base_us / us:>7.2f}"
        print(row)
    timings = _in_process(max(rounds * 3, 10))
    print(f"\nin-process ASGI calls of GET /items/1, {len(timings['bare'])} alternated rounds")
    print("(median, and minimum: the least disturbed round on a shared machine)")
    print(
        f"{'variant':<16}{'median us':>10}{'added':>8}{'ratio':>7}"
        f"{'min us':>9}{'added':>8}{'ratio':>7}"
    )
    base_median, base_min = statistics.median(timings["bare"]), min(timings["bare"])
    for variant, got in timings.items():
        med, low = statistics.median(got), min(got)
        print(
            f"{variant:<16}{med:>10.1f}{med - base_median:>8.1f}{base_median / med:>7.2f}"
            f"{low:>9.1f}{low - base_min:>8.1f}{base_min / low:>7.2f}"
        )
    for table, unit in ((rates, "throughput"), (cpu, "cpu")):
        bare = statistics.median(table[("bare", "success")])
        ours = statistics.median(table[("foundation", "success")])
        cost = (1 - ours / bare) if unit == "throughput" else (ours / bare - 1)
        for peer in ("instrumentator", "exporter"):
            theirs = statistics.median(table[(peer, "success")])
            peer_cost = (1 - theirs / bare) if unit == "throughput" else (theirs / bare - 1)
            print(f"{unit}: cost of foundation metrics {cost:.1%}, of {peer} {peer_cost:.1%}")


if __name__ == "__main__":
    main()
