"""Loki as a source of log records for obsctl's commands.

Builds LogQL safely (stream selector + escaped line filter), pages through it with
``LokiClient.entries`` and turns entries into the records the file readers produce, so
``trace`` and ``errors top`` reuse the same analysis and rendering whatever the source.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

import orjson

from obsctl.analysis.analyse import (
    ACCESS_MESSAGE,
    ErrorAccumulator,
    ErrorGroup,
    ErrorReport,
    epoch_to_ts,
    route_of,
)
from obsctl.analysis.idtime import MARGIN_S, Span, extensions, widening_steps, window_around
from obsctl.errors import UsageError
from obsctl.query.lookup import Lookup
from obsctl.query.scan import with_access
from obsctl.readers.parse import Record, parse_line_checked
from obsctl.settings import Settings
from obsctl.sources.files import Damage
from obsctl.sources.http import BackendHttp, build_client
from obsctl.sources.loki import LogEntry, LokiClient, PagingReport, loki_error_text
from obsctl.timespec import NS_PER_S, now_ns, parse_duration_ns, parse_time_ns

if TYPE_CHECKING:
    from obsctl.query.pick import TraceBounds

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
    # because Go rejects lone-surrogate escapes (\\ud800) that ensure_ascii=True would write.
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


# ------------------------------------------------------------------------------ trace over Loki


def trace_lookup(settings: Settings, query: str, damage: Damage, *, bounds: TraceBounds) -> Lookup:
    """Every record whose line contains ``query`` in the range ``bounds`` choose: the flags, the
    last ``OBSCTL_LOKI_MAX_RANGE`` (``--all``), a few minutes around the time in a v7 ID
    (extended while the request writes lines near an edge, widened step by step up to
    ``OBSCTL_LOKI_MAX_RANGE`` when it holds nothing), else the last ``OBSCTL_LOKI_SINCE``.

    Only a line filter is sent (no ``| json``): a parser stage would turn every extracted
    field into a stream label and split the answer into one stream per line. The exact
    correlation-ID match is then done by the same analysis as for files.
    """
    now = bounds.now
    since_s = parse_duration_ns(settings.loki_since, flag="OBSCTL_LOKI_SINCE") / NS_PER_S
    max_s = parse_duration_ns(settings.loki_max_range, flag="OBSCTL_LOKI_MAX_RANGE") / NS_PER_S
    widest = f"the last {settings.loki_max_range}"
    report = PagingReport()
    with loki_client(settings) as client:

        def fetch(span: Span) -> list[Record]:
            return _fetch(client, settings, query, span, damage=damage, report=report)

        if bounds.since is not None or bounds.until is not None:
            end = bounds.until if bounds.until is not None else now
            start = bounds.since if bounds.since is not None else end - since_s
            span = Span(start, end)
            records = [r for r in fetch(span) if _inside(r, span)]
            lookup = Lookup(
                records,
                f"in Loki from {span.text()} (--since/--until)",
                f"widen --since/--until, or use --all ({widest})",
            )
        elif bounds.everything:
            span = Span(now - max_s, now)
            lookup = Lookup(
                fetch(span),
                f"in Loki from {span.text()} (--all: {widest}, OBSCTL_LOKI_MAX_RANGE)",
                "give --since/--until to search further back",
            )
        elif bounds.issued is not None:
            lookup = _around(bounds.issued, now=now, max_s=max_s, fetch=fetch)
            if not lookup.records:
                lookup.searched += f" (up to OBSCTL_LOKI_MAX_RANGE={settings.loki_max_range})"
        else:
            span = Span(now - since_s, now)
            lookup = Lookup(
                fetch(span),
                f"in Loki from {span.text()} (the last {settings.loki_since})",
                f"search further back with --since 7d, or --all ({widest})",
            )
    _warn(report.warnings)
    return lookup


def _inside(record: Record, span: Span) -> bool:
    epoch = record.epoch
    return epoch is not None and span.start <= epoch <= span.end


def _fetch(
    client: LokiClient,
    settings: Settings,
    query: str,
    span: Span,
    *,
    damage: Damage,
    report: PagingReport,
) -> list[Record]:
    logql = with_line_filter(settings.loki_selector, query)
    start_ns = int(span.start * NS_PER_S)
    end_ns = int(span.end * NS_PER_S) + 1  # Loki's end is exclusive
    records: list[Record] = []
    for entry in client.entries(
        logql, start_ns=start_ns, end_ns=end_ns, limit=None, direction="forward", report=report
    ):
        record = _record(entry, damage)
        if record is not None:
            records.append(record)
    return records


def _outside(wanted: Span, searched: Span) -> list[Span]:
    parts = []
    if wanted.start < searched.start:
        parts.append(Span(wanted.start, searched.start))
    if wanted.end > searched.end:
        parts.append(Span(searched.end, wanted.end))
    return parts


def _around(
    issued: Span, *, now: float, max_s: float, fetch: Callable[[Span], list[Record]]
) -> Lookup:
    """A v7 ID: the window around its time, extended at the edges the request still writes
    at, widened when it holds nothing; each step asks only for the time not yet searched."""
    window = window_around(issued, now=now)
    moment = (issued.start + issued.end) / 2
    records = fetch(window)
    notes: list[str] = []
    if not records:
        for step in widening_steps(moment, window, limit_s=max_s, now=now):
            for part in _outside(step, window):
                records.extend(fetch(part))
            window = window.union(step)
            if records:
                notes.append(
                    f"no line of the ID within {MARGIN_S / 60:.0f} minutes of the time in it; "
                    f"found by widening the search to {window.text()}"
                )
                break
    while records:
        parts = extensions(window, (e for r in records if (e := r.epoch) is not None), now=now)
        if not parts:
            break
        for part in parts:
            records.extend(fetch(part))
            window = window.union(part)
    searched = f"in Loki from {window.text()} (around the time in its ID, {_utc(moment)})"
    return Lookup(records, searched, "give --since/--until to search elsewhere", notes)


def _utc(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _record(entry: LogEntry, damage: Damage) -> Record | None:
    record, reason = parse_line_checked(entry.line.encode("utf-8"), source=_SOURCE)
    if record is None and reason is not None:
        damage.line(reason, _SOURCE)
    return record


def _warn(warnings: Iterable[str]) -> None:
    for warning in warnings:
        sys.stderr.write(f"obsctl: warning from Loki: {escape_for_terminal(warning)}\n")


# ------------------------------------------------------------------------- errors top over Loki

#: The label ``| json`` extracts for each ``--by`` field (nested keys joined with ``_``).
GROUP_LABELS = {
    "internal_code": "internal_code",
    "exception": "exception_type",
    "status": "http_code",
}
#: Groups that get sample lines fetched (the rest show their count and trend only).
MAX_SAMPLED_GROUPS = 50
_BUCKETS = 12
_SOURCE = "loki"


def _group_key(by: str, value: str | None) -> int | str | None:
    if not value:
        return None
    if by in ("internal_code", "status"):
        return int(value) if value.lstrip("-").isdigit() else value
    return value


def error_report(
    settings: Settings,
    *,
    by: str,
    since: float | None,
    until: float | None,
    now: float,
    damage: Damage,
) -> ErrorReport:
    """``errors top`` counted by Loki: one metric query for the counts, one for the trend,
    then the first and last line of each group (and its access line) for the other columns."""
    label = GROUP_LABELS.get(by)
    if label is None:
        raise UsageError(
            f"--by {by} cannot be counted by Loki: the route is on the access line, not on the "
            "error line",
            hint="use --by internal_code, exception or status, or obsctl prom routes",
        )
    end = int((until if until is not None else now) * NS_PER_S)
    if since is not None:
        start = int(since * NS_PER_S)
    else:
        start = end - parse_duration_ns(settings.loki_since, flag="OBSCTL_LOKI_SINCE")
    bucket_ms = max(-(-(end - start) // (_BUCKETS * 1_000_000)), 1)
    span_ms = bucket_ms * _BUCKETS
    start = end - span_ms * 1_000_000
    errors = f'{settings.loki_selector} | json | level=~"ERROR|CRITICAL"'
    counting = f"sum by ({label}) (count_over_time({errors} [{span_ms}ms]))"
    trending = f"sum by ({label}) (count_over_time({errors} [{bucket_ms}ms]))"
    with loki_client(settings) as client:
        counted = client.metric_instant(counting, time_ns=end)
        trend_answer = client.metric_range(
            trending,
            start_ns=start + bucket_ms * 1_000_000,
            end_ns=end,
            step_ms=bucket_ms,
        )
        counts = {s.metric.get(label) or None: int(s.point.value) for s in counted.vector}
        counts = {k: v for k, v in counts.items() if v > 0}
        trends: dict[str | None, list[int]] = {}
        for series in trend_answer.matrix:
            buckets = [0] * _BUCKETS
            for point in series.points:
                index = round((point.ts * NS_PER_S - start) / (bucket_ms * 1_000_000)) - 1
                buckets[min(max(index, 0), _BUCKETS - 1)] += int(point.value)
            trends[series.metric.get(label) or None] = buckets
        samples = ErrorAccumulator(by, since=start / NS_PER_S, until=end / NS_PER_S)
        ranked = sorted(counts, key=lambda v: -counts[v])
        for value in ranked[:MAX_SAMPLED_GROUPS]:
            matcher = f"{label}={logql_string(value or '')}"
            for record in _samples(client, f"{errors} | {matcher}", start, end, damage):
                samples.add(
                    _with_access_line(client, settings, record, start=start, end=end, damage=damage)
                )
    _warn([*counted.warnings, *trend_answer.warnings])
    sampled = {g.key: g for g in samples.report(now=now, buckets=_BUCKETS).groups}
    total = sum(counts.values())
    groups = []
    for value in ranked:
        key = _group_key(by, value)
        count = counts[value]
        trend = tuple(trends.get(value, [0] * _BUCKETS))
        base = sampled.get(key)
        if base is None:
            groups.append(
                ErrorGroup(
                    key, count, count / total, (), None, None, (), (), (), "", "", trend, None
                )
            )
            continue
        # Only the two sampled lines saw the route: one route means every line of the group.
        routes = ((base.routes[0][0], count),) if len(base.routes) == 1 else base.routes
        groups.append(replace(base, count=count, share=count / total, trend=trend, routes=routes))
    groups.sort(key=lambda g: (-g.count, g.key is None, str(g.key)))
    return ErrorReport(
        by=by,
        groups=tuple(groups),
        total=total,
        window_start=epoch_to_ts(start / NS_PER_S),
        window_end=epoch_to_ts(end / NS_PER_S),
        bucket_seconds=bucket_ms / 1000,
    )


def _samples(client: LokiClient, logql: str, start: int, end: int, damage: Damage) -> list[Record]:
    """The first and the last line of a group (one line when they are the same)."""
    found: list[Record] = []
    keys: set[tuple[int, tuple[tuple[str, str], ...], str]] = set()
    for direction in ("forward", "backward"):
        for entry in client.entries(
            logql, start_ns=start, end_ns=end, limit=1, direction=direction
        ):
            if entry.key() in keys:
                continue
            keys.add(entry.key())
            record = _record(entry, damage)
            if record is not None:
                found.append(record)
    return found


def _with_access_line(
    client: LokiClient,
    settings: Settings,
    record: Record,
    *,
    start: int,
    end: int,
    damage: Damage,
) -> Record:
    """The error record completed with its request's access line (route, status, duration)."""
    cid = record.correlation_id
    if cid is None or route_of(record) is not None:
        return record
    logql = f"{with_line_filter(settings.loki_selector, cid)} |= {logql_string(ACCESS_MESSAGE)}"
    for entry in client.entries(logql, start_ns=start, end_ns=end, limit=5, direction="forward"):
        access = _record(entry, damage)
        if access is not None and access.correlation_id == cid:
            return with_access(record, access)
    return record
