"""Apps for ``bench_foundation``: one module, the variant picked by ``BENCH_VARIANT``.

- ``bare``: FastAPI alone (no logging at all), the baseline.
- ``foundation``: ``foundation.setup`` (correlation ID, handlers, access line; metrics off so
  this measures the logging stack alone), file sink only.
- ``foundation_all``: the same with metrics on.
- ``assembled``: what people assemble today: asgi-correlation-id + a pure ASGI access-log
  middleware + Loguru ``serialize=True`` to a file.
"""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import FastAPI, HTTPException
from loguru import logger

VARIANT = os.environ.get("BENCH_VARIANT", "bare")
LOG_DIR = os.environ.get("BENCH_LOG_DIR", "var/bench/log")

app = FastAPI()

if VARIANT in ("foundation", "foundation_all"):
    import foundation
    from foundation import ApiException

    foundation.setup(
        app,
        service="bench",
        log_dir=LOG_DIR,
        log_stdout=False,
        metrics=VARIANT == "foundation_all",
        env={},
    )

    class OutOfStock(ApiException):
        http_code = 409
        external_message = "This product is out of stock."
        internal_code = 39999
        internal_message = "Stock check failed."

    def fail() -> None:
        raise OutOfStock(internal_message="sku=x stock=0")

elif VARIANT == "assembled":
    from asgi_correlation_id import CorrelationIdMiddleware, correlation_id

    logger.remove()
    logger.configure(patcher=lambda r: r["extra"].update(request_id=correlation_id.get()))
    logger.add(f"{LOG_DIR}/bench.log", serialize=True, level="INFO")

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

    def fail() -> None:
        logger.error("out of stock", internal_code=39999)
        raise HTTPException(409, "This product is out of stock.")

else:

    def fail() -> None:
        raise HTTPException(409, "This product is out of stock.")


LOGS = VARIANT != "bare"


@app.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    if LOGS:
        logger.info("item looked up", item_id=item_id)
    return {"item_id": item_id}


@app.get("/fail/{item_id}")
async def failing(item_id: int) -> dict[str, int]:
    fail()
    return {"item_id": item_id}
