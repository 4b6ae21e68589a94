"""Loguru, configured (not wrapped) to write flat JSON lines (contract 1 in DESIGN.md).

Users keep ``from loguru import logger``. ``configure_logging`` installs:

- a patcher that puts the current correlation ID into every record's ``extra``;
- a file sink ``<log_dir>/<service>.jsonl`` (``<service>-<pid>.jsonl`` when several worker
  processes share a directory: one rotating file per process, so no process renames a file
  another is appending to), rotated in the log call (a rename) while compression and retention
  run in a background thread (``foundation.logfiles``);
- a stdout sink: the same JSON lines when stdout is not a terminal, readable colours when it is;
- interception of stdlib ``logging`` (uvicorn, SQLAlchemy, third parties) into those sinks.

A record becomes a line through a pipeline of small steps: core keys in a fixed order, extras
flattened (private ``_`` keys dropped, names that would overwrite a core key renamed),
sensitive names redacted, long values capped, foreign objects coerced, then orjson with compact
separators and an escape pass so that no line separator, C1 control or bidi override reaches the
file raw. The JSON is computed once per record and shared by every JSON sink.

Durability: the file is written unbuffered and synchronously, one ``write(2)`` per line
(Loguru's ``enqueue=True`` costs 4-5x in throughput and loses queued records on SIGTERM), so a
record is in the kernel when the logging call returns.

Speed: JSON sinks do their work in Loguru's filter step (``_json_writer``), and foundation's own
lines (access line, handlers' errors) skip Loguru when its JSON sinks are the only handlers
(``LoggingConfig.emit``).

A sink that fails (disk full, unwritable directory) never fails the application: the record is
dropped, counted, and a rate-limited warning naming the path goes to stderr, never the record's
content.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

import orjson
from asgi_correlation_id import correlation_id
from loguru import logger

from foundation.logfiles import Retention, RotatingFile, Rotation, parse_compression
from foundation.tracecontext import trace_ids

if TYPE_CHECKING:
    from loguru import Message, Record

DEFAULT_REDACT = (
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "cookie",
    "api_key",
    "apikey",
    "private_key",
    "credential",
)
REDACTED = "[REDACTED]"
DEFAULT_MAX_FIELD_CHARS = 8192
DEFAULT_MAX_TRACEBACK_CHARS = 65536
_MAX_DEPTH = 6
_MAX_ITEMS = 100

# Contract 1: the fixed order of the known keys.
_CORE_KEYS = (
    "ts",
    "level",
    "correlation_id",
    "trace_id",
    "span_id",
    "message",
    "service",
    "logger",
    "function",
    "line",
)
_ERROR_KEYS = ("internal_code", "http_code")
_ACCESS_KEYS = ("method", "path", "route", "status", "duration_ms")
# Extras already written in their contract position; any other extra named like a core key
# (``service``, ``message``...) is kept as ``extra_<name>``.
_PLACED = frozenset(
    ("correlation_id", "trace_id", "span_id", *_ERROR_KEYS, "exception", *_ACCESS_KEYS)
)
_ORDERED_EXTRAS = frozenset((*_ERROR_KEYS, *_ACCESS_KEYS))

# Characters that JSON allows raw but that split lines (U+2028/2029, NEL) for some readers or
# drive terminals (C1 controls incl. 0x9b CSI, bidi overrides): escaped (\\u2028). Matched on
# the UTF-8 bytes orjson produces, only when the line is not pure ASCII.
_UNSAFE_UTF8 = re.compile(
    rb"\xc2[\x80-\x9f]|\xe2\x80[\x8e\x8f\xa8-\xae]|\xe2\x81[\xa6-\xa9]|\xd8\x9c|\xef\xbb\xbf"
)


def _escape_unsafe(match: re.Match[bytes]) -> bytes:
    return b"\\u%04x" % ord(match.group().decode())


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[truncated {len(text) - limit} chars]"


def _fallback_text(value: object, limit: int) -> str:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not cost the record
        text = f"<unrepresentable {type(value).__name__}>"
    return _truncate(text, limit)


@dataclass(slots=True)
class JsonRenderer:
    """Turns a Loguru record into one schema-v1 JSON line (with its trailing ``\\n``)."""

    service: str | None = None
    redact: Iterable[str] = DEFAULT_REDACT
    max_field_chars: int = DEFAULT_MAX_FIELD_CHARS
    max_traceback_chars: int = DEFAULT_MAX_TRACEBACK_CHARS
    _patterns: tuple[str, ...] = field(init=False, default=())
    _sensitive: dict[str, bool] = field(init=False, default_factory=dict)
    _second: tuple[int, str] = field(init=False, default=(-1, ""))
    _moment: tuple[tuple[Any, ...], str] = field(init=False, default=((), ""))
    _access_redacted: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self._patterns = tuple(p.lower().replace("-", "_") for p in self.redact)
        self._access_redacted = any(self.is_sensitive(key) for key in _ACCESS_KEYS)

    # -- steps of the pipeline ------------------------------------------------------------

    def timestamp(self, moment: datetime) -> str:
        """RFC 3339 UTC with microseconds; the formatting of the second is cached.

        The cache is keyed on the datetime's own fields (its zone included): converting an
        aware datetime to epoch seconds costs more than formatting the rest of the line.
        """
        key = (
            moment.second,
            moment.minute,
            moment.hour,
            moment.day,
            moment.month,
            moment.year,
            moment.tzinfo,
        )
        cached_key, prefix = self._moment
        if key != cached_key:
            prefix = self._prefix(int(moment.timestamp()))
            self._moment = (key, prefix)
        return "%s.%06dZ" % (prefix, moment.microsecond)  # noqa: UP031 - 50 ns under the f-string

    def _prefix(self, second: int) -> str:
        cached_second, prefix = self._second
        if second != cached_second:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, prefix)
        return prefix

    def now(self) -> str:
        """The current time, formatted like ``timestamp``."""
        second, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
        cached_second, prefix = self._second
        if second != cached_second:
            prefix = self._prefix(second)
        return "%s.%06dZ" % (prefix, nanoseconds // 1000)  # noqa: UP031 - see timestamp

    def is_sensitive(self, key: str) -> bool:
        known = self._sensitive.get(key)
        if known is None:
            folded = key.lower().replace("-", "_")
            known = any(p in folded for p in self._patterns)
            if len(self._sensitive) < 4096:
                self._sensitive[key] = known
        return known

    def clean(self, key: str, value: Any, depth: int = 0) -> Any:
        """Redact, cap and coerce one value (recursing into containers, bounded)."""
        if key and self.is_sensitive(key):
            return REDACTED
        kind = type(value)
        if kind is str:
            return (
                value
                if len(value) <= self.max_field_chars
                else _truncate(value, self.max_field_chars)
            )
        if value is None or kind is bool or kind is int:
            return value
        if kind is float:
            return value if math.isfinite(value) else str(value)
        if depth >= _MAX_DEPTH:
            return _fallback_text(value, self.max_field_chars)
        if isinstance(value, Mapping):
            return {
                str(k): self.clean(str(k), v, depth + 1)
                for k, v in list(value.items())[:_MAX_ITEMS]
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self.clean("", v, depth + 1) for v in list(value)[:_MAX_ITEMS]]
        return value  # orjson handles datetimes, UUIDs, enums, dataclasses; default() the rest

    def exception(self, record: Record) -> dict[str, str] | None:
        info = record["exception"]
        if info is None:
            summary = record["extra"].get("_exception")
            return summary if isinstance(summary, dict) else None
        kind, value, tb = info
        if kind is None or value is None:
            return {"type": "Exception", "value": "", "traceback": ""}
        return self.exception_fields(value, with_traceback=True, tb=tb)

    def exception_fields(
        self, exc: BaseException, *, with_traceback: bool, tb: TracebackType | None = None
    ) -> dict[str, str]:
        """``{"type", "value"[, "traceback"]}``; tracebacks carry no local variable values."""
        fields = {
            "type": type(exc).__name__,
            "value": _truncate(_safe_str(exc), self.max_field_chars),
        }
        if with_traceback:
            trace = tb if tb is not None else exc.__traceback__
            text = "".join(traceback.format_exception(type(exc), exc, trace))
            fields["traceback"] = _truncate(text, self.max_traceback_chars)
        return fields

    def fields(self, record: Record) -> dict[str, Any]:
        extra = record["extra"]
        return self.assemble(
            self.timestamp(record["time"]),
            record["level"].name,
            record["message"],
            record["name"],
            record["function"],
            record["line"],
            extra,
            None
            if record["exception"] is None and "_exception" not in extra
            else self.exception(record),
        )

    def assemble(  # noqa: PLR0917 - one positional per contract key, on the hot path
        self,
        ts: str,
        level: str,
        message: str,
        name: str | None,
        function: str | None,
        line: int | None,
        extra: Mapping[str, Any],
        exception: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The record's keys in contract order, extras cleaned and flattened after them."""
        out: dict[str, Any] = {"ts": ts, "level": level}
        placed = 0
        cid = extra.get("correlation_id")
        if cid:
            out["correlation_id"] = cid
            placed = 1
        trace_id = extra.get("trace_id")
        if trace_id:
            out["trace_id"] = trace_id
            placed += 1
        span_id = extra.get("span_id")
        if span_id:
            out["span_id"] = span_id
            placed += 1
        out["message"] = (
            message
            if len(message) <= self.max_field_chars
            else _truncate(message, self.max_field_chars)
        )
        if self.service:
            out["service"] = self.service
        if name:
            out["logger"] = name
        if function:
            out["function"] = function
        if line is not None:
            out["line"] = line
        # Skip the extras pass when the IDs are the only extras (the common case).
        if len(extra) > placed or exception is not None:
            if exception is not None or not _ORDERED_EXTRAS.isdisjoint(extra):
                for key in _ERROR_KEYS:
                    if key in extra:
                        out[key] = self.clean(key, extra[key])
                if exception is not None:
                    out["exception"] = exception
                for key in _ACCESS_KEYS:
                    if key in extra:
                        out[key] = self.clean(key, extra[key])
            sensitive = self._sensitive
            limit = self.max_field_chars
            for key, raw in extra.items():
                if key in _PLACED or key[:1] == "_":
                    continue
                # ``clean`` inlined for what most extras are: short strings, ints, bools, None
                # under a name already known not to be sensitive.
                kind = type(raw)
                if sensitive.get(key) is False and (
                    kind is int
                    or (kind is str and len(raw) <= limit)
                    or raw is None
                    or kind is bool
                ):
                    value = raw
                else:
                    value = self.clean(key, raw)
                out[key if key not in out else f"extra_{key}"] = value
        return out

    def access_fields(  # noqa: PLR0917 - one positional per key, on the hot path
        self,
        ts: str,
        cid: str | None,
        ids: tuple[str, str] | None,
        message: str,
        name: str,
        method: str,
        path: str,
        route: str,
        status: int,
        duration_ms: float,
    ) -> dict[str, Any]:
        """What ``assemble`` makes of an access line, without its generic passes.

        The five fields' types are known (the method, path and route strings only need their
        cap); a redaction pattern that matches one of their names takes the generic path.
        """
        if self._access_redacted:
            extra = {
                "method": method,
                "path": path,
                "route": route,
                "status": status,
                "duration_ms": duration_ms,
            }
            if cid:
                extra["correlation_id"] = cid
            if ids is not None:
                extra["trace_id"], extra["span_id"] = ids
            return self.assemble(ts, "INFO", message, name, None, None, extra)
        limit = self.max_field_chars
        out: dict[str, Any] = {"ts": ts, "level": "INFO"}
        if cid:
            out["correlation_id"] = cid
        if ids is not None:
            out["trace_id"], out["span_id"] = ids
        out["message"] = message if len(message) <= limit else _truncate(message, limit)
        if self.service:
            out["service"] = self.service
        if name:
            out["logger"] = name
        out["method"] = method if len(method) <= limit else _truncate(method, limit)
        out["path"] = path if len(path) <= limit else _truncate(path, limit)
        out["route"] = route if len(route) <= limit else _truncate(route, limit)
        out["status"] = status
        out["duration_ms"] = duration_ms
        return out

    def serialize(self, out: dict[str, Any]) -> bytes:
        return self._dumps(out, 0)

    def _dumps(self, out: dict[str, Any], option: int) -> bytes:
        try:
            # Keys are strings but for the rarest records: orjson is much faster without
            # OPT_NON_STR_KEYS, and refuses a non-string key, which the next try accepts.
            data = orjson.dumps(out, default=self._default, option=option)
        except TypeError:  # orjson.JSONEncodeError included
            try:
                data = orjson.dumps(
                    out, default=self._default, option=option | orjson.OPT_NON_STR_KEYS
                )
            except TypeError:
                # Lone surrogates, or an object whose serialisation failed: coerce every string.
                data = orjson.dumps(_scrub(out, self.max_field_chars), option=option)
        if not data.isascii():
            data = _UNSAFE_UTF8.sub(_escape_unsafe, data)
        return data

    def _default(self, value: object) -> str:
        return _fallback_text(value, self.max_field_chars)

    def render(self, record: Record) -> bytes:
        """The record's line, ``\\n`` included; never raises (a rendering bug keeps the record)."""
        try:
            extra = record["extra"]
            fields = self.assemble(  # ``fields``, inlined: this runs once per record
                self.timestamp(record["time"]),
                record["level"].name,
                record["message"],
                record["name"],
                record["function"],
                record["line"],
                extra,
                None
                if record["exception"] is None and "_exception" not in extra
                else self.exception(record),
            )
            return self._dumps(fields, orjson.OPT_APPEND_NEWLINE)
        except Exception as exc:
            fallback = {
                "ts": self.timestamp(record["time"]),
                "level": record["level"].name,
                "message": _truncate(_safe_str(record["message"]), self.max_field_chars),
                "logger": record["name"],
                "render_error": _fallback_text(exc, 500),
            }
            return orjson.dumps(_scrub(fallback, self.max_field_chars)) + b"\n"

    def line(self, record: Record) -> bytes:
        """``render``, once per record: the line is kept in the record for the other JSON sinks."""
        extra = record["extra"]
        line = extra.get("_json")
        if line is None:
            line = extra["_json"] = self.render(record)
        return line


