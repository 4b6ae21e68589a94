"""Sentry through the real ``sentry-sdk`` with an in-memory transport: what leaves the process.

Run by ``test_sentry.py`` in a pytest of their own: the SDK's integrations patch Starlette and
FastAPI classes for the whole process, for good, which would change every later test's
tracebacks. Each test initialises Sentry with every default integration (FastAPI, Starlette, Loguru,
logging), ``send_default_pii`` and local variables on, so that anything the SDK would send is
sent, and reads the envelopes the transport received.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sentry_sdk
from fastapi import FastAPI, Request
from sentry_sdk.envelope import Envelope
from sentry_sdk.integrations.loguru import LoguruIntegration
from sentry_sdk.transport import Transport

import foundation
from foundation import ApiException, AppException
from tests.foundation.conftest import client_for

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


class Shelf(ApiException):
    """The shelf is empty."""

    http_code = 409
    external_message = "The shelf is empty."
    internal_code = 39721
    internal_message = "Shelf empty."


class VaultDown(AppException):
    """The vault did not answer."""

    http_code = 503
    external_message = "Try again later."
    internal_code = 39722
    internal_message = "Vault down."


class MemoryTransport(Transport):
    """Keeps every envelope in memory instead of sending it."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []
        self.lost: list[str] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def record_lost_event(
        self,
        reason: str,
        data_category: Any = None,
        item: Any = None,
        *,
        quantity: int = 1,
    ) -> None:
        if data_category == "error":
            self.lost.append(reason)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [
            item.payload.json
            for envelope in self.envelopes
            for item in envelope.items
            if item.type == "event" and item.payload.json is not None
        ]

    def raw(self) -> bytes:
        return b"".join(envelope.serialize() for envelope in self.envelopes)


@pytest.fixture
def sentry() -> Iterator[Callable[[], MemoryTransport]]:
    """``init()`` starts Sentry (call it before or after building the app); always closed."""
    transports: list[MemoryTransport] = []

    def init() -> MemoryTransport:
        transport = MemoryTransport()
        with warnings.catch_warnings():
            # send_default_pii is deprecated in favour of data_collection; it is the short way
            # to make the SDK collect headers, cookies and bodies.
            warnings.simplefilter("ignore", DeprecationWarning)
            sentry_sdk.init(
                dsn="http://public@127.0.0.1:9/1",
                transport=transport,
                send_default_pii=True,
                include_local_variables=True,
                max_request_body_size="always",
            )
        transports.append(transport)
        return transport

    yield init
    if transports:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)


def _app(**options: Any) -> FastAPI:
    app = FastAPI()
    foundation.setup(
        app, service="sentry-test", env={}, log_dir=None, log_stdout=False, metrics=False, **options
    )

    @app.get("/receipts/{order_id}")
    async def receipt(order_id: int) -> dict[str, int]:
        rates = {"FR": 20}
        return {"vat": rates["CH"] + order_id}

    @app.get("/shelves/{shelf}")
    async def shelf(shelf: str) -> None:
        raise Shelf(internal_message=f"shelf={shelf} count=0", shelf=shelf)

    @app.post("/vault/{n}")
    async def vault(n: int, request: Request) -> None:
        password = "local-password-1"
        api_key = "local-api-key-2"
        body = await request.json()
        assert password and api_key  # alive in the frame: Sentry collects local variables
        raise VaultDown(
            internal_message=f"vault login failed password=msg-password-3 token: msg-token-4 n={n}",
            token="context-token-5",
            card="context-card-6",
            sku="visible-sku",
            note=body["note"],
        )

    return app


async def test_a_500_carries_code_correlation_id_trace_id_and_route(
    sentry: Callable[[], MemoryTransport],
) -> None:
    transport = sentry()
    cid = uuid.uuid4().hex
    async with client_for(_app()) as http:
        response = await http.get(
            "/receipts/7",
            headers={"X-Request-ID": cid, "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"},
        )
    assert response.status_code == 500
    [event] = transport.events
    assert event["level"] == "error"
    assert event["exception"]["values"][-1]["type"] == "KeyError"
    assert {key: event["tags"][key] for key in ("internal_code", "correlation_id", "route")} == {
        "internal_code": "10500",
        "correlation_id": cid,
        "route": "/receipts/{order_id}",
    }
    assert event["tags"]["trace_id"] == TRACE_ID
    assert event["tags"]["http_code"] == "500"
    # asgi-correlation-id's own Sentry hook, kept while a client is active (foundation.correlation).
    assert event["tags"]["transaction_id"] == cid


