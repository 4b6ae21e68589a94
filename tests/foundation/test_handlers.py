"""Error responses (contract 2) and how each failure is logged: once, with its ID, no secret."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response

from foundation.exceptions import DuplicateInternalCode, RecordNotFound
from tests.foundation import apps
from tests.foundation.conftest import client_for
from tests.foundation.servers import read_records, run_uvicorn, wait_until

Records = Callable[[], list[dict[str, Any]]]


def envelope(message: str, code: int, cid: str) -> dict[str, Any]:
    return {"message": message, "code": code, "correlation_id": cid}


def not_access(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The app's own lines: no access line, nor the in-process client's (httpx is intercepted)."""
    return [r for r in records if r["message"] != "request finished" and r["logger"] != "httpx"]


# -- router errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "message", "code"),
    [
        ("GET", "/no/such/route", 404, "Not found.", 10404),
        ("DELETE", "/ok", 405, "Method not allowed.", 10405),
    ],
)
async def test_router_errors_use_the_envelope(
    client: httpx.AsyncClient,
    records: Records,
    method: str,
    path: str,
    status: int,
    message: str,
    code: int,
) -> None:
    cid = uuid.uuid4().hex
    response = await client.request(method, path, headers={"X-Request-ID": cid})
    assert response.status_code == status
    assert response.json() == envelope(message, code, cid)
    assert response.headers["X-Request-ID"] == cid
    if status == 405:
        assert response.headers["Allow"] == "GET"
    (logged,) = not_access(records())
    assert logged["level"] == "WARNING"
    assert (logged["correlation_id"], logged["internal_code"], logged["http_code"]) == (
        cid,
        code,
        status,
    )


# -- validation errors ----------------------------------------------------------------------------

PASSWORD = "hunter2-very-secret"

VALIDATION_CASES = {
    "missing field next to a password": json.dumps({"password": PASSWORD}).encode(),
    "validator message naming a host and a DSN": json.dumps(
        {"name": "ann", "password": PASSWORD, "dsn": "postgres://x"}
    ).encode(),
    "invalid JSON": b'{"name": "ann", "password": "' + PASSWORD.encode() + b'", ',
    "1 MB field": json.dumps(
        {"name": "ann", "password": PASSWORD, "bio": "B" * 1_000_000}
    ).encode(),
    "wrong type everywhere": json.dumps({"name": [PASSWORD], "password": {"p": PASSWORD}}).encode(),
}