def _json_writer(
    renderer: JsonRenderer, sink: _GuardedSink, *, shared: bool
) -> Callable[[Record], bool]:
    """The filter that writes a record's JSON line to one sink from inside Loguru's filter step.

    Loguru calls a handler's filter with the record before it formats anything. foundation's
    JSON sinks do all their work there (render, write the bytes) and answer ``False``, so
    Loguru skips the record copy, format and message object it would otherwise build for
    nothing. Level filtering still happens first, in Loguru. With two JSON sinks (file and
    stdout) the line is rendered once and kept in the record's extras for the second
    (``shared``). A closure rather than an object with ``__call__``: it runs once per record
    and sink.
    """
    render = renderer.render
    write = sink.write

    def write_json(record: Record) -> bool:
        write(render(record))
        return False

    def write_shared_json(record: Record) -> bool:
        extra = record["extra"]
        line = extra.get("_json")
        if line is None:
            line = extra["_json"] = render(record)
        write(line)
        return False

    return write_shared_json if shared else write_json


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _scrub(value: Any, limit: int, depth: int = 0) -> Any:
    """Last-resort coercion: plain JSON types only, strings re-encoded without surrogates."""
    if isinstance(value, str):
        return _truncate(value.encode("utf-8", "backslashreplace").decode("utf-8"), limit)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth < _MAX_DEPTH and isinstance(value, dict):
        return {_scrub(str(k), limit): _scrub(v, limit, depth + 1) for k, v in value.items()}
    if depth < _MAX_DEPTH and isinstance(value, list):
        return [_scrub(v, limit, depth + 1) for v in value]
    return _scrub(_fallback_text(value, limit), limit)


