"""What trace context costs (issue 11): the request stack before and after, and the parser.

1. Requests per second through uvicorn (one worker, wrk on loopback), everything on
   (``foundation.setup`` with metrics), today's stack against the same stack with the
   correlation-ID middleware as it was before trace context (``before_trace``); success and
   error paths; variants alternate, medians of rounds. Target: within 3 %.
2. The same two stacks as direct ASGI calls in one process (CPU time of the calling thread,
   alternated rounds, medians), without and with an incoming ``traceparent``: steadier than wrk
   on a shared machine.
3. Parsing a ``traceparent``: ``foundation.tracecontext.parse_traceparent`` against
   OpenTelemetry's ``TraceContextTextMapPropagator.extract`` (the API FastAPI already pulls in),
   alternated rounds, medians. Target: under 2 µs.

``BENCH_ROUNDS`` (default 5) and ``BENCH_SECONDS`` (default 5) size part 1,
``BENCH_INPROC_ROUNDS`` (default 31) part 2.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import MutableMapping
from typing import Any

from tests.bench._http import alternate, report

APP = "tests.bench.apps_foundation:app"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _apps(log_dir: str) -> dict[str, Any]:
    from fastapi import FastAPI
    from loguru import logger
    from starlette.middleware import Middleware

    import foundation
    from tests.bench.before_trace import CorrelationBeforeTrace

    apps: dict[str, Any] = {}
    for name in ("before", "after"):
        app = FastAPI()

        @app.get("/items/{item_id}")
        async def item(item_id: int) -> dict[str, int]:
            logger.info("item looked up", item_id=item_id)
            return {"item_id": item_id}

        foundation.setup(
            app, service="bench", log_dir=log_dir, log_stdout=False, env={}, log_compression=None
        )
        if name == "before":
            app.user_middleware[0] = Middleware(CorrelationBeforeTrace)
        apps[name] = app
    return apps


def _in_process(rounds: int, calls: int = 2000) -> dict[str, list[float]]:
    """µs of thread CPU per request, each app called directly (no server, no sockets)."""
    with tempfile.TemporaryDirectory() as tmp:
        apps = _apps(tmp)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            return None

        def scope(traced: bool) -> dict[str, Any]:
            headers = [(b"host", b"bench"), (b"user-agent", b"wrk"), (b"accept", b"*/*")]
            if traced:
                headers.append((b"traceparent", TRACEPARENT.encode()))
            return {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": "/items/1",
                "raw_path": b"/items/1",
                "root_path": "",
                "query_string": b"",
                "headers": headers,
                "client": ("127.0.0.1", 5000),
                "server": ("127.0.0.1", 8000),
            }

        async def run(app: Any, traced: bool) -> float:
            started = time.thread_time()
            for _ in range(calls):
                await app(scope(traced), receive, send)
            return (time.thread_time() - started) / calls * 1e6

        async def all_rounds() -> dict[str, list[float]]:
            sides = [
                (f"{name}{' + traceparent' if traced else ''}", app, traced)
                for traced in (False, True)
                for name, app in apps.items()
            ]
            for _, app, traced in sides:  # warm-up: build the middleware stacks, fill caches
                await run(app, traced)
            out: dict[str, list[float]] = {label: [] for label, _, _ in sides}
            for number in range(rounds):
                for label, app, traced in sides if number % 2 == 0 else reversed(sides):
                    out[label].append(await run(app, traced))
            return out

        return asyncio.run(all_rounds())


def _parse_rounds(rounds: int, calls: int = 100_000) -> dict[str, list[float]]:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from foundation.tracecontext import parse_traceparent

    propagator = TraceContextTextMapPropagator()
    carrier = {"traceparent": TRACEPARENT}

    def ours() -> float:
        started = time.perf_counter()
        for _ in range(calls):
            parse_traceparent(TRACEPARENT)
        return (time.perf_counter() - started) / calls * 1e6

    def otel() -> float:
        started = time.perf_counter()
        for _ in range(calls):
            propagator.extract(carrier)
        return (time.perf_counter() - started) / calls * 1e6

    sides = [("foundation parse_traceparent", ours), ("OpenTelemetry extract", otel)]
    out: dict[str, list[float]] = {label: [] for label, _ in sides}
    for number in range(rounds):
        for label, fn in sides if number % 2 == 0 else reversed(sides):
            out[label].append(fn())
    return out


def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    seconds = int(os.environ.get("BENCH_SECONDS", "5"))
    print(f"HTTP: uvicorn 1 worker, wrk -t1 -c32, {rounds} alternated rounds of {seconds}s")
    results = alternate(
        ["foundation_all_before", "foundation_all"],
        {"success": "/items/1", "error": "/fail/1"},
        APP,
        rounds=rounds,
        seconds=seconds,
    )
    report(results, baseline="foundation_all_before")

    inproc = int(os.environ.get("BENCH_INPROC_ROUNDS", "31"))
    print(f"\nIn-process, everything on, µs of CPU per request ({inproc} alternated rounds)")
    cpu = _in_process(inproc)
    base = statistics.median(cpu["before"])
    for label, values in cpu.items():
        median = statistics.median(values)
        spread = (max(values) - min(values)) / median
        print(
            f"{label:<28}{median:>8.1f} µs{median / base:>8.3f}x  best {min(values):6.1f} µs"
            f"  (spread {spread:.0%})"
        )
    # Per-round ratios: each round ran both sides back to back, so the load they shared cancels.
    for traced in ("", " + traceparent"):
        ratios = [a / b for a, b in zip(cpu["after" + traced], cpu["before" + traced], strict=True)]
        median = statistics.median(ratios)
        print(f"after/before{traced:<16} median of per-round ratios {median:.3f}")

    print("\ntraceparent parse, µs per call (100,000 calls, 9 alternated rounds, medians)")
    parse = _parse_rounds(9)
    for label, values in parse.items():
        print(f"{label:<32}{statistics.median(values):>8.2f} µs")
