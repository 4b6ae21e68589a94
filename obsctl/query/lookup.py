"""One request's lines by time (contract 6): read only what a time window can hold.

:func:`locate` gives each file its time range, cheaply: the first and last record of a plain
file, the member headers of a seekable archive (:mod:`obsctl.sources.archives`), and for other
archives their first record plus an upper bound (the rotation time in the project's archive
names, the file's mtime, the first record of the next file of the same log). :func:`search_span`
then reads, in the files whose range meets a span, only the byte range a binary search on
``ts`` gives (plain files), only the members whose times meet it (seekable archives), or an
archive from its start until its lines are past the span (other archives). A file whose lines
are seen out of time order is read whole. :func:`find_by_time` is the lookup of a v7 ID: the
window around its time, extended while the request still writes lines near an edge, and
every file when the window holds nothing.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

from obsctl.analysis.idtime import MARGIN_S, Span, extensions, window_around
from obsctl.query.scan import Progress, _lines_with, find_trace_records, searchable
from obsctl.readers.fields import NO_MAP, FieldMap
from obsctl.readers.parse import Record, parse_records_checked, v1_epoch
from obsctl.sources.archives import MemberIndex, member_index
from obsctl.sources.files import Damage, LogFile, iter_blocks

__all__ = [
    "Located",
    "Lookup",
    "find_by_time",
    "find_everywhere",
    "find_in_span",
    "line_epoch",
    "locate",
    "search_span",
]

#: Lines out of time order by up to this much still count as in order (threads stamp ``ts``
#: before they take the writer's lock); more, and a file's binary search is not trusted.
TOLERANCE_S = 60.0
#: Bytes read per probe of the binary search (and the range it stops narrowing at).
_PROBE = 64 << 10


@functools.cache
def _names() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """Rotated names: the project's (rotation time in UTC), Loguru's, and live files.
    Compiled on first use: start-up time is most of a lookup's cost."""
    ours = re.compile(
        r"^(?P<stem>.+)\.(\d{4})-(\d\d)-(\d\d)T(\d\d)-(\d\d)-(\d\d)-(\d{6})Z(?:\.\d+)?"
        r"\.jsonl(?:\.gz)?$"
    )
    loguru = re.compile(
        r"^(?P<stem>.+)\.\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{6}(?:\.\d+)?\.[A-Za-z0-9]+"
        r"(?:\.(?:gz|bz2|xz|zip|tar|tar\.gz))?$"
    )
    live = re.compile(r"^(?P<stem>.+)\.(?:jsonl|log|json)$")
    return ours, loguru, live


def line_epoch(line: bytes, fields: FieldMap = NO_MAP) -> float | None:
    """Epoch seconds of one log line's record (foundation's lines without a full parse; any
    other shape obsctl reads through the parser)."""
    epoch = v1_epoch(line)
    if epoch is not None:
        return epoch
    records, _ = parse_records_checked(line, fields=fields)
    return records[0].epoch if records else None


def _first_epoch(chunk: bytes, fields: FieldMap, *, from_end: bool = False) -> float | None:
    """The time of the first (or last) complete line of ``chunk`` that has one."""
    lines = chunk.split(b"\n")
    complete = lines[1:-1] if from_end else lines[:-1]
    for line in reversed(complete) if from_end else complete:
        epoch = line_epoch(line, fields) if line.strip() else None
        if epoch is not None:
            return epoch
    return None


@dataclass(frozen=True, slots=True)
class Located:
    """A file and what is known of its time range without reading it (None: unknown)."""

    log: LogFile
    first: float | None
    last: float | None
    index: MemberIndex | None = None

    def meets(self, span: Span) -> bool:
        first = None if self.first is None else self.first - TOLERANCE_S
        last = None if self.last is None else self.last + TOLERANCE_S
        return span.overlaps(first, last)


def _series(name: str) -> tuple[str, float | None] | None:
    """The log a file belongs to (its stem) and, in the project's archive names, the rotation
    time (at or after the file's last record)."""
    ours, loguru, live = _names()
    match = ours.match(name)
    if match:
        # Not datetime.strptime: importing _strptime costs more than the whole lookup.
        year, month, day, hour, minute, second, micro = (int(p) for p in match.groups()[1:])
        try:
            moment = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
        except ValueError:
            return match["stem"], None
        return match["stem"], moment.timestamp()
    match = loguru.match(name) or live.match(name)
    return (match["stem"], None) if match else None


