"""A foundation service instrumented with the real OpenTelemetry SDK (uvicorn factory).

``uvicorn --factory tests.foundation.otel_app:create_app``: ``foundation.setup`` (options from
``FOUNDATION_*``, service name from ``TESTAPP_SERVICE``), then the SDK with an in-memory span
exporter, the FastAPI instrumentation (called after every ``add_middleware``, the portable
order) and the httpx instrumentation. ``GET /spans`` answers what the exporter holds, so a test
can compare the spans with the log lines the same process wrote.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from fastapi import FastAPI, Header
from loguru import logger
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import foundation

SERVICE = os.environ.get("TESTAPP_SERVICE", "otelapp")


def _span(span: ReadableSpan) -> dict[str, Any]:
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format(context.trace_id, "032x"),
        "span_id": format(context.span_id, "016x"),
        "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
        "attributes": dict(span.attributes or {}),
    }


def create_app() -> FastAPI:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("otel_app")

    app = FastAPI()
    foundation.setup(app, service=SERVICE, metrics=False)

    @app.get("/work")
    async def work(next_url: str = "", traceparent: str | None = Header(None)) -> dict[str, Any]:
        logger.info("working")
        with tracer.start_as_current_span("inner step"):
            logger.info("inside my own span")
        answer: dict[str, Any] = {"received": traceparent, "service": SERVICE}
        if next_url:
            async with httpx.AsyncClient(
                event_hooks={"request": [foundation.astamp_correlation_id]}, timeout=10.0
            ) as client:
                response = await client.get(next_url)
            answer["next"] = response.json()
            answer["sent"] = response.request.headers.get_list("traceparent")
        logger.info("work done")
        return answer

    @app.get("/spans")
    async def spans() -> list[dict[str, Any]]:
        return [_span(span) for span in exporter.get_finished_spans()]

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, exclude_spans=["send", "receive"]
    )
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    return app
