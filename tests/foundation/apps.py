"""The FastAPI app the foundation core tests drive, in-process or under a real uvicorn.

``create_app`` is a uvicorn factory (``uvicorn --factory tests.foundation.apps:create_app``):
``foundation.setup`` reads its options from ``FOUNDATION_*`` variables, so a subprocess is
configured by its environment (log directory, stdout sink). ``build_app(**options)`` is the same
app with explicit options for in-process tests.

Every endpoint exists to show one behaviour a test asserts on: where the correlation ID is
visible, what an error response looks like, what reaches the log.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import httpx
from fastapi import BackgroundTasks, Depends, FastAPI, Header
from fastapi.responses import StreamingResponse
from loguru import logger
from pydantic import BaseModel, Field, field_validator

import foundation
from foundation import ApiException, AppException, RecordNotFound, get_correlation_id
from foundation.tracecontext import current_trace_context

# What the background task and the executors saw, keyed by the probe name.
SEEN: dict[str, str | None] = {}
CLEANUPS: list[str] = []

# A chain of servers started from this one factory tells them apart by this variable.
SERVICE = os.environ.get("TESTAPP_SERVICE", "testapp")

SECRET_DSN = "dsn=postgres://u:pw@db.internal:5432/shop"
VALIDATOR_LEAK = "cannot reach db.internal.example:5432 with postgres://admin:hunter2@db"


class OutOfStock(ApiException):
    """A domain error declared the way applications declare theirs."""

    http_code = 409
    external_message = "This product is out of stock."
    internal_code = 30101
    internal_message = "Stock check failed."


class PaymentGatewayDown(AppException):
    """A 5xx application error: logged with its traceback."""

    http_code = 502
    external_message = "The payment provider is unavailable."
    internal_code = 30201
    internal_message = "Payment gateway did not answer."


class NewUser(BaseModel):
    name: str
    password: str
    bio: str = Field(default="", max_length=100)
    dsn: str = ""

    @field_validator("dsn")
    @classmethod
    def _reachable(cls, value: str) -> str:
        if value:
            raise ValueError(VALIDATOR_LEAK)
        return value


async def guarded_resource() -> AsyncIterator[str]:
    """A ``yield`` dependency that catches, records and re-raises (cleanup must still run)."""
    try:
        yield "resource"
    except AppException:
        CLEANUPS.append("caught")
        raise
    finally:
        CLEANUPS.append("closed")


def _probe() -> str | None:
    return get_correlation_id()


def _add_routes(app: FastAPI) -> None:
    @app.get("/ok")
    async def ok() -> dict[str, str | None]:
        logger.info("handled ok")
        return {"correlation_id": get_correlation_id()}

    @app.get("/job/{n}")
    async def work(n: int, background: BackgroundTasks) -> dict[str, int]:
        logger.info("work handler", n=n, step="handler")
        await asyncio.to_thread(lambda: logger.info("work thread", n=n, step="thread"))
        background.add_task(lambda: logger.info("work background", n=n, step="background"))
        await asyncio.sleep(random.random() * 0.02)
        logger.info("work after sleep", n=n, step="sleep")
        return {"n": n}

    @app.get("/boom")
    async def boom() -> None:
        secret_local = "s3cr3t-local-value"
        raise RuntimeError(f"{SECRET_DSN} ({len(secret_local)})")

    @app.get("/stream-fail")
    async def stream_fail() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first chunk\n"
            await asyncio.sleep(0)
            raise RuntimeError("stream broke after the first chunk")

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.post("/users")
    async def create_user(user: NewUser) -> dict[str, str]:
        return {"name": user.name}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        if item_id == 404:
            raise RecordNotFound(internal_message=f"item {item_id} missing", table="items")
        if item_id == 409:
            raise OutOfStock(internal_message="sku={0}{name} stock=0", sku="{0}{name}")
        if item_id == 502:
            raise PaymentGatewayDown(internal_message="gateway timeout after 3 s")
        return {"item_id": item_id}

    @app.get("/guarded/{item_id}")
    async def guarded(
        item_id: int, resource: Annotated[str, Depends(guarded_resource)]
    ) -> dict[str, str]:
        raise OutOfStock(internal_message=f"item {item_id} via {resource}")

    # -- where the correlation ID is visible ----------------------------------------------

    @app.get("/ctx/handler")
    async def ctx_handler() -> dict[str, str | None]:
        return {"seen": _probe()}

    @app.get("/ctx/create_task")
    async def ctx_create_task() -> dict[str, str | None]:
        async def probe_later() -> str | None:
            await asyncio.sleep(0)
            return _probe()

        return {"seen": await asyncio.create_task(probe_later())}

    @app.get("/ctx/to_thread")
    async def ctx_to_thread() -> dict[str, str | None]:
        return {"seen": await asyncio.to_thread(_probe)}

    @app.get("/ctx/sync")
    def ctx_sync() -> dict[str, str | None]:
        return {"seen": _probe(), "thread": threading.current_thread().name}

    @app.get("/ctx/background")
    async def ctx_background(background: BackgroundTasks) -> dict[str, str]:
        background.add_task(lambda: SEEN.__setitem__("background", _probe()))
        return {"scheduled": "yes"}

    @app.get("/ctx/stream_async")
    async def ctx_stream_async() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            await asyncio.sleep(0)
            yield str(_probe()).encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/ctx/stream_sync")
    def ctx_stream_sync() -> StreamingResponse:
        def chunks() -> Iterator[bytes]:
            yield str(_probe()).encode()

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/ctx/executor")
    async def ctx_executor() -> dict[str, str | None]:
        loop = asyncio.get_running_loop()
        return {"seen": await loop.run_in_executor(None, _probe)}

    @app.get("/ctx/executor_wrapped")
    async def ctx_executor_wrapped() -> dict[str, str | None]:
        loop = asyncio.get_running_loop()
        return {"seen": await loop.run_in_executor(None, foundation.with_correlation(_probe))}

    # -- outgoing calls -------------------------------------------------------------------

    @app.get("/outgoing")
    async def outgoing(url: str, explicit: str = "") -> dict[str, Any]:
        headers = {"X-Request-ID": explicit} if explicit else {}
        async with httpx.AsyncClient(
            event_hooks={"request": [foundation.astamp_correlation_id]}, timeout=5.0
        ) as client:
            response = await client.get(url, headers=headers)
        return {"received": response.json()["x-request-id"]}

    @app.get("/outgoing_sync")
    def outgoing_sync(url: str) -> dict[str, Any]:
        with httpx.Client(
            event_hooks={"request": [foundation.stamp_correlation_id]}, timeout=5.0
        ) as client:
            response = client.get(url)
        return {"received": response.json()["x-request-id"]}

    # -- trace context (the W3C test harness's shape: call back through the hooks) ------------

    @app.get("/callback")
    async def callback(url: str, count: int = 1) -> dict[str, Any]:
        """Call ``url`` ``count`` times; answer what each call carried and our own context."""
        async with httpx.AsyncClient(
            event_hooks={"request": [foundation.astamp_correlation_id]}, timeout=5.0
        ) as client:
            calls = [(await client.get(url)).json() for _ in range(count)]
        logger.info("called back", count=count)
        return {"calls": calls, **_trace_fields()}

    @app.get("/chain")
    def chain(
        hops: str = "", request_traceparent: str | None = Header(None, alias="traceparent")
    ) -> dict[str, Any]:
        """Call the first of ``hops`` (comma-separated base URLs) with the rest, synchronously."""
        logger.info("chain step", hops=hops)
        answer: dict[str, Any] = {"received": request_traceparent, **_trace_fields()}
        if hops:
            first, _, rest = hops.partition(",")
            with httpx.Client(
                event_hooks={"request": [foundation.stamp_correlation_id]}, timeout=10.0
            ) as client:
                response = client.get(f"{first}/chain", params={"hops": rest})
                answer["sent"] = response.request.headers.get("traceparent")
                answer["next"] = response.json()
        return answer


def _trace_fields() -> dict[str, Any]:
    context = current_trace_context()
    return {
        "correlation_id": get_correlation_id(),
        "trace_id": context.trace_id if context else None,
        "span_id": context.span_id if context else None,
        "parent_id": context.parent_id if context else None,
        "service": SERVICE,
    }


def build_app(**options: Any) -> FastAPI:
    """The test app with ``foundation.setup(app, service="testapp", **options)``."""
    app = FastAPI()
    _add_routes(app)
    foundation.setup(app, service=SERVICE, **options)
    return app


def create_app() -> FastAPI:
    """uvicorn factory: every option comes from ``FOUNDATION_*`` variables (and the service
    name from ``TESTAPP_SERVICE``)."""
    return build_app()


def burst(log_dir: str, count: int, per_process: bool | None = None) -> None:
    """Worker-process body: configure logging like production and write ``count`` records."""
    foundation.configure_logging(
        service="burst",
        log_dir=log_dir,
        log_stdout=False,
        rotation="200 KB",
        per_process=per_process,
    )
    pid = os.getpid()
    padding = "x" * 120
    for i in range(count):
        logger.info("burst record", pid=pid, i=i, padding=padding)
