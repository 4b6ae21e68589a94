"""In-process timing of ASGI apps: direct calls, CPU time of the calling thread, alternated.

Each call runs in a task of its own, created from an empty context, as a server runs each
request: per-task costs (a context variable's first value in that task, a library building
per-context state) are then counted. When every call shared one task, asgi-correlation-id's
Sentry hook built its per-request Sentry scope once for the whole run and looked free.

Other load on a shared machine moves wall-clock rates by ±20 %; the CPU time of this thread
moves less, but still counts what other processes do to the caches. Many short rounds, apps
interleaved, and the minimum per app: the least disturbed round, which repeats within a few
per cent from run to run even with a load average of 10 on two cores.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Mapping, MutableMapping
from typing import Any


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"user-agent", b"wrk")],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: MutableMapping[str, Any]) -> None:
    return None


async def _run(app: Any, scope: Mapping[str, Any], calls: int) -> float:
    loop = asyncio.get_running_loop()
    empty = contextvars.Context()
    started = time.thread_time()
    for _ in range(calls):
        request = dict(scope, headers=list(scope["headers"]))
        await loop.create_task(app(request, _receive, _send), context=empty.copy())
    return (time.thread_time() - started) / calls * 1e6


def cpu_per_request(
    apps: Mapping[str, Any], paths: Mapping[str, str], *, rounds: int, calls: int
) -> dict[tuple[str, str], list[float]]:
    """CPU µs per request of each (app, path), apps alternating (reversed every other round)."""

    async def measure() -> dict[tuple[str, str], list[float]]:
        timings: dict[tuple[str, str], list[float]] = {}
        scopes = {label: _scope(path) for label, path in paths.items()}
        for app in apps.values():
            for scope in scopes.values():
                await _run(app, scope, 200)  # warm-up: lazy router setup, label children
        for number in range(rounds):
            order = list(apps) if number % 2 == 0 else list(reversed(list(apps)))
            for name in order:
                for label, scope in scopes.items():
                    timing = await _run(apps[name], scope, calls)
                    timings.setdefault((name, label), []).append(timing)
        return timings

    return asyncio.run(measure())
