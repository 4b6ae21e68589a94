"""Readers of the JSON log shapes other Python stacks write, onto schema v1 keys. Pure.

:func:`read_doc` takes one decoded line and returns its records as ``(values, view, raw)``:
``values`` in schema v1 (``ts`` in UTC, ``level`` upper case, ``correlation_id`` from the usual
names), ``view`` the keys ``--map`` looks in, ``raw`` the bytes ``--json`` prints (None: the line
as logged). The shape is told by the keys of the line itself:

* ``resourceLogs`` — OpenTelemetry OTLP/JSON as the Collector's file exporter writes it: one
  export request per line, possibly many records of many requests (:func:`_otlp`);
* ``@timestamp``/``log.level``/``ecs.version`` — Elastic ECS, dotted or nested keys (:func:`_ecs`);
* anything else flat — structlog's ``JSONRenderer`` (``event``, ``timestamp``, ``exception`` as
  text or ``dict_tracebacks``), python-json-logger (``asctime``, ``levelname``, ``name``,
  ``exc_info``), foundation's schema v1 and look-alikes (:func:`_flat`).

Loguru's native ``{"text", "record"}`` shape is read in :mod:`obsctl.readers.parse`.
"""

from __future__ import annotations

from typing import Any

import orjson

from obsctl.readers.fields import (
    CORRELATION_KEYS,
    exception_from_text,
    level_name,
    lookup,
    otlp_level,
    utc_ts,
)

__all__ = ["Shaped", "read_doc", "shape_of"]

#: One record of a line: (schema-v1 values, what ``--map`` looks in, bytes for ``--json``).
Shaped = tuple[dict[str, Any], dict[str, Any], bytes | None]

_TS_KEYS = ("ts", "timestamp", "@timestamp", "time", "asctime", "datetime", "created")
_LEVEL_KEYS = ("level", "levelname", "severity", "log.level", "loglevel", "log_level", "lvl")
_MESSAGE_KEYS = ("message", "event", "msg")
_EXCEPTION_KEYS = ("exception", "exc_info", "exc_text")


def shape_of(doc: dict[str, Any]) -> str:
    """``otlp``, ``ecs``, ``loguru``, ``structlog``, ``python-json-logger`` or ``v1``/``json``."""
    if "resourceLogs" in doc:
        return "otlp"
    if "record" in doc and "text" in doc:
        return "loguru"
    if "@timestamp" in doc or "log.level" in doc or "ecs.version" in doc:
        return "ecs"
    if "event" in doc and "message" not in doc:
        return "structlog"
    if "levelname" in doc or "asctime" in doc:
        return "python-json-logger"
    return "v1" if "ts" in doc else "json"


def read_doc(
    doc: dict[str, Any], *, own_lines: bool = True, errors_only: bool = False
) -> list[Shaped]:
    """The records of one decoded line (see the module docstring). ``own_lines=False`` skips
    encoding each record of a many-record line on its own (a scan that never prints them);
    ``errors_only`` lets a many-record line skip, unread, records below ERROR severity."""
    if "resourceLogs" in doc:
        return _otlp(doc, own_lines=own_lines, errors_only=errors_only)
    if "@timestamp" in doc or "log.level" in doc or "ecs.version" in doc:
        return [(_ecs(doc), doc, None)]
    return [(_flat(doc), doc, None)]


