"""What the readers of every shape share: the usual key names, levels, times, and ``--map``.

* :data:`CORRELATION_KEYS` — where a request's ID is found, in order of preference;
* :func:`level_name` — ``"error"``, ``"Error"``, ``40``, ``"40"`` → ``"ERROR"`` (Python's numbers);
  :func:`otlp_level` does the same for OpenTelemetry's ``severityNumber`` (1-24);
* :func:`utc_ts` — RFC 3339, logging's ``asctime`` or epoch s/ms/µs/ns → schema v1's ``ts``;
* :class:`FieldMap` — ``--map FIELD=KEY`` (and ``OBSCTL_MAP``): the key holding a schema-v1 field
  in a shape obsctl does not know, applied after the shape's own reading.

Naive times (logging's ``asctime``, structlog with ``utc=False``) carry no zone: they are read in
the local zone of the machine running obsctl (set ``TZ`` to the writer's zone when it differs).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from obsctl.errors import UsageError

__all__ = [
    "CORRELATION_KEYS",
    "MAPPABLE_FIELDS",
    "NO_MAP",
    "FieldMap",
    "exception_from_text",
    "level_name",
    "lookup",
    "otlp_level",
    "utc_ts",
]

#: Keys holding the request's ID, most specific first (a trace ID is the last resort).
CORRELATION_KEYS: tuple[str, ...] = (
    "correlation_id",
    "request_id",
    "requestId",
    "request-id",
    "x_request_id",
    "x-request-id",
    "X-Request-ID",
    "http.request.id",
    "trace_id",
    "trace.id",
    "traceId",
    "otelTraceID",
)

_LEVEL_ALIASES = {
    "WARN": "WARNING",
    "FATAL": "CRITICAL",
    "CRIT": "CRITICAL",
    "EMERGENCY": "CRITICAL",
    "ALERT": "CRITICAL",
    "PANIC": "CRITICAL",
    "EXCEPTION": "ERROR",  # ecs-logging's structlog formatter writes log.exception() so
    "ERR": "ERROR",
    "NOTICE": "INFO",
    "INFORMATION": "INFO",
    "INFORMATIONAL": "INFO",
    "DBG": "DEBUG",
}


def level_name(value: object) -> str | None:
    """A level in any case, alias or Python's numbers (10 DEBUG … 50 CRITICAL) → upper name."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return _numeric_level(int(text))
        upper = text.upper()
        return _LEVEL_ALIASES.get(upper, upper) or None
    if isinstance(value, int | float):
        return _numeric_level(int(value))
    return None


def _numeric_level(number: int) -> str:
    for floor, name in ((50, "CRITICAL"), (40, "ERROR"), (30, "WARNING"), (25, "SUCCESS")):
        if number >= floor:
            return name
    if number >= 20:
        return "INFO"
    return "DEBUG" if number >= 10 else "TRACE"


def otlp_level(number: object, text: object = None) -> str | None:
    """OpenTelemetry ``severityNumber`` (1-4 TRACE … 21-24 FATAL) → upper name; the number
    wins over ``severityText``, which SDKs spell as they like."""
    if isinstance(number, int) and not isinstance(number, bool) and 1 <= number <= 24:
        return ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")[(number - 1) // 4]
    return level_name(text) if text is not None else None


