"""Log files in the shapes other Python stacks write, each written by its real library.

Every writer logs the same scenario (``create_order`` of the log-shapes reference): per request,
INFO ``order received``; every third request an ERROR ``payment rejected`` with
``error_code=30101``; every third (shifted by one) ``log.exception("payment failed")`` after a
``ValueError``. One line without a request ID opens each file. OTLP/JSON has no Python writer of
its own: it is built by the Collector's documented encoding (one ``resourceLogs`` request per
line, several records per line).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


def request_ids(count: int, *, prefix: str = "req") -> list[str]:
    return [f"{prefix}-{n:04d}5f2c8a1e" for n in range(count)]


@dataclass(frozen=True)
class Expected:
    """What a file of ``count`` requests holds."""

    ids: list[str]

    def lines_of(self, rid: str) -> int:
        return 1 + (1 if self.ids.index(rid) % 3 in (1, 2) else 0)

    @property
    def rejected(self) -> int:  # ERROR with error_code=30101
        return sum(1 for n in range(len(self.ids)) if n % 3 == 1)

    @property
    def failed(self) -> int:  # exceptions, no code
        return sum(1 for n in range(len(self.ids)) if n % 3 == 2)


def _charge(order_id: int) -> None:
    raise ValueError(f"card declined for order {order_id}")


def _scenario(
    ids: list[str],
    *,
    start: Callable[[str], None],
    info: Callable[[str, dict[str, Any]], None],
    error: Callable[[str, dict[str, Any]], None],
    exception: Callable[[str], None],
    pause: float = 0.0,
) -> None:
    for n, rid in enumerate(ids):
        start(rid)
        info("order received", {"order_id": 1000 + n})
        if n % 3 == 1:
            error("payment rejected", {"error_code": 30101})
        elif n % 3 == 2:
            try:
                _charge(1000 + n)
            except ValueError:
                exception("payment failed")
        if pause:
            time.sleep(pause)


def write_structlog(path: Path, ids: list[str], *, pause: float = 0.0) -> Expected:
    import structlog

    handle = io.StringIO()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=handle),
        cache_logger_on_first_use=False,
    )
    try:
        log = structlog.get_logger()
        log.info("service started")

        def start(rid: str) -> None:
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(request_id=rid)

        _scenario(
            ids,
            start=start,
            info=lambda m, kw: log.info(m, **kw),
            error=lambda m, kw: log.error(m, **kw),
            exception=log.exception,
            pause=pause,
        )
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()
    path.write_text(handle.getvalue())
    return Expected(ids)


def _stdlib(
    path: Path,
    ids: list[str],
    formatter: logging.Formatter,
    extra_ids: Callable[[str], dict[str, Any]],
    *,
    pause: float = 0.0,
) -> Expected:
    handle = io.StringIO()
    handler = logging.StreamHandler(handle)
    handler.setFormatter(formatter)
    log = logging.getLogger(f"app.main.{id(handle)}")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    current: dict[str, Any] = {}
    try:
        log.info("service started")

        def start(rid: str) -> None:
            current.clear()
            current.update(extra_ids(rid))

        _scenario(
            ids,
            start=start,
            info=lambda m, kw: log.info(m, extra={**current, **kw}),
            error=lambda m, kw: log.error(m, extra={**current, **kw}),
            exception=lambda m: log.exception(m, extra=dict(current)),
            pause=pause,
        )
    finally:
        log.removeHandler(handler)
    path.write_text(handle.getvalue())
    return Expected(ids)


def write_python_json_logger(
    path: Path, ids: list[str], *, renamed: bool = False, pause: float = 0.0
) -> Expected:
    from pythonjsonlogger.json import JsonFormatter

    if renamed:
        formatter = JsonFormatter(
            "%(levelname)s %(name)s %(message)s",
            timestamp=True,
            rename_fields={"levelname": "level", "name": "logger"},
        )
    else:
        formatter = JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    return _stdlib(path, ids, formatter, lambda rid: {"request_id": rid}, pause=pause)


def write_ecs(path: Path, ids: list[str], *, pause: float = 0.0) -> Expected:
    import ecs_logging

    return _stdlib(
        path,
        ids,
        ecs_logging.StdlibFormatter(),
        lambda rid: {"http.request.id": rid, "trace.id": TRACE_ID},
        pause=pause,
    )


def write_loguru(path: Path, ids: list[str], *, pause: float = 0.0) -> Expected:
    from loguru import logger

    handle = io.StringIO()
    sink = logger.add(handle, serialize=True)
    try:
        logger.info("service started")
        bound: list[Any] = [logger]

        def start(rid: str) -> None:
            bound[0] = logger.bind(request_id=rid)

        _scenario(
            ids,
            start=start,
            info=lambda m, kw: bound[0].bind(**kw).info(m),
            error=lambda m, kw: bound[0].bind(**kw).error(m),
            exception=lambda m: bound[0].exception(m),  # noqa: PLW0108 - bound later
            pause=pause,
        )
    finally:
        logger.remove(sink)
    path.write_text(handle.getvalue())
    return Expected(ids)


def _attr(key: str, value: object) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}  # int64 as a decimal string
    return {"key": key, "value": {"stringValue": str(value)}}


def write_otlp(path: Path, ids: list[str], *, per_line: int = 3, pause: float = 0.0) -> Expected:
    """OTLP/JSON as the Collector's file exporter writes it (``plog.JSONMarshaler``: compact,
    lowerCamelCase, int64 as strings, hex IDs, fixed key order), ``per_line`` requests a line."""
    records: list[dict[str, Any]] = []
    current: dict[str, Any] = {}

    def emit(number: int, text: str, message: str, attrs: dict[str, Any]) -> None:
        now = time.time_ns()
        item: dict[str, Any] = {
            "timeUnixNano": str(now),
            "observedTimeUnixNano": str(now + 1000),
            "severityNumber": number,
            "severityText": text,
            "body": {"stringValue": message},
            "attributes": [_attr(k, v) for k, v in attrs.items()],
        }
        if current:
            item.update({"flags": 1, "traceId": TRACE_ID, "spanId": SPAN_ID})
        records.append(item)

    def exception(message: str) -> None:
        import traceback

        emit(
            17,
            "ERROR",
            message,
            {
                **current,
                "exception.type": "ValueError",
                "exception.message": "card declined",
                "exception.stacktrace": traceback.format_exc(),
            },
        )

    emit(9, "INFO", "service started", {})
    lines: list[bytes] = []

    def start(rid: str) -> None:
        current.clear()
        current["request_id"] = rid

    _scenario(
        ids,
        start=start,
        info=lambda m, kw: emit(9, "INFO", m, {**current, **kw}),
        error=lambda m, kw: emit(17, "ERROR", m, {**current, **kw}),
        exception=exception,
        pause=pause,
    )
    resource = {
        "attributes": [
            _attr("service.name", "orders-api"),
            _attr("telemetry.sdk.language", "python"),
        ]
    }
    # One export request per line, each holding the records of ``per_line`` requests.
    chunks: list[list[dict[str, Any]]] = [[]]
    count = 0
    for item in records:
        starts = item["body"]["stringValue"] == "order received"
        if starts:
            count += 1
            if count > 1 and (count - 1) % per_line == 0:
                chunks.append([])
        chunks[-1].append(item)
    for chunk in chunks:
        request = {
            "resourceLogs": [
                {
                    "resource": resource,
                    "scopeLogs": [{"scope": {"name": "app.main"}, "logRecords": chunk}],
                }
            ]
        }
        lines.append(orjson.dumps(request))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return Expected(ids)


WRITERS: dict[str, Callable[..., Expected]] = {
    "structlog": write_structlog,
    "python-json-logger": write_python_json_logger,
    "python-json-logger-renamed": lambda path, ids, **kw: write_python_json_logger(
        path, ids, renamed=True, **kw
    ),
    "ecs": write_ecs,
    "loguru": write_loguru,
    "otlp": write_otlp,
}
