"""The one layer ``setup`` installs answers, logs and counts every case as the three middlewares
it replaces did, stacked in setup's old order (access line → metrics → catch-all)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from foundation.access import AccessLogMiddleware
from foundation.handlers import INTERNAL_ERROR_MESSAGE, CatchAllMiddleware
from foundation.logging import configure_logging
from foundation.metrics import AppMetrics, MetricsMiddleware, create_metrics
from foundation.observe import RequestObserver
from tests.foundation.servers import read_records

Case = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"made"})


async def _gone_mid_stream(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"part", "more_body": True})
    assert (await receive())["type"] == "http.disconnect"


async def _gone_after_the_end(scope: Scope, receive: Receive, send: Send) -> None:
    await _ok(scope, receive, send)
    assert (await receive())["type"] == "http.disconnect"


async def _crash_before_start(scope: Scope, receive: Receive, send: Send) -> None:
    raise ZeroDivisionError("no prices")


async def _crash_mid_stream(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"part", "more_body": True})
    raise KeyError("CH")


async def _silent(scope: Scope, receive: Receive, send: Send) -> None:
    return None


async def _client_disconnect(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    raise ClientDisconnect


async def _trailers(scope: Scope, receive: Receive, send: Send) -> None:
    # The access line counts any final message as the end; the metrics only the last body.
    await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
    await send({"type": "http.response.body", "body": b"data", "more_body": True})
    await send({"type": "http.response.trailers", "headers": [], "more_trailers": False})


CASES: dict[str, Case] = {
    "ok": _ok,
    "gone mid-stream": _gone_mid_stream,
    "gone after the end": _gone_after_the_end,
    "crash before start": _crash_before_start,
    "crash mid-stream": _crash_mid_stream,
    "no response": _silent,
    "client disconnect": _client_disconnect,
    "trailers": _trailers,
}


def _three_layers(app: ASGIApp, metrics: AppMetrics) -> ASGIApp:
    inner = MetricsMiddleware(CatchAllMiddleware(app), metrics=metrics)
    return AccessLogMiddleware(inner, exclude_paths=("/metrics",))


def _one_layer(app: ASGIApp, metrics: AppMetrics) -> ASGIApp:
    return RequestObserver(app, exclude_paths=("/metrics",), metrics=metrics)


async def _outcome(
    wiring: Callable[[ASGIApp, AppMetrics], ASGIApp],
    case: Case,
    log_dir: Path,
    *,
    method: str = "GET",
    path: str = "/feed",
) -> dict[str, Any]:
    configure_logging(service="observe", log_dir=log_dir, log_stdout=False, env={})
    metrics = create_metrics(registry=CollectorRegistry(), process_metrics=False)
    stack = wiring(case, metrics)
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "method": method,
        "path": path,
        "root_path": "",
        "headers": [],
        "query_string": b"",
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await stack(scope, receive, send)
    records = read_records(log_dir)
    counted = {
        sample.labels["status"]: sample.value
        for family in metrics.registry.collect()
        if family.name == "http_requests"
        for sample in family.samples
        if sample.name == "http_requests_total"
    }
    return {
        "sent": [
            (m["type"], m.get("status"), m.get("body"), m.get("more_body", False)) for m in sent
        ],
        "access": [
            (r["method"], r["path"], r["status"])
            for r in records
            if r["message"] == "request finished"
        ],
        "errors": [
            (r["message"], r["exception"]["type"]) for r in records if r["level"] == "ERROR"
        ],
        "counted": counted,
    }


@pytest.mark.parametrize("name", list(CASES))
async def test_one_layer_behaves_as_the_three_it_replaces(tmp_path: Path, name: str) -> None:
    three = await _outcome(_three_layers, CASES[name], tmp_path / "three")
    one = await _outcome(_one_layer, CASES[name], tmp_path / "one")
    assert one == three
    assert len(one["access"]) == 1  # and each case did produce its line


@pytest.mark.parametrize(  # the cases where the line and the series part ways are the last
    ("name", "line", "counted"),
    [
        ("ok", 201, "201"),
        ("gone mid-stream", 499, "499"),
        ("gone after the end", 201, "201"),
        ("crash before start", 500, "500"),
        ("crash mid-stream", 500, "500"),
        ("no response", 500, "500"),
        ("trailers", 200, "500"),
    ],
)
async def test_status_on_the_line_and_in_the_series(
    tmp_path: Path, name: str, line: int, counted: str
) -> None:
    outcome = await _outcome(_one_layer, CASES[name], tmp_path)
    assert [status for _, _, status in outcome["access"]] == [line]
    assert outcome["counted"] == {counted: 1.0}


async def test_a_crash_before_the_response_is_answered_once_with_the_envelope(
    tmp_path: Path,
) -> None:
    outcome = await _outcome(_one_layer, CASES["crash before start"], tmp_path)
    start, body = outcome["sent"]
    assert start[:2] == ("http.response.start", 500)
    assert orjson.loads(body[2])["message"] == INTERNAL_ERROR_MESSAGE
    assert outcome["errors"] == [("Unhandled ZeroDivisionError", "ZeroDivisionError")]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_the_metrics_path_is_served_and_never_logged(tmp_path: Path, method: str) -> None:
    outcome = await _outcome(_one_layer, _ok, tmp_path, method=method, path="/metrics")
    start, body = outcome["sent"]
    assert start[:2] == ("http.response.start", 200)
    assert (body[2] == b"") is (method == "HEAD")
    assert outcome["access"] == []


async def test_other_methods_on_the_metrics_path_reach_the_app_and_are_counted(
    tmp_path: Path,
) -> None:
    three = await _outcome(_three_layers, _ok, tmp_path / "three", method="POST", path="/metrics")
    one = await _outcome(_one_layer, _ok, tmp_path / "one", method="POST", path="/metrics")
    assert one == three
    assert one["access"] == [] and one["counted"] == {"201": 1.0}
