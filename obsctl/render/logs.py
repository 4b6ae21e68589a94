"""Rendering: analysis results → rich renderables. Returns, never prints.

Log content is hostile until proven otherwise: every string that came from a log line goes
through :func:`escape` (C0/C1 controls, DEL, bidi overrides and Unicode line separators become
visible ``\\u2028``-style escapes) and into a rich ``Text`` (never markup), so a log line can never
move the cursor, recolour, retitle or reorder the terminal of the person reading it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from obsctl.analysis.analyse import GROUP_FIELDS, ErrorReport, TimelineEntry, Trace, level_rank
from obsctl.readers.parse import Record

__all__ = [
    "escape",
    "render_error_report",
    "render_record",
    "render_timeline_entry",
    "render_trace",
    "spark",
    "traceback_lines",
]


def _escape_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for code in (*range(0x20), 0x7F, *range(0x80, 0xA0)):
        table[code] = f"\\u{code:04x}"
    table.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
    for code in (0x061C, 0x200E, 0x200F, 0x2028, 0x2029, 0xFEFF, *range(0x202A, 0x202F)):
        table[code] = f"\\u{code:04x}"
    for code in range(0x2066, 0x206A):
        table[code] = f"\\u{code:04x}"
    return table


_ESCAPES = _escape_table()
_MAX_CELL = 2000


def escape(value: object, *, limit: int | None = _MAX_CELL) -> str:
    """Text safe for a terminal: controls, bidi and line separators as visible escapes; long
    values cut at ``limit`` characters with a marker saying how much was cut."""
    text = value if isinstance(value, str) else _compact(value)
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}… [{len(text) - limit} more chars]"
    return text.translate(_ESCAPES)


def _compact(value: object) -> str:
    if value is None:
        return ""
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        return str(value)


_LEVEL_STYLES = {
    "CRITICAL": "bold white on red",
    "ERROR": "bold red",
    "WARNING": "yellow",
    "SUCCESS": "green",
    "INFO": "cyan",
    "DEBUG": "dim",
    "TRACE": "dim",
}


def _level(level: str) -> Text:
    return Text(escape(level or "-", limit=12), style=_LEVEL_STYLES.get(level, ""))


def _time(ts: str) -> str:
    """``2026-11-26 02:11:52.123`` from the log's RFC 3339 time (as written when unparseable)."""
    try:
        moment = datetime.fromisoformat(ts)
    except ValueError:
        return escape(ts, limit=40)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _ms(value: float | None) -> str:
    if value is None:
        return "?"
    if value >= 10_000:
        return f"+{value / 1000:,.1f} s"
    return f"+{value:,.1f} ms"


def _extras_text(extras: dict[str, Any]) -> Text:
    parts = [f"{escape(k, limit=64)}={escape(v, limit=200)}" for k, v in extras.items()]
    return Text("  ".join(parts), style="dim")


def _exception_line(exc: dict[str, Any] | None) -> Text | None:
    if not exc:
        return None
    kind = escape(exc.get("type") or "Exception", limit=200)
    value = exc.get("value")
    tail = f": {escape(value, limit=500)}" if value not in (None, "") else ""
    return Text(f"{kind}{tail}", style="red")


def _traceback(exc: dict[str, Any] | None) -> Text | None:
    """The traceback with runs of framework frames (installed packages, the standard library)
    folded into one dimmed line: what is left is the application's own code."""
    lines = traceback_lines(exc)
    if not lines:
        return None
    text = Text()
    for index, (line, folded) in enumerate(lines):
        if index:
            text.append("\n")
        text.append(line, style="dim" if folded else "")
    return text


def traceback_lines(exc: dict[str, Any] | None) -> list[tuple[str, bool]]:
    """The traceback's lines, escaped, framework frames folded, each with ``True`` when obsctl
    wrote it in place of hidden lines (shown dimmed); empty when there is no traceback."""
    tb = exc.get("traceback") if exc else None
    if not isinstance(tb, str) or not tb.strip():
        return []
    lines = _fold_framework_frames(tb.rstrip("\n").split("\n"))
    if len(lines) > 60:
        lines = [*lines[:20], _Folded(f"… {len(lines) - 40} lines …"), *lines[-20:]]
    # A folded line's indent came from the log: escaped like the others.
    return [(escape(line, limit=400), isinstance(line, _Folded)) for line in lines]


class _Folded(str):
    """A line obsctl wrote in place of hidden ones (shown dimmed)."""

    __slots__ = ()


_FRAME = re.compile(r'^(\s*)File "([^"]*)", line \d+')
# site-packages / dist-packages (pip, Debian), the standard library, frozen modules.
_FRAMEWORK_PATH = re.compile(
    r"[\\/](?:site|dist)-packages[\\/]|[\\/][Ll]ib[\\/]python\d[^\\/]*[\\/]|^<frozen "
)


