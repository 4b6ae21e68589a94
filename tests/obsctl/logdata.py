"""Schema-v1 log lines for obsctl's tests, written the way foundation writes them
(compact separators, keys in contract order, ``request finished`` access line per request)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from obsctl.cli.entry import main

BASE = datetime(2026, 11, 26, 2, 11, 52, 123456, tzinfo=UTC).timestamp()


def ts(seconds: float, *, base: float = BASE) -> str:
    moment = datetime.fromtimestamp(base + seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def ago(seconds: float) -> str:
    """A timestamp ``seconds`` before now (for --since tests)."""
    return ts(-seconds, base=time.time())


def line(
    at: float | str, level: str = "INFO", cid: str | None = None, message: str = "m", **extra: Any
) -> bytes:
    record: dict[str, Any] = {"ts": at if isinstance(at, str) else ts(at), "level": level}
    if cid is not None:
        record["correlation_id"] = cid
    record["message"] = message
    record["service"] = "shop"
    record.setdefault("logger", extra.pop("logger", "shop.orders"))
    record.update(extra)
    return orjson.dumps(record) + b"\n"


def access(
    at: float | str, cid: str, method: str, path: str, route: str, status: int, ms: float
) -> bytes:
    return line(
        at,
        "INFO",
        cid,
        "request finished",
        logger="foundation.access",
        method=method,
        path=path,
        route=route,
        status=status,
        duration_ms=ms,
    )


def app_error(
    at: float | str,
    cid: str | None,
    code: int | None,
    http: int,
    internal: str,
    external: str,
    exc_type: str,
    *,
    level: str = "ERROR",
    traceback: str | None = None,
) -> bytes:
    exception: dict[str, str] = {"type": exc_type, "value": external}
    if traceback is not None:
        exception["traceback"] = traceback
    extra: dict[str, Any] = {"logger": "foundation.handlers"}
    if code is not None:
        extra["internal_code"] = code
    extra["http_code"] = http
    extra["exception"] = exception
    extra["external_message"] = external
    return line(at, level, cid, internal, **extra)


def write(path: Path, *lines: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(lines))
    return path


CID_A = "773fa6885c2e4d7f9a6b1c0d2e3f4a5b"
CID_B = "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e"
CID_C = "773fa688ffffffffffffffffffffffff"  # shares its first 8 characters with CID_A


def order_request(start: float, cid: str = CID_A) -> list[bytes]:
    """POST /orders that fails with OutOfStock (409, code 30101) after 12.3 ms."""
    return [
        line(start, "INFO", cid, "checking stock", logger="shop.orders", sku="A-1"),
        app_error(
            start + 0.010,
            cid,
            30101,
            409,
            "sku=A-1 stock=0",
            "This product is out of stock.",
            "OutOfStock",
        ),
        access(start + 0.0123, cid, "POST", "/orders", "/orders", 409, 12.3),
    ]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``obsctl ARGS`` in this process: exit code, stdout, stderr."""
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err