@pytest.mark.parametrize("body", VALIDATION_CASES.values(), ids=VALIDATION_CASES.keys())
async def test_422_never_echoes_input(
    client: httpx.AsyncClient, records: Records, body: bytes
) -> None:
    cid = uuid.uuid4().hex
    response = await client.post(
        "/users",
        content=body,
        headers={"X-Request-ID": cid, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.headers["X-Request-ID"] == cid
    assert len(response.content) < 2048
    payload = response.json()
    assert set(payload) == {"message", "code", "correlation_id", "errors"}
    assert (payload["message"], payload["code"], payload["correlation_id"]) == (
        "The request is invalid.",
        10422,
        cid,
    )
    assert payload["errors"], "the client is told where the problem is"
    assert all(set(error) == {"loc", "type"} for error in payload["errors"])
    text = response.text
    for leak in (PASSWORD, "db.internal", "hunter2@", '"input"', '"ctx"', "BBBB", "postgres://"):
        assert leak not in text
    # The log line says what failed, not with which values either.
    raw_log = json.dumps(records())
    assert PASSWORD not in raw_log and "BBBB" not in raw_log


# -- application exceptions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "status", "message", "code", "internal"),
    [
        (404, 404, "Record not found.", 21101, "item 404 missing"),
        (409, 409, "This product is out of stock.", 30101, "sku={0}{name} stock=0"),
        (502, 502, "The payment provider is unavailable.", 30201, "gateway timeout after 3 s"),
    ],
)
async def test_app_exceptions_map_to_their_status_code_and_log_once(
    client: httpx.AsyncClient,
    records: Records,
    item: int,
    status: int,
    message: str,
    code: int,
    internal: str,
) -> None:
    cid = uuid.uuid4().hex
    response = await client.get(f"/items/{item}", headers={"X-Request-ID": cid})
    assert response.status_code == status
    assert response.json() == envelope(message, code, cid)
    assert response.headers["X-Request-ID"] == cid
    assert internal not in response.text
    (logged,) = not_access(records())
    assert logged["level"] == "ERROR"
    assert logged["message"] == internal  # braces in user data are kept, not formatted
    assert (logged["correlation_id"], logged["internal_code"], logged["http_code"]) == (
        cid,
        code,
        status,
    )
    if status >= 500:
        assert "Traceback" in logged["exception"]["traceback"]
    else:
        assert logged["exception"]["type"] in ("RecordNotFound", "OutOfStock")
    if item == 404:
        assert logged["table"] == "items"  # per-instance context is logged
    if item == 409:
        assert logged["sku"] == "{0}{name}"


async def test_app_exception_from_a_yield_dependency_that_reraises_is_mapped(
    client: httpx.AsyncClient,
) -> None:
    cid = uuid.uuid4().hex
    response = await client.get("/guarded/7", headers={"X-Request-ID": cid})
    assert response.status_code == 409
    assert response.json() == envelope("This product is out of stock.", 30101, cid)
    assert apps.CLEANUPS == ["caught", "closed"]


def test_duplicate_internal_code_fails_when_the_class_is_created() -> None:
    with pytest.raises(DuplicateInternalCode) as raised:

        class ShadowsRecordNotFound(RecordNotFound):
            internal_code = 21101

    text = str(raised.value)
    assert "21101" in text
    assert "ShadowsRecordNotFound" in text and "RecordNotFound" in text


def test_subclass_inheriting_a_code_is_not_a_duplicate() -> None:
    class SpecificNotFound(RecordNotFound):
        external_message = "Order not found."

    assert SpecificNotFound.internal_code == 21101


# -- unhandled errors ----------------------------------------------------------------------------


async def test_unhandled_error_is_a_generic_500_logged_once_with_its_traceback(
    client: httpx.AsyncClient, records: Records
) -> None:
    cid = uuid.uuid4().hex
    response = await client.get("/boom", headers={"X-Request-ID": cid})
    assert response.status_code == 500
    assert response.json() == envelope("Internal server error.", 10500, cid)
    assert response.headers["X-Request-ID"] == cid
    for leak in ("dsn", "pw@", "postgres", "Traceback", "RuntimeError"):
        assert leak not in response.text
    errors = [r for r in records() if r["level"] == "ERROR"]
    assert len(errors) == 1
    (error,) = errors
    assert error["correlation_id"] == cid
    assert set(error["exception"]) == {"type", "value", "traceback"}
    assert error["exception"]["type"] == "RuntimeError"
    assert "raise RuntimeError" in error["exception"]["traceback"]
    # diagnose is off: no local variable values next to the traceback.
    assert "s3cr3t-local-value" not in json.dumps(records())
    access = [r for r in records() if r["message"] == "request finished"]
    assert [(a["status"], a["correlation_id"]) for a in access] == [(500, cid)]


class _Passthrough(BaseHTTPMiddleware):
    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers["X-Passthrough"] = "1"
        return response


@pytest.mark.parametrize("where", ["added before setup", "added after setup"])
async def test_500_carries_the_id_with_a_user_base_http_middleware(
    log_dir: Path, where: str
) -> None:
    app = FastAPI()
    apps._add_routes(app)
    if where == "added before setup":
        app.add_middleware(_Passthrough)
    import foundation

    foundation.setup(app, service="testapp", env={}, log_dir=str(log_dir), log_stdout=False)
    if where == "added after setup":
        app.add_middleware(_Passthrough)
    cid = uuid.uuid4().hex
    async with client_for(app) as http:
        response = await http.get("/boom", headers={"X-Request-ID": cid})
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == cid
    assert response.json() == envelope("Internal server error.", 10500, cid)
    errors = [r for r in read_records(log_dir) if r["level"] == "ERROR"]
    assert [e["correlation_id"] for e in errors] == [cid]


async def test_500_keeps_the_cors_expose_header(make_app: Callable[..., FastAPI]) -> None:
    app = make_app()
    app.add_middleware(
        CORSMiddleware, allow_origins=["https://shop.example"], expose_headers=["X-Request-ID"]
    )
    cid = uuid.uuid4().hex
    async with client_for(app) as http:
        response = await http.get(
            "/boom", headers={"X-Request-ID": cid, "Origin": "https://shop.example"}
        )
    assert response.status_code == 500
    assert response.headers["Access-Control-Expose-Headers"] == "X-Request-ID"
    assert response.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert response.json()["correlation_id"] == cid


# -- options --------------------------------------------------------------------------------------


async def test_problem_json_option(make_app: Callable[..., FastAPI]) -> None:
    cid = uuid.uuid4().hex
    async with client_for(make_app(problem_json=True)) as http:
        missing = await http.get("/items/404", headers={"X-Request-ID": cid})
        crashed = await http.get("/boom", headers={"X-Request-ID": cid})
    assert missing.headers["Content-Type"] == "application/problem+json"
    assert missing.json() == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "Record not found.",
        "code": 21101,
        "correlation_id": cid,
    }
    assert crashed.status_code == 500
    assert crashed.headers["Content-Type"] == "application/problem+json"
    assert crashed.json()["title"] == "Internal Server Error"
    assert crashed.json()["correlation_id"] == cid