def _fold_framework_frames(lines: list[str]) -> list[str]:
    """Consecutive frames whose file is framework code → one ``… N framework frames …`` line.

    A frame is its ``File "…", line N, in f`` line and the more-indented lines after it (the
    source line, the ``^^^`` markers); every other line (the exception, "During handling of the
    above exception…") is kept as is.
    """
    out: list[str] = []
    hidden = 0
    hidden_indent = ""

    def flush() -> None:
        nonlocal hidden
        if hidden:
            frames = "frame" if hidden == 1 else "frames"
            out.append(_Folded(f"{hidden_indent}… {hidden} framework {frames} …"))
            hidden = 0

    index = 0
    while index < len(lines):
        match = _FRAME.match(lines[index])
        if match is None:
            flush()
            out.append(lines[index])
            index += 1
            continue
        indent = match.group(1)
        end = index + 1
        deeper = indent + " "
        while end < len(lines) and lines[end].startswith(deeper) and not _FRAME.match(lines[end]):
            end += 1
        if _FRAMEWORK_PATH.search(match.group(2)):
            if not hidden:
                hidden_indent = indent
            hidden += 1
        else:
            flush()
            out.extend(lines[index:end])
        index = end
    flush()
    return out


# ---------------------------------------------------------------------------------------- trace


def render_trace(trace: Trace, *, now: float | None = None) -> RenderableType:
    """The summary panel (with the plain-words sentence), then the timeline, then tracebacks.
    ``now`` (epoch seconds) dates a v7 ID's issue time ("11 days ago"); None: no such row."""
    return Group(_summary_panel(trace, now), _timeline_table(trace), *_traceback_panels(trace))


def _issued(trace: Trace, now: float) -> str | None:
    """``2026-11-20 11:43:22 UTC, 11 days ago`` for a v7 ID, with a word when the request's
    lines are far from that time (the ID was made with another clock)."""
    from obsctl.analysis.idtime import MARGIN_S, ago_text, id_time, issued_text

    moment = id_time(trace.summary.correlation_id)
    if moment is None:
        return None
    text = issued_text(moment, now=now)
    first = trace.base_epoch
    if first is not None and abs(first - moment) > MARGIN_S:
        gap = ago_text(first - moment).removesuffix(" ago").removeprefix("in ")
        text += f" (by the ID; its first line is {gap} {'later' if first > moment else 'earlier'})"
    return text


def _summary_panel(trace: Trace, now: float | None = None) -> Panel:
    s = trace.summary
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()

    def row(label: str, value: str | Text | None) -> None:
        if value is None or value == "":
            return
        grid.add_row(label, value if isinstance(value, Text) else Text(value))

    sources = ", ".join(escape(name.rsplit("/", 1)[-1], limit=80) for name in s.sources)
    span = f"{_time(s.first_ts)} → {_time(s.last_ts)} UTC"
    if now is not None:
        row("issued", _issued(trace, now))
    row("when", span)
    row("lines", f"{s.lines} in {sources}" if sources else str(s.lines))
    row("service", escape(s.service, limit=200) if s.service else None)
    if s.endpoint:
        route = f"  (route {escape(s.route, limit=200)})" if s.route and s.route != s.path else ""
        row("endpoint", f"{escape(s.endpoint, limit=300)}{route}")
    if s.status is not None:
        took = f" in {_ms(s.duration_ms)[1:]}" if s.duration_ms is not None else ""
        row("status", Text(f"{s.status}{took}", style=_status_style(s.status)))
    if s.trace_id:
        own = f"  span {escape(s.span_id, limit=40)}" if s.span_id else ""
        row("trace", f"{escape(s.trace_id, limit=80)}{own}")
    if s.request_ids:
        row("request IDs", ", ".join(escape(cid, limit=80) for cid in s.request_ids))
    if s.calls:
        row("calls", "\n".join(escape(call.tree_line(), limit=340) for call in s.calls[:20]))
    if s.jobs:
        row("jobs", "\n".join(escape(job.describe(), limit=300) for job in s.jobs[:20]))
    if s.internal_code is not None or s.http_code is not None:
        code = f"code {s.internal_code}" if s.internal_code is not None else "no code"
        http = f" (HTTP {s.http_code})" if s.http_code is not None else ""
        external = f": {escape(s.external_message, limit=500)}" if s.external_message else ""
        row("error", Text(f"{code}{http}{external}", style="red"))
    if s.internal_message:
        row("internal", escape(s.internal_message, limit=500))
    if s.exception_type:
        value = f": {escape(s.exception_value, limit=500)}" if s.exception_value else ""
        row("exception", Text(f"{escape(s.exception_type, limit=200)}{value}", style="red"))
    sentence = Text(escape(s.plain_words(), limit=1000), style="bold")
    style = _status_style(s.status) if s.status is not None else "yellow"
    if level_rank(s.worst_level) >= 40:
        style = "red"
    return Panel(
        Group(sentence, Text(""), grid),
        title=Text(f"trace {escape(s.correlation_id, limit=80)}"),
        title_align="left",
        border_style=style,
        expand=False,
    )