def _human_format(record: Record) -> str:
    """Readable, coloured lines for a terminal (values come from the record, never the template)."""
    head = "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <8}</level> "
    if record["extra"].get("correlation_id"):
        head += "<cyan>{extra[correlation_id]:.8}</cyan> "
    head += "<level>{message}</level>"
    extra = record["extra"]
    if "status" in extra and "duration_ms" in extra:
        head += (
            " <dim>{extra[method]} {extra[path]} → {extra[status]} ({extra[duration_ms]} ms)</dim>"
        )
    elif "internal_code" in extra:
        head += " <dim>code={extra[internal_code]}</dim>"
    return head + "\n{exception}"


def _add_correlation_id(record: Record) -> None:
    """The patcher: the current correlation ID and trace/span IDs into the record's extras
    (values bound explicitly, e.g. by a job runner, win)."""
    extra = record["extra"]
    if "correlation_id" not in extra:
        cid = correlation_id.get()
        if cid is not None:
            extra["correlation_id"] = cid
    if "trace_id" not in extra:
        ids = trace_ids()
        if ids is not None:
            extra["trace_id"], extra["span_id"] = ids


class _GuardedSink:
    """A sink that never raises into the application.

    Loguru's own error path prints the whole record (extras included) to stderr; secrets bound
    in ``extra`` would leak there, so write errors are caught here, counted, and reported by a
    rate-limited one-line warning that names the target and the error only.
    """

    def __init__(
        self, target: Any, name: str, *, binary: bool = False, warn_every: float = 60.0
    ) -> None:
        self._target = target
        self._binary = binary
        self.name = name
        self._warn_every = warn_every
        self._last_warning = -math.inf
        self.dropped = 0
        self._lock = threading.Lock()
        # Loguru serialises its own calls per handler; ``LoggingConfig.emit`` writes without
        # Loguru, so both paths also take this lock (a TextIOWrapper is not thread-safe).
        self._write_lock = threading.Lock()

    def write(self, message: Message | str | bytes) -> None:
        try:
            if self._binary:  # foundation's file: whole lines of bytes, one write(2) each
                with self._write_lock:
                    self._target.write(message)
                return
            if isinstance(message, bytes):
                message = message.decode()
            with self._write_lock:
                self._target.write(message)
                if self._target is sys.stdout or self._target is sys.stderr:
                    self._target.flush()
        except Exception as exc:
            self._dropped(exc)

    def _dropped(self, exc: Exception) -> None:
        with self._lock:
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_warning < self._warn_every:
                return
            self._last_warning = now
            count = self.dropped
        stderr = sys.__stderr__
        if stderr is None:
            return
        try:
            stderr.write(
                f"foundation: cannot write logs to {self.name}: {type(exc).__name__}: {exc}; "
                f"{count} record(s) dropped so far (requests are not affected; "
                "check the log directory's permissions and free space)\n"
            )
        except Exception:  # stderr itself is gone: nothing left to tell
            return

    def stop(self) -> None:
        stop = getattr(self._target, "stop", None)
        if callable(stop):
            try:
                stop()
            except Exception as exc:
                self._dropped(exc)