def _first(doc: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for key in keys:
        value = doc.get(key)
        if value is not None and value != "":
            return key, value
    return None, None


def _correlation(doc: dict[str, Any]) -> tuple[str | None, str | None]:
    for key in CORRELATION_KEYS:
        value = lookup(doc, key)
        if isinstance(value, str) and value:
            return key, value
        if isinstance(value, int) and not isinstance(value, bool):
            return key, str(value)
    return None, None


def _exception(value: object) -> dict[str, Any] | None:
    if isinstance(value, str) and value.strip():
        return exception_from_text(value)
    if isinstance(value, list) and value and isinstance(value[0], dict):
        # structlog's dict_tracebacks: the raised exception first, then its causes.
        first = value[0]
        found = first.get("frames")
        frames: list[Any] = found if isinstance(found, list) else []
        lines = ["Traceback (most recent call last):"]
        for frame in frames:
            if isinstance(frame, dict):
                lines.append(
                    f'  File "{frame.get("filename")}", line {frame.get("lineno")}, '
                    f"in {frame.get('name')}"
                )
        kind, text = first.get("exc_type"), first.get("exc_value")
        lines.append(f"{kind}: {text}")
        return {"type": kind, "value": text, "traceback": "\n".join(lines)}
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return exception_from_text("\n".join(value))  # python-json-logger exc_info_as_array
    if isinstance(value, dict) and (value.get("type") or value.get("value")):
        return value
    return None


def _flat(doc: dict[str, Any]) -> dict[str, Any]:
    """structlog, python-json-logger, schema v1 look-alikes: one flat object per record."""
    consumed: set[str] = set()
    values: dict[str, Any] = {}
    key, ts = _first(doc, _TS_KEYS)
    if key is not None:
        values["ts"] = utc_ts(ts) or ts
        consumed.add(key)
    key, level = _first(doc, _LEVEL_KEYS)
    if key is not None:
        values["level"] = level_name(level) or level
        consumed.add(key)
    key, message = _first(doc, _MESSAGE_KEYS)
    if key is not None:
        values["message"] = message
        consumed.add(key)
    key, cid = _correlation(doc)
    if key is not None and cid is not None:
        values["correlation_id"] = cid
        if key != "correlation_id" and key not in {"trace_id", "trace.id", "traceId"}:
            consumed.add(key)
    logger_key = "logger" if "logger" in doc else ("name" if "levelname" in doc else None)
    if logger_key is not None and isinstance(doc.get(logger_key), str):
        values["logger"] = doc[logger_key]
        consumed.add(logger_key)
    for name in ("funcName", "lineno"):
        if name in doc:
            values["function" if name == "funcName" else "line"] = doc[name]
            consumed.add(name)
    key, exc = _first(doc, _EXCEPTION_KEYS)
    if key is not None:
        exception = _exception(exc)
        if exception is not None:
            values["exception"] = exception
            consumed.add(key)
    for key, value in doc.items():
        if key not in consumed and key not in values:
            values[key] = value
    return values


def _ecs(doc: dict[str, Any]) -> dict[str, Any]:
    """Elastic Common Schema: ``log.level`` literal, everything else dotted or nested."""
    values: dict[str, Any] = {"ts": utc_ts(doc.get("@timestamp"))}
    level = lookup(doc, "log.level")
    values["level"] = level_name(level) if level is not None else None
    _, cid = _correlation(doc)
    values["correlation_id"] = cid
    trace = lookup(doc, "trace.id")
    if isinstance(trace, str):
        values["trace_id"] = trace
    span = lookup(doc, "span.id")
    if isinstance(span, str):
        values["span_id"] = span
    values["message"] = doc.get("message")
    for field, key in (
        ("service", "service.name"),
        ("logger", "log.logger"),
        ("function", "log.origin.function"),
        ("line", "log.origin.file.line"),
        ("method", "http.request.method"),
        ("path", "url.path"),
        ("status", "http.response.status_code"),
        ("internal_code", "error.code"),
    ):
        found = lookup(doc, key)
        if found is not None:
            values[field] = found
    code = values.get("internal_code")
    if isinstance(code, str) and code.strip().isdigit():
        values["internal_code"] = int(code)
    kind, text = lookup(doc, "error.type"), lookup(doc, "error.message")
    stack = lookup(doc, "error.stack_trace")
    if kind is not None or text is not None or stack is not None:
        traceback = stack if isinstance(stack, str) else None
        if traceback is not None and not traceback.startswith("Traceback"):
            # ecs-logging writes only the frames (traceback.format_tb): complete the text.
            traceback = f"Traceback (most recent call last):\n{traceback.rstrip()}\n{kind}: {text}"
        values["exception"] = {"type": kind, "value": text, "traceback": traceback}
    # Read into schema-v1 fields above, or ECS's bookkeeping: not repeated as extras.
    skip = {"@timestamp", "log.level", "message", "ecs.version", "log", "error", "process", "trace"}
    for key, value in doc.items():
        if key not in skip and key not in values:
            values[key] = value
    return values


def _any_value(value: object) -> Any:
    """An OTLP ``AnyValue`` (``{"stringValue": …}``, ``{"intValue": "42"}`` …) → plain JSON."""
    if not isinstance(value, dict) or not value:
        return None
    kind, inner = next(iter(value.items()))
    if kind == "intValue":
        try:
            return int(inner)
        except (TypeError, ValueError):
            return inner
    if kind == "arrayValue":
        items = inner.get("values") if isinstance(inner, dict) else None
        return [_any_value(v) for v in items] if isinstance(items, list) else []
    if kind == "kvlistValue":
        items = inner.get("values") if isinstance(inner, dict) else None
        return _attributes(items)
    return inner  # stringValue, boolValue, doubleValue, bytesValue (base64 text)


def _attributes(items: object) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("key"), str):
                out[item["key"]] = _any_value(item.get("value"))
    return out