@pytest.mark.parametrize("sentry_first", [True, False], ids=["sentry-first", "sentry-after"])
async def test_a_409_is_not_sent_by_default(
    sentry: Callable[[], MemoryTransport], sentry_first: bool
) -> None:
    """Whether Sentry's Loguru handlers survive (init after setup) or not, no event."""
    transport = sentry() if sentry_first else None
    app = _app()  # its configure_logging removes every Loguru handler installed before
    if transport is None:
        transport = sentry()
        # Integrations are set up once per process: re-add the Loguru handlers, as a first
        # init after setup would, so that the 409's ERROR line reaches Sentry's handler.
        LoguruIntegration.setup_once()
    async with client_for(app) as http:
        response = await http.get("/shelves/top")
        crash = await http.get("/receipts/1")
    assert response.status_code == 409
    assert crash.status_code == 500
    # Only the crash: neither the handler nor a logging integration sent the 409 (logged at ERROR).
    assert [event["tags"]["internal_code"] for event in transport.events] == ["10500"]
    assert b"shelf=top" not in transport.raw()
    # With the handlers present, the copies made from foundation's lines were dropped.
    if sentry_first:
        assert transport.lost == []
    else:
        assert transport.lost
        assert set(transport.lost) == {"before_send"}


async def test_client_errors_are_sent_as_warnings_when_the_app_asks(
    sentry: Callable[[], MemoryTransport],
) -> None:
    transport = sentry()
    async with client_for(_app(sentry_client_errors=True)) as http:
        response = await http.get("/shelves/top")
        invalid = await http.get("/receipts/not-a-number")
    assert (response.status_code, invalid.status_code) == (409, 422)
    events = transport.events
    assert [(e["tags"]["internal_code"], e["tags"]["http_code"]) for e in events] == [
        ("39721", "409"),
        ("10422", "422"),
    ]
    assert {event["level"] for event in events} == {"warning"}
    assert events[0]["tags"]["route"] == "/shelves/{shelf}"
    assert events[0]["contexts"]["foundation"]["context"] == {"shelf": "top"}


async def test_redacted_values_never_leave_the_process(
    sentry: Callable[[], MemoryTransport],
) -> None:
    transport = sentry()
    app = _app(log_redact=("password", "token", "authorization", "cookie", "api_key", "card"))
    async with client_for(app) as http:
        response = await http.post(
            "/vault/3?token=query-token-7",
            json={"password": "body-password-8", "note": "visible-note"},
            headers={
                "Authorization": "Bearer header-bearer-9",
                "Cookie": "session=cookie-session-10",
                "X-Api-Key": "header-api-key-11",
            },
        )
    assert response.status_code == 503
    [event] = transport.events
    raw = transport.raw()
    leaked = [
        secret
        for secret in (
            "local-password-1",
            "local-api-key-2",
            "msg-password-3",
            "msg-token-4",
            "context-token-5",
            "context-card-6",
            "query-token-7",
            "body-password-8",
            "header-bearer-9",
            "cookie-session-10",
            "header-api-key-11",
        )
        if secret.encode() in raw
    ]
    assert leaked == []
    # What is not secret still arrives: the test would pass vacuously otherwise.
    assert b"visible-sku" in raw
    assert b"visible-note" in raw
    assert event["tags"]["internal_code"] == "39722"
    value = event["exception"]["values"][-1]["value"]
    assert value == "vault login failed password=[REDACTED] token: [REDACTED] n=3"
    assert event["contexts"]["foundation"]["context"]["token"] == "[REDACTED]"
    headers = {name.lower(): value for name, value in event["request"]["headers"].items()}
    assert headers["authorization"] == "[REDACTED]"


async def test_without_an_active_client_no_sentry_scope_is_built_per_request() -> None:
    """Each request of a real server runs in a task of its own, with no Sentry isolation scope
    yet: upstream's hook built one per request (for a tag no event would carry), which made the
    garbage collector run several times as often under load."""
    assert not sentry_sdk.is_initialized()
    built: list[object] = []
    original = sentry_sdk.Scope.__init__

    def counting(self: sentry_sdk.Scope, *args: Any, **kwargs: Any) -> None:
        built.append(self)
        original(self, *args, **kwargs)

    app = _app()
    sentry_sdk.Scope.__init__ = counting  # type: ignore[method-assign]
    try:
        async with client_for(app) as http:
            for number in range(5):
                # A context of its own per request, as a server's task has.
                task = asyncio.get_running_loop().create_task(
                    http.get(f"/shelves/{number}"), context=contextvars.Context()
                )
                assert (await task).status_code == 409
    finally:
        sentry_sdk.Scope.__init__ = original  # type: ignore[method-assign]
    assert built == []
