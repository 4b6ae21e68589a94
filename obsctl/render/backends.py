"""Rich renderables for Prometheus and Loki answers (pure: they return, never print)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

from rich.table import Table
from rich.text import Text

from obsctl.sources.http import sanitize
from obsctl.sources.prom_alerts import Alert
from obsctl.sources.prometheus import (
    ExceptionRow,
    Point,
    PromResult,
    RouteRow,
    format_value,
    series_name,
)

_BARS = "▁▂▃▄▅▆▇█"


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def sparkline(points: Sequence[Point], *, start: float, end: float, width: int = 40) -> str:
    """One character per time bucket over [start, end]; a gap where there is no sample.

    ``+Inf`` shows as a full bar, ``-Inf`` as the lowest, ``NaN`` as ``·``.
    """
    if width <= 0:
        return ""
    buckets: list[list[float]] = [[] for _ in range(width)]
    span = max(end - start, 1e-9)
    for point in points:
        index = min(width - 1, max(0, int((point.ts - start) / span * width)))
        buckets[index].append(point.value)
    finite = _finite([p.value for p in points])
    low, high = (min(finite), max(finite)) if finite else (0.0, 0.0)
    chars: list[str] = []
    for bucket in buckets:
        if not bucket:
            chars.append(" ")
            continue
        usable = _finite(bucket)
        if not usable:
            value = bucket[-1]
            chars.append("·" if math.isnan(value) else (_BARS[-1] if value > 0 else _BARS[0]))
            continue
        mean = sum(usable) / len(usable)
        level = 0 if high == low else round((mean - low) / (high - low) * (len(_BARS) - 1))
        chars.append(_BARS[level])
    return "".join(chars)


def vector_table(result: PromResult) -> Table:
    """Instant answer: one row per series (labels, value), or the scalar/string value."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("series", overflow="fold")
    table.add_column("value", justify="right")
    if result.result_type == "vector":
        for sample in sorted(result.vector, key=lambda s: series_name(s.metric)):
            table.add_row(sanitize(series_name(sample.metric), 1000), sample.point.raw)
    elif result.result_type == "scalar" and result.scalar is not None:
        table.add_row("scalar", result.scalar.raw)
    elif result.result_type == "string" and result.string is not None:
        table.add_row("string", sanitize(result.string[1], 1000))
    elif result.result_type == "matrix":
        for series in sorted(result.matrix, key=lambda s: series_name(s.metric)):
            values = " ".join(p.raw for p in series.points)
            table.add_row(sanitize(series_name(series.metric), 1000), values)
    return table


def range_table(result: PromResult, *, start: float, end: float, width: int = 40) -> Table:
    """Range answer: per series a sparkline plus min / max / last."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("series", overflow="fold")
    table.add_column(f"{width} buckets", no_wrap=True)
    for name in ("min", "max", "last"):
        table.add_column(name, justify="right")
    for series in sorted(result.matrix, key=lambda s: series_name(s.metric)):
        values = [p.value for p in series.points]
        finite = _finite(values)
        low = format_value(min(finite)) if finite else "NaN"
        high = format_value(max(finite)) if finite else "NaN"
        last = series.points[-1].raw if series.points else ""
        table.add_row(
            sanitize(series_name(series.metric), 1000),
            Text(sparkline(series.points, start=start, end=end, width=width), style="cyan"),
            low,
            high,
            last,
        )
    return table


def _pct(ratio: float) -> str:
    return "NaN" if math.isnan(ratio) else f"{ratio * 100:.2f}%"


def _ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "—"
    if math.isinf(seconds):
        return "+Inf" if seconds > 0 else "-Inf"
    return f"{seconds * 1000:.1f}"


def routes_table(rows: Sequence[RouteRow], *, window: str) -> Table:
    table = Table(title=f"routes over {window}", box=None, pad_edge=False, header_style="bold")
    table.add_column("route", overflow="fold")
    table.add_column("req/s", justify="right")
    table.add_column("errors (5xx)", justify="right")
    table.add_column("p95 ms", justify="right")
    for row in rows:
        table.add_row(
            sanitize(row.route, 300),
            f"{row.rate:.3f}" if math.isfinite(row.rate) else format_value(row.rate),
            _pct(row.error_ratio),
            _ms(row.p95_seconds),
        )
    return table


def exceptions_table(rows: Sequence[ExceptionRow], *, window: str) -> Table:
    table = Table(title=f"exceptions over {window}", box=None, pad_edge=False, header_style="bold")
    table.add_column("internal_code", justify="right")
    table.add_column("exception", overflow="fold")
    table.add_column("count", justify="right")
    for row in rows:
        count = f"{row.count:.0f}" if math.isfinite(row.count) else format_value(row.count)
        table.add_row(sanitize(row.internal_code, 40), sanitize(row.exception, 200), count)
    return table


_STATE_STYLE = {"firing": "bold red", "pending": "yellow"}
_SEVERITY_STYLE = {"page": "bold red", "critical": "bold red", "ticket": "yellow"}


def _ago(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def alerts_table(alerts: Sequence[Alert], *, now: float) -> Table:
    """One block per alert: its state and severity, then its name, since when (UTC) and where
    (its other labels); under them its summary, and the runbook command to run next."""
    # A blank line under each alert (bottom padding) keeps the blocks apart.
    table = Table(box=None, pad_edge=False, show_header=False, padding=(0, 2, 1, 0))
    table.add_column("state", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("alert", overflow="fold")
    for alert in alerts:
        body = Text(sanitize(alert.name, 200) or "(no name)", style="bold")
        if alert.active_at is not None:
            stamp = datetime.fromtimestamp(alert.active_at, tz=UTC)
            body.append(f"  since {stamp:%m-%d %H:%M:%S} UTC ({_ago(now - alert.active_at)})")
        for key, value in sorted(alert.other_labels.items()):
            body.append(f"  {sanitize(key, 100)}={sanitize(value, 300)}", style="dim")
        body.append("\n" + (sanitize(alert.summary, 500) or "(no summary)"))
        if alert.runbook:
            body.append("\n→ ")
            body.append(sanitize(alert.runbook, 500), style="bold cyan")
        table.add_row(
            Text(alert.state, style=_STATE_STYLE.get(alert.state, "")),
            Text(sanitize(alert.severity, 40), style=_SEVERITY_STYLE.get(alert.severity, "")),
            body,
        )
    return table
