"""Body of ``obsctl slow``: flags → settings → access lines (files) or histograms (Prometheus)
→ latency → render."""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson

from obsctl.analysis import analyse
from obsctl.cli import output
from obsctl.errors import NothingMatched, UsageError
from obsctl.query import pick
from obsctl.settings import Settings
from obsctl.sources.files import Damage, expand_paths

__all__ = ["DEFAULT_PROM_SINCE", "slow"]

#: Prometheus needs a window; files are read whole unless --since/--until say otherwise.
DEFAULT_PROM_SINCE = "1h"


def slow(
    paths: Sequence[str],
    *,
    since: str | None,
    until: str | None,
    route: str | None,
    limit: int,
    json_out: bool,
    settings: Settings,
) -> None:
    """Latency per route and the slowest requests (files), or from the histograms."""
    now = time.time()
    start = analyse.parse_time_bound(since, now=now, flag="--since") if since else None
    end = analyse.parse_time_bound(until, now=now, flag="--until") if until else None
    if start is not None and end is not None and start >= end:
        raise UsageError("the time window is empty", hint="--since must be before --until")
    if settings.prom_url:
        if paths:
            raise UsageError(
                "both log PATHs and a Prometheus URL were given",
                hint="drop the PATHs to ask Prometheus, or drop --prom-url to read files",
            )
        if start is None:
            start = analyse.parse_time_bound(DEFAULT_PROM_SINCE, now=now, flag="--since")
        _from_prometheus(
            settings,
            start=start,
            end=end if end is not None else now,
            route=route,
            limit=limit,
            json_out=json_out,
        )
        return
    _from_files(settings, paths, start=start, end=end, route=route, limit=limit, json_out=json_out)


def _from_files(
    settings: Settings,
    paths: Sequence[str],
    *,
    start: float | None,
    end: float | None,
    route: str | None,
    limit: int,
    json_out: bool,
) -> None:
    from obsctl.query.latency import collect_latency

    logs = expand_paths(paths, default_dir=settings.log_dir)
    damage = Damage()
    with output.progress_bar(sum(log.size for log in logs), "reading access lines") as progress:
        scan = collect_latency(
            logs,
            limit=limit,
            since=start,
            until=end,
            route=route,
            damage=damage,
            progress=progress,
            fields=pick.field_map(settings),
        )
    output.report_damage(damage)
    report = scan.accumulator.report()
    if scan.access_lines == 0:
        raise NothingMatched(
            'no access line (message "request finished" with duration_ms) in these logs',
            hint="foundation writes one per request; for another stack log one per request"
            " (--map names its keys), or ask the histograms with --prom-url",
        )
    if not report.routes:
        raise NothingMatched(
            "no request in the window" + (f" on route {route!r}" if route else ""),
            hint="widen --since/--until, or check --route (METHOD /template or /template)",
        )
    if json_out:
        output.json_lines(orjson.dumps(row.to_json()) for row in report.routes[:limit])
        output.json_lines(orjson.dumps(request.to_json()) for request in report.slowest)
        return
    from obsctl.render.latency import render_latency

    output.show(render_latency(report, limit=limit))


def _from_prometheus(
    settings: Settings,
    *,
    start: float,
    end: float,
    route: str | None,
    limit: int,
    json_out: bool,
) -> None:
    from obsctl.cli.commands_backends import _prom_client
    from obsctl.sources.prom_latency import exemplars, latency_report

    end_ns, start_ns = int(end * 1e9), int(start * 1e9)
    with _prom_client(settings) as client:
        report = latency_report(client, window_s=round(end - start), time_ns=end_ns, route=route)
        slowest = exemplars(client, start_ns=start_ns, end_ns=end_ns, route=route, limit=limit)
    for warning in report.warnings:
        output.notice(f"warning from Prometheus: {warning}")
    if not report.routes:
        raise NothingMatched(
            "no request in http_request_duration_seconds in the window"
            + (f" on route {route!r}" if route else ""),
            hint="widen --since, or check that Prometheus scrapes the app's /metrics",
        )
    if json_out:
        output.json_lines(orjson.dumps(row.to_json()) for row in report.routes[:limit])
        output.json_lines(orjson.dumps(row.to_json()) for row in slowest)
        return
    from obsctl.render.latency import render_prom_latency

    output.show(render_prom_latency(report.routes, slowest, limit=limit))
