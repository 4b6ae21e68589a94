"""The ``obsctl`` command line: wiring only.

Each command parses its flags, calls the pure layers (parse → analyse → render) and prints.
``main`` is the one place where typed errors become exit codes and one-line stderr messages.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer

from obsctl import __version__
from obsctl.cli.commands_backends import (
    CaBundle,
    Insecure,
    LokiSince,
    LokiUrl,
    Password,
    PromUrl,
    Selector,
    Tenant,
    Timeout,
    Token,
    Username,
    loki_app,
    prom_app,
)
from obsctl.errors import EXIT_USAGE, ObsctlError, UsageError

app = typer.Typer(
    name="obsctl",
    help="Follow requests, rank errors and query Loki/Prometheus for services using foundation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: rich-formatted help imports ~60 ms of rich; `obsctl --help` must start fast.
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"obsctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """obsctl: answers from your logs and metrics during an incident."""


app.add_typer(prom_app, name="prom")
app.add_typer(loki_app, name="loki")


# -- files: trace, errors top, tail (heavy modules are imported inside the commands) ------------

# Options shared by several commands, declared once.
_PATHS_HELP = "Log files, directories or globs (default: the log directory, var/log)."
Paths = Annotated[list[str] | None, typer.Argument(metavar="[PATH]...", help=_PATHS_HELP)]
JsonFlag = Annotated[bool, typer.Option("--json", help="One JSON object per line on stdout.")]
Since = Annotated[
    str | None, typer.Option("--since", help="Start: a duration back (15m, 2h, 7d) or a time.")
]
Until = Annotated[
    str | None, typer.Option("--until", help="End: a duration back or an RFC 3339 time.")
]
FieldMaps = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        metavar="FIELD=KEY",
        help="Read FIELD (a schema-v1 field: ts, level, correlation_id, internal_code…) from KEY"
        " (dotted for nested) in logs of another shape; repeatable (env OBSCTL_MAP).",
    ),
]


class GroupBy(StrEnum):
    internal_code = "internal_code"
    route = "route"
    exception = "exception"
    status = "status"


errors_app = typer.Typer(help="Rank errors from the logs.", no_args_is_help=True)
app.add_typer(errors_app, name="errors")


@app.command()
def trace(  # noqa: PLR0917 - typer maps each parameter to a flag
    correlation_id: Annotated[
        str, typer.Argument(metavar="ID", help="Correlation ID, or its first 8+ characters.")
    ],
    paths: Paths = None,
    json_out: JsonFlag = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep watching for new lines of this ID.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only lines from then on: a duration back (7d) or a time."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", help="Only lines up to then: a duration back or a time."),
    ] = None,
    everything: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Search everything (every file; Loki: OBSCTL_LOKI_MAX_RANGE back), not just "
            "around the time in a UUIDv7 ID.",
        ),
    ] = False,
    loki_url: LokiUrl = None,
    selector: Selector = None,
    loki_since: LokiSince = None,
    field_map: FieldMaps = None,
) -> None:
    """Follow one request: a summary in plain words, then its timeline across every log file.

    A UUIDv7 ID carries the time it was issued: only the files, file ranges and archive
    members around that time are read (widening when they hold nothing)."""
    from obsctl.cli import commands_files
    from obsctl.settings import resolve

    settings = resolve(
        loki_url=loki_url, loki_selector=selector, loki_since=loki_since, field_map=field_map
    )
    if follow and settings.loki_url:
        raise UsageError("--follow watches log files", hint="drop --follow when reading Loki")
    commands_files.trace(
        correlation_id,
        paths or [],
        json_out=json_out,
        follow=follow,
        since=since,
        until=until,
        everything=everything,
        settings=settings,
    )


@errors_app.command("top")
def errors_top(  # noqa: PLR0917 - typer maps each parameter to a flag
    paths: Paths = None,
    by: Annotated[GroupBy, typer.Option("--by", help="Group errors by this field.")] = (
        GroupBy.internal_code
    ),
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most N groups.")] = 20,
    json_out: JsonFlag = False,
    loki_url: LokiUrl = None,
    selector: Selector = None,
    loki_since: LokiSince = None,
    field_map: FieldMaps = None,
) -> None:
    """ERROR and CRITICAL records ranked by internal_code (or route, exception, status)."""
    from obsctl.cli import commands_files
    from obsctl.settings import resolve

    settings = resolve(
        loki_url=loki_url, loki_selector=selector, loki_since=loki_since, field_map=field_map
    )
    commands_files.errors_top(
        paths or [],
        by=by.value,
        since=since,
        until=until,
        limit=limit,
        json_out=json_out,
        settings=settings,
    )


@app.command()
def tail(  # noqa: PLR0917 - typer maps each parameter to a flag
    paths: Paths = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep following, across rotation.")
    ] = False,
    lines: Annotated[
        int | None, typer.Option("--lines", "-n", min=0, help="Show the last N records first.")
    ] = None,
    level: Annotated[
        str | None, typer.Option("--level", help="Only this level and above (e.g. WARNING).")
    ] = None,
    code: Annotated[int | None, typer.Option("--code", help="Only this internal_code.")] = None,
    id_: Annotated[
        str | None, typer.Option("--id", help="Only this correlation ID (or prefix).")
    ] = None,
    grep: Annotated[
        str | None, typer.Option("--grep", help="Only records whose message matches this regex.")
    ] = None,
    since: Since = None,
    json_out: JsonFlag = False,
    field_map: FieldMaps = None,
) -> None:
    """Show the latest log records readably, filtered; -f follows like tail -F."""
    from obsctl.cli import commands_files
    from obsctl.settings import resolve

    commands_files.tail(
        paths or [],
        follow=follow,
        lines=lines,
        level=level,
        code=code,
        correlation_id=id_,
        grep=grep,
        since=since,
        json_out=json_out,
        settings=resolve(field_map=field_map),
    )


@app.command()
def serve(  # noqa: PLR0917 - typer maps each parameter to a flag
    paths: Paths = None,
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT to serve on (port 0: a free one).")
    ] = "127.0.0.1:8080",
    audit_log: Annotated[
        str | None,
        typer.Option("--audit-log", help="Also append the audit lines (one per lookup) here."),
    ] = None,
    lookup_timeout: Annotated[
        float, typer.Option("--lookup-timeout", help="Give up a lookup after this many seconds.")
    ] = 30.0,
    loki_url: LokiUrl = None,
    selector: Selector = None,
    loki_since: LokiSince = None,
    field_map: FieldMaps = None,
) -> None:
    """Serve trace and errors pages for support staff (token in OBSCTL_SERVE_TOKEN)."""
    from obsctl.cli import commands_serve
    from obsctl.settings import resolve

    settings = resolve(
        loki_url=loki_url, loki_selector=selector, loki_since=loki_since, field_map=field_map
    )
    commands_serve.serve(
        paths or [],
        listen=listen,
        settings=settings,
        audit_log=audit_log,
        lookup_timeout=lookup_timeout,
    )


@app.command()
def slow(  # noqa: PLR0917 - typer maps each parameter to a flag
    paths: Paths = None,
    since: Since = None,
    until: Until = None,
    route: Annotated[
        str | None,
        typer.Option("--route", help='Only this route: "METHOD /template" or "/template".'),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="At most N routes and N slowest requests.")
    ] = 10,
    json_out: JsonFlag = False,
    field_map: FieldMaps = None,
    prom_url: PromUrl = None,
    timeout: Timeout = None,
    token: Token = None,
    username: Username = None,
    password: Password = None,
    tenant: Tenant = None,
    ca_bundle: CaBundle = None,
    insecure: Insecure = None,
) -> None:
    """Latency by route and the slowest requests with their IDs.

    From the access lines of the logs: count, p50, p95, p99 and max of duration_ms per route,
    exact (nearest-rank: each percentile is a duration that was logged). With --prom-url: from
    http_request_duration_seconds (histogram_quantile estimates, last hour by default) and the
    request IDs of the exemplars in its slowest buckets.
    """
    from obsctl.cli import commands_slow
    from obsctl.settings import resolve

    settings = resolve(
        prom_url=prom_url,
        timeout=timeout,
        token=token,
        username=username,
        password=password,
        tenant=tenant,
        ca_bundle=ca_bundle,
        insecure=insecure,
        field_map=field_map,
    )
    commands_slow.slow(
        paths or [],
        since=since,
        until=until,
        route=route,
        limit=limit,
        json_out=json_out,
        settings=settings,
    )


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app and map typed errors to exit codes.

    Typer/click handle their own usage errors (exit 2) in standalone mode; everything obsctl
    raises on purpose is an ``ObsctlError`` and gets one line on stderr and its exit code.
    """
    try:
        app(args=argv, prog_name="obsctl")
    except ObsctlError as exc:
        sys.stderr.write(f"obsctl: {exc.one_line()}\n")
        return exc.exit_code
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
