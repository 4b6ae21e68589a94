"""Scanning log files fast: byte search first, JSON parsing only for the lines that can match.

* :func:`find_trace_records` — every record whose line contains the ID (or ID prefix);
* :func:`collect_errors` — an :class:`~obsctl.analysis.analyse.ErrorAccumulator` fed with the
  lines that contain ``"level":"ERROR"``/``"level":"CRITICAL"`` (the writer's compact
  separators make this exact), each joined with its request's access line for the route;
* :func:`last_records` — the last N records matching a filter, reading plain files backwards;
* :class:`Follower` — new complete lines of a set of paths, across rotation and truncation.

Large inputs are cut into tasks (files, or byte ranges of a big plain file cut at line starts)
that run on every core (this process and forked children); results merge here.
"""

from __future__ import annotations

import functools
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, TypeVar

import orjson

from obsctl.analysis.analyse import ACCESS_MESSAGE, ErrorAccumulator, RecordFilter, level_rank
from obsctl.readers.fields import NO_MAP, FieldMap
from obsctl.readers.parse import (
    MAX_LINE_BYTES,
    Record,
    parse_records_checked,
    records_of_doc,
    ts_to_epoch,
)
from obsctl.readers.prefilter import error_needles
from obsctl.sources import files
from obsctl.sources.files import Buffer, Damage, LogFile, expand_paths, iter_blocks

_ERROR_LEVELS = frozenset({"ERROR", "CRITICAL"})

__all__ = [
    "Follower",
    "Task",
    "collect_errors",
    "find_trace_records",
    "last_records",
    "plan_tasks",
]

#: Below this many bytes in total, everything runs in this process (forking costs ~10 ms).
PARALLEL_MIN_BYTES = 48 << 20
#: Byte ranges of one plain file are at least this large.
MIN_PIECE_BYTES = 32 << 20
#: How far around an error line its request's access line is looked for.
ACCESS_WINDOW = 64 << 10

Progress = Callable[[int], None]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Task:
    """Part of the input: a whole file, or ``[start, end)`` of a plain file (line-aligned)."""

    log: LogFile
    start: int = 0
    end: int | None = None
    index: int = 0

    @property
    def size(self) -> int:
        if self.end is None:
            return self.log.size - self.start
        return self.end - self.start


def _workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _next_line_start(path: str, offset: int) -> int:
    """The offset of the first line that starts at or after ``offset`` (EOF if none)."""
    with open(path, "rb") as handle:
        handle.seek(offset - 1)
        position = offset - 1
        while True:
            chunk = handle.read(1 << 16)
            if not chunk:
                return position
            newline = chunk.find(b"\n")
            if newline >= 0:
                return position + newline + 1
            position += len(chunk)