async def test_codes_can_be_hidden(make_app: Callable[..., FastAPI]) -> None:
    cid = uuid.uuid4().hex
    async with client_for(make_app(expose_error_codes=False)) as http:
        response = await http.get("/items/404", headers={"X-Request-ID": cid})
    assert response.json() == {"message": "Record not found.", "correlation_id": cid}


# -- over a real server --------------------------------------------------------------------------


@pytest.mark.proc
async def test_error_after_the_response_started_over_uvicorn(tmp_path: Path) -> None:
    """The client sees a broken stream, the log has one error with the ID, the server lives on."""
    cid = uuid.uuid4().hex
    with run_uvicorn(tmp_path) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=5.0) as http:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.get("/stream-fail", headers={"X-Request-ID": cid})
            after = await http.get("/ok")
            assert after.status_code == 200
            metrics = (await http.get("/metrics")).text

        def errors() -> list[dict[str, Any]]:
            return [r for r in read_records(server.log_dir) if r["level"] == "ERROR"]

        assert wait_until(lambda: len(errors()) >= 2, 5.0)
        access = [
            r
            for r in read_records(server.log_dir)
            if r["message"] == "request finished" and r["path"] == "/stream-fail"
        ]
    # One error with the ID and the traceback; uvicorn adds its own one-line notice (no
    # traceback, no ID: it is written after the request's context is gone) and closes the
    # connection, which is how the client learns the body is incomplete.
    error, notice = errors()
    assert notice == {**notice, "logger": "uvicorn.error", "level": "ERROR"}
    assert notice["message"] == "ASGI callable returned without completing response."
    assert "exception" not in notice
    assert error["correlation_id"] == cid
    assert error["exception"]["value"] == "stream broke after the first chunk"
    # The access line and the metrics count it as a failure, not as the 200 that was sent.
    assert [(a["status"], a["correlation_id"]) for a in access] == [(500, cid)]
    assert 'http_requests_total{method="GET",route="/stream-fail",status="500"} 1.0' in metrics
