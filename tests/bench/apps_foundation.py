"""Apps for ``bench_foundation``: ``build(variant)``, or the module's ``app`` (``BENCH_VARIANT``).

Served by uvicorn (whole stacks):

- ``bare``: FastAPI alone (no logging at all), the baseline.
- ``foundation``: ``foundation.setup`` (correlation ID, handlers, access line; metrics off so
  this measures the logging stack alone), file sink only.
- ``foundation_all``: the same with metrics on: everything on.
- ``foundation_all_before``: everything on, with the correlation-ID middleware as it was before
  trace context (issue 11): upstream asgi-correlation-id with the strict validator and the
  context reset; lines then carry no ``trace_id``/``span_id``. The peer of ``foundation_all``
  in ``bench_tracecontext``.
- ``assembled``: what people assemble today: asgi-correlation-id + a pure ASGI access-log
  middleware + Loguru ``serialize=True`` to a file.

One layer of foundation alone on bare FastAPI (the in-process breakdown; logging, when a layer
needs it, is ``configure_logging`` to a file, configured once per process):

- ``correlation``: the correlation-ID middleware as ``setup`` installs it;
- ``access``: the access-line middleware;
- ``metrics``: the metrics middleware (``install_metrics``);
- ``handlers``: the exception handlers and the catch-all (``add_exception_handlers``);
- ``app_log``: no middleware; the endpoint's own ``logger.info`` line through foundation's sink.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

from fastapi import FastAPI, HTTPException
from loguru import logger

VARIANT = os.environ.get("BENCH_VARIANT", "bare")
LOG_DIR = os.environ.get("BENCH_LOG_DIR", "var/bench/log")
STACKS = ("bare", "foundation", "foundation_all", "assembled")
LAYERS = ("correlation", "access", "metrics", "handlers", "app_log")


def _foundation_error() -> type[Exception]:
    from foundation import ApiException

    class OutOfStock(ApiException):
        http_code = 409
        external_message = "This product is out of stock."
        internal_code = 39999
        internal_message = "Stock check failed."

    return OutOfStock


def _assembled(app: FastAPI, log_dir: str) -> None:
    from asgi_correlation_id import CorrelationIdMiddleware, correlation_id

    logger.remove()
    logger.configure(patcher=lambda r: r["extra"].update(request_id=correlation_id.get()))
    logger.add(f"{log_dir}/bench.log", serialize=True, level="INFO")

    class AccessLog:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            start = time.perf_counter()
            status = 500

            async def send_wrapper(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                logger.info(
                    "request finished",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    duration_ms=round((time.perf_counter() - start) * 1000, 3),
                )

    app.add_middleware(AccessLog)
    app.add_middleware(CorrelationIdMiddleware)


def _configure_logging(log_dir: str) -> None:
    from foundation.logging import configure_logging, current_logging

    if current_logging() is None:
        configure_logging(service="bench", log_dir=log_dir, log_stdout=False, env={})


def build(variant: str, log_dir: str = LOG_DIR) -> FastAPI:
    """A fresh app of ``variant`` (see the module docstring)."""
    app = FastAPI()
    logs = variant not in ("bare", "correlation", "access", "metrics", "handlers")
    error: type[Exception] | None = None

    if variant in ("foundation", "foundation_all", "foundation_all_before"):
        import foundation

        foundation.setup(
            app,
            service="bench",
            log_dir=log_dir,
            log_stdout=False,
            metrics=variant != "foundation",
            env={},
        )
        if variant == "foundation_all_before":
            from starlette.middleware import Middleware

            from tests.bench.before_trace import CorrelationBeforeTrace

            app.user_middleware[0] = Middleware(CorrelationBeforeTrace)
        error = _foundation_error()
    elif variant == "assembled":
        _assembled(app, log_dir)
    elif variant in ("access", "app_log"):
        _configure_logging(log_dir)
        if variant == "access":
            from foundation.access import AccessLogMiddleware

            app.add_middleware(AccessLogMiddleware, exclude_paths=("/metrics",))
    elif variant == "correlation":
        from foundation.correlation import StrictCorrelationIdMiddleware

        app.add_middleware(StrictCorrelationIdMiddleware)
    elif variant == "metrics":
        from foundation.metrics import install_metrics

        install_metrics(app)
    elif variant == "handlers":
        from foundation.handlers import add_exception_handlers

        _configure_logging(log_dir)
        add_exception_handlers(app)
        error = _foundation_error()
    elif variant != "bare":
        raise SystemExit(f"unknown bench variant {variant!r}")

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        if logs:
            logger.info("item looked up", item_id=item_id)
        return {"item_id": item_id}

    @app.get("/fail/{item_id}")
    async def failing(item_id: int) -> dict[str, int]:
        if error is not None:
            raise error(internal_message=f"sku={item_id} stock=0")
        if variant == "assembled":
            logger.error("out of stock", internal_code=39999)
        raise HTTPException(409, "This product is out of stock.")

    @app.get("/silent/{item_id}")
    async def silent(item_id: int) -> dict[str, int]:
        # The stack alone: the endpoint logs nothing of its own (bare FastAPI never does).
        return {"item_id": item_id}

    @app.get("/bench/gc")  # last: the measured routes are matched first, as before
    async def collections() -> list[int]:
        # Read by the HTTP harness around each wrk run (tests.bench._http.GC_PATH).
        return [generation["collections"] for generation in gc.get_stats()]

    return app


def __getattr__(name: str) -> Any:
    # uvicorn imports ``app``; building it lazily keeps ``build`` importable without side effects.
    if name == "app":
        return build(VARIANT)
    raise AttributeError(name)
