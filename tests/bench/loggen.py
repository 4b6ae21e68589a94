"""Realistic schema-v1 log generator for obsctl's benchmarks and tests.

Writes what foundation writes for a busy service: many requests with a few application lines
each and one access line (``request finished``), requests overlapping in time (lines of a few
requests interleave), a few percent of requests failing with an ERROR line over a skewed
(Zipf-like) set of internal codes, 5xx errors carrying multi-line tracebacks.

``python -m tests.bench.loggen OUT.jsonl SIZE_MB`` writes a file; :func:`generate` is the API.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

ROUTES = (
    ("GET", "/products/{product_id}", "/products/{}"),
    ("GET", "/products", "/products"),
    ("POST", "/orders", "/orders"),
    ("GET", "/orders/{order_id}", "/orders/{}"),
    ("POST", "/cart/items", "/cart/items"),
    ("DELETE", "/cart/items/{item_id}", "/cart/items/{}"),
    ("POST", "/users", "/users"),
    ("GET", "/health", "/health"),
)

# (internal_code, http_code, exception type, external message, internal message template)
ERRORS = (
    (21101, 404, "RecordNotFound", "Record not found.", "order {} not found"),
    (30101, 409, "OutOfStock", "This product is out of stock.", "sku={} stock=0"),
    (10422, 422, "InvalidRequest", "The request is invalid.", "1 validation error(s)"),
    (20503, 503, "DatabaseUnavailable", "Service temporarily unavailable.", "pool timeout"),
    (10000, 500, "ZeroDivisionError", "Internal server error.", "Unhandled ZeroDivisionError"),
    (30102, 409, "PaymentDeclined", "The payment was declined.", "card {} declined"),
    (21102, 409, "DuplicateRecord", "This record already exists.", "user {} exists"),
    (40101, 401, "NotAuthenticated", "Authentication required.", "missing token"),
    (40301, 403, "Forbidden", "You cannot do this.", "role=viewer"),
    (20504, 503, "DatabaseBusy", "Service busy, retry later.", "deadlock retries exhausted"),
)
# Zipf-like weights: the first codes dominate.
ERROR_WEIGHTS = tuple(1.0 / (rank + 1) ** 1.2 for rank in range(len(ERRORS)))

APP_LINES = (
    ("shop.catalog", "get_product", "loaded product", ("product_id", "cache")),
    ("shop.cart", "add_item", "item added to cart", ("sku", "quantity")),
    ("shop.orders", "create_order", "order created", ("order_id", "total_cents")),
    ("shop.payments", "charge", "payment authorised", ("amount_cents", "provider")),
    ("sqlalchemy.engine", "execute", "SELECT products.id FROM products WHERE products.sku = ?", ()),
    ("shop.users", "lookup", "user resolved", ("user_id",)),
)

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/app/.venv/lib/python3.11/site-packages/starlette/middleware/errors.py", '
    "line 165, in __call__\n    await self.app(scope, receive, _send)\n"
    '  File "/app/.venv/lib/python3.11/site-packages/starlette/routing.py", line 74, in app\n'
    "    response = await func(request)\n"
    '  File "/app/shop/orders.py", line {line}, in create_order\n'
    "    ratio = total / count\n"
    "ZeroDivisionError: division by zero\n"
)


@dataclass
class Generated:
    """What was written: sizes, counts, and IDs the benchmarks can look for."""

    path: str
    bytes: int = 0
    lines: int = 0
    requests: int = 0
    error_lines: int = 0
    codes: dict[int, int] = field(default_factory=dict)
    error_ids: list[str] = field(default_factory=list)
    ok_ids: list[str] = field(default_factory=list)
    middle_error_id: str = ""  # a failed request written after the first half of the file
    middle_v4_id: str = ""  # with v7 IDs: a client-sent v4 ID after the first half
    clock_us: int = 0  # the time of the last line, in µs after BASE_EPOCH


#: Record times are microseconds after this instant (2026-11-20T00:00:00Z).
BASE_EPOCH = 1_795_132_800
_SECONDS: dict[int, str] = {}


def _ts(micros: int) -> str:
    seconds, micro = divmod(micros, 1_000_000)
    text = _SECONDS.get(seconds)
    if text is None:
        moment = datetime.fromtimestamp(BASE_EPOCH + seconds, tz=UTC)
        text = moment.strftime("%Y-%m-%dT%H:%M:%S")
        if len(_SECONDS) > 100_000:
            _SECONDS.clear()
        _SECONDS[seconds] = text
    return f"{text}.{micro:06d}Z"


def _v7(micros: int, rng: random.Random) -> str:
    """A UUIDv7 issued ``micros`` after BASE_EPOCH (as foundation issues them)."""
    ms = BASE_EPOCH * 1000 + micros // 1000
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62)
    return f"{value | rng.getrandbits(62):032x}"


def _request_lines(
    rng: random.Random, cid: str, micros: int
) -> tuple[list[tuple[int, bytes]], int | None]:
    method, route, path_tpl = ROUTES[rng.randrange(len(ROUTES))]
    path = path_tpl.format(rng.randrange(1, 100_000)) if "{}" in path_tpl else path_tpl
    out: list[tuple[int, bytes]] = []
    now = micros
    for _ in range(rng.randrange(1, 5)):
        logger, function, message, keys = APP_LINES[rng.randrange(len(APP_LINES))]
        now += rng.randrange(50, 3000)
        record: dict[str, object] = {
            "ts": _ts(now),
            "level": "DEBUG" if logger.startswith("sqlalchemy") else "INFO",
            "correlation_id": cid,
            "message": message,
            "service": "shop",
            "logger": logger,
            "function": function,
            "line": rng.randrange(10, 400),
        }
        for key in keys:
            record[key] = rng.randrange(1, 1_000_000) if key != "provider" else "stripe"
        out.append((now, orjson.dumps(record)))
    code: int | None = None
    status = 200 if method == "GET" else 201
    if rng.random() < 0.03:
        internal, http, exc_type, external, internal_msg = rng.choices(ERRORS, ERROR_WEIGHTS)[0]
        code = internal
        status = http
        now += rng.randrange(50, 2000)
        exception: dict[str, str] = {"type": exc_type, "value": external}
        if http >= 500:
            exception["traceback"] = TRACEBACK.format(line=rng.randrange(10, 300)) * rng.randrange(
                1, 3
            )
        error = {
            "ts": _ts(now),
            "level": "ERROR",
            "correlation_id": cid,
            "message": internal_msg.format(rng.randrange(1, 100_000)),
            "service": "shop",
            "logger": "foundation.handlers",
            "function": "_log_app_exception",
            "line": 132,
            "internal_code": internal,
            "http_code": http,
            "exception": exception,
            "external_message": external,
        }
        out.append((now, orjson.dumps(error)))
    now += rng.randrange(100, 5000)
    access = {
        "ts": _ts(now),
        "level": "INFO",
        "correlation_id": cid,
        "message": "request finished",
        "service": "shop",
        "logger": "foundation.access",
        "function": "__call__",
        "line": 43,
        "method": method,
        "path": path,
        "route": route,
        "status": status,
        "duration_ms": round((now - micros) / 1000, 3),
    }
    out.append((now, orjson.dumps(access)))
    return out, code


def generate(
    path: str,
    size_bytes: int,
    *,
    seed: int = 1,
    start_us: int = 0,
    gap_us: tuple[int, int] = (100, 4000),
    v7_ids: bool = False,
) -> Generated:
    """Write about ``size_bytes`` of log lines to ``path`` (lines of ~4 requests interleave).

    Requests start ``gap_us`` apart (a random gap in that range) from ``start_us`` after
    2026-11-20T00:00:00Z. With ``v7_ids``, IDs are UUIDv7 of the request's start, as foundation
    issues them, except one request in fifty that brings its own v4 ID (a client's).
    """
    rng = random.Random(seed)
    info = Generated(path)
    clock = start_us
    pending: list[tuple[int, bytes]] = []
    batch: list[bytes] = []
    with open(path, "wb") as out:
        while info.bytes < size_bytes:
            # Four requests start close together; their lines are written in time order.
            for _ in range(4):
                clock += rng.randrange(*gap_us)
                client_id = not v7_ids or rng.random() < 0.02
                cid = f"{rng.getrandbits(128):032x}" if client_id else _v7(clock, rng)
                if v7_ids and client_id and not info.middle_v4_id and info.bytes >= size_bytes // 2:
                    info.middle_v4_id = cid
                lines, code = _request_lines(rng, cid, clock)
                pending.extend(lines)
                info.requests += 1
                if code is not None:
                    if (
                        not info.middle_error_id
                        and info.bytes >= size_bytes // 2
                        and not (v7_ids and client_id)
                    ):
                        info.middle_error_id = cid
                    info.error_lines += 1
                    info.codes[code] = info.codes.get(code, 0) + 1
                    if len(info.error_ids) < 1000:
                        info.error_ids.append(cid)
                elif len(info.ok_ids) < 1000:
                    info.ok_ids.append(cid)
            pending.sort(key=lambda item: item[0])
            clock = max(clock, pending[-1][0])  # the file stays in time order
            for _, line in pending:
                batch.append(line)
                info.bytes += len(line) + 1
            info.lines += len(pending)
            pending.clear()
            if len(batch) > 4096:
                out.write(b"\n".join(batch) + b"\n")
                batch.clear()
        if batch:
            out.write(b"\n".join(batch) + b"\n")
    info.clock_us = clock
    return info


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.bench.loggen OUT.jsonl SIZE_MB", file=sys.stderr)
        return 2
    info = generate(argv[0], int(float(argv[1]) * (1 << 20)))
    print(
        f"{info.path}: {info.bytes / (1 << 20):.1f} MiB, {info.lines} lines, "
        f"{info.requests} requests, {info.error_lines} errors, sample error ID {info.error_ids[0]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
