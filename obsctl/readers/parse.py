"""Parse one log line (bytes) into :class:`Record` s with schema v1 keys. Pure: no I/O.

Every common JSON shape is accepted and normalised to the same record (the others —
structlog, python-json-logger, Elastic ECS, OpenTelemetry OTLP/JSON — in
:mod:`obsctl.readers.shapes`); the two read here:

* **schema v1** (contract 1, what foundation writes): one flat JSON object per line,
  ``{"ts":"2026-11-26T02:11:52.123456Z","level":"ERROR","correlation_id":"…",…}``;
* **Loguru's native** ``serialize=True`` shape: ``{"text": "...", "record": {...}}``; its
  ``record.time``, ``record.level.name``, ``record.extra`` … are mapped onto schema v1 keys
  (``ts`` in UTC with microseconds, ``logger`` = ``record.name``, extras flattened, the
  ``correlation_id`` taken from ``extra.correlation_id`` or ``extra.request_id``).

Use :func:`parse_records_checked` to read a line: it returns every record of the line (an OTLP
line holds many) or why it was refused (to count damaged input for the user), and applies
``--map`` (:class:`~obsctl.readers.fields.FieldMap`). :func:`parse_line_checked` and
:func:`parse_line` return the first record only.

``--json`` prints a record's line exactly as logged, except: Loguru's native shape (printed as
schema v1), NaN tokens (below), and a record of a many-record OTLP line (printed as an OTLP line
holding that record alone, with its resource and scope).

Policy for bare ``NaN``/``Infinity`` tokens (Loguru writes them for float extras): they are
accepted as floats; such a record has ``strict=False`` and ``--json`` re-serialises it with
orjson (which writes ``null``), so JSON output always stays strict JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from obsctl.readers.fields import NO_MAP, FieldMap
from obsctl.readers.shapes import read_doc

__all__ = [
    "MAX_LINE_BYTES",
    "SCHEMA_KEYS",
    "Record",
    "as_int",
    "parse_line",
    "parse_line_checked",
    "parse_records_checked",
    "records_of_doc",
    "ts_to_epoch",
    "v1_epoch",
]

#: Lines longer than this are skipped and reported ("oversized"): memory stays bounded.
MAX_LINE_BYTES = 1 << 20

#: Schema v1 keys in the order the writer emits them (contract 1).
SCHEMA_KEYS: tuple[str, ...] = (
    "ts",
    "level",
    "correlation_id",
    "message",
    "service",
    "logger",
    "function",
    "line",
    "internal_code",
    "http_code",
    "exception",
    "method",
    "path",
    "route",
    "status",
    "duration_ms",
)

# Reasons a line is refused, as counted in the one-line stderr summary.
CORRUPT = "corrupt"
NON_UTF8 = "non-UTF-8"
NOT_RECORD = "not a log record"
NUL = "NUL-filled"

_NONSTANDARD_TOKENS = (b"NaN", b"Infinity")
_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError


@dataclass(slots=True)
class Record:
    """One log record with schema v1 keys (a value: nothing changes a record once made).

    Not a frozen dataclass: a frozen one costs four times as much to create, and a trace or a
    tail over Loki creates one per line.

    ``data`` holds the keys in schema order (extras after them); ``raw`` is the line as read
    (without its ``\\n``); ``strict`` is False when ``raw`` is not what ``--json`` should print
    verbatim (native Loguru shape, or NaN/Infinity tokens): then :meth:`json_bytes` re-encodes.
    ``source``/``offset`` say where the line came from (file name and byte offset), when known.
    """

    data: dict[str, Any]
    raw: bytes = b""
    strict: bool = True
    source: str = ""
    offset: int = 0
    seq: int = field(default=0, compare=False)

    @property
    def ts(self) -> str:
        value = self.data.get("ts")
        return value if isinstance(value, str) else ""

    @property
    def level(self) -> str:
        value = self.data.get("level")
        return value.upper() if isinstance(value, str) else ""

    @property
    def correlation_id(self) -> str | None:
        value = self.data.get("correlation_id")
        return value if isinstance(value, str) and value else None

    @property
    def trace_id(self) -> str | None:
        value = self.data.get("trace_id")
        return value if isinstance(value, str) and value else None

    def has_id(self, prefix: str) -> bool:
        """Whether the record's correlation ID or its W3C trace-id starts with ``prefix``
        (``obsctl trace`` accepts either: contract 7)."""
        data = self.data
        cid = data.get("correlation_id")
        if cid.__class__ is str and cid.startswith(prefix):
            return True
        tid = data.get("trace_id")
        return tid.__class__ is str and tid != cid and tid.startswith(prefix)

    @property
    def message(self) -> str:
        value = self.data.get("message")
        return value if isinstance(value, str) else ("" if value is None else str(value))

    @property
    def logger(self) -> str:
        value = self.data.get("logger")
        return value if isinstance(value, str) else ""

    @property
    def internal_code(self) -> int | None:
        return as_int(self.data.get("internal_code"))

    @property
    def http_code(self) -> int | None:
        return as_int(self.data.get("http_code"))

    @property
    def status(self) -> int | None:
        return as_int(self.data.get("status"))

    @property
    def exception(self) -> dict[str, Any] | None:
        value = self.data.get("exception")
        return value if isinstance(value, dict) else None

    @property
    def epoch(self) -> float | None:
        """Seconds since the epoch of ``ts`` (None when absent or unparseable)."""
        return ts_to_epoch(self.ts)

    def json_bytes(self) -> bytes:
        """The record as one line of strict JSON (no newline): the raw line when it already is."""
        if self.strict and self.raw:
            return self.raw
        return orjson.dumps(self.data, default=str)


def as_int(value: object) -> int | None:
    """An integer field as logged (int, integral float or digit string), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