_OTLP_CONSUMED = frozenset(
    {
        "exception.type",
        "exception.message",
        "exception.stacktrace",
        "code.file.path",
        "code.filepath",
        "code.function.name",
        "code.function",
        "code.line.number",
        "code.lineno",
    }
)


def _otlp(doc: dict[str, Any], *, own_lines: bool, errors_only: bool) -> list[Shaped]:
    """Every log record of an OTLP/JSON ``resourceLogs`` line, each with its resource's
    ``service.name`` and its scope's name as logger."""
    out: list[Shaped] = []
    resources = doc.get("resourceLogs")
    if not isinstance(resources, list):
        return out
    groups = []
    for resource_logs in resources:
        if not isinstance(resource_logs, dict):
            continue
        resource = resource_logs.get("resource")
        attrs = _attributes(resource.get("attributes")) if isinstance(resource, dict) else {}
        scopes = resource_logs.get("scopeLogs")
        for scope_logs in scopes if isinstance(scopes, list) else ():
            if not isinstance(scope_logs, dict):
                continue
            records = scope_logs.get("logRecords")
            if isinstance(records, list):
                groups.append((resource_logs, scope_logs, attrs, records))
    # One record: the line as logged; several: each printed alone in its own envelope.
    encode = own_lines and sum(len(records) for *_, records in groups) > 1
    for resource_logs, scope_logs, attrs, records in groups:
        scope = scope_logs.get("scope")
        scope_name = scope.get("name") if isinstance(scope, dict) else None
        for item in records:
            if not isinstance(item, dict):
                continue
            if errors_only:
                number = item.get("severityNumber")
                if type(number) is int and 1 <= number < 17:  # the common case, inline
                    continue
                if not _is_error(item):
                    continue
            values, view = _otlp_record(item, attrs, scope_name)
            own = _own_line(item, resource_logs, scope_logs) if encode else None
            out.append((values, view, own))
    return out


def _is_error(item: dict[str, Any]) -> bool:
    level = otlp_level(item.get("severityNumber"), item.get("severityText"))
    return level in {"ERROR", "CRITICAL"}


def _own_line(
    item: dict[str, Any], resource_logs: dict[str, Any], scope_logs: dict[str, Any]
) -> bytes:
    """An OTLP/JSON line holding ``item`` alone, with its resource and scope."""
    scope = {k: v for k, v in scope_logs.items() if k != "logRecords"}
    resource = {k: v for k, v in resource_logs.items() if k != "scopeLogs"}
    single = {"resourceLogs": [{**resource, "scopeLogs": [{**scope, "logRecords": [item]}]}]}
    return orjson.dumps(single)


def _otlp_record(
    item: dict[str, Any], resource_attrs: dict[str, Any], scope_name: object
) -> tuple[dict[str, Any], dict[str, Any]]:
    attrs = _attributes(item.get("attributes"))
    values: dict[str, Any] = {
        "ts": utc_ts(item.get("timeUnixNano") or item.get("observedTimeUnixNano")),
        "level": otlp_level(item.get("severityNumber"), item.get("severityText")),
    }
    _, cid = _correlation(attrs)
    trace = item.get("traceId")
    values["correlation_id"] = cid or (trace if isinstance(trace, str) and trace else None)
    if isinstance(trace, str) and trace:
        values["trace_id"] = trace
    span = item.get("spanId")
    if isinstance(span, str) and span:
        values["span_id"] = span
    body = _any_value(item.get("body"))
    values["message"] = (
        body if isinstance(body, str) or body is None else orjson.dumps(body).decode()
    )
    values["service"] = resource_attrs.get("service.name")
    values["logger"] = scope_name if isinstance(scope_name, str) else None
    values["function"] = attrs.get("code.function.name") or attrs.get("code.function")
    values["line"] = attrs.get("code.line.number") or attrs.get("code.lineno")
    stack = attrs.get("exception.stacktrace")
    kind, text = attrs.get("exception.type"), attrs.get("exception.message")
    if kind is not None or text is not None or stack is not None:
        values["exception"] = {
            "type": kind,
            "value": text,
            "traceback": stack.rstrip("\n") if isinstance(stack, str) else None,
        }
    for key, value in attrs.items():
        if key not in _OTLP_CONSUMED and key not in values:
            values[key] = value
    return values, {**resource_attrs, **attrs, **item}