def plan_tasks(logs: Sequence[LogFile], *, workers: int | None = None) -> list[Task]:
    """Split the input into tasks balanced over ``workers`` processes (cut plain files)."""
    count = workers or _workers()
    total = sum(log.size for log in logs)
    piece = max(MIN_PIECE_BYTES, -(-total // (count * 4)))
    tasks: list[Task] = []
    for log in logs:
        if log.kind != "plain" or count == 1 or log.size < piece * 3 // 2:
            tasks.append(Task(log, index=len(tasks)))
            continue
        start = 0
        while start < log.size:
            cut = (
                _next_line_start(log.path, start + piece) if start + piece < log.size else log.size
            )
            end = None if cut >= log.size else cut
            tasks.append(Task(log, start, end, len(tasks)))
            if end is None:
                break
            start = end
    return tasks


def _run(
    tasks: Sequence[Task],
    work: Callable[[Task], T],
    progress: Progress | None,
    *,
    parallel: bool = True,
) -> Iterator[T]:
    """``work`` over every task: in forked children too when it pays, else here. Unordered."""
    total = sum(t.size for t in tasks)
    count = min(_workers(), len(tasks))
    if not parallel or count < 2 or total < PARALLEL_MIN_BYTES or not hasattr(os, "fork"):
        for task in tasks:
            yield work(task)
            if progress is not None:
                progress(task.size)
        return
    yield from _forked(tasks, work, progress, count)


def _shares(tasks: Sequence[Task], count: int) -> list[list[Task]]:
    """``tasks`` dealt into ``count`` lists of about equal bytes (largest first, each to the
    lightest list so far)."""
    shares: list[list[Task]] = [[] for _ in range(count)]
    loads = [0] * count
    for task in sorted(tasks, key=lambda t: -t.size):
        lightest = loads.index(min(loads))
        shares[lightest].append(task)
        loads[lightest] += task.size
    return shares


def _forked(
    tasks: Sequence[Task], work: Callable[[Task], T], progress: Progress | None, count: int
) -> Iterator[T]:
    """``work`` over ``tasks`` in this process and ``count - 1`` forked children, each given its
    share up front; a child sends its pickled results (or its exception) through a pipe.

    Not a ``ProcessPoolExecutor``: importing it and starting its workers, queues and threads cost
    ~40 ms of a ~0.2 s trace, and it pickled ``work`` with every task; a fork shares it. The
    shares are fixed (the pieces are of equal size, so they balance), and this process works on
    its own share instead of waiting.
    """
    import pickle
    import signal

    shares = _shares(tasks, count)
    children: list[tuple[int, int, list[Task]]] = []
    try:
        for share in shares[1:]:
            if not share:
                continue
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: never returns into the caller's code
                status = 0
                try:
                    os.close(read_end)
                    try:
                        payload = pickle.dumps((True, [work(t) for t in share]), protocol=5)
                    except BaseException as exc:  # re-raised in the parent
                        try:
                            payload = pickle.dumps((False, exc), protocol=5)
                        except Exception:
                            payload = pickle.dumps((False, RuntimeError(repr(exc))), protocol=5)
                    with open(write_end, "wb") as pipe:
                        pipe.write(payload)
                except BaseException:
                    status = 1
                finally:
                    os._exit(status)
            os.close(write_end)
            children.append((pid, read_end, share))
        for task in shares[0]:
            yield work(task)
            if progress is not None:
                progress(task.size)
        while children:
            pid, read_end, share = children[0]
            with open(read_end, "rb") as pipe:
                payload = pipe.read()
            children.pop(0)
            os.waitpid(pid, 0)
            if not payload:
                raise RuntimeError(f"a scan worker (pid {pid}) ended without an answer")
            done, results = pickle.loads(payload)  # our own child's bytes
            if not done:
                raise results
            for task, result in zip(share, results, strict=True):
                yield result
                if progress is not None:
                    progress(task.size)
    finally:
        for pid, read_end, _ in children:  # stopped early (an error, or the caller closed us)
            os.close(read_end)
            try:
                # SIGKILL, not SIGTERM: a child inherits the parent's handlers and its signal
                # wakeup fd (obsctl serve's event loop), so a SIGTERM could be taken for the
                # server's own; the child holds nothing that needs cleaning up.
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


class Searchable(Protocol):
    """What the scans need of a buffer: ``find``/``rfind`` with bounds, like ``bytes``."""

    def find(self, sub: bytes, start: int, end: int, /) -> int: ...

    def rfind(self, sub: bytes, start: int, end: int, /) -> int: ...


@functools.cache
def _stringzilla() -> Any:
    """The stringzilla module (SIMD substring search, ~7x faster than ``bytes.find`` on these
    logs), or None where it is not installed: the scans then use the buffer's own ``find``."""
    import importlib

    try:
        return importlib.import_module("stringzilla")
    except ImportError:
        return None


def searchable(buf: Buffer) -> Searchable:
    """A fast view of ``buf`` for ``find``/``rfind`` (no copy). The view pins ``buf``: drop it
    before the buffer is closed (an mmap window cannot close while a view exists)."""
    sz = _stringzilla()
    if sz is None:
        return buf
    text: Searchable = sz.Str(memoryview(buf))
    return text


def _lines_with(
    buf: Searchable, lo: int, hi: int, needles: Sequence[bytes]
) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each line in ``buf[lo:hi]`` containing any needle (end at ``\\n``);
    with no needle, every line."""
    if not needles:
        pos = lo
        while pos < hi:
            end = buf.find(b"\n", pos, hi)
            if end < 0:
                return
            yield pos, end
            pos = end + 1
        return
    if len(needles) == 1:
        yield from _lines_of_hits(buf, lo, hi, needles[0], ())
        return
    spans: set[tuple[int, int]] = set()
    for prefix, group in _needle_groups(needles):
        # One pass for needles that differ only in their last byte (OTLP's eight error
        # severities: two passes instead of eight); a hit counts when one of them is there.
        if len(group) == 1:
            spans.update(_lines_of_hits(buf, lo, hi, group[0], ()))
        else:
            spans.update(_lines_of_hits(buf, lo, hi, prefix, group))
    yield from sorted(spans)


def _lines_of_hits(
    buf: Searchable, lo: int, hi: int, prefix: bytes, group: Sequence[bytes]
) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each line of ``buf[lo:hi]`` holding ``prefix``, in order; with a
    ``group``, only where one of its needles (which all start with ``prefix``) is at the hit."""
    pos = lo
    while True:
        hit = buf.find(prefix, pos, hi)
        if hit < 0:
            return
        if group and not any(buf.find(n, hit, hit + len(n)) == hit for n in group):
            pos = hit + 1
            continue
        start = buf.rfind(b"\n", lo, hit) + 1
        end = buf.find(b"\n", hit, hi)
        yield max(start, lo), end
        pos = end + 1


def _needle_groups(needles: Sequence[bytes]) -> list[tuple[bytes, tuple[bytes, ...]]]:
    """Needles grouped by all but their last byte: ``(shared prefix, needles)``."""
    groups: dict[bytes, list[bytes]] = {}
    for needle in needles:
        groups.setdefault(needle[:-1] if len(needle) > 8 else needle, []).append(needle)
    return [(prefix, tuple(group)) for prefix, group in groups.items()]


# ---------------------------------------------------------------------------------------- trace


@dataclass
class TraceHits:
    """Lines of one task that contain the ID, with the task's damage counts."""

    index: int
    lines: list[tuple[int, bytes]] = field(default_factory=list)
    damage: Damage = field(default_factory=Damage)


def _trace_task(task: Task, needle: bytes) -> TraceHits:
    hits = TraceHits(task.index)
    for buf, lo, hi, base in iter_blocks(task.log, hits.damage, start=task.start, end=task.end):
        text = searchable(buf)
        try:
            for start, end in _lines_with(text, lo, hi, (needle,)):
                hits.lines.append((base + start, bytes(buf[start:end])))
        finally:
            del text  # before the generator closes the mmap window
    return hits


class _TraceWork:
    def __init__(self, needle: bytes) -> None:
        self.needle = needle

    def __call__(self, task: Task) -> TraceHits:
        return _trace_task(task, self.needle)


def find_trace_records(
    logs: Sequence[LogFile],
    query: str,
    damage: Damage,
    *,
    progress: Progress | None = None,
    fields: FieldMap = NO_MAP,
) -> list[Record]:
    """Records whose ``correlation_id`` or ``trace_id`` starts with ``query`` (the full ID or a
    prefix), in any shape obsctl reads (the quoted ID is the one needle all shapes share)."""
    # With stringzilla the search itself is nearly free and mapping the pages is the cost, which
    # both cores share well (1 GB: 0.085 s against 0.14 s). With bytes.find a second process
    # was measured slower than one; several compressed files are always worth spreading.
    compressed = sum(1 for log in logs if log.kind != "plain")
    parallel = compressed > 1 or _stringzilla() is not None
    tasks = plan_tasks(logs, workers=None if parallel else 1)
    records: list[Record] = []
    work = _TraceWork(query.encode())
    for hits in _run(tasks, work, progress, parallel=parallel):
        damage.merge(hits.damage)
        source = tasks[hits.index].log.path
        for offset, line in hits.lines:
            found, reason = parse_records_checked(
                line, source=source, offset=offset, seq=(hits.index << 40) + offset, fields=fields
            )
            if reason is not None:
                damage.line(reason, source)
            for record in found:  # an OTLP line holds records of other requests too
                if record.has_id(query):
                    records.append(record)
    return records


# ------------------------------------------------------------------------------------ errors top


#: The pre-filter sniffs at least this much of a file's start, and always to the end of a line.
HEAD_BYTES = 4096


def _file_head(log: LogFile) -> bytes:
    """The start of ``log`` for the pre-filter's sniff, cut at a line's end: an OTLP batch line is
    often longer than 4 KiB, and a cut first line left every line of the file a candidate."""
    damage = Damage()
    for buf, lo, hi, _ in iter_blocks(log, damage, block_bytes=MAX_LINE_BYTES):
        chunk = bytes(buf[lo:hi])
        end = chunk.find(b"\n", HEAD_BYTES)
        return chunk if end < 0 else chunk[: end + 1]
    return b""


def _with_access(record: Record, access: Record) -> Record:
    data = dict(record.data)
    for key in ("method", "path", "route", "status", "duration_ms"):
        if key not in data and key in access.data:
            data[key] = access.data[key]
    return Record(data, record.raw, record.strict, record.source, record.offset, record.seq)


#: Public seam: other record sources (Loki) complete an error record with its access line.
with_access = _with_access


def _access_in(
    data: Buffer, cid: bytes, lo: int, hi: int, *, backwards: bool, text: Searchable | None = None
) -> dict[str, Any] | None:
    """The access line (``request finished``) of ``cid`` within ``data[lo:hi]``, if any."""
    marker = ACCESS_MESSAGE.encode()
    wanted = cid.decode()
    find = text if text is not None else data
    pos = hi if backwards else lo
    while True:
        hit = find.rfind(cid, lo, pos) if backwards else find.find(cid, pos, hi)
        if hit < 0:
            return None
        start = find.rfind(b"\n", lo, hit) + 1
        end = find.find(b"\n", hit, hi)
        end = hi if end < 0 else end
        line = bytes(data[max(start, lo) : end])
        if marker in line:
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                doc = None
            if isinstance(doc, dict) and doc.get("correlation_id") == wanted:
                return doc
        if backwards:
            pos = max(start, lo) - 1
            if pos <= lo:
                return None
        else:
            pos = end + 1


def _error_fields(
    line: bytes, source: str, damage: Damage, fields: FieldMap
) -> tuple[list[tuple[dict[str, Any], float | None]], bool]:
    """The fields and epoch of each record of a candidate line (orjson directly for schema v1;
    the full parser for anything else: damage, NaN, NUL runs, the other shapes, ``--map``), and
    whether they may join an access line (schema v1's, the only shape that writes them)."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        doc = None
    if not fields and isinstance(doc, dict) and "correlation_id" in doc and "ts" in doc:
        ts = doc.get("ts")
        return [(doc, ts_to_epoch(ts) if isinstance(ts, str) else None)], True
    if isinstance(doc, dict):
        records, reason = records_of_doc(
            doc, line, fields=fields, own_lines=False, errors_only=True
        )
    else:  # damaged, NaN tokens, NUL runs: the full parser says which
        records, reason = parse_records_checked(
            line, fields=fields, own_lines=False, errors_only=True
        )
    if reason is not None:
        damage.line(reason, source)
    return [(record.data, record.epoch) for record in records], False


def _bytes_before(path: str, offset: int) -> bytes:
    with open(path, "rb") as handle:
        start = max(0, offset - ACCESS_WINDOW)
        handle.seek(start)
        return handle.read(offset - start)


@dataclass
class ErrorPart:
    accumulator: ErrorAccumulator
    damage: Damage = field(default_factory=Damage)


class _ErrorWork:
    def __init__(
        self, by: str, since: float | None, until: float | None, fields: FieldMap = NO_MAP
    ) -> None:
        self.by = by
        self.since = since
        self.until = until
        self.fields = fields

    def __call__(self, task: Task) -> ErrorPart:
        part = ErrorPart(ErrorAccumulator(self.by, since=self.since, until=self.until))
        add = part.accumulator.add_fields
        needles = error_needles(_file_head(task.log), self.fields) or ()
        pending: list[tuple[dict[str, Any], float | None, bytes]] = []
        # A crash logs its error after its access line, which may sit just before this range.
        previous_tail = _bytes_before(task.log.path, task.start) if task.start else b""
        source = task.log.path
        blocks = iter_blocks(task.log, part.damage, start=task.start, end=task.end)
        for buf, lo, hi, _base in blocks:
            text = searchable(buf)
            try:
                pending = self._block(
                    buf,
                    text,
                    span=(lo, hi),
                    needles=needles,
                    pending=pending,
                    previous_tail=previous_tail,
                    part=part,
                    source=source,
                )
            finally:
                del text  # before the generator closes the mmap window
            previous_tail = bytes(buf[max(lo, hi - ACCESS_WINDOW) : hi])
        if pending and task.end is not None:
            with open(task.log.path, "rb") as handle:
                handle.seek(task.end)
                after = handle.read(ACCESS_WINDOW)
            self._resolve(pending, after, 0, after.rfind(b"\n") + 1, add)
        elif pending:
            for data, epoch, _ in pending:
                add(data, epoch)
        return part

    def _block(
        self,
        buf: Buffer,
        text: Searchable,
        *,
        span: tuple[int, int],
        needles: Sequence[bytes],
        pending: list[tuple[dict[str, Any], float | None, bytes]],
        previous_tail: bytes,
        part: ErrorPart,
        source: str,
    ) -> list[tuple[dict[str, Any], float | None, bytes]]:
        """Count the error lines of one block; return those whose access line may be in the
        next block."""
        lo, hi = span
        add = part.accumulator.add_fields
        if pending:
            self._resolve(pending, buf, lo, min(hi, lo + ACCESS_WINDOW), add)
            pending = []
        for start, end in _lines_with(text, lo, hi, needles):
            found, joinable = _error_fields(bytes(buf[start:end]), source, part.damage, self.fields)
            if not joinable:
                for data, epoch in found:
                    add(data, epoch)
                continue
            for data, epoch in found:
                pending = self._record(
                    buf,
                    text,
                    data,
                    epoch,
                    span=(lo, hi),
                    line=(start, end),
                    pending=pending,
                    previous_tail=previous_tail,
                    add=add,
                )
        return pending

    def _record(
        self,
        buf: Buffer,
        text: Searchable,
        data: dict[str, Any],
        epoch: float | None,
        *,
        span: tuple[int, int],
        line: tuple[int, int],
        pending: list[tuple[dict[str, Any], float | None, bytes]],
        previous_tail: bytes,
        add: Callable[..., bool],
    ) -> list[tuple[dict[str, Any], float | None, bytes]]:
        """Count one error record, joined with its access line when it is near."""
        lo, hi = span
        start, end = line
        cid = data.get("correlation_id")
        if not isinstance(cid, str) or not cid or data.get("route") or data.get("path"):
            add(data, epoch)
            return pending
        if data.get("job"):  # a job's error: its request's access line has another route
            add(data, epoch)
            return pending
        level = data.get("level")
        if level not in _ERROR_LEVELS and (not isinstance(level, str) or level_rank(level) < 40):
            return pending
        needle = cid.encode()
        later = min(hi, end + ACCESS_WINDOW)
        access = _access_in(buf, needle, end, later, backwards=False, text=text)
        if access is None:
            earlier = max(lo, start - ACCESS_WINDOW)
            access = _access_in(buf, needle, earlier, start, backwards=True, text=text)
        if access is None and start - lo < ACCESS_WINDOW and previous_tail:
            access = _access_in(previous_tail, needle, 0, len(previous_tail), backwards=True)
        if access is None and end + ACCESS_WINDOW > hi:
            pending.append((data, epoch, needle))
            return pending
        add(data, epoch, access)
        return pending

    @staticmethod
    def _resolve(
        pending: list[tuple[dict[str, Any], float | None, bytes]],
        data: Buffer,
        lo: int,
        hi: int,
        add: Callable[[dict[str, Any], float | None, dict[str, Any] | None], bool],
    ) -> None:
        for fields, epoch, needle in pending:
            add(fields, epoch, _access_in(data, needle, lo, hi, backwards=False))


def collect_errors(
    logs: Sequence[LogFile],
    *,
    by: str,
    since: float | None,
    until: float | None,
    damage: Damage,
    progress: Progress | None = None,
    fields: FieldMap = NO_MAP,
) -> ErrorAccumulator:
    """ERROR and CRITICAL records of ``logs`` in ``[since, until)``, grouped ``by``."""
    total = ErrorAccumulator(by, since=since, until=until)
    for part in _run(plan_tasks(logs), _ErrorWork(by, since, until, fields), progress):
        total.merge(part.accumulator)
        damage.merge(part.damage)
    return total


# ------------------------------------------------------------------------------------------ tail


def _reverse_lines(log: LogFile, damage: Damage) -> Iterator[tuple[int, bytes]]:
    """Complete lines of a plain file from the last to the first, read in blocks from the end.

    A final line without ``\n`` is reported as incomplete and skipped; a line longer than
    :data:`~obsctl.sources.files.BLOCK_BYTES` is reported as oversized and skipped (bounded memory).
    """
    with open(log.path, "rb") as handle:
        position = handle.seek(0, os.SEEK_END)
        carry = b""
        tail_checked = False
        oversized = False
        while position > 0:
            start = max(0, position - (1 << 20))
            handle.seek(start)
            chunk = handle.read(position - start) + carry
            position = start
            lines = chunk.split(b"\n")
            if len(lines) == 1:
                carry = chunk
                if len(carry) > files.BLOCK_BYTES:
                    carry = b""
                    oversized = True
                continue
            # Trap: only the file's own end (or the rest of an oversized line) is cut off here.
            # In every later chunk the part after its last newline, joined to the carry, is a
            # whole line: dropping it lost one line per block read.
            if oversized or not tail_checked:
                last = lines.pop()
                if oversized:
                    damage.line("oversized", log.path)
                    oversized = False
                elif last.strip(b"\x00 \t\r"):
                    damage.line("incomplete final", log.path)
                tail_checked = True
            carry = lines[0]
            offset = position + len(carry) + 1
            offsets = []
            for line in lines[1:]:
                offsets.append(offset)
                offset += len(line) + 1
            for line_offset, line in zip(reversed(offsets), reversed(lines[1:]), strict=True):
                if len(line) > files.BLOCK_BYTES:  # as forward reading does
                    damage.line("oversized", log.path)
                    continue
                yield line_offset, line
        if oversized:
            damage.line("oversized", log.path)
        elif carry and not tail_checked:
            damage.line("incomplete final", log.path)
        elif carry:
            yield 0, carry


def _last_in_file(
    log: LogFile, count: int, keep: RecordFilter, damage: Damage, fields: FieldMap
) -> list[Record]:
    needle = keep.needle()
    found: deque[Record] = deque(maxlen=count)
    if log.kind == "plain":
        for offset, line in _reverse_lines(log, damage):
            if needle is not None and needle not in line:
                continue
            records = _parsed(line, log.path, offset, damage, fields)
            if not records:
                continue
            epoch = records[-1].epoch
            if keep.since is not None and epoch is not None and epoch < keep.since:
                break
            for record in reversed(records):
                if keep(record) and len(found) < count:
                    found.appendleft(record)
            if len(found) >= count:
                break
        return list(found)
    for buf, lo, hi, base in iter_blocks(log, damage):
        chunk = bytes(buf[lo:hi])
        pos = 0
        while pos < len(chunk):
            newline = chunk.find(b"\n", pos)
            line = chunk[pos:newline]
            if needle is None or needle in line:
                for record in _parsed(line, log.path, base + lo + pos, damage, fields):
                    if keep(record):
                        found.append(record)
            pos = newline + 1
    return list(found)


def _parsed(
    line: bytes, source: str, offset: int, damage: Damage, fields: FieldMap = NO_MAP
) -> list[Record]:
    records, reason = parse_records_checked(
        line, source=source, offset=offset, seq=offset, fields=fields
    )
    if reason is not None:
        damage.line(reason, source)
    return records


def last_records(
    logs: Sequence[LogFile],
    count: int,
    keep: RecordFilter,
    damage: Damage,
    *,
    fields: FieldMap = NO_MAP,
) -> list[Record]:
    """The last ``count`` records (by time, over all files) that ``keep`` accepts."""
    if count <= 0:
        return []
    from obsctl.analysis.analyse import order_records

    merged: list[Record] = []
    for index, log in enumerate(logs):
        for record in _last_in_file(log, count, keep, damage, fields):
            merged.append(
                Record(
                    record.data,
                    record.raw,
                    record.strict,
                    record.source,
                    record.offset,
                    (index << 40) + record.offset,
                )
            )
    return order_records(merged)[-count:]


# ---------------------------------------------------------------------------------------- follow


#: Polls a file that vanished from the listing stays open before it is forgotten.
_MISSING_POLLS = 40


@dataclass
class _Followed:
    path: str
    handle: IO[bytes]
    position: int
    partial: bytes = b""
    skipping: bool = False
    missing: int = 0  # consecutive polls in which its name was not found


class Follower:
    """New complete lines of the files named by ``paths`` (files, directories, globs), like
    ``tail -F``: a renamed (rotated) file is read to its end, a file that appears is read from
    its start, a truncated file from its new start; a partial last line waits for its ``\\n``.
    Compressed files are history, not followed. Call :meth:`poll` repeatedly."""

    def __init__(
        self,
        paths: Sequence[str],
        *,
        default_dir: str,
        from_start: bool = False,
        fields: FieldMap = NO_MAP,
    ) -> None:
        self._paths = list(paths)
        self._fields = fields
        self._default_dir = default_dir
        self._files: dict[tuple[int, int], _Followed] = {}
        self.damage = Damage()
        if not from_start:
            self._scan(initial=True)

    def close(self) -> None:
        for state in self._files.values():
            _close(state)
        self._files.clear()

    def _current(self) -> list[LogFile]:
        try:
            return [
                log
                for log in expand_paths(self._paths, default_dir=self._default_dir)
                if log.kind == "plain"
            ]
        except Exception:  # a directory or glob may be empty for a moment during rotation
            return []

    def _scan(self, *, initial: bool) -> list[tuple[str, int, bytes]]:
        lines: list[tuple[str, int, bytes]] = []
        seen: set[tuple[int, int]] = set()
        for log in self._current():
            try:
                stat = os.stat(log.path)
            except OSError:
                continue
            key = (stat.st_dev, stat.st_ino)
            seen.add(key)
            state = self._files.get(key)
            if state is None:
                try:
                    handle = open(log.path, "rb")  # noqa: SIM115 - owned by the follower
                except OSError:
                    continue
                state = _Followed(log.path, handle, stat.st_size if initial else 0)
                self._files[key] = state
            state.path = log.path
            state.missing = 0
            if stat.st_size < state.position:
                state.position = 0  # truncated in place (copytruncate)
                state.partial = b""
            lines.extend(_read_new(state, self.damage))
        for key in [k for k in self._files if k not in seen]:
            # Rotated away, deleted, or renamed between the listing and the stat: drain what was
            # written, and keep the file open a while (its inode cannot be reused meanwhile), so
            # that if it shows up under its new name it continues where it was, not from 0.
            state = self._files[key]
            lines.extend(_read_new(state, self.damage))
            state.missing += 1
            if state.missing > _MISSING_POLLS:
                _close(self._files.pop(key))
        return lines

    def poll(self) -> list[Record]:
        """Records completed since the last poll, in time order."""
        records = []
        for source, offset, line in self._scan(initial=False):
            records.extend(_parsed(line, source, offset, self.damage, self._fields))
        records.sort(key=lambda r: r.ts)
        return records


def _close(state: _Followed) -> None:
    state.handle.close()


def _read_new(state: _Followed, damage: Damage) -> list[tuple[str, int, bytes]]:
    """Complete lines appended since the last read; the unfinished last line waits in
    ``state.partial`` for its ``\n``; a line that outgrows the block size is skipped."""
    handle = state.handle
    out: list[tuple[str, int, bytes]] = []
    while True:
        try:
            handle.seek(state.position)
            data = handle.read(files.BLOCK_BYTES)
        except OSError:
            return out
        if not data:
            return out
        state.position += len(data)
        text = state.partial + data
        pieces = text.split(b"\n")
        state.partial = pieces.pop()
        offset = state.position - len(text)
        for piece in pieces:
            if state.skipping:
                state.skipping = False  # the end of the oversized line
            else:
                out.append((state.path, offset, piece))
            offset += len(piece) + 1
        if len(state.partial) > files.BLOCK_BYTES:
            damage.line("oversized", state.path)
            state.partial = b""
            state.skipping = True