def _from_epoch(number: float) -> str:
    # Magnitude tells the unit: seconds until the year 5138, then ms, µs and ns.
    magnitude = abs(number)
    if magnitude >= 1e17:
        number /= 1e9
    elif magnitude >= 1e14:
        number /= 1e6
    elif magnitude >= 1e11:
        number /= 1e3
    try:
        moment = datetime.fromtimestamp(number, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_ts(value: object) -> str:
    """Any usual time → ``2026-12-01T21:38:41.302027Z`` (``""`` when unreadable).

    RFC 3339 / ISO 8601 with ``Z`` or an offset; naive ones and ``asctime``
    (``2026-12-01 22:38:41,466``) in the local zone; epoch numbers or digit strings in seconds,
    milliseconds, microseconds or nanoseconds.
    """
    if isinstance(value, bool):
        return ""
    if isinstance(value, int | float):
        return _from_epoch(float(value))
    if not isinstance(value, str) or not value:
        return ""
    text = value.strip()
    if text.isdigit():
        return _from_epoch(float(text[:19]) * 10 ** max(0, len(text) - 19))
    if len(text) > 19 and text[19] == ",":  # logging's asctime: comma before the milliseconds
        text = text[:19] + "." + text[20:]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            return _from_epoch(float(text))
        except ValueError:
            return ""
    # A naive datetime's astimezone() reads it in the local zone (what asctime wrote).
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lookup(doc: dict[str, Any], key: str) -> Any:
    """``doc[key]``, or the nested value for a dotted key (``http.request.id`` written either
    literally or as ``{"http": {"request": {"id": …}}}``); None when absent."""
    value = doc.get(key)
    if value is not None or "." not in key:
        return value
    runs = _literal_runs(key)
    node: Any = doc
    index = 0
    while index < len(runs):
        if not isinstance(node, dict):
            return None
        # A dotted key may be literal at any depth: the longest literal run first.
        for candidate, end in runs[index]:
            if candidate in node:
                node = node[candidate]
                index = end
                break
        else:
            return None
    return node


@functools.cache
def _literal_runs(key: str) -> tuple[tuple[tuple[str, int], ...], ...]:
    """For each part of a dotted key, the keys it may start, longest first, each with the index
    of the part after it (``lookup`` ran these joins for every record: ECS's ``errors top``
    spent a third of its time in them)."""
    parts = key.split(".")
    return tuple(
        tuple((".".join(parts[start:end]), end) for end in range(len(parts), start, -1))
        for start in range(len(parts))
    )


def exception_from_text(
    text: str, *, kind: str | None = None, value: str | None = None
) -> dict[str, Any]:
    """``{"type", "value", "traceback"}`` from a traceback's text (its last line names the
    exception: ``ValueError: card declined``) unless ``kind``/``value`` are known."""
    last = ""
    for line in reversed(text.rstrip().splitlines()):
        if line.strip():
            last = line.strip()
            break
    if kind is None and last and not last.startswith("File "):
        head, sep, tail = last.partition(": ")
        kind = head if sep else last
        if value is None and sep:
            value = tail
    return {"type": kind, "value": value, "traceback": text.rstrip("\n") or None}


#: schema-v1 fields ``--map`` can name.
MAPPABLE_FIELDS = frozenset(
    {
        "ts",
        "level",
        "correlation_id",
        "trace_id",
        "message",
        "service",
        "logger",
        "function",
        "line",
        "internal_code",
        "http_code",
        "method",
        "path",
        "route",
        "status",
        "duration_ms",
    }
)
_INT_FIELDS = frozenset({"line", "internal_code", "http_code", "status"})


def _as_int(value: object) -> object:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _as_number(value: object) -> object:
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


@dataclass(frozen=True, slots=True)
class FieldMap:
    """``FIELD=KEY`` pairs: the schema-v1 ``FIELD`` is read from ``KEY`` (dotted for nested)."""

    pairs: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.pairs)

    @classmethod
    def parse(cls, items: tuple[str, ...] | list[str]) -> FieldMap:
        """From ``--map`` values and ``OBSCTL_MAP`` (several pairs separated by commas or spaces);
        a later pair for the same field wins."""
        pairs: dict[str, str] = {}
        for item in items:
            for part in item.replace(",", " ").split():
                field, sep, key = part.partition("=")
                field, key = field.strip(), key.strip()
                if not sep or not field or not key:
                    raise UsageError(
                        f"invalid --map {part!r}",
                        hint="give FIELD=KEY, for example --map internal_code=error_code",
                    )
                if field not in MAPPABLE_FIELDS:
                    raise UsageError(
                        f"invalid --map field {field!r}",
                        hint="FIELD is one of " + ", ".join(sorted(MAPPABLE_FIELDS)),
                    )
                pairs[field] = key
        return cls(tuple(pairs.items()))

    def maps(self, field: str) -> bool:
        return any(name == field for name, _ in self.pairs)

    def apply(self, values: dict[str, Any], view: dict[str, Any]) -> None:
        """Overwrite ``values``' mapped fields with what ``view`` holds under their keys."""
        for field, key in self.pairs:
            found = lookup(view, key)
            if found is None:
                continue
            if field == "level":
                found = level_name(found)
            elif field == "ts":
                found = utc_ts(found)
            elif field in _INT_FIELDS:
                found = _as_int(found)
            elif field == "duration_ms":
                found = _as_number(found)
            elif field in {"correlation_id", "trace_id"} and not isinstance(found, str):
                found = str(found)
            if found is not None and found != "":
                values[field] = found


NO_MAP = FieldMap()
