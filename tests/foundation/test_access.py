"""The access line: written straight to foundation's JSON sinks when they are the only Loguru
handlers, through Loguru otherwise, with the same fields, redaction and caps either way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI
from loguru import logger

from foundation.logging import REDACTED
from tests.foundation.conftest import client_for

CID = "0123456789abcdef0123456789abcdef"
# Keys that differ between two requests (each is a span of its own) or that only the Loguru path
# knows (its caller's frame).
_VARYING = {"ts", "span_id", "duration_ms", "function", "line"}


def _access_lines(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["message"] == "request finished"]


async def test_access_line_is_the_same_straight_and_through_loguru(
    make_app: Callable[..., FastAPI], records: Callable[[], list[dict[str, Any]]]
) -> None:
    app = make_app()
    seen: list[str] = []
    async with client_for(app) as client:
        await client.get("/items/7", headers={"X-Request-ID": CID})
        # An application's own sink: foundation's lines must reach it, so they go via Loguru.
        sink = logger.add(seen.append, format="{message}", level="INFO")
        await client.get("/items/7", headers={"X-Request-ID": CID})
        logger.remove(sink)
        await client.get("/items/7", headers={"X-Request-ID": CID})
    straight, through_loguru, straight_again = _access_lines(records())
    assert through_loguru["function"] == "write_access_line"  # the Loguru path names its caller
    assert "function" not in straight and "function" not in straight_again
    for line in (through_loguru, straight_again):
        assert {k: v for k, v in line.items() if k not in _VARYING} == {
            k: v for k, v in straight.items() if k not in _VARYING
        }
    assert straight == {
        "ts": straight["ts"],
        "level": "INFO",
        "correlation_id": CID,
        "trace_id": CID,  # the trace foundation starts takes the correlation ID as its trace-id
        "span_id": straight["span_id"],
        "message": "request finished",
        "service": "testapp",
        "logger": "foundation.access",
        "method": "GET",
        "path": "/items/7",
        "route": "/items/{item_id}",
        "status": 200,
        "duration_ms": straight["duration_ms"],
    }
    assert "request finished\n" in seen


async def test_access_line_takes_the_configured_redaction_and_caps(
    make_app: Callable[..., FastAPI], records: Callable[[], list[dict[str, Any]]]
) -> None:
    long_path = "/nowhere/" + "a" * 100
    async with client_for(make_app(log_max_field_chars=20)) as client:
        assert (await client.get(long_path)).status_code == 404
    (capped,) = _access_lines(records())
    assert capped["path"] == long_path[:20] + f"…[truncated {len(long_path) - 20} chars]"
    assert capped["route"] == "<unmatched>" and capped["status"] == 404

    async with client_for(make_app(log_redact=("path", "password"))) as client:
        await client.get("/items/3")
    redacted = _access_lines(records())[-1]
    assert redacted["path"] == REDACTED and redacted["route"] == "/items/{item_id}"


def test_rare_keys_keep_their_encoding() -> None:
    """Non-string keys inside a value and objects orjson does not know: as before the fast path."""
    from foundation.logging import JsonRenderer

    renderer = JsonRenderer()
    assert renderer.serialize({"a": {1: "x", None: "y"}}) == b'{"a":{"1":"x","null":"y"}}'
    assert orjson.loads(renderer.serialize({"a": object()}))["a"].startswith("<object object")
