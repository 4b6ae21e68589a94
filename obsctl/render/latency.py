"""Rich renderables for ``obsctl slow`` (pure: they return, never print).

Routes and IDs come from logs or metric labels: they go through :func:`escape` into ``Text``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from obsctl.analysis.latency import LatencyReport
from obsctl.render.logs import escape

if TYPE_CHECKING:  # the Prometheus client imports httpx (~80 ms): not for a table of files
    from obsctl.sources.prom_latency import ExemplarRow, PromLatencyRow

__all__ = ["render_latency", "render_prom_latency"]


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "+Inf"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"


def _table(title: str, columns: Sequence[str], *, right: int) -> Table:
    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    for index, name in enumerate(columns):
        table.add_column(
            name, justify="right" if 0 < index <= right else "left", header_style="bold"
        )
    return table


def render_latency(report: LatencyReport, *, limit: int) -> RenderableType:
    """Per route (slowest p99 first) and the slowest requests, from access lines."""
    routes = _table(
        "latency by route (exact, nearest-rank, from access lines)",
        ("route", "count", "p50", "p95", "p99", "max"),
        right=5,
    )
    for row in report.routes[:limit]:
        routes.add_row(
            Text(escape(row.route)),
            str(row.count),
            _ms(row.p50_ms),
            _ms(row.p95_ms),
            _ms(row.p99_ms),
            _ms(row.max_ms),
        )
    parts: list[RenderableType] = [routes]
    if len(report.routes) > limit:
        parts.append(Text(f"… {len(report.routes) - limit} more routes (--limit)", style="dim"))
    slow = _table(
        "slowest requests (obsctl trace ID)",
        ("duration", "status", "route", "ID", "time"),
        right=2,
    )
    slow.columns[2].justify = "left"
    for request in report.slowest:
        slow.add_row(
            _ms(request.duration_ms),
            "-" if request.status is None else str(request.status),
            Text(escape(request.route)),
            Text(escape(request.correlation_id or "-")),
            Text(escape(request.ts)),
        )
    parts += [Text(""), slow]
    return Group(*parts)


def render_prom_latency(
    routes: Sequence[PromLatencyRow], exemplars: Sequence[ExemplarRow], *, limit: int
) -> RenderableType:
    """Per route from the histogram, then the slowest exemplars with their request IDs."""
    table = _table(
        "latency by route (histogram_quantile estimates, from Prometheus)",
        ("route", "requests", "p50", "p95", "p99", "max ≤"),
        right=5,
    )
    for row in routes[:limit]:
        table.add_row(
            Text(escape(row.route)),
            f"{row.count:.0f}",
            _ms(row.p50_ms),
            _ms(row.p95_ms),
            _ms(row.p99_ms),
            _ms(row.max_le_ms),
        )
    parts: list[RenderableType] = [table, Text("")]
    if not exemplars:
        parts.append(
            Text(
                "no exemplars in this window (Prometheus keeps them only with "
                "--enable-feature=exemplar-storage, scraping OpenMetrics)",
                style="dim",
            )
        )
        return Group(*parts)
    slow = _table(
        "slowest exemplars (obsctl trace ID)", ("duration", "bucket ≤", "route", "ID"), right=2
    )
    for exemplar in exemplars:
        slow.add_row(
            _ms(exemplar.duration_ms),
            Text(escape(exemplar.le)),
            Text(escape(exemplar.route)),
            Text(
                escape(
                    exemplar.correlation_id
                    or ", ".join(f"{k}={v}" for k, v in exemplar.labels.items())
                )
            ),
        )
    parts.append(slow)
    return Group(*parts)