class _InterceptHandler(logging.Handler):
    """Routes stdlib ``logging`` records into Loguru, keeping their logger name and location."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        try:
            message = record.getMessage()
        except Exception:
            message = _safe_str(record.msg)

        def origin(loguru_record: Record) -> None:
            loguru_record["name"] = record.name
            loguru_record["function"] = record.funcName
            loguru_record["line"] = record.lineno

        logger.patch(origin).opt(exception=record.exc_info).log(level, "{}", message)


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """What ``configure_logging`` installed: where the file goes and how to inspect the sinks."""

    service: str
    log_file: Path | None
    handler_ids: tuple[int, ...]
    sinks: tuple[_GuardedSink, ...]
    renderer: JsonRenderer
    json_sinks: tuple[_GuardedSink, ...] = ()
    level_no: int = 20
    # Loguru's handler dict right after configuration (see ``_direct``).
    handlers_seen: object = field(default=None, repr=False, compare=False)

    @property
    def dropped_records(self) -> int:
        """Records that a sink could not write (disk full, unwritable directory)."""
        return sum(sink.dropped for sink in self.sinks)

    def _direct(self) -> bool:
        """Whether foundation's own lines may skip Loguru: its JSON sinks are the only handlers.

        Loguru replaces its handler dict on every ``add``/``remove``, so the dict seen at
        configuration time answers in one identity check; any other dict is compared by ids.
        """
        if not self.json_sinks or len(self.json_sinks) != len(self.handler_ids):
            return False
        handlers = getattr(_loguru_core, "handlers", None)
        if handlers is self.handlers_seen and handlers is not None:
            return True
        return isinstance(handlers, dict) and sorted(handlers) == sorted(self.handler_ids)

    def emit(
        self,
        level: str,
        message: str,
        name: str,
        extra: Mapping[str, Any],
        exception: dict[str, str] | None = None,
    ) -> bool:
        """Write one of foundation's own records straight to the JSON sinks.

        Loguru's per-record machinery (frame inspection, process and thread names, record copy,
        format) costs more than the request it describes; foundation's own lines (the access
        line, the handlers' error lines) need none of it. Only taken when every installed
        handler is one of foundation's JSON sinks (no terminal format, no sink added by the
        application); otherwise returns ``False`` and the caller logs through Loguru.
        """
        if not self._direct():
            return False
        level_no = _LEVEL_NUMBERS.get(level)
        if level_no is None:
            return False
        if level_no < self.level_no:
            return True
        renderer = self.renderer
        cid = correlation_id.get()
        ids = trace_ids()
        if ids is not None:
            extra = {"trace_id": ids[0], "span_id": ids[1], **extra}
        fields = renderer.assemble(
            renderer.now(),
            level,
            message,
            name,
            None,
            None,
            {"correlation_id": cid, **extra} if cid else extra,
            exception,
        )
        return self._write(fields)

    def access(  # noqa: PLR0917 - one positional per field of the access line
        self, message: str, name: str, method: str, path: str, route: str, status: int, ms: float
    ) -> bool:
        """The access line (INFO), like ``emit`` would write it, without its generic passes."""
        if not self._direct():
            return False
        if self.level_no > _INFO:
            return True
        renderer = self.renderer
        return self._write(
            renderer.access_fields(
                renderer.now(),
                correlation_id.get(),
                trace_ids(),
                message,
                name,
                method,
                path,
                route,
                status,
                ms,
            )
        )

    def _write(self, fields: dict[str, Any]) -> bool:
        try:
            line = self.renderer._dumps(fields, orjson.OPT_APPEND_NEWLINE)
        except Exception:
            return False
        for sink in self.json_sinks:
            sink.write(line)
        return True


_installed: list[LoggingConfig] = []
_LEVEL_NUMBERS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "SUCCESS": 25, "WARNING": 30, "ERROR": 40}
_LEVEL_NUMBERS["CRITICAL"] = 50
_INFO = _LEVEL_NUMBERS["INFO"]
# Loguru's dispatcher (one per process); its ``handlers`` dict is what ``_direct`` checks.
_loguru_core = getattr(logger, "_core", None)


def log_record(
    level: str,
    message: str,
    name: str,
    extra: Mapping[str, Any],
    *,
    exception: BaseException | dict[str, str] | None = None,
    with_traceback: bool = False,
) -> None:
    """Log one of foundation's own records (never user text as a format string).

    ``exception`` is the exception (its traceback written when ``with_traceback``) or a ready
    ``{"type", "value"}`` summary. Straight to foundation's JSON sinks when they are the only
    handlers, through Loguru otherwise, with the same fields either way.
    """
    config = current_logging()
    summary: dict[str, str] | None
    if isinstance(exception, BaseException) and not with_traceback:
        summary = exception_summary(exception)
    else:
        summary = exception if isinstance(exception, dict) else None
    if config is not None:
        fields = summary
        if isinstance(exception, BaseException) and with_traceback:
            fields = config.renderer.exception_fields(exception, with_traceback=True)
        if config.emit(level, message, name, extra, fields):
            return
    # depth=1: the record names the caller (handler, middleware), not this function.
    if isinstance(exception, BaseException) and with_traceback:
        logger.opt(exception=exception, depth=1).log(level, "{}", message, **extra)
    elif summary is not None:
        logger.opt(depth=1).log(level, "{}", message, **extra, _exception=summary)
    else:
        logger.opt(depth=1).log(level, "{}", message, **extra)


def current_logging() -> LoggingConfig | None:
    """The configuration installed by the last ``configure_logging`` call, if any."""
    return _installed[-1] if _installed else None


def _several_workers(env: Mapping[str, str]) -> bool:
    """Whether this process is one of several workers sharing the log directory."""
    if multiprocessing.parent_process() is not None:  # uvicorn --workers spawns workers this way
        return True
    try:
        if int(env.get("WEB_CONCURRENCY", "1")) > 1:
            return True
    except ValueError:
        pass
    return "gunicorn" in env.get("SERVER_SOFTWARE", "") or "gunicorn" in Path(sys.argv[0]).name


def configure_logging(
    *,
    service: str,
    log_dir: str | os.PathLike[str] | None = "var/log",
    log_level: str | int = "INFO",
    log_stdout: bool = True,
    stdout_json: bool | None = None,
    rotation: str | int | None = "100 MB",
    retention: str | int | None = "14 days",
    compression: str | None = "gz",
    per_process: bool | None = None,
    redact: Iterable[str] = DEFAULT_REDACT,
    max_field_chars: int = DEFAULT_MAX_FIELD_CHARS,
    intercept_stdlib: bool = True,
    stdout: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> LoggingConfig:
    """Configure Loguru for this process (replacing its handlers) and return what was installed.

    ``log_dir=None`` disables the file sink. ``stdout_json=None`` picks JSON when stdout is not a
    terminal. ``per_process=None`` detects several workers (uvicorn ``--workers``, gunicorn,
    ``WEB_CONCURRENCY``) and then writes ``<service>-<pid>.jsonl``.
    """
    env = os.environ if env is None else env
    # Parsed before anything is replaced: a bad value fails here, with the old handlers intact.
    rotation_rule = Rotation.parse(rotation)
    retention_rule = Retention.parse(retention)
    compress = parse_compression(compression)
    renderer = JsonRenderer(service=service, redact=tuple(redact), max_field_chars=max_field_chars)
    logger.remove()
    logger.configure(patcher=_add_correlation_id, extra={})
    handler_ids: list[int] = []
    sinks: list[_GuardedSink] = []
    json_sinks: list[_GuardedSink] = []
    log_file: Path | None = None

    stream = stdout if stdout is not None else sys.stdout
    is_tty = log_stdout and bool(getattr(stream, "isatty", lambda: False)())
    stdout_is_json = log_stdout and ((not is_tty) if stdout_json is None else stdout_json)
    shared = log_dir is not None and stdout_is_json  # two JSON sinks: render once for both

    if log_dir is not None:
        several = _several_workers(env) if per_process is None else per_process
        name = f"{service}-{os.getpid()}.jsonl" if several else f"{service}.jsonl"
        log_file = Path(log_dir) / name
        file_sink = RotatingFile(  # opened at the first record, inside the guard: a bad
            str(log_file.parent),  # directory never fails start-up
            service,
            per_process=several,
            rotation=rotation_rule,
            retention=retention_rule,
            compress=compress,
        )
        guarded = _GuardedSink(file_sink, str(log_file), binary=True)
        sinks.append(guarded)
        json_sinks.append(guarded)
        handler_ids.append(_add_json_handler(guarded, renderer, log_level, shared=shared))

    if log_stdout:
        guarded = _GuardedSink(stream, "stdout")
        sinks.append(guarded)
        if stdout_is_json:
            json_sinks.append(guarded)
            handler_ids.append(_add_json_handler(guarded, renderer, log_level, shared=shared))
        else:
            handler_ids.append(
                logger.add(
                    guarded,
                    level=log_level,
                    format=_human_format,
                    colorize=is_tty and "NO_COLOR" not in env,
                    backtrace=False,
                    diagnose=False,
                    catch=True,
                )
            )

    if intercept_stdlib:
        _intercept_stdlib(log_level)

    config = LoggingConfig(
        service=service,
        log_file=log_file,
        json_sinks=tuple(json_sinks),
        level_no=logger.level(log_level).no if isinstance(log_level, str) else log_level,
        handler_ids=tuple(handler_ids),
        sinks=tuple(sinks),
        renderer=renderer,
        handlers_seen=getattr(_loguru_core, "handlers", None),
    )
    _installed[:] = [config]
    return config


def _add_json_handler(
    sink: _GuardedSink, renderer: JsonRenderer, level: str | int, *, shared: bool
) -> int:
    return logger.add(
        sink,  # its write() is never called: the filter writes (_json_writer)
        level=level,
        filter=_json_writer(renderer, sink, shared=shared),
        format="{message}",
        colorize=False,
        backtrace=False,
        diagnose=False,
        catch=True,
    )


def _intercept_stdlib(level: str | int) -> None:
    handler = _InterceptHandler()
    logging.basicConfig(handlers=[handler], level=0, force=True)
    # uvicorn and friends install their own handlers: route them to the root (and so to Loguru).
    for name in list(logging.root.manager.loggerDict):
        existing = logging.getLogger(name)
        if existing.handlers:
            existing.handlers = []
            existing.propagate = True
    # foundation writes one access line per request itself; uvicorn's would be a duplicate.
    logging.getLogger("uvicorn.access").disabled = True
    numeric = logging.getLevelName(level) if isinstance(level, str) else level
    logging.root.setLevel(numeric if isinstance(numeric, int) else logging.INFO)


def exception_summary(exc: BaseException) -> dict[str, str]:
    """``{"type", "value"}`` for an exception logged without its traceback (client errors)."""
    return {"type": type(exc).__name__, "value": _safe_str(exc)}