def _plain_bounds(path: str, size: int, fields: FieldMap) -> tuple[float | None, float | None]:
    with open(path, "rb") as handle:
        first = _first_epoch(handle.read(_PROBE) + b"\n", fields)
        handle.seek(max(0, size - _PROBE))
        tail = handle.read(_PROBE)
    # A final line still being written has no newline yet: it is not counted.
    last = _first_epoch((b"" if size > _PROBE else b"\n") + tail, fields, from_end=True)
    return first, last


def _compressed_first(log: LogFile, fields: FieldMap) -> float | None:
    damage = Damage()
    for buf, lo, hi, _ in iter_blocks(log, damage, block_bytes=_PROBE):
        return _first_epoch(bytes(buf[lo:hi]), fields)
    return None


def locate(logs: Sequence[LogFile], fields: FieldMap = NO_MAP) -> list[Located]:
    """Each file with its time range (see the module docstring)."""
    found: list[Located] = []
    series: dict[tuple[str, str], list[int]] = {}
    for log in logs:
        name = os.path.basename(log.path)
        named = _series(name)
        upper: float | None = None
        index = None
        if log.kind == "plain":
            first, last = _plain_bounds(log.path, log.size, fields) if log.size else (None, None)
        else:
            index = member_index(log.path) if log.kind == "gzip" else None
            if index is not None:
                times = [m.bounds() for m in index.members if m.first_us >= 0]
                first = min(t[0] for t in times if t[0] is not None) if times else None
                last = max(t[1] for t in times if t[1] is not None) if times else None
                if index.rest is not None:
                    last = None
            else:
                first, last = _compressed_first(log, fields), None
            if last is None:
                # Upper bounds of the last record: the rotation time in our names, the mtime.
                bounds = [os.path.getmtime(log.path)]
                if named is not None and named[1] is not None:
                    bounds.append(named[1])
                upper = min(bounds)
                last = upper if first is None or upper >= first else None
        if named is not None:
            series.setdefault((os.path.dirname(log.path), named[0]), []).append(len(found))
        found.append(Located(log, first, last, index))
    # Within one log, a file ends before the next one starts: a bound for archives whose last
    # record cannot be read without inflating them.
    for members in series.values():
        known = [i for i in members if found[i].first is not None]
        ordered = sorted(known, key=lambda i: found[i].first or 0.0)
        for here, after in itertools.pairwise(ordered):
            item, next_first = found[here], found[after].first
            if item.log.kind != "plain" and item.index is None and next_first is not None:
                last = next_first if item.last is None else min(item.last, next_first)
                found[here] = Located(item.log, item.first, last, item.index)
    return found


# ------------------------------------------------------------------------ reading by time


@dataclass
class _Hits:
    records: list[Record] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _probe(
    handle: BinaryIO, position: int, limit: int, fields: FieldMap
) -> tuple[int, float] | None:
    """The first line starting after ``position`` (and before ``limit``) that has a time."""
    handle.seek(position)
    chunk = handle.read(min(_PROBE, max(limit - position, 0)))
    start = chunk.find(b"\n") + 1
    while start:
        end = chunk.find(b"\n", start)
        if end < 0:
            return None
        epoch = line_epoch(chunk[start:end], fields)
        if epoch is not None:
            return position + start, epoch
        start = end + 1
    return None


def _bisect(
    handle: BinaryIO, size: int, target: float, probes: list[tuple[int, float]], fields: FieldMap
) -> tuple[int, int]:
    """``(lo, hi)``, both line starts: lines before ``lo`` are earlier than ``target``, lines
    from ``hi`` on are not (if the file is in time order). Every probe is kept in ``probes``."""
    lo, hi = 0, size
    while hi - lo > _PROBE:
        mid = (lo + hi) // 2
        found = _probe(handle, mid, hi, fields)
        if found is None:
            hi = mid
            continue
        probes.append(found)
        position, epoch = found
        if epoch < target:
            lo = position
        else:
            hi = position
    return lo, hi


def _in_order(probes: list[tuple[int, float]]) -> bool:
    latest = None
    for _, epoch in sorted(probes):
        if latest is not None and epoch < latest - TOLERANCE_S:
            return False
        latest = epoch if latest is None else max(latest, epoch)
    return True