_SECONDS: dict[str, float] = {}


def v1_epoch(line: bytes) -> float | None:
    """Epoch seconds of a foundation line read from its first bytes, without a parse: the
    writer starts every line ``{"ts":"`` and a 27-character time. None for any other line
    (parse it)."""
    if line.startswith(b'{"ts":"') and line[34:35] == b'"':
        return ts_to_epoch(line[7:34].decode("ascii", "replace"))
    return None


def ts_to_epoch(ts: str) -> float | None:
    """Parse an RFC 3339 time (``Z`` or offset; naive means UTC) into epoch seconds."""
    if not ts:
        return None
    if len(ts) == 27 and ts[26] == "Z" and ts[19] == "." and ts[20:26].isdigit():
        # The writer's own format: the second is parsed once (records cluster in time).
        second = _SECONDS.get(ts[:19])
        if second is None:
            try:
                second = datetime.fromisoformat(ts[:19]).replace(tzinfo=UTC).timestamp()
            except ValueError:
                return None
            if len(_SECONDS) > 4096:
                _SECONDS.clear()
            _SECONDS[ts[:19]] = second
        return second + int(ts[20:26]) / 1_000_000
    try:
        moment = datetime.fromisoformat(ts)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _utc_ts(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ordered(values: dict[str, Any]) -> dict[str, Any]:
    """Schema keys first in contract order, then the rest as they came (empty values dropped)."""
    out: dict[str, Any] = {}
    for key in SCHEMA_KEYS:
        value = values.get(key)
        if value is not None and value != "":
            out[key] = value
    for key, value in values.items():
        if key not in out and key not in SCHEMA_KEYS:
            out[key] = value
    return out


def _native_ts(time_field: object) -> str:
    if isinstance(time_field, dict):
        repr_value = time_field.get("repr")
        if isinstance(repr_value, str):
            try:
                return _utc_ts(datetime.fromisoformat(repr_value))
            except ValueError:
                pass
        stamp = time_field.get("timestamp")
        if isinstance(stamp, int | float) and not isinstance(stamp, bool):
            return _utc_ts(datetime.fromtimestamp(float(stamp), tz=UTC))
    return ""


def _native_traceback(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    start = text.find("Traceback (most recent call last)")
    if start < 0:
        return None
    return text[start:].rstrip("\n")


def _from_native(doc: dict[str, Any]) -> dict[str, Any]:
    """Map Loguru's ``{"text", "record"}`` shape onto schema v1 keys."""
    record = doc["record"]
    extra = record.get("extra")
    extra = extra if isinstance(extra, dict) else {}
    level = record.get("level")
    exception = record.get("exception")
    values: dict[str, Any] = {
        "ts": _native_ts(record.get("time")),
        "level": level.get("name") if isinstance(level, dict) else level,
        "correlation_id": extra.get("correlation_id") or extra.get("request_id"),
        "message": record.get("message"),
        "service": extra.get("service"),
        "logger": record.get("name"),
        "function": record.get("function"),
        "line": record.get("line"),
    }
    if isinstance(exception, dict) and (exception.get("type") or exception.get("value")):
        values["exception"] = {
            "type": exception.get("type"),
            "value": exception.get("value"),
            "traceback": _native_traceback(doc.get("text")),
        }
    for key, value in extra.items():
        fills_gap = key in SCHEMA_KEYS and values.get(key) in (None, "")
        if (key not in values and key != "request_id") or fills_gap:
            values[key] = value
    return _ordered(values)


def _load(line: bytes) -> tuple[object, bool] | str:
    """JSON-decode one line: (value, strict) or the reason it is refused."""
    try:
        return orjson.loads(line), True
    except orjson.JSONDecodeError:
        pass
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return NON_UTF8
    if any(token in line for token in _NONSTANDARD_TOKENS):
        try:
            return json.loads(text), False
        except ValueError:
            return CORRUPT
    return CORRUPT


def parse_line_checked(
    raw: bytes, *, source: str = "", offset: int = 0, seq: int = 0, fields: FieldMap = NO_MAP
) -> tuple[Record | None, str | None]:
    """The first record of a line (see :func:`parse_records_checked`), or why it was refused."""
    records, reason = parse_records_checked(
        raw, source=source, offset=offset, seq=seq, fields=fields
    )
    return (records[0] if records else None), reason


def parse_records_checked(
    raw: bytes,
    *,
    source: str = "",
    offset: int = 0,
    seq: int = 0,
    fields: FieldMap = NO_MAP,
    own_lines: bool = True,
    errors_only: bool = False,
) -> tuple[list[Record], str | None]:
    """Parse one line; return ``(records, None)``, ``([], reason)`` or ``([], None)`` for blank.

    ``raw`` may end with ``\\n``/``\\r\\n``. A leading run of NUL bytes (a zero-filled tail after a
    crash, then new writes) is dropped and the rest parsed; a line of only NULs is refused.
    Reasons: ``"corrupt"``, ``"non-UTF-8"``, ``"not a log record"``, ``"NUL-filled"``,
    ``"oversized"`` (more than :data:`MAX_LINE_BYTES`). ``source``/``offset``/``seq`` are copied
    into the record (where it came from, and a tie-breaker for stable time ordering; the n-th
    record of a many-record line gets ``seq + n``). ``own_lines=False``: a scan that never prints
    the records skips encoding each record of a many-record OTLP line on its own (its ``raw`` is
    then the whole line). ``errors_only``: records below ERROR of a many-record line may be left
    out (``errors top`` reads nothing else).
    """
    line = raw.rstrip(b"\r\n")
    first = line[:1]
    if first == b"\x00":
        line = line.lstrip(b"\x00")
        first = line[:1]
        if not line.strip():
            return [], NUL
    if first != b"{" and not line.strip():  # a record starts with "{": not blank
        return [], None
    if len(line) > MAX_LINE_BYTES:
        return [], "oversized"
    try:  # the common case inline: one strict JSON object
        doc: object = _loads(line)
        strict = True
    except _JSONDecodeError:
        loaded = _load(line)
        if isinstance(loaded, str):
            return [], loaded
        doc, strict = loaded
    if not isinstance(doc, dict):
        return [], NOT_RECORD
    return records_of_doc(
        doc,
        line,
        strict=strict,
        source=source,
        offset=offset,
        seq=seq,
        fields=fields,
        own_lines=own_lines,
        errors_only=errors_only,
    )


def records_of_doc(
    doc: dict[str, Any],
    line: bytes,
    *,
    strict: bool = True,
    source: str = "",
    offset: int = 0,
    seq: int = 0,
    fields: FieldMap = NO_MAP,
    own_lines: bool = True,
    errors_only: bool = False,
) -> tuple[list[Record], str | None]:
    """:func:`parse_records_checked` for a line already decoded (``doc``) by a scan that tried
    it as schema v1 first: the same records, without decoding the line twice."""
    if "record" in doc and "text" in doc and isinstance(doc["record"], dict):
        values = _from_native(doc)
        if fields:
            extra = doc["record"].get("extra")
            fields.apply(values, {**doc["record"], **(extra if isinstance(extra, dict) else {})})
            values = _ordered(values)
        return [Record(values, line, False, source, offset, seq)], None
    if "correlation_id" in doc and "ts" in doc and "message" in doc and not fields:
        # foundation's own schema v1: taken as it is (the hot path of trace and tail).
        ordered = doc
        level = doc.get("level")
        if isinstance(level, str) and not level.isupper():
            ordered = dict(doc)
            ordered["level"] = level.upper()
        return [Record(ordered, line, strict, source, offset, seq)], None
    shaped = read_doc(
        doc, own_lines=own_lines, errors_only=errors_only and not fields.maps("level")
    )
    if not shaped:
        return [], (None if errors_only and "resourceLogs" in doc else NOT_RECORD)
    records = []
    for index, (values, view, own) in enumerate(shaped):
        if fields:
            fields.apply(values, view)
        raw_out, is_strict = (line, strict) if own is None else (own, True)
        records.append(Record(_ordered(values), raw_out, is_strict, source, offset, seq + index))
    return records, None


def parse_line(raw: bytes) -> Record | None:
    """Parse one log line (any shape obsctl reads) into its first :class:`Record`.

    Returns None for blank, damaged or non-record lines; never raises on any input bytes.
    """
    record, _reason = parse_line_checked(raw)
    return record
