"""Analysis results → plain values for the HTML templates. Pure: no I/O, no HTML.

Every string that came from a log goes through :func:`obsctl.render.logs.escape` here (controls,
bidi overrides and line separators become visible ``\\u202e``-style escapes), and the templates
escape HTML on top (Jinja2 autoescaping). So a hostile line is shown as inert text twice over:
nothing in it can become markup, script, a link or a reordering of the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from obsctl.analysis.analyse import ErrorReport, Trace, level_rank
from obsctl.analysis.idtime import ago_text
from obsctl.render.logs import escape, spark, traceback_lines

__all__ = [
    "ErrorRow",
    "TimelineRow",
    "TracePage",
    "TracebackBlock",
    "error_rows",
    "trace_page",
]

#: A timeline longer than twice this shows its first and last rows, as in the terminal.
TIMELINE_EDGE = 200
MAX_TRACEBACKS = 5


def _when(ts: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _clock(ts: str) -> str:
    moment = _when(ts)
    if moment is None:
        return escape(ts, limit=64)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _ms(value: float | None) -> str:
    if value is None:
        return ""
    return f"+{value:.1f} ms" if abs(value) < 10_000 else f"+{value / 1000:.1f} s"


@dataclass(frozen=True, slots=True)
class TimelineRow:
    offset: str
    level: str
    severity: str  # a CSS class: debug, info, warning, error
    service: str
    logger: str
    message: str
    extras: str
    exception: str
    gap: str = ""  # set on the one row that stands for hidden rows


@dataclass(frozen=True, slots=True)
class TracebackBlock:
    offset: str
    lines: tuple[tuple[str, bool], ...]


@dataclass(frozen=True, slots=True)
class TracePage:
    """Everything ``/trace/{id}`` shows, already escaped for a terminal-safe text form."""

    correlation_id: str
    sentence: str
    when: str
    ago: str
    severity: str
    facts: tuple[tuple[str, str], ...]
    timeline: tuple[TimelineRow, ...]
    tracebacks: tuple[TracebackBlock, ...]
    ticket: str


def _severity(level: str) -> str:
    rank = level_rank(level)
    if rank >= 40:
        return "error"
    if rank >= 30:
        return "warning"
    return "info" if rank >= 20 else "debug"


def _status_severity(status: int | None) -> str:
    if status is None:
        return "warning"
    if status >= 500:
        return "error"
    return "warning" if status >= 400 else "ok"


def _extras(data: dict[str, Any], skip: frozenset[str]) -> str:
    return "  ".join(
        f"{escape(k, limit=64)}={escape(v, limit=200)}" for k, v in data.items() if k not in skip
    )


#: Keys shown in their own cells (the service only when the request crossed several).
_SHOWN = frozenset(
    {"ts", "level", "correlation_id", "message", "logger", "function", "line", "exception"}
    | {"service", "trace_id", "span_id"}
)


def _timeline(trace: Trace) -> tuple[TimelineRow, ...]:
    count = len(trace.records)
    indices: list[int | None] = list(range(count))
    if count > 2 * TIMELINE_EDGE:
        indices = [*range(TIMELINE_EDGE), None, *range(count - TIMELINE_EDGE, count)]
    services = {r.data.get("service") for r in trace.records}
    several = len(services) > 1
    rows: list[TimelineRow] = []
    for index in indices:
        if index is None:
            hidden = count - 2 * TIMELINE_EDGE
            rows.append(
                TimelineRow(
                    "",
                    "",
                    "debug",
                    "",
                    "",
                    "",
                    "",
                    "",
                    gap=f"… {hidden} more lines (the JSON view has them all) …",
                )
            )
            continue
        entry = trace.entry(index)
        record = entry.record
        exc = record.exception
        exception = ""
        if exc:
            kind = escape(exc.get("type") or "Exception", limit=200)
            value = exc.get("value")
            exception = f"{kind}: {escape(value, limit=500)}" if value not in (None, "") else kind
        rows.append(
            TimelineRow(
                offset=_ms(entry.offset_ms),
                level=escape(record.level, limit=16),
                severity=_severity(record.level),
                service=escape(record.data.get("service") or "", limit=80) if several else "",
                logger=escape(record.logger, limit=80),
                message=escape(record.message),
                extras=_extras(record.data, _SHOWN),
                exception=exception,
            )
        )
    return tuple(rows)


def _tracebacks(trace: Trace) -> tuple[TracebackBlock, ...]:
    blocks: list[TracebackBlock] = []
    for index in trace.exception_indices:
        if len(blocks) == MAX_TRACEBACKS:
            break
        lines = traceback_lines(trace.records[index].exception)
        if lines:
            blocks.append(TracebackBlock(_ms(trace.entry(index).offset_ms), tuple(lines)))
    return tuple(blocks)


def trace_page(trace: Trace, *, now: float) -> TracePage:
    """The page model of one request: the sentence, the facts a support agent quotes, the
    timeline, the folded tracebacks and the plain text for a ticket."""
    s = trace.summary
    start = _when(s.first_ts)
    when = _clock(s.first_ts)
    since = ago_text(now - start.timestamp()) if start is not None else ""
    sentence = escape(s.plain_words(), limit=1000)
    told = f"{when} ({since})" if since else when
    facts: list[tuple[str, str]] = []
    sources = ", ".join(escape(name.rsplit("/", 1)[-1], limit=80) for name in s.sources)
    facts.append(("lines", f"{s.lines} in {sources}" if sources else str(s.lines)))
    if s.service:
        facts.append(("service", escape(s.service, limit=200)))
    if s.endpoint:
        route = f"  (route {escape(s.route, limit=200)})" if s.route and s.route != s.path else ""
        facts.append(("endpoint", f"{escape(s.endpoint, limit=300)}{route}"))
    if s.status is not None:
        took = f" in {_ms(s.duration_ms)[1:]}" if s.duration_ms is not None else ""
        facts.append(("status", f"{s.status}{took}"))
    if s.calls:
        facts.append(("calls", "\n".join(escape(c.tree_line(), limit=340) for c in s.calls[:20])))
    if s.jobs:
        facts.append(("jobs", "\n".join(escape(j.describe(), limit=300) for j in s.jobs[:20])))
    if s.internal_code is not None or s.http_code is not None:
        code = f"code {s.internal_code}" if s.internal_code is not None else "no code"
        http = f" (HTTP {s.http_code})" if s.http_code is not None else ""
        facts.append(("error", f"{code}{http}"))
    if s.external_message:
        facts.append(("customer saw", escape(s.external_message, limit=500)))
    if s.internal_message:
        facts.append(("internal", escape(s.internal_message, limit=500)))
    if s.exception_type:
        value = f": {escape(s.exception_value, limit=500)}" if s.exception_value else ""
        facts.append(("exception", f"{escape(s.exception_type, limit=200)}{value}"))
    severity = _status_severity(s.status)
    if level_rank(s.worst_level) >= 40:
        severity = "error"
    ticket = "\n".join(
        [
            f"Request ID: {escape(s.correlation_id, limit=80)}",
            f"When: {told}",
            f"What happened: {sentence}",
            *(f"{label.capitalize()}: {value}" for label, value in facts[1:] if "\n" not in value),
        ]
    )
    return TracePage(
        correlation_id=escape(s.correlation_id, limit=80),
        sentence=sentence,
        when=when,
        ago=since,
        severity=severity,
        facts=tuple(facts),
        timeline=_timeline(trace),
        tracebacks=_tracebacks(trace),
        ticket=ticket,
    )


@dataclass(frozen=True, slots=True)
class ErrorRow:
    code: str
    count: int
    share: str
    http: str
    message: str
    detail: str
    routes: tuple[str, ...]
    first_seen: str
    last_seen: str
    trend: str
    sample_id: str  # empty when the group has none: no link


def error_rows(report: ErrorReport, *, limit: int | None = None) -> tuple[ErrorRow, ...]:
    """One row per error group, largest first, as ``errors top`` shows them."""
    groups = report.groups if limit is None else report.groups[:limit]
    rows: list[ErrorRow] = []
    for group in groups:
        detail = ""
        if group.internal_message and group.internal_message != group.external_message:
            detail = escape(group.internal_message, limit=300)
        routes = [f"{escape(r, limit=120)} ×{n}" for r, n in group.routes[:3]]
        if len(group.routes) > 3:
            routes.append(f"+{len(group.routes) - 3} more")
        rows.append(
            ErrorRow(
                code="(none)" if group.key is None else escape(group.key, limit=200),
                count=group.count,
                share=f"{group.share:.1%}",
                http=", ".join(str(code) for code, _ in group.http_codes[:3]),
                message=escape(group.external_message or "", limit=300),
                detail=detail,
                routes=tuple(routes),
                first_seen=_clock(group.first_seen),
                last_seen=_clock(group.last_seen),
                trend=spark(group.trend),
                sample_id=escape(group.sample_correlation_id or "", limit=80),
            )
        )
    return tuple(rows)
