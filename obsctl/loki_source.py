"""Loki as a source of log records for obsctl's commands.

Builds LogQL safely (stream selector + escaped line filter), pages through it with
``LokiClient.entries`` and turns entries into the records the file readers produce, so
``trace`` and ``errors top`` reuse the same analysis and rendering whatever the source.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import orjson

from obsctl.errors import UsageError
from obsctl.http import BackendHttp, build_client
from obsctl.loki import LogEntry, LokiClient, loki_error_text
from obsctl.settings import Settings
from obsctl.timespec import NS_PER_S, now_ns, parse_duration_ns, parse_time_ns

DEFAULT_SINCE = "1h"
_UNSAFE_CHARS = {c: f"\\u{c:04x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_UNSAFE_CHARS.update({c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *range(0x202A, 0x202F))})
_UNSAFE_CHARS.update({c: f"\\u{c:04x}" for c in range(0x2066, 0x206A)})
_UNSAFE_CHARS[ord("\t")] = "\t"


@contextmanager
def loki_client(settings: Settings, *, page_size: int | None = None) -> Iterator[LokiClient]:
    if not settings.loki_url:
        raise UsageError("no Loki URL", hint="pass --loki-url or set OBSCTL_LOKI_URL")
    http = BackendHttp(
        build_client(settings, settings.loki_url, what="Loki"),
        name="Loki",
        max_bytes=settings.max_response_bytes,
        error_text=loki_error_text,
    )
    with http:
        yield LokiClient(http) if page_size is None else LokiClient(http, page_size=page_size)


def time_range(
    *, since: str | None, from_: str | None, to: str | None, now: int | None = None
) -> tuple[int, int]:
    """[start, end) in Unix ns from ``--since`` or ``--from``/``--to`` (default: the last hour)."""
    current = now_ns() if now is None else now
    if since and from_:
        raise UsageError("--since and --from both given", hint="use one of them")
    end = parse_time_ns(to, now=current, flag="--to") if to else current
    if from_:
        start = parse_time_ns(from_, now=current, flag="--from")
    else:
        start = end - parse_duration_ns(since or DEFAULT_SINCE, flag="--since")
    if start >= end:
        raise UsageError("the time range is empty", hint="--from must be before --to")
    return start, end


def logql_string(value: str) -> str:
    """``value`` as a LogQL double-quoted literal (Go unquote rules: \\\\, \\", control chars)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(
            f"{value!r} is not valid text", hint="pass the value as UTF-8 characters"
        ) from None
    # JSON string escaping is a subset of Go's; ensure_ascii=False keeps non-ASCII as is,
    # because Go rejects the \\udXXX surrogate pairs that ensure_ascii=True would write.
    return orjson.dumps(value).decode("utf-8")


def with_line_filter(selector: str, needle: str) -> str:
    """``{selector} |= "needle"`` with the needle escaped."""
    selector = selector.strip()
    if not (selector.startswith("{") and selector.endswith("}")):
        raise UsageError(
            f"invalid stream selector {selector!r}", hint='use a selector such as {service="shop"}'
        )
    return f"{selector} |= {logql_string(needle)}"


def escape_for_terminal(text: str) -> str:
    return text.translate(_UNSAFE_CHARS)


def entry_json(entry: LogEntry) -> bytes:
    """``{"ts": "<ns string>", "labels": {...}, "line": "..."}``: the ns time never as a float."""
    return orjson.dumps({"ts": str(entry.ts), "labels": entry.labels, "line": entry.line})


def _plain(entry: LogEntry) -> str:
    whole, frac = divmod(entry.ts, NS_PER_S)
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(whole, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    labels = ",".join(f"{k}={v}" for k, v in sorted(entry.labels.items()))
    return escape_for_terminal(f"{stamp}.{frac:09d}Z {{{labels}}} {entry.line}")


def print_entries(entries: Iterable[LogEntry], *, json_out: bool) -> int:
    """Write entries to stdout as they arrive (one page in memory); return how many."""
    out = sys.stdout
    count = 0
    if json_out:
        buffer = out.buffer
        for entry in entries:
            buffer.write(entry_json(entry) + b"\n")
            count += 1
        buffer.flush()
        return count
    for entry in entries:
        out.write(_plain(entry) + "\n")
        count += 1
    out.flush()
    return count
