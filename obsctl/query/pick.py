"""Where ``trace`` and ``errors top`` get their input: the one place that picks the source.

Today: the local log files (paths, or the default log directory from the settings). Another
source (Loki) plugs in here by returning the same things — records for a trace, an
:class:`~obsctl.analysis.analyse.ErrorReport` for errors top — and the commands, the analysis
and the rendering stay untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

from obsctl.analysis.analyse import ErrorReport
from obsctl.errors import UsageError
from obsctl.query.scan import Progress, collect_errors, find_trace_records
from obsctl.readers.fields import FieldMap
from obsctl.readers.parse import Record
from obsctl.settings import Settings
from obsctl.sources.files import Damage, expand_paths

__all__ = ["error_report", "field_map", "file_bytes", "trace_records"]


def file_bytes(settings: Settings, paths: Sequence[str]) -> int:
    """How many bytes a file scan will read (to decide whether a progress bar is worth it)."""
    return sum(log.size for log in expand_paths(paths, default_dir=settings.log_dir))


def trace_records(
    settings: Settings,
    query: str,
    paths: Sequence[str],
    damage: Damage,
    *,
    progress: Progress | None = None,
) -> list[Record]:
    """Every record whose correlation ID is ``query`` or starts with it (any order)."""
    if settings.loki_url:
        from obsctl.query import loki

        _no_paths_with_loki(paths)
        return loki.trace_records(settings, query, damage)
    logs = expand_paths(paths, default_dir=settings.log_dir)
    return find_trace_records(logs, query, damage, progress=progress, fields=field_map(settings))


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
