"""Where ``trace`` and ``errors top`` get their input: the one place that picks the source.

Today: the local log files (paths, or the default log directory from the settings). Another
source (Loki) plugs in here by returning the same things — records for a trace, an
:class:`~obsctl.analysis.analyse.ErrorReport` for errors top — and the commands, the analysis
and the rendering stay untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from obsctl.analysis.analyse import ErrorReport
from obsctl.analysis.idtime import Span
from obsctl.errors import UsageError
from obsctl.query.lookup import Lookup, find_by_time, find_everywhere, find_in_span
from obsctl.query.scan import Progress, collect_errors
from obsctl.readers.fields import FieldMap
from obsctl.settings import Settings
from obsctl.sources.files import Damage, expand_paths

__all__ = ["TraceBounds", "error_report", "field_map", "file_bytes", "trace_records"]


def file_bytes(settings: Settings, paths: Sequence[str]) -> int:
    """How many bytes a file scan will read (to decide whether a progress bar is worth it)."""
    return sum(log.size for log in expand_paths(paths, default_dir=settings.log_dir))


@dataclass(frozen=True, slots=True)
class TraceBounds:
    """Where ``trace`` looks: ``since``/``until`` given by hand (epoch seconds), ``everything``
    (``--all``), else around ``issued`` (the trusted time of a v7 ID or prefix), else
    everywhere."""

    now: float
    issued: Span | None = None
    since: float | None = None
    until: float | None = None
    everything: bool = False


def trace_records(
    settings: Settings,
    query: str,
    paths: Sequence[str],
    damage: Damage,
    *,
    bounds: TraceBounds,
    progress: Progress | None = None,
) -> Lookup:
    """Every record whose correlation ID is ``query`` or starts with it (any order), with what
    was searched."""
    if settings.loki_url:
        from obsctl.query import loki

        _no_paths_with_loki(paths)
        return loki.trace_lookup(settings, query, damage, bounds=bounds)
    logs = expand_paths(paths, default_dir=settings.log_dir)
    fields = field_map(settings)
    if bounds.since is not None or bounds.until is not None:
        since = bounds.since if bounds.since is not None else float("-inf")
        until = bounds.until if bounds.until is not None else bounds.now
        return find_in_span(logs, query, Span(since, until), damage, fields=fields)
    if bounds.issued is not None and not bounds.everything:
        return find_by_time(logs, query, bounds.issued, damage, now=bounds.now, fields=fields)
    return find_everywhere(logs, query, damage, progress=progress, fields=fields)


def error_report(
    settings: Settings,
    paths: Sequence[str],
    *,
    by: str,
    since: float | None,
    until: float | None,
    now: float,
    damage: Damage,
    progress: Progress | None = None,
) -> ErrorReport:
    """ERROR and CRITICAL records in ``[since, until)`` grouped ``by`` a field, ranked."""
    if settings.loki_url:
        from obsctl.query import loki

        _no_paths_with_loki(paths)
        return loki.error_report(settings, by=by, since=since, until=until, now=now, damage=damage)
    logs = expand_paths(paths, default_dir=settings.log_dir)
    accumulator = collect_errors(
        logs,
        by=by,
        since=since,
        until=until,
        damage=damage,
        progress=progress,
        fields=field_map(settings),
    )
    return accumulator.report(now=now)


def field_map(settings: Settings) -> FieldMap:
    """The ``--map``/``OBSCTL_MAP`` pairs of this invocation (a bad pair is a usage error)."""
    return FieldMap.parse(settings.field_map)


def _no_paths_with_loki(paths: Sequence[str]) -> None:
    if paths:
        raise UsageError(
            "both log PATHs and a Loki URL were given",
            hint="drop the PATHs to read Loki, or unset --loki-url/OBSCTL_LOKI_URL to read files",
        )
