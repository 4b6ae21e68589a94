"""``obsctl prom …`` and ``obsctl loki …``: wiring from flags to the clients and renderers."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import orjson
import typer

from obsctl.errors import NothingMatched, UsageError
from obsctl.settings import Settings, resolve

if TYPE_CHECKING:
    from obsctl.sources.prometheus import PromClient

prom_app = typer.Typer(
    name="prom",
    help="Ask Prometheus (or Mimir, Thanos, VictoriaMetrics) from the terminal.",
    no_args_is_help=True,
)
loki_app = typer.Typer(name="loki", help="Query Loki's log API.", no_args_is_help=True)

_CONN = "Connection"

PromUrl = Annotated[
    str | None,
    typer.Option(
        "--prom-url", help="Prometheus base URL (env OBSCTL_PROMETHEUS_URL)", rich_help_panel=_CONN
    ),
]
LokiUrl = Annotated[
    str | None,
    typer.Option("--loki-url", help="Loki base URL (env OBSCTL_LOKI_URL)", rich_help_panel=_CONN),
]
Selector = Annotated[
    str | None,
    typer.Option(
        "--selector",
        help='Loki stream selector (env OBSCTL_LOKI_SELECTOR, default {service=~".+"})',
        rich_help_panel=_CONN,
    ),
]
LokiSince = Annotated[
    str | None,
    typer.Option(
        "--loki-since",
        help="How far back to search Loki (env OBSCTL_LOKI_SINCE, default 24h)",
        rich_help_panel=_CONN,
    ),
]
Timeout = Annotated[
    float | None,
    typer.Option(
        "--timeout", help="Seconds per request (env OBSCTL_TIMEOUT)", rich_help_panel=_CONN
    ),
]
Token = Annotated[
    str | None,
    typer.Option("--token", help="Bearer token (env OBSCTL_TOKEN)", rich_help_panel=_CONN),
]
Username = Annotated[
    str | None,
    typer.Option("--username", help="Basic auth user (env OBSCTL_USERNAME)", rich_help_panel=_CONN),
]
Password = Annotated[
    str | None,
    typer.Option(
        "--password", help="Basic auth password (env OBSCTL_PASSWORD)", rich_help_panel=_CONN
    ),
]
Tenant = Annotated[
    str | None,
    typer.Option(
        "--tenant", help="X-Scope-OrgID tenant (env OBSCTL_TENANT)", rich_help_panel=_CONN
    ),
]
CaBundle = Annotated[
    str | None,
    typer.Option(
        "--ca-bundle", help="PEM CA bundle for TLS (env OBSCTL_CA_BUNDLE)", rich_help_panel=_CONN
    ),
]
Insecure = Annotated[
    bool | None,
    typer.Option(
        "--insecure/--verify",
        help="Skip TLS verification (env OBSCTL_INSECURE)",
        rich_help_panel=_CONN,
        show_default=False,
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Machine-readable JSON lines on stdout.")]


def _prom_settings(
    *,
    prom_url: str | None,
    timeout: float | None,
    token: str | None,
    username: str | None,
    password: str | None,
    tenant: str | None,
    ca_bundle: str | None,
    insecure: bool | None,
) -> Settings:
    settings = resolve(
        prom_url=prom_url,
        timeout=timeout,
        token=token,
        username=username,
        password=password,
        tenant=tenant,
        ca_bundle=ca_bundle,
        insecure=insecure,
    )
    if not settings.prom_url:
        raise UsageError("no Prometheus URL", hint="pass --prom-url or set OBSCTL_PROMETHEUS_URL")
    return settings


def _warn(warnings: tuple[str, ...] | list[str]) -> None:
    from obsctl.sources.http import sanitize

    for warning in warnings:
        sys.stderr.write(f"obsctl: warning from the server: {sanitize(warning, 500)}\n")


@contextmanager
def _prom_client(settings: Settings) -> Iterator[PromClient]:
    from obsctl.sources.http import BackendHttp, build_client
    from obsctl.sources.prometheus import PromClient, prom_error_text

    assert settings.prom_url is not None
    http = BackendHttp(
        build_client(settings, settings.prom_url, what="Prometheus"),
        name="Prometheus",
        max_bytes=settings.max_response_bytes,
        error_text=prom_error_text,
    )
    with http:
        yield PromClient(http)


def _print_json_lines(items: Iterable[object]) -> None:
    out = sys.stdout.buffer
    for item in items:
        out.write(orjson.dumps(item) + b"\n")
    out.flush()


@prom_app.command("query")
def prom_query(
    expr: Annotated[str, typer.Argument(help="PromQL expression.")],
    *,
    time: Annotated[
        str | None, typer.Option("--time", help="Evaluation time (now, -15m, RFC 3339, Unix s).")
    ] = None,
    json_out: JsonOut = False,
    prom_url: PromUrl = None,
    timeout: Timeout = None,
    token: Token = None,
    username: Username = None,
    password: Password = None,
    tenant: Tenant = None,
    ca_bundle: CaBundle = None,
    insecure: Insecure = None,
) -> None:
    """Instant query: a table of series and values (NaN and ±Inf as Prometheus writes them)."""
    from rich.console import Console

    from obsctl.render.backends import vector_table
    from obsctl.timespec import parse_time_ns

    settings = _prom_settings(
        prom_url=prom_url,
        timeout=timeout,
        token=token,
        username=username,
        password=password,
        tenant=tenant,
        ca_bundle=ca_bundle,
        insecure=insecure,
    )
    time_ns = parse_time_ns(time, flag="--time") if time else None
    with _prom_client(settings) as client:
        result = client.query(expr, time_ns=time_ns)
    _warn(result.warnings)
    if result.result_type in ("vector", "matrix") and not result.items:
        raise NothingMatched(
            f"no series matched {expr!r}", hint="check the metric name, labels and --time"
        )
    if json_out:
        _print_json_lines(result.items)
        return
    Console(soft_wrap=False).print(vector_table(result))


@prom_app.command("range")
def prom_range(
    expr: Annotated[str, typer.Argument(help="PromQL expression.")],
    *,
    since: Annotated[str, typer.Option("--since", help="How far back from --end.")] = "1h",
    step: Annotated[
        str | None, typer.Option("--step", help="Resolution (default: --since / 120, ≥ 1s).")
    ] = None,
    end: Annotated[str, typer.Option("--end", help="End of the range.")] = "now",
    json_out: JsonOut = False,
    prom_url: PromUrl = None,
    timeout: Timeout = None,
    token: Token = None,
    username: Username = None,
    password: Password = None,
    tenant: Tenant = None,
    ca_bundle: CaBundle = None,
    insecure: Insecure = None,
) -> None:
    """Range query: each series as a sparkline with min, max and last value."""
    from rich.console import Console

    from obsctl.render.backends import range_table
    from obsctl.timespec import NS_PER_S, parse_duration_ns, parse_time_ns

    settings = _prom_settings(
        prom_url=prom_url,
        timeout=timeout,
        token=token,
        username=username,
        password=password,
        tenant=tenant,
        ca_bundle=ca_bundle,
        insecure=insecure,
    )
    end_ns = parse_time_ns(end, flag="--end")
    since_ns = parse_duration_ns(since, flag="--since")
    step_ns = (
        parse_duration_ns(step, flag="--step")
        if step
        else max(since_ns // 120 // NS_PER_S * NS_PER_S, NS_PER_S)
    )
    if since_ns // step_ns > 11_000:
        raise UsageError(
            f"--since {since} at --step {step} is more than 11,000 points per series",
            hint="raise --step",
        )
    start_ns = end_ns - since_ns
    with _prom_client(settings) as client:
        result = client.query_range(expr, start_ns=start_ns, end_ns=end_ns, step_ns=step_ns)
    _warn(result.warnings)
    if not result.items:
        raise NothingMatched(f"no series matched {expr!r} over the last {since}")
    if json_out:
        _print_json_lines(result.items)
        return
    Console(soft_wrap=False).print(
        range_table(result, start=start_ns / NS_PER_S, end=end_ns / NS_PER_S)
    )


@prom_app.command("routes")
def prom_routes(
    *,
    since: Annotated[str, typer.Option("--since", help="Window of the rates and counts.")] = "1h",
    time: Annotated[str, typer.Option("--time", help="End of the window.")] = "now",
    json_out: JsonOut = False,
    prom_url: PromUrl = None,
    timeout: Timeout = None,
    token: Token = None,
    username: Username = None,
    password: Password = None,
    tenant: Tenant = None,
    ca_bundle: CaBundle = None,
    insecure: Insecure = None,
) -> None:
    """Request rate, 5xx ratio and p95 latency per route; exceptions by internal_code."""
    from rich.console import Console

    from obsctl.render.backends import exceptions_table, routes_table
    from obsctl.sources.prometheus import routes_report
    from obsctl.timespec import format_duration, parse_duration_ns, parse_time_ns

    settings = _prom_settings(
        prom_url=prom_url,
        timeout=timeout,
        token=token,
        username=username,
        password=password,
        tenant=tenant,
        ca_bundle=ca_bundle,
        insecure=insecure,
    )
    window = format_duration(parse_duration_ns(since, flag="--since"))
    time_ns = parse_time_ns(time, flag="--time")
    with _prom_client(settings) as client:
        report = routes_report(client, window=window, time_ns=time_ns)
    _warn(report.warnings)
    if not report.routes and not report.exceptions:
        raise NothingMatched(
            f"no http_requests_total or app_exceptions_total samples in the last {window}",
            hint="check that Prometheus scrapes the app's /metrics",
        )
    if json_out:
        rows = [
            {
                "kind": "route",
                "route": r.route,
                "rate": r.rate,
                "error_ratio": r.error_ratio,
                "p95_seconds": r.p95_seconds,
            }
            for r in report.routes
        ] + [
            {
                "kind": "exception",
                "internal_code": e.internal_code,
                "exception": e.exception,
                "count": e.count,
            }
            for e in report.exceptions
        ]
        _print_json_lines(rows)
        return
    console = Console(soft_wrap=False)
    console.print(routes_table(report.routes, window=window))
    if report.exceptions:
        console.print()
        console.print(exceptions_table(report.exceptions, window=window))


@prom_app.command("alerts")
def prom_alerts(
    *,
    json_out: JsonOut = False,
    prom_url: PromUrl = None,
    timeout: Timeout = None,
    token: Token = None,
    username: Username = None,
    password: Password = None,
    tenant: Tenant = None,
    ca_bundle: CaBundle = None,
    insecure: Insecure = None,
) -> None:
    """Firing and pending alerts: severity, since when, labels, summary and the command to run
    next (the rule's runbook annotation). Exit 1 when nothing fires."""
    from rich.console import Console

    from obsctl.render.backends import alerts_table
    from obsctl.sources.prom_alerts import fetch_alerts
    from obsctl.timespec import NS_PER_S, now_ns

    settings = _prom_settings(
        prom_url=prom_url,
        timeout=timeout,
        token=token,
        username=username,
        password=password,
        tenant=tenant,
        ca_bundle=ca_bundle,
        insecure=insecure,
    )
    with _prom_client(settings) as client:
        report = fetch_alerts(client)
    _warn(report.warnings)
    if json_out:
        _print_json_lines(alert.raw for alert in report.alerts)
    elif report.alerts:
        Console(soft_wrap=False).print(alerts_table(report.alerts, now=now_ns() / NS_PER_S))
    if not report.firing:
        if report.alerts:
            raise NothingMatched(
                f"no alert is firing ({len(report.alerts)} pending)",
                hint="a pending alert fires once its rule's `for` duration has passed",
            )
        raise NothingMatched(f"no alert is firing or pending at {settings.prom_url}")


@loki_app.command("query")
def loki_query(
    logql: Annotated[str, typer.Argument(help="LogQL log query, e.g. '{service=\"shop\"}'.")],
    *,
    since: Annotated[
        str | None, typer.Option("--since", help="How far back from --to (default 1h).")
    ] = None,
    from_: Annotated[str | None, typer.Option("--from", help="Start (inclusive).")] = None,
    to: Annotated[str | None, typer.Option("--to", help="End (exclusive), default now.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Most entries to print.")] = 1000,
    forward: Annotated[
        bool, typer.Option("--forward", help="Oldest first (default: newest first).")
    ] = False,
    json_out: JsonOut = False,
    loki_url: LokiUrl = None,
    timeout: Timeout = None,
    token: Token = None,
    username: Username = None,
    password: Password = None,
    tenant: Tenant = None,
    ca_bundle: CaBundle = None,
    insecure: Insecure = None,
) -> None:
    """Log lines of a LogQL query, paging past Loki's 5000-entry cap without loss or repeats."""
    from obsctl.cli.loki_print import print_entries
    from obsctl.query.loki import loki_client, time_range
    from obsctl.sources.loki import PagingReport

    settings = resolve(
        loki_url=loki_url,
        timeout=timeout,
        token=token,
        username=username,
        password=password,
        tenant=tenant,
        ca_bundle=ca_bundle,
        insecure=insecure,
    )
    start_ns, end_ns = time_range(since=since, from_=from_, to=to)
    report = PagingReport()
    with loki_client(settings) as client:
        entries = client.entries(
            logql,
            start_ns=start_ns,
            end_ns=end_ns,
            limit=limit,
            direction="forward" if forward else "backward",
            report=report,
        )
        print_entries(entries, json_out=json_out)
    _warn(report.warnings)
    if report.truncated:
        sys.stderr.write(
            f"obsctl: result stopped at --limit {limit}; more entries match "
            "(narrow the range or raise --limit)\n"
        )
    if report.entries == 0:
        raise NothingMatched(
            f"no log lines matched {logql!r}", hint="widen --since or the selector"
        )
