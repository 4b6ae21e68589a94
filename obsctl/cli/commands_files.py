"""Bodies of ``trace``, ``errors top`` and ``tail``: flags → settings → source → analyse → render.

``obsctl.cli.app`` declares the flags and calls these; the source of records is chosen in
:mod:`obsctl.query.pick` and nowhere else.
"""

from __future__ import annotations

import gc
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from obsctl.analysis import analyse
from obsctl.cli import output
from obsctl.errors import NothingMatched, UsageError
from obsctl.query import pick
from obsctl.readers.parse import Record
from obsctl.settings import Settings, resolve
from obsctl.sources.files import Damage

if TYPE_CHECKING:
    from rich.console import RenderableType

    from obsctl.query.lookup import Lookup
    from obsctl.query.scan import Follower

__all__ = ["errors_top", "tail", "trace"]

POLL_SECONDS = 0.25


def trace(
    correlation_id: str,
    paths: Sequence[str],
    *,
    json_out: bool,
    follow: bool,
    since: str | None = None,
    until: str | None = None,
    everything: bool = False,
    settings: Settings | None = None,
) -> None:
    """Print the summary and timeline (or the JSON lines) of one request."""
    settings = settings or resolve()
    query = analyse.normalise_id(correlation_id)
    analyse.check_prefix(query)
    bounds = _trace_bounds(query, since=since, until=until, everything=everything)
    # Positions are taken before the scan, so no line written meanwhile is missed.
    follower = _follower(settings, paths) if follow else None
    try:
        _trace(settings, query, paths, bounds, json_out=json_out, follower=follower)
    finally:
        if follower is not None:
            follower.close()


