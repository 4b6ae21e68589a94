"""App start-up with and without foundation's error documentation (``foundation.openapi``).

Start-up here is what an app pays once: building the app (``FastAPI()``, ``foundation.setup``,
the routes, ``error_responses`` on some of them) and building its OpenAPI document (FastAPI
builds it on the first ``/openapi.json`` request and keeps it). The two sides differ only in the
documentation: "with" is foundation as shipped; "without" gives the same app FastAPI's own
``openapi`` back and declares no errors. Requests pay nothing either way: the document is
cached, and the handlers do not change. Times are CPU time of the process (steadier than wall
time on a shared machine; start-up is single-threaded). Sides alternate within each round (A B,
then B A); the figures are medians over rounds, with the median of the per-round ratios.
"""

from __future__ import annotations

import copy
import gc
import statistics
import time
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

import foundation
from foundation import DuplicateRecord, RecordNotFound, ReferenceViolation
from foundation.openapi import _doc_options, rewrite_document

ROUNDS = 21
SIZES = (8, 100)  # the shop's number of routes, and a larger service


class Body(BaseModel):
    name: str
    qty: int


def _build(routes: int, *, documented: bool) -> tuple[FastAPI, float]:
    """The app and the seconds it took to build (setup and routes)."""
    gc.collect()  # no collection of the previous side's garbage inside this side's time
    started = time.process_time()
    app = FastAPI()
    foundation.setup(app, service="bench", env={}, log_dir=None, log_stdout=False, metrics=False)
    if not documented:
        app.openapi = FastAPI.openapi.__get__(app)  # type: ignore[method-assign]
    for number in range(routes):
        responses: dict[int | str, dict[str, Any]] = {}
        if documented and number % 3 == 0:
            responses = foundation.error_responses(
                RecordNotFound, DuplicateRecord, ReferenceViolation
            )
        if number % 2:

            async def read(item_id: int, verbose: bool = False) -> dict[str, int]:
                return {"item_id": item_id}

            app.add_api_route(f"/r{number}/{{item_id}}", read, methods=["GET"], responses=responses)
        else:

            async def write(body: Body) -> Body:
                return body

            app.add_api_route(f"/w{number}", write, methods=["POST"], responses=responses)
    return app, time.process_time() - started


def _one(routes: int, documented: bool) -> tuple[float, float]:
    app, build = _build(routes, documented=documented)
    started = time.process_time()
    app.openapi()
    return build, time.process_time() - started


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _run(routes: int) -> None:
    sides: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    ratios: list[float] = []
    _one(routes, True), _one(routes, False)  # warm-up: imports, pydantic's caches
    for round_number in range(ROUNDS):
        measured: dict[bool, tuple[float, float]] = {}
        for documented in (True, False) if round_number % 2 else (False, True):
            measured[documented] = _one(routes, documented)
            sides[documented].append(measured[documented])
        ratios.append(sum(measured[True]) / sum(measured[False]))
    print(f"{routes} routes ({ROUNDS} alternated rounds, medians, CPU ms):")
    print(f"  {'side':<10} {'build app':>10} {'first document':>15} {'start-up':>10}")
    for documented, label in ((False, "without"), (True, "with")):
        build = _median([b for b, _ in sides[documented]]) * 1000
        doc = _median([d for _, d in sides[documented]]) * 1000
        total = _median([b + d for b, d in sides[documented]]) * 1000
        print(f"  {label:<10} {build:>10.2f} {doc:>15.2f} {total:>10.2f}")
    print(f"  start-up ratio with/without: {_median(ratios):.3f} (median of per-round ratios)")
    print(f"  the rewrite alone (on FastAPI's document): {_rewrite_ms(routes):.2f} ms")


def _rewrite_ms(routes: int) -> float:
    app, _ = _build(routes, documented=True)
    raw = FastAPI.openapi(app)  # FastAPI's own document, markers still in it
    app.openapi_schema = None
    options = _doc_options(app)
    times = []
    for _ in range(ROUNDS):
        document = copy.deepcopy(raw)
        started = time.process_time()
        rewrite_document(document, options)
        times.append(time.process_time() - started)
    return _median(times) * 1000


def main() -> None:
    for routes in SIZES:
        _run(routes)


if __name__ == "__main__":
    main()
