"""The app behind ``tests/data/golden.jsonl`` (rewrite it: ``python -m tests.data.make_golden``).

A small app is set up with ``foundation.setup`` and driven in-process with fixed request IDs.
Two things are pinned so that the output is byte-for-byte repeatable: the clock (each record is
1.5 ms after the previous one, from 2026-11-26T02:11:52.123456Z) and the access line's timer.
Absolute paths inside tracebacks are replaced by ``<python>``/``<repo>`` so the file does not
depend on the machine that wrote it. Everything else is what foundation writes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import orjson
from fastapi import FastAPI
from loguru import logger
from pydantic import BaseModel

import foundation
from foundation import ApiException, RecordNotFound
from foundation import logging as foundation_logging

GOLDEN = Path(__file__).with_name("golden.jsonl")
START = datetime(2026, 11, 26, 2, 11, 52, 123456, tzinfo=UTC)
STEP = timedelta(microseconds=1500)

# The requests, in order: (correlation ID, method, path, JSON body or None).
REQUESTS: list[tuple[str, str, str, dict[str, Any] | None]] = [
    ("0f1e2d3c4b5a69788796a5b4c3d2e1f0", "GET", "/products/tea", None),
    ("773fa6885c2e4d7f9a6b1c0d2e3f4a5b", "GET", "/orders/42", None),
    ("a1b2c3d4e5f60718293a4b5c6d7e8f90", "POST", "/orders", {"sku": "sold-out", "qty": 1}),
    ("b2c3d4e5f60718293a4b5c6d7e8f90a1", "POST", "/orders", {"sku": "sold-out", "qty": 3}),
    ("c3d4e5f60718293a4b5c6d7e8f90a1b2", "GET", "/crash", None),
    ("d4e5f60718293a4b5c6d7e8f90a1b2c3", "POST", "/users", {"password": "hunter2"}),
    ("e5f60718293a4b5c6d7e8f90a1b2c3d4", "GET", "/nowhere", None),
]


# Trace context of two requests (contract 7): one arrives from a traced gateway with both
# headers (both IDs kept, so its trace-id differs from its correlation ID); one brings only a
# traceparent (its trace-id becomes the correlation ID). The others start their own trace,
# whose trace-id is the correlation ID. Span-ids are pinned (SPAN_IDS) like the clock.
GATEWAY_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENTS: dict[str, str] = {
    "773fa6885c2e4d7f9a6b1c0d2e3f4a5b": f"00-{GATEWAY_TRACE_ID}-00f067aa0ba902b7-01",
    "e5f60718293a4b5c6d7e8f90a1b2c3d4": "00-e5f60718293a4b5c6d7e8f90a1b2c3d4-53995c3f42cd8ad8-01",
}
NO_REQUEST_ID = frozenset({"e5f60718293a4b5c6d7e8f90a1b2c3d4"})


def _span_ids() -> Iterator[str]:
    return (f"{0x5A00000000000000 + n:016x}" for n in itertools.count(1))


class OutOfStock(ApiException):
    """Golden-file copy of the shop's out-of-stock error."""

    http_code = 409
    external_message = "This product is out of stock."
    internal_code = 39901
    internal_message = "Stock check failed."


class NewOrder(BaseModel):
    sku: str
    qty: int


class NewUser(BaseModel):
    email: str
    password: str


def _app(log_dir: Path) -> FastAPI:
    app = FastAPI()
    foundation.setup(
        app, service="golden", log_dir=str(log_dir), log_stdout=False, metrics=False, env={}
    )

    @app.get("/products/{sku}")
    async def product(sku: str) -> dict[str, Any]:
        logger.info("looking up product", sku=sku)
        logger.warning("odd label\u2028with a line separator and \x1b[31mescape\x1b[0m", sku=sku)
        return {"sku": sku}

    @app.get("/orders/{order_id}")
    async def order(order_id: int) -> dict[str, Any]:
        raise RecordNotFound(internal_message=f"order id={order_id} not found")

    @app.post("/orders")
    async def create_order(body: NewOrder) -> dict[str, Any]:
        logger.info("reserving stock", sku=body.sku, qty=body.qty)
        raise OutOfStock(internal_message=f"sku={body.sku} stock=0 wanted={body.qty}", sku=body.sku)

    @app.get("/crash")
    async def crash() -> None:
        prices: dict[str, int] = {}
        logger.debug("pricing basket")
        raise ZeroDivisionError(f"division by zero ({len(prices)} prices)")

    @app.post("/users")
    async def create_user(body: NewUser) -> dict[str, str]:
        return {"email": body.email}

    return app


def _clock() -> Iterator[datetime]:
    return (START + STEP * n for n in itertools.count())


def _normalise(line: bytes, repo: str, prefixes: list[str]) -> bytes:
    if b'"traceback":' not in line:
        return line
    record = orjson.loads(line)
    exception = record["exception"]
    text = exception["traceback"]
    for prefix in prefixes:
        text = text.replace(prefix, "<python>")
    text = text.replace(repo, "<repo>")
    # Column markers (^^^) differ between Python builds: drop them.
    exception["traceback"] = re.sub(r"\n *[~^]+ *(?=\n)", "", text)
    return foundation_logging.JsonRenderer().serialize(record) + b"\n"


def generate(log_dir: Path) -> bytes:
    """Run the scripted requests and return the normalised log file's bytes."""
    clock = _clock()
    ticks = (n * 0.0125 for n in itertools.count())  # every request takes 12.5 ms
    app = _app(log_dir)
    # The access line and the handlers run under this patched clock and timer.
    logger.configure(
        patcher=lambda record: (
            foundation_logging._add_correlation_id(record),
            record.update(time=next(clock)),  # type: ignore[call-overload]
        )
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)

    async def drive() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://golden") as client:
            for cid, method, path, body in REQUESTS:
                headers = {} if cid in NO_REQUEST_ID else {"X-Request-ID": cid}
                if cid in TRACEPARENTS:
                    headers["traceparent"] = TRACEPARENTS[cid]
                await client.request(method, path, json=body, headers=headers)

    logger.info("service started", version="1.4.2")
    span_ids = _span_ids()
    with (
        mock.patch("foundation.access.time.perf_counter", side_effect=lambda: next(ticks)),
        mock.patch("foundation.tracecontext.new_span_id", lambda: next(span_ids)),
        # foundation's own access lines bypass Loguru (and its patcher): same clock for them.
        mock.patch.object(
            foundation_logging.JsonRenderer, "now", lambda self: self.timestamp(next(clock))
        ),
    ):
        asyncio.run(drive())
    logger.info("service stopped")
    logger.remove()
    raw = (log_dir / "golden.jsonl").read_bytes()
    repo = str(Path(__file__).resolve().parents[2])
    prefixes = sorted({sys.prefix, sys.base_prefix, sys.exec_prefix}, key=len, reverse=True)
    return b"".join(_normalise(line, repo, prefixes) for line in raw.splitlines(keepends=True))