def _trace_bounds(
    query: str, *, since: str | None, until: str | None, everything: bool
) -> pick.TraceBounds:
    """Where to look: the flags, else the time in a v7 ID (when it can be trusted)."""
    from obsctl.analysis.idtime import trusted_id_time

    now = time.time()
    if everything and (since or until):
        raise UsageError("--all and --since/--until both given", hint="use one of them")
    start = analyse.parse_time_bound(since, now=now, flag="--since") if since else None
    end = analyse.parse_time_bound(until, now=now, flag="--until") if until else None
    if start is not None and end is not None and start >= end:
        raise UsageError("the time window is empty", hint="--since must be before --until")
    issued, why = trusted_id_time(query, now=now)
    if why and not (everything or since or until):
        output.notice(f"{why}: searching as for an ID without a time")
    return pick.TraceBounds(now, issued, start, end, everything)


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Reading a request's lines makes tens of thousands of long-lived dicts and records and no
    reference cycles; the cyclic GC would walk them again and again (a third of a 50,000-line
    trace's time) to free nothing. Reference counting still frees everything as usual.

    On the way out, freeze + unfreeze files every object made meanwhile with the old ones:
    otherwise the first allocation after ``enable`` walks them all as one huge young generation.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.freeze()
            gc.unfreeze()
            gc.enable()


def _follower(settings: Settings, paths: Sequence[str]) -> Follower:
    from obsctl.query.scan import Follower

    return Follower(paths, default_dir=settings.log_dir, fields=pick.field_map(settings))


def _trace(
    settings: Settings,
    query: str,
    paths: Sequence[str],
    bounds: pick.TraceBounds,
    *,
    json_out: bool,
    follower: Follower | None,
) -> None:
    with _without_cycle_collection():
        records, ids, first_epoch, lookup = _show_trace(
            settings, query, paths, bounds, json_out=json_out
        )
    if not ids and follower is None:
        searched = f" {lookup.searched}" if lookup.searched else ""
        raise NothingMatched(
            f"no log line has correlation ID {query!r}{searched}", hint=lookup.hint
        )
    if not ids:
        output.notice(f"no line of {query!r} yet; waiting for new ones (Ctrl-C to stop)")
    if follower is not None:
        wanted = ids[0] if ids else query
        shown = {(r.ts, r.raw) for r in records}
        _follow_trace(follower, wanted, first_epoch, shown, json_out=json_out)


def _show_trace(
    settings: Settings,
    query: str,
    paths: Sequence[str],
    bounds: pick.TraceBounds,
    *,
    json_out: bool,
) -> tuple[list[Record], list[str], float | None, Lookup]:
    """Find, analyse and print the request; return its records, the matching IDs (none when
    nothing matched), the time of its first line and what was searched."""
    damage = Damage()
    # A lookup by time reads a small part of the files: no progress bar for it.
    by_time = bounds.issued is not None or bounds.since is not None or bounds.until is not None
    total = pick.file_bytes(settings, paths) if not (settings.loki_url or by_time) else 0
    with output.progress_bar(total, "searching") as progress:
        lookup = pick.trace_records(
            settings, query, paths, damage, bounds=bounds, progress=progress
        )
    records = lookup.records
    output.report_damage(damage)
    for note in lookup.notes:
        output.notice(note)
    ids = analyse.resolve_id(records, query)
    if len(ids) > 1:
        listed = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        raise UsageError(
            f"ID prefix {query!r} matches {len(ids)} requests: {listed}",
            hint="give more characters of the ID",
        )
    if not ids:
        return records, ids, None, lookup
    result = analyse.build_trace(records, ids[0])
    if json_out:
        output.json_lines(record.json_bytes() for record in result.records)
    else:
        output.show(_render_trace(result, now=bounds.now))
    return records, ids, result.base_epoch, lookup


def _render_trace(result: analyse.Trace, *, now: float) -> RenderableType:
    from obsctl.render.logs import render_trace

    return render_trace(result, now=now)


def _follow_trace(
    follower: Follower,
    wanted: str,
    first_epoch: float | None,
    shown: set[tuple[str, bytes]],
    *,
    json_out: bool,
) -> None:
    from obsctl.render.logs import render_timeline_entry

    keep = analyse.RecordFilter(correlation_id=wanted)
    console = output.stdout_console()

    def emit(records: list[Record]) -> None:
        nonlocal first_epoch
        if json_out:
            output.json_lines(r.json_bytes() for r in records)
            return
        for record in records:
            epoch = record.epoch
            if first_epoch is None:
                first_epoch = epoch
            offset = None
            if epoch is not None and first_epoch is not None:
                offset = round((epoch - first_epoch) * 1000, 3)
            console.print(render_timeline_entry(analyse.TimelineEntry(offset, record)))

    follow_records(follower, keep, emit, shown=shown)


def follow_records(
    follower: Follower,
    keep: analyse.RecordFilter,
    emit: Callable[[list[Record]], None],
    *,
    shown: set[tuple[str, bytes]] | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Poll for new records that ``keep`` accepts until ``stop()`` or Ctrl-C. Records already
    ``shown`` by the first scan (written while it ran) are not printed twice."""
    reported = ""
    already = shown or set()
    try:
        while not stop():
            batch = [r for r in follower.poll() if keep(r) and (r.ts, r.raw) not in already]
            if batch:
                emit(batch)
            summary = follower.damage.summary() or ""
            if summary != reported:
                output.notice(summary)
                reported = summary
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        pass


def errors_top(
    paths: Sequence[str],
    *,
    by: str,
    since: str | None,
    until: str | None,
    limit: int,
    json_out: bool,
    settings: Settings | None = None,
) -> None:
    """Print the error groups, largest first (``--json``: one object per group)."""
    settings = settings or resolve()
    now = time.time()
    start = analyse.parse_time_bound(since, now=now, flag="--since") if since else None
    end = analyse.parse_time_bound(until, now=now, flag="--until") if until else None
    if start is not None and end is not None and start >= end:
        raise UsageError("the time window is empty", hint="--since must be before --until")
    damage = Damage()
    total = pick.file_bytes(settings, paths) if not settings.loki_url else 0
    with output.progress_bar(total, "counting errors") as progress:
        report = pick.error_report(
            settings,
            paths,
            by=by,
            since=start,
            until=end,
            now=now,
            damage=damage,
            progress=progress,
        )
    output.report_damage(damage)
    if not report.groups:
        window = f" since {since}" if since else ""
        raise NothingMatched(f"no ERROR or CRITICAL records{window}")
    if json_out:
        import orjson

        output.json_lines(orjson.dumps(g.to_json(by)) for g in report.groups[:limit])
        return
    from obsctl.render.logs import render_error_report

    output.show(render_error_report(report, limit=limit))


def _record_filter(
    *,
    level: str | None,
    code: int | None,
    correlation_id: str | None,
    grep: str | None,
    since: str | None,
) -> analyse.RecordFilter:
    if level is not None and level.upper() not in analyse.LEVEL_NAMES:
        raise UsageError(
            f"unknown level {level!r}", hint="use DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    pattern = None
    if grep is not None:
        try:
            pattern = re.compile(grep)
        except re.error as exc:
            raise UsageError(f"invalid --grep pattern {grep!r}: {exc}") from None
    return analyse.RecordFilter(
        min_level=level.upper() if level else None,
        code=code,
        correlation_id=analyse.normalise_id(correlation_id) if correlation_id else None,
        grep=pattern,
        since=analyse.parse_time_bound(since, now=time.time(), flag="--since") if since else None,
    )


#: With --since and no --lines, at most this many records are shown before following.
SINCE_MAX_RECORDS = 100_000


def tail(
    paths: Sequence[str],
    *,
    follow: bool,
    lines: int | None,
    level: str | None,
    code: int | None,
    correlation_id: str | None,
    grep: str | None,
    since: str | None,
    json_out: bool,
    settings: Settings | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """The last records (filtered), then, with ``follow``, new ones as they are written."""
    from obsctl.query.scan import last_records
    from obsctl.sources.files import expand_paths

    settings = settings or resolve()
    keep = _record_filter(
        level=level, code=code, correlation_id=correlation_id, grep=grep, since=since
    )
    count = lines if lines is not None else (SINCE_MAX_RECORDS if since else 10)
    damage = Damage()
    logs = expand_paths(paths, default_dir=settings.log_dir)
    follower = _follower(settings, paths) if follow else None
    try:
        records = last_records(logs, count, keep, damage, fields=pick.field_map(settings))
        output.report_damage(damage)
        if since and lines is None and len(records) >= count:
            output.notice(f"showing the last {count} records since {since}; use -n to choose")
        printer = _printer(json_out)
        printer(records)
        if follower is not None:
            shown = {(r.ts, r.raw) for r in records}
            follow_records(follower, keep, printer, shown=shown, stop=stop)
        elif not records:
            raise NothingMatched("no log record matches")
    finally:
        if follower is not None:
            follower.close()


def _printer(json_out: bool) -> Callable[[list[Record]], None]:
    if json_out:

        def write_json(records: list[Record]) -> None:
            output.json_lines(r.json_bytes() for r in records)

        return write_json
    from obsctl.render.logs import render_record

    console = output.stdout_console()

    def write_text(records: list[Record]) -> None:
        for record in records:
            console.print(render_record(record))

    return write_text