def _plain_range(item: Located, span: Span, fields: FieldMap) -> tuple[int, int | None] | None:
    """The byte range of a plain file that holds ``span``, or None when its lines are not in
    time order (then it is read whole)."""
    probes: list[tuple[int, float]] = []
    if item.first is not None:
        probes.append((0, item.first))
    if item.last is not None:
        probes.append((item.log.size, item.last))
    with open(item.log.path, "rb") as handle:
        start, _ = _bisect(handle, item.log.size, span.start - TOLERANCE_S, probes, fields)
        _, end = _bisect(handle, item.log.size, span.end + TOLERANCE_S, probes, fields)
    if not _in_order(probes):
        return None
    return start, (None if end >= item.log.size else end)


def _collect(
    log: LogFile,
    needle: bytes,
    damage: Damage,
    hits: _Hits,
    *,
    fields: FieldMap,
    start: int = 0,
    end: int | None = None,
    stop_after: float | None = None,
) -> bool:
    """Lines of ``log[start:end]`` containing ``needle``, into ``hits``; with ``stop_after``,
    stop at the first block whose last line is later (unless the lines are seen out of order).
    Returns whether the lines were seen out of time order."""
    latest: float | None = None
    disorder = False
    source = log.path
    for buf, lo, hi, base in iter_blocks(log, damage, start=start, end=end):
        text = searchable(buf)
        try:
            for line_start, line_end in _lines_with(text, lo, hi, (needle,)):
                line = bytes(buf[line_start:line_end])
                offset = base + line_start
                found, reason = parse_records_checked(
                    line, source=source, offset=offset, seq=offset, fields=fields
                )
                if reason is not None:
                    damage.line(reason, source)
                hits.records.extend(found)
            if stop_after is None:
                continue
            head_end = text.find(b"\n", lo, hi)
            tail_start = text.rfind(b"\n", lo, hi - 1) + 1
            first = line_epoch(bytes(buf[lo:head_end]), fields)
            last = line_epoch(bytes(buf[max(tail_start, lo) : hi - 1]), fields)
        finally:
            del text  # before the generator closes the mmap window
        if first is not None and latest is not None and first < latest - TOLERANCE_S:
            disorder = True
        for epoch in (first, last):
            if epoch is not None:
                latest = epoch if latest is None else max(latest, epoch)
        if not disorder and last is not None and last > stop_after:
            break
    return disorder


def _member_ranges(index: MemberIndex, span: Span) -> Iterator[tuple[int, int | None]]:
    """Byte ranges of the members that may hold ``span`` (adjacent members joined), then the
    unindexed remainder, if any."""
    run: tuple[int, int] | None = None
    for member in index.members:
        first, last = member.bounds()
        wanted = (
            first is None or last is None or span.overlaps(first - TOLERANCE_S, last + TOLERANCE_S)
        )
        if wanted and run is not None and run[1] == member.offset:
            run = (run[0], member.end)
        elif wanted:
            if run is not None:
                yield run
            run = (member.offset, member.end)
    if run is not None:
        yield run
    if index.rest is not None:
        yield index.rest, None


def search_span(
    located: Sequence[Located],
    query: str,
    span: Span,
    damage: Damage,
    notes: list[str],
    *,
    fields: FieldMap = NO_MAP,
) -> list[Record]:
    """Records of the files meeting ``span`` whose correlation or trace ID starts with ``query``,
    reading only what can hold ``span`` (see the module docstring)."""
    hits = _Hits()
    needle = query.encode()
    for item in located:
        if not item.meets(span):
            continue
        log = item.log
        if log.kind == "plain":
            if item.first is None and item.last is None:
                _collect(log, needle, damage, hits, fields=fields)
                continue
            bounds = _plain_range(item, span, fields)
            if bounds is None:
                _note_disorder(notes, log.path)
                _collect(log, needle, damage, hits, fields=fields)
            else:
                _collect(log, needle, damage, hits, fields=fields, start=bounds[0], end=bounds[1])
        elif item.index is not None:
            for start, end in _member_ranges(item.index, span):
                stop = span.end + TOLERANCE_S if end is None else None
                _collect(
                    log, needle, damage, hits, fields=fields, start=start, end=end, stop_after=stop
                )
        elif _collect(log, needle, damage, hits, fields=fields, stop_after=span.end + TOLERANCE_S):
            _note_disorder(notes, log.path)
    return [r for r in hits.records if r.has_id(query)]