def _status_style(status: int) -> str:
    if status >= 500:
        return "red"
    if status >= 400:
        return "yellow"
    return "green"


#: A timeline longer than twice this shows its first and last lines (rendering 50,000 table rows
#: takes half a minute); --json has them all.
_TIMELINE_EDGE = 200
_MAX_TRACEBACKS = 5


def _timeline_table(trace: Trace) -> Table:
    table = Table(title="timeline", title_justify="left", expand=False, show_lines=False)
    table.add_column("offset", justify="right", no_wrap=True)
    table.add_column("level", no_wrap=True)
    # Lines of several requests (services calling each other, or a trace-id asked for): which
    # service and span wrote each line. One span: the summary's "trace" row names it.
    spans = len({r.data.get("span_id") for r in trace.records if r.data.get("span_id")}) > 1
    if spans:
        table.add_column("service · span", overflow="fold")
    table.add_column("logger", overflow="fold")
    table.add_column("message", overflow="fold")
    count = len(trace.records)
    indices: list[int | None] = list(range(count))
    hidden = 0
    if count > 2 * _TIMELINE_EDGE:
        hidden = count - 2 * _TIMELINE_EDGE
        indices = [*range(_TIMELINE_EDGE), None, *range(count - _TIMELINE_EDGE, count)]
    for index in indices:
        if index is None:
            note = f"… {hidden} more lines (obsctl trace ID --json prints them all) …"
            blank = [Text("")] * (3 if spans else 2)
            table.add_row(Text(""), *blank, Text(note, style="dim"))
            continue
        entry = trace.entry(index)
        where = [_service_span(entry.record)] if spans else []
        table.add_row(
            Text(_ms(entry.offset_ms)),
            _level(entry.record.level),
            *where,
            Text(escape(entry.record.logger, limit=80)),
            _message_cell(entry.record, entry.extras),
        )
    return table


def _service_span(record: Record) -> Text:
    data = record.data
    service, span = data.get("service"), data.get("span_id")
    cell = Text(escape(service, limit=80) if isinstance(service, str) else "-")
    if isinstance(span, str) and span:
        cell.append("\n")
        cell.append(escape(span, limit=40), style="dim")
    return cell


def _message_cell(record: Record, extras: dict[str, Any], separator: str = "\n") -> Text:
    """The message, then its extras and its exception line, each after ``separator``."""
    cell = Text(escape(record.message))
    if extras:
        cell.append(separator)
        cell.append_text(_extras_text(extras))
    exc = _exception_line(record.exception)
    if exc is not None:
        cell.append(separator)
        cell.append_text(exc)
    return cell


def _traceback_panels(trace: Trace) -> list[Panel]:
    panels: list[Panel] = []
    for index in trace.exception_indices:
        if len(panels) == _MAX_TRACEBACKS:
            break
        tb = _traceback(trace.records[index].exception)
        if tb is not None:
            panels.append(
                Panel(
                    tb,
                    title=Text(f"traceback at {_ms(trace.entry(index).offset_ms)}"),
                    title_align="left",
                    border_style="red",
                    expand=False,
                )
            )
    return panels


def render_timeline_entry(entry: TimelineEntry) -> Text:
    """One timeline row as a single line (``trace --follow`` prints rows as they arrive)."""
    line = Text(f"{_ms(entry.offset_ms):>12} ")
    line.append_text(_level(entry.record.level))
    line.append(f" {escape(entry.record.logger, limit=80)}: ", style="dim")
    line.append_text(_message_cell(entry.record, entry.extras))
    return line


# ---------------------------------------------------------------------------------- errors top

_SPARKS = " ▁▂▃▄▅▆▇█"


def spark(trend: tuple[int, ...]) -> str:
    top = max(trend, default=0)
    if top == 0:
        return " " * len(trend)
    return "".join(_SPARKS[0 if n == 0 else max(1, round(n / top * 8))] for n in trend)


def _short_time(ts: str) -> str:
    full = _time(ts)
    return full[5:19] if len(full) >= 19 else full


def render_error_report(report: ErrorReport, *, limit: int | None = None) -> RenderableType:
    """The ranked table of error groups, with the window and totals as its caption.

    The table is laid out for the width it is rendered at: on a narrow terminal the columns
    that matter least in triage (first/last seen, trend, routes) give way, and the sample ID is
    cut to the 12 characters ``obsctl trace`` accepts as a prefix, so that the code, count,
    share, status and message always stay readable.
    """
    return _ErrorTable(report, limit)


class _ErrorTable:
    def __init__(self, report: ErrorReport, limit: int | None) -> None:
        self.report = report
        self.limit = limit

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield _error_table(self.report, self.limit, options.max_width)


# Widths below which a column is left out of the errors table.
_WIDTH_FOR_SEEN = 150
_WIDTH_FOR_TREND = 110
_WIDTH_FOR_ROUTES = 90
_SHORT_ID = 12


def _error_table(report: ErrorReport, limit: int | None, width: int) -> RenderableType:
    label = {"internal_code": "code", "route": "route", "exception": "exception", "status": "HTTP"}
    show_seen = width >= _WIDTH_FOR_SEEN
    show_trend = width >= _WIDTH_FOR_TREND
    show_routes = report.by != "route" and width >= _WIDTH_FOR_ROUTES
    table = Table(
        title=f"errors by {GROUP_FIELDS[report.by] if report.by != 'status' else 'status'}",
        title_justify="left",
        caption=(
            f"{report.total} errors, {_time(report.window_start)[:19]} → "
            f"{_time(report.window_end)[:19]} UTC"
            + (
                f"; trend in {len(_trend_of(report))} buckets of {_bucket(report.bucket_seconds)}"
                if show_trend
                else ""
            )
        ),
        caption_justify="left",
    )
    key_width = 5 if report.by in ("internal_code", "status") else None
    table.add_column(
        label[report.by], no_wrap=report.by != "route", overflow="fold", min_width=key_width
    )
    table.add_column("count", justify="right", no_wrap=True, min_width=5)
    table.add_column("share", justify="right", no_wrap=True, min_width=5)
    if report.by != "status":
        table.add_column("HTTP", justify="right", no_wrap=True, min_width=4)
    table.add_column("message", overflow="fold", ratio=3, min_width=16)
    if show_routes:
        table.add_column("routes", overflow="fold", ratio=2, min_width=12)
    if show_seen:
        table.add_column("first / last seen", no_wrap=True)
    if show_trend:
        table.add_column("trend", no_wrap=True)
    table.add_column("sample correlation ID" if show_seen else "sample ID", no_wrap=True)
    groups = report.groups if limit is None else report.groups[:limit]
    for group in groups:
        key = "(none)" if group.key is None else escape(group.key, limit=200)
        message = Text(escape(group.external_message or "", limit=300))
        if group.internal_message and group.internal_message != group.external_message:
            if message:
                message.append("\n")
            message.append(escape(group.internal_message, limit=300), style="dim")
        cells: list[Text] = [
            Text(key, style="bold"),
            Text(str(group.count)),
            Text(f"{group.share:.1%}"),
        ]
        if report.by != "status":
            cells.append(Text(", ".join(str(code) for code, _ in group.http_codes[:3])))
        cells.append(message)
        if show_routes:
            routes = [f"{escape(r, limit=120)} ×{n}" for r, n in group.routes[:3]]
            if len(group.routes) > 3:
                routes.append(f"+{len(group.routes) - 3} more")
            cells.append(Text("\n".join(routes)))
        if show_seen:
            cells.append(Text(f"{_short_time(group.first_seen)}\n{_short_time(group.last_seen)}"))
        if show_trend:
            cells.append(Text(spark(group.trend), style="red"))
        sample = escape(group.sample_correlation_id or "-", limit=80)
        cells.append(Text(sample if show_seen else sample[:_SHORT_ID]))
        table.add_row(*cells)
    if limit is not None and len(report.groups) > limit:
        rest = sum(g.count for g in report.groups[limit:])
        more = Text(
            f"{len(report.groups) - limit} more groups ({rest} errors): raise --limit to see them",
            style="dim",
        )
        return Group(table, more)
    return table


def _trend_of(report: ErrorReport) -> tuple[int, ...]:
    return report.groups[0].trend if report.groups else ()


def _bucket(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


# ---------------------------------------------------------------------------------------- tail


def render_record(record: Record) -> Text:
    """One readable line for ``tail``: time, level, short ID, logger, message, extras, error."""
    line = Text(_time(record.ts) if record.ts else "-", style="dim")
    line.append(" ")
    level = _level(record.level)
    level.pad_right(max(0, 8 - len(level)))
    line.append_text(level)
    cid = record.correlation_id
    line.append(f" {escape(cid[:8], limit=8) if cid else '-':<8} ", style="magenta")
    if record.logger:
        line.append(f"{escape(record.logger, limit=80)}: ", style="dim")
    extras = {
        k: v
        for k, v in record.data.items()
        if k not in {"ts", "level", "correlation_id", "message", "logger", "exception"}
        and k not in {"function", "line", "service", "trace_id", "span_id"}
    }
    line.append_text(_message_cell(record, extras, separator="  "))
    return line