def _note_disorder(notes: list[str], path: str) -> None:
    note = f"{os.path.basename(path)}: lines are not in time order; read it whole"
    if note not in notes:
        notes.append(note)


# --------------------------------------------------------------------------------- lookups

#: The hint of a miss over files.
FILES_HINT = "check the ID, or give the PATH of the logs that hold it"


@dataclass
class Lookup:
    """What a lookup found, and what to tell people: ``searched`` completes "no log line has
    correlation ID X ..." on a miss; ``notes`` go to stderr either way."""

    records: list[Record]
    searched: str = ""
    hint: str = FILES_HINT
    notes: list[str] = field(default_factory=list)


def _all_files(located: Sequence[Located]) -> str:
    """``all 14 files (2026-11-15 00:00:00 → 2026-11-29 00:00:00 UTC)``."""
    count = f"all {len(located)} file{'s' if len(located) != 1 else ''}"
    firsts = [i.first for i in located if i.first is not None]
    lasts = [i.last for i in located if i.last is not None]
    if not firsts or not lasts:
        return count
    return f"{count} ({Span(min(firsts), max(lasts)).text()})"


def _epochs(records: Sequence[Record]) -> Iterator[float]:
    for record in records:
        epoch = record.epoch
        if epoch is not None:
            yield epoch


def _gap_text(seconds: float) -> str:
    from obsctl.analysis.idtime import ago_text

    words = ago_text(seconds).removesuffix(" ago").removeprefix("in ")
    return f"{words} {'later' if seconds > 0 else 'earlier'}"


#: A request that keeps writing lines is followed at most this many steps of the margin.
_MAX_EXTENSIONS = 10_000


def find_by_time(
    logs: Sequence[LogFile],
    query: str,
    issued: Span,
    damage: Damage,
    *,
    now: float,
    fields: FieldMap = NO_MAP,
) -> Lookup:
    """The records of ``query`` (a v7 ID, or a prefix of one) issued in ``issued``: the window
    around it, grown while lines sit near its edges; every file when it holds none."""
    located = locate(logs, fields)
    notes: list[str] = []
    window = window_around(issued, now=now)
    records = search_span(located, query, window, damage, notes, fields=fields)
    for _ in range(_MAX_EXTENSIONS):
        parts = extensions(window, _epochs(records), now=now)
        if not parts:
            break
        for part in parts:
            records.extend(search_span(located, query, part, damage, notes, fields=fields))
            window = window.union(part)
    if records:
        return Lookup(records, notes=notes)
    everywhere = _all_files(located)
    records = find_trace_records(logs, query, damage, fields=fields)
    epochs = list(_epochs(records))
    if epochs:
        gap = min(epochs) - issued.start
        why = (
            f"its lines are {_gap_text(gap)} than that time (an ID made with another clock, "
            "or skew over 5 minutes)"
            if abs(gap) > MARGIN_S
            else "a file's lines are not in time order"
        )
        notes.append(
            f"no line of {query} around the time in its ID ({window.text()}); found by "
            f"searching {everywhere}: {why}"
        )
    searched = f"around the time in its ID ({window.text()}) nor in {everywhere}"
    return Lookup(records, searched, notes=notes)


def find_everywhere(
    logs: Sequence[LogFile],
    query: str,
    damage: Damage,
    *,
    progress: Progress | None = None,
    fields: FieldMap = NO_MAP,
) -> Lookup:
    """Every file, whole (an ID without a time, or ``--all``)."""
    records = find_trace_records(logs, query, damage, progress=progress, fields=fields)
    searched = "" if records else f"in {_all_files(locate(logs, fields))}"
    return Lookup(records, searched)


def find_in_span(
    logs: Sequence[LogFile], query: str, span: Span, damage: Damage, *, fields: FieldMap = NO_MAP
) -> Lookup:
    """The records of ``query`` (an ID or a prefix) inside ``span`` only (``--since/--until``)."""
    notes: list[str] = []
    found = search_span(locate(logs, fields), query, span, damage, notes, fields=fields)
    inside = [r for r in found if (e := r.epoch) is not None and span.start <= e <= span.end]
    return Lookup(
        inside,
        f"in {span.text()} (--since/--until)",
        "widen --since/--until, or drop them to search everything",
        notes,
    )
