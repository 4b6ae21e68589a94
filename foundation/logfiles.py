"""foundation's log files: rotation in the log call, compression and retention in the background.

Loguru's own file sink compresses (gzip level 9) and runs retention inside the log call that
triggers a rotation, holding its handler lock: the call waits seconds, on the event loop. It
writes the ``.gz`` straight to its final name, so a crash leaves a truncated archive that its
count retention may keep while deleting the complete original. This module replaces it.

* :class:`RotatingFile` is the sink's target. A log call only writes; the call that crosses
  the size (or time) limit renames the live file to ``<stem>.<T>.jsonl`` (T: UTC rotation time),
  opens the next one and hands the rotated path to the housekeeper. It never compresses.
* :class:`Housekeeper` is one background thread per sink: it compresses queued files
  (:func:`compress_rotated`: hidden temporary name, fsync, rename, fsync the directory, then
  unlink the source) and runs :func:`housekeep` passes at start, after rotations and
  periodically: finish what crashed processes left, rotate the last live file of processes that
  are gone, and apply retention to every file of the service, whichever process wrote it.
* :func:`write_archive` writes the archive: a multi-member gzip file whose members (about
  4 MiB of whole lines each) carry an ``FX`` extra subfield with their compressed size and the
  smallest and largest ``ts`` they hold, so a reader can hop to a time without inflating.

Ownership: a live file is held with an exclusive ``flock`` by the process writing it. Another
process touches a live-named file only when its pid (in ``<service>-<pid>.jsonl``) is not
running *and* the lock can be taken; a rotated file is compressed or deleted only by whoever
holds its lock, so two processes never work on the same file.
"""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import errno
import fcntl
import os
import re
import struct
import sys
import threading
import time
import weakref
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = [
    "ARCHIVE_LEVEL",
    "MEMBER_BYTES",
    "Housekeeper",
    "Retention",
    "RotatingFile",
    "Rotation",
    "compress_rotated",
    "housekeep",
    "parse_name",
    "write_archive",
]

#: Uncompressed bytes per gzip member (cut at the next line end).
MEMBER_BYTES = 4 << 20
#: zlib level: 8 (memLevel 9) is within 0.2 % of gzip -9's size for JSON lines and a little
#: faster than Loguru's level 9; level 6 would be 5 % larger.
ARCHIVE_LEVEL = 8
_MEM_LEVEL = 9
_READ_BYTES = 1 << 20

_STAMP = "%Y-%m-%dT%H-%M-%S-%fZ"
_T = r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{6}Z"
# Loguru's own rotated names (local time, creation or last write): still this service's files.
_LEGACY_T = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d{6}"

# A member's first line, and every later line start, when the line is foundation's (ts first).
_TS_FIRST = re.compile(rb'\{"ts":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6})Z"')
_TS_NEXT = re.compile(rb'\n\{"ts":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6})Z"')


# -- names -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileName:
    """One of a service's files, parsed from its name."""

    name: str
    stem: str  # "<service>" or "<service>-<pid>"
    pid: int | None
    stamp: str | None  # T of a rotated file or archive (ours or Loguru's), None for a live file
    counter: int  # the ".2" of a name collision, else 1
    legacy: bool  # named by Loguru's own rotation (local time): aged by mtime
    archive: bool  # ".gz"
    temporary: bool  # ".<...>.gz.tmp": an archive being written

    @property
    def live(self) -> bool:
        return self.stamp is None

    @property
    def unit(self) -> tuple[str, str, int]:
        """What the plain file, its archive and its temporary file share."""
        return (self.stem, self.stamp or "", self.counter)

    @property
    def plain_name(self) -> str:
        return self.name.removeprefix(".").removesuffix(".tmp").removesuffix(".gz")


def name_pattern(service: str) -> re.Pattern[str]:
    """Names of ``service``'s files only: ``shop-12.jsonl`` is shop's, ``shop-admin-12`` is not."""
    return re.compile(
        rf"(?P<stem>{re.escape(service)}(?:-(?P<pid>\d+))?)"
        rf"(?:\.(?:(?P<t>{_T})|(?P<legacy>{_LEGACY_T}))(?:\.(?P<n>\d+))?)?"
        r"\.jsonl(?P<gz>\.gz)?"
    )


def parse_name(pattern: re.Pattern[str], name: str) -> FileName | None:
    temporary = name.startswith(".") and name.endswith(".gz.tmp")
    base = name[1:-4] if temporary else name
    match = pattern.fullmatch(base)
    if match is None:
        return None
    stamp = match["t"] or match["legacy"]
    archive = match["gz"] is not None
    if (stamp is None and archive) or (temporary and match["t"] is None):
        return None  # a live file is never compressed; only ours have temporary archives
    return FileName(
        name=name,
        stem=match["stem"],
        pid=int(match["pid"]) if match["pid"] else None,
        stamp=stamp,
        counter=int(match["n"] or 1),
        legacy=match["legacy"] is not None,
        archive=archive,
        temporary=temporary,
    )


def stamp_of(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime(_STAMP)


def stamp_time(stamp: str) -> float:
    """Seconds since the epoch of one of our stamps (UTC)."""
    parsed = dt.datetime.strptime(stamp, _STAMP).replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _rotated_path(directory: str, stem: str, moment: float) -> str:
    """``<stem>.<T>.jsonl``, or ``.2``, ``.3``... when that rotation (or its archive) exists."""
    stamp = stamp_of(moment)
    counter = 1
    while True:
        name = f"{stem}.{stamp}.jsonl" if counter == 1 else f"{stem}.{stamp}.{counter}.jsonl"
        path = os.path.join(directory, name)
        if not any(
            os.path.lexists(candidate)
            for candidate in (path, path + ".gz", os.path.join(directory, f".{name}.gz.tmp"))
        ):
            return path
        counter += 1


# -- locks -------------------------------------------------------------------------------------


def _try_lock(fd: int) -> bool:
    # flock, not fcntl/lockf: POSIX locks belong to the process and vanish when *any* of its
    # descriptors of the file is closed; flock locks belong to the open file description, so
    # a second open in the same process conflicts like another process would.
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _same_file(fd: int, path: str) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not renamed away meanwhile)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


@contextlib.contextmanager
def _locked(path: str) -> Iterator[int | None]:
    """The file open and exclusively locked, or None when it is gone or someone holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield None
        return
    try:
        yield fd if _try_lock(fd) and _same_file(fd, path) else None
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the archive -------------------------------------------------------------------------------


def _micros(ts: bytes) -> int:
    """``2026-11-26T04:31:59.123456`` (UTC) as microseconds since the epoch."""
    seconds = calendar.timegm(
        (int(ts[0:4]), int(ts[5:7]), int(ts[8:10]), int(ts[11:13]), int(ts[14:16]),
         int(ts[17:19]), 0, 0, 0)
    )  # fmt: skip
    return seconds * 1_000_000 + int(ts[20:26])


def _time_range(data: bytes) -> tuple[int, int]:
    """Smallest and largest ``ts`` of the lines in ``data`` (``-1, -1`` when none has one)."""
    end = data.rfind(b"\n") + 1  # a final line without its end (a crash) is not a record
    stamps = _TS_NEXT.findall(data, 0, end)
    first = _TS_FIRST.match(data, 0, end)
    if first is not None:
        stamps.append(first[1])
    if not stamps:
        return -1, -1
    try:
        return _micros(min(stamps)), _micros(max(stamps))
    except ValueError:  # digits in the wrong places: not a time we can vouch for
        return -1, -1


def member(data: bytes, *, level: int = ARCHIVE_LEVEL) -> bytes:
    """One gzip member holding ``data``, its header carrying the ``FX`` subfield."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, _MEM_LEVEL)
    body = compressor.compress(data) + compressor.flush()
    low, high = _time_range(data)
    # 10-byte header + XLEN + (SI1 SI2 LEN + 24-byte payload) + body + CRC32 + ISIZE
    total = 10 + 2 + 28 + len(body) + 8
    xfl = 2 if level == 9 else 4 if level == 1 else 0
    header = struct.pack("<BBBBIBBH", 0x1F, 0x8B, 8, 0x04, 0, xfl, 3, 28)
    extra = b"FX" + struct.pack("<HQqq", 24, total, low, high)
    trailer = struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)
    return header + extra + body + trailer


def write_archive(
    source: int,
    target: int,
    *,
    level: int = ARCHIVE_LEVEL,
    should_stop: Callable[[], bool] = lambda: False,
) -> bool:
    """Compress the open file ``source`` into ``target``, member by member; False if stopped.

    Members are cut after the last line end once ``MEMBER_BYTES`` are pending, so every member
    holds whole lines; a final line without its ``\\n`` (a crash mid-write) is kept as it is.
    """
    pending = b""
    while True:
        want = MEMBER_BYTES - len(pending) if len(pending) < MEMBER_BYTES else _READ_BYTES
        chunk = os.read(source, want)
        if not chunk:
            if pending:
                _write_all(target, member(pending, level=level))
            return True
        pending += chunk
        if len(pending) < MEMBER_BYTES:
            continue
        cut = pending.rfind(b"\n") + 1
        if cut == 0:  # one line longer than a member: the member runs to that line's end
            continue
        _write_all(target, member(pending[:cut], level=level))
        pending = pending[cut:]
        if should_stop():
            return False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def compress_rotated(
    path: str, *, level: int = ARCHIVE_LEVEL, should_stop: Callable[[], bool] = lambda: False
) -> str:
    """Turn the rotated file ``path`` into ``path + ".gz"``; what happened, in a word.

    Crash-safe at every step: the archive is written to ``.<name>.gz.tmp`` (hidden from
    readers and retention), fsynced, renamed to its final name, the directory fsynced, and only
    then is the source unlinked. A file someone else holds is left to them ("busy"). An
    archive of ours that already exists next to its source is complete (only a finished
    archive is ever renamed to that name): the source is just unlinked. A Loguru archive next
    to its source may be truncated (Loguru writes in place), so it is written again.
    """
    directory, name = os.path.split(path)
    final = path + ".gz"
    temporary = os.path.join(directory, f".{name}.gz.tmp")
    with _locked(path) as source:
        if source is None:
            return "busy" if os.path.exists(path) else "gone"
        legacy = re.search(_T, name) is None
        if os.path.exists(final) and not legacy:
            os.unlink(path)
            return "finished"
        target = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            done = write_archive(source, target, level=level, should_stop=should_stop)
            if done:
                os.fsync(target)
        finally:
            os.close(target)
        if not done:
            os.unlink(temporary)  # the source is intact: the next pass starts again
            return "stopped"
        stat = os.fstat(source)
        os.utime(temporary, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        os.replace(temporary, final)
        _fsync_dir(directory or ".")
        os.unlink(path)
    return "compressed"


# -- rotation rules ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rotation:
    """When the live file rotates: past ``size`` bytes and/or at the next time boundary."""

    size: int | None = None
    interval: dt.timedelta | None = None
    frequency: Callable[[dt.datetime], dt.datetime] | None = None
    weekday: int | None = None
    at: dt.time | None = None

    @classmethod
    def parse(cls, value: str | int | dt.timedelta | dt.time | None) -> Rotation | None:
        """Loguru's rotation forms: ``"100 MB"``, bytes, ``"1 day"``, ``"daily"``, ``"00:00"``,
        ``"monday at 12:00"``, a ``timedelta`` or a ``time``."""
        from loguru import _string_parsers as parsers  # Loguru's own parsers, same meaning

        if value is None:
            return None
        if isinstance(value, bool):
            raise TypeError("rotation must be a size, a duration or a time, not a bool")
        if isinstance(value, int | float):
            return cls(size=int(value))
        if isinstance(value, dt.timedelta):
            return cls(interval=value)
        if isinstance(value, dt.time):
            return cls(at=value)
        if not isinstance(value, str):
            raise TypeError(f"cannot use {type(value).__name__} as a rotation")
        size = parsers.parse_size(value)  # type: ignore[no-untyped-call]
        if size is not None:
            return cls(size=int(size))
        interval = parsers.parse_duration(value)  # type: ignore[no-untyped-call]
        if interval is not None:
            return cls(interval=interval)
        frequency = parsers.parse_frequency(value)  # type: ignore[no-untyped-call]
        if frequency is not None:
            return cls(frequency=frequency)
        daytime = parsers.parse_daytime(value)  # type: ignore[no-untyped-call]
        if daytime is not None:
            day, at = daytime
            return cls(weekday=day, at=at if at is not None else dt.time(0, 0))
        raise ValueError(
            f"cannot parse rotation {value!r} (a size like '100 MB', a duration like '1 day', "
            "'daily', or a time like '00:00' or 'monday at 12:00')"
        )

    def deadline(self, now: float) -> float | None:
        """The next time-based rotation after ``now`` (local wall time, like Loguru)."""
        if self.interval is not None:
            return now + max(self.interval.total_seconds(), 0.001)
        local = dt.datetime.fromtimestamp(now)
        if self.frequency is not None:
            return self.frequency(local).timestamp()
        if self.at is None:
            return None
        at = self.at
        candidate = local.replace(
            hour=at.hour, minute=at.minute, second=at.second, microsecond=at.microsecond
        )
        weekday = self.weekday
        while candidate <= local or (weekday is not None and candidate.weekday() != weekday):
            candidate += dt.timedelta(days=1)
        return candidate.timestamp()


@dataclass(frozen=True, slots=True)
class Retention:
    """Which closed files to keep: younger than ``age`` seconds and/or the ``count`` newest."""

    age: float | None = None
    count: int | None = None

    @classmethod
    def parse(cls, value: str | int | dt.timedelta | None) -> Retention | None:
        """Loguru's retention forms: ``"14 days"`` (or a ``timedelta``), or a file count."""
        from loguru import _string_parsers as parsers

        if value is None:
            return None
        if isinstance(value, bool):
            raise TypeError("retention must be a duration or a number of files, not a bool")
        if isinstance(value, int):
            if value < 0:
                raise ValueError(f"retention count must be >= 0, not {value}")
            return cls(count=value)
        if isinstance(value, dt.timedelta):
            return cls(age=value.total_seconds())
        if isinstance(value, str):
            interval = parsers.parse_duration(value)  # type: ignore[no-untyped-call]
            if interval is not None:
                return cls(age=interval.total_seconds())
            if value.strip().isdigit():
                return cls(count=int(value))
            raise ValueError(
                f"cannot parse retention {value!r} (a duration like '14 days', or a file count)"
            )
        raise TypeError(f"cannot use {type(value).__name__} as a retention")


def parse_compression(value: str | None) -> bool:
    """Whether to compress: ``"gz"`` (foundation's seekable gzip) or off."""
    if value is None or value.strip().lower() in {"", "none", "off"}:
        return False
    if value.strip().lower().lstrip(".") == "gz":
        return True
    raise ValueError(
        f"unsupported log compression {value!r}: use 'gz' (multi-member gzip that zcat, "
        "gzip -t and obsctl read), or None to keep rotated files uncompressed"
    )


# -- the housekeeping pass ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PassResult:
    rotated: tuple[str, ...] = ()
    compressed: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()


def housekeep(
    directory: str,
    service: str,
    *,
    compress: bool,
    retention: Retention | None,
    own: frozenset[str] = frozenset(),
    now: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> PassResult:
    """One pass over ``service``'s files in ``directory`` (never another service's).

    1. A live file (``<service>.jsonl``, ``<service>-<pid>.jsonl``) that is not one of ``own``,
       whose pid is not running and whose lock can be taken, belonged to a process that is
       gone: it is renamed like a rotation (T = its last write) and handled as one.
    2. Retention: rotations (plain file, archive, temporary archive: one unit) older than
       ``retention.age`` by their rotation time, or beyond the ``retention.count`` newest, are
       deleted, all files of the unit together and only while nobody holds its plain file.
    3. With ``compress``, every remaining rotated plain file is compressed (a crash's
       leftovers, or rotations still queued), unless another process holds it.
    """
    now = time.time() if now is None else now
    pattern = name_pattern(service)
    try:
        names = os.listdir(directory)
    except OSError:  # no directory (yet), or not one: the sink itself reports write failures
        return PassResult()
    files = [f for f in (parse_name(pattern, n) for n in names) if f is not None]
    rotated: list[str] = []
    for file in files:
        if file.live and file.name not in own:
            moved = _adopt_orphan(directory, file)
            if moved is not None:
                rotated.append(moved)
    if rotated:  # re-list: the orphans now have rotated names
        names = os.listdir(directory)
        files = [f for f in (parse_name(pattern, n) for n in names) if f is not None]
    units: dict[tuple[str, str, int], list[FileName]] = {}
    for file in files:
        if not file.live:
            units.setdefault(file.unit, []).append(file)
    ages = {key: _unit_time(directory, parts) for key, parts in units.items()}
    doomed: set[tuple[str, str, int]] = set()
    if retention is not None:
        if retention.age is not None:
            doomed.update(key for key, moment in ages.items() if moment <= now - retention.age)
        if retention.count is not None:
            newest = sorted(ages, key=lambda key: (-ages[key], key))
            doomed.update(newest[retention.count :])
    deleted: list[str] = []
    for key in sorted(doomed):
        deleted.extend(_delete_unit(directory, units[key]))
    compressed: list[str] = []
    if compress:
        for key in sorted(set(units) - doomed, key=lambda k: ages[k]):
            if should_stop():
                break
            for file in units[key]:
                if not file.archive and not file.temporary:
                    path = os.path.join(directory, file.name)
                    if compress_rotated(path, should_stop=should_stop) == "compressed":
                        compressed.append(path)
    return PassResult(tuple(rotated), tuple(compressed), tuple(deleted))


def _unit_time(directory: str, parts: list[FileName]) -> float:
    """A rotation's time: T from our names (UTC), else the last write (Loguru's names)."""
    first = parts[0]
    if first.stamp is not None and not first.legacy:
        return stamp_time(first.stamp)
    times = []
    for part in parts:
        with contextlib.suppress(FileNotFoundError):
            times.append(os.stat(os.path.join(directory, part.name)).st_mtime)
    return max(times, default=0.0)


def _adopt_orphan(directory: str, file: FileName) -> str | None:
    """Rename a gone process's live file like a rotation; None when it is (or may be) in use."""
    if file.pid is not None and pid_alive(file.pid):
        return None
    path = os.path.join(directory, file.name)
    with _locked(path) as fd:
        if fd is None:
            return None
        stat = os.fstat(fd)
        if stat.st_size == 0:
            os.unlink(path)  # an empty file says nothing: no rotation, no archive
            return None
        target = _rotated_path(directory, file.stem, stat.st_mtime)
        os.rename(path, target)
        return target


def _delete_unit(directory: str, parts: list[FileName]) -> list[str]:
    plain = next((p for p in parts if not p.archive and not p.temporary), None)
    others = [os.path.join(directory, p.name) for p in parts if p is not plain]
    if plain is None:
        return [path for path in others if _unlink(path)]
    path = os.path.join(directory, plain.name)
    with _locked(path) as fd:
        if fd is None:
            if os.path.exists(path):
                return []  # being compressed by someone: next pass
            return [p for p in others if _unlink(p)]
        # Archive and temporary first: a crash in between leaves the source, never a lone
        # partial archive.
        removed = [p for p in sorted(others, key=lambda p: not p.endswith(".tmp")) if _unlink(p)]
        if _unlink(path):
            removed.append(path)
        return removed


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


# -- the background thread ---------------------------------------------------------------------


class Housekeeper:
    """One thread per file sink: compresses rotated files and runs housekeeping passes.

    Rotations queue their paths; several rotations in quick succession are compressed one
    after the other, and the passes they ask for merge into one. The thread never takes a
    lock that a log call needs. On ``stop`` it finishes what it can within ``drain_seconds``
    and leaves the rest on disk, where the next start's pass finishes it.
    """

    def __init__(
        self,
        directory: str,
        service: str,
        *,
        compress: bool,
        retention: Retention | None,
        own: Callable[[], frozenset[str]],
        period: float = 3600.0,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.directory = directory
        self.service = service
        self.compress = compress
        self.retention = retention
        self._own = own
        self._period = period
        self._warn = warn or _stderr_warning
        self._queue: deque[str] = deque()
        self._wanted = True  # the first pass: whatever earlier processes left
        self._stopping = False
        self._deadline = float("inf")
        self._idle = False
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self.passes = 0

    def start(self) -> None:
        _housekeepers.add(self)
        thread = threading.Thread(target=self._run, name="foundation-log-housekeeper", daemon=True)
        self._thread = thread
        thread.start()

    def _after_fork(self) -> None:
        # Trap: a forked child (Celery's prefork pool, gunicorn --preload) inherits this object
        # but not its thread, and maybe a condition lock the thread held at the fork: waiting
        # on it would hang the child for ever. The child starts afresh, its thread on demand.
        self._condition = threading.Condition()
        self._thread = None
        self._idle = not (self._queue or self._wanted)

    def submit(self, path: str | None) -> None:
        """Queue a rotated file (or None: just a pass). Called from the log call: no waiting."""
        if self._thread is None and not self._stopping:
            self.start()
        with self._condition:
            if path is not None and self.compress:
                self._queue.append(path)
            self._wanted = True
            self._idle = False
            self._condition.notify()

    def wait_idle(self, timeout: float) -> bool:
        """Until nothing is queued or running (tests, benchmarks); False on timeout."""
        end = time.monotonic() + timeout
        with self._condition:
            while not self._idle:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._condition.wait(left)
        return True

    def stop(self, drain_seconds: float) -> None:
        with self._condition:
            self._stopping = True
            self._deadline = time.monotonic() + drain_seconds
            self._condition.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(drain_seconds, 0.0) + 0.5)

    def _out_of_time(self) -> bool:
        return self._stopping and time.monotonic() >= self._deadline

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # a lower priority than requests, where supported
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        next_pass = time.monotonic()
        while True:
            with self._condition:
                while not self._queue and not self._wanted and not self._stopping:
                    timeout = next_pass - time.monotonic()
                    if timeout <= 0:
                        self._wanted = True
                        break
                    self._idle = True
                    self._condition.notify_all()
                    self._condition.wait(timeout)
                if self._stopping and (self._out_of_time() or not (self._queue or self._wanted)):
                    self._idle = True
                    self._condition.notify_all()
                    return
                self._idle = False
                path = self._queue.popleft() if self._queue else None
                run_pass = path is None and self._wanted
                if run_pass:
                    self._wanted = False
            try:
                if path is not None:
                    compress_rotated(path, should_stop=self._out_of_time)
                elif run_pass:
                    self.passes += 1
                    housekeep(
                        self.directory,
                        self.service,
                        compress=self.compress,
                        retention=self.retention,
                        own=self._own(),
                        should_stop=self._out_of_time,
                    )
                    next_pass = time.monotonic() + self._period
            except Exception as exc:  # a full disk must not end the thread
                problem = f"{type(exc).__name__}: {exc}"
                self._warn(f"log housekeeping in {self.directory} failed: {problem}")


_housekeepers: weakref.WeakSet[Housekeeper] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for housekeeper in list(_housekeepers):
        housekeeper._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)

_last_warning = [0.0]


def _stderr_warning(text: str) -> None:
    now = time.monotonic()
    if now - _last_warning[0] < 60.0:
        return
    _last_warning[0] = now
    stderr = sys.__stderr__
    if stderr is not None:
        with contextlib.suppress(Exception):
            stderr.write(f"foundation: {text}\n")


# -- the live file -----------------------------------------------------------------------------


class RotatingFile:
    """The file sink's target: ``<service>[-<pid>].jsonl``, rotated and housekept.

    ``write`` is called under the sink's write lock (one caller at a time). A write is one
    ``write(2)`` of a whole line on an ``O_APPEND`` descriptor. Rotation is a rename, an open
    and a queue append; everything slow happens in the :class:`Housekeeper`'s thread.
    """

    def __init__(
        self,
        directory: str,
        service: str,
        *,
        per_process: bool,
        rotation: Rotation | None,
        retention: Retention | None,
        compress: bool,
        drain_seconds: float = 3.0,
    ) -> None:
        self.directory = directory
        self.service = service
        self._stem = f"{service}-{os.getpid()}" if per_process else service
        self._rotation = rotation
        self._limit = rotation.size if rotation is not None and rotation.size else 1 << 62
        self._timed = rotation is not None and rotation.deadline(time.time()) is not None
        self._deadline = float("inf")
        self._drain_seconds = drain_seconds
        self._fd = -1
        self._size = 0
        self._pid = os.getpid()
        period = 3600.0
        if retention is not None and retention.age is not None:
            period = min(max(retention.age / 4, 1.0), 3600.0)
        self.housekeeper = Housekeeper(
            directory,
            service,
            compress=compress,
            retention=retention,
            own=self._own,
            period=period,
        )
        self.housekeeper.start()

    @property
    def path(self) -> str:
        return os.path.join(self.directory, f"{self._stem}.jsonl")

    def _own(self) -> frozenset[str]:
        return frozenset({f"{self._stem}.jsonl"})

    def write(self, data: bytes) -> None:
        fd = self._fd
        if fd < 0:
            fd = self._open()
        size = self._size + len(data)
        if (size > self._limit and self._size) or (self._timed and time.time() >= self._deadline):
            fd = self._rotate()
            size = self._size + len(data)
        os.write(fd, data)
        self._size = size

    def _open(self) -> int:
        os.makedirs(self.directory, exist_ok=True)
        for _ in range(50):
            path = self.path
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            if not _try_lock(fd):
                os.close(fd)
                if self._stem == self.service:
                    # Another live process writes <service>.jsonl (two single-file processes,
                    # or a restart overlapping the old one): two writers of one rotating file
                    # lose lines, so this process takes a file of its own.
                    self._stem = f"{self.service}-{os.getpid()}"
                    _stderr_warning(
                        f"{path} is held by another running process; writing {self.path}"
                    )
                else:
                    time.sleep(0.002)  # a housekeeper elsewhere is renaming a dead pid's file
                continue
            if not _same_file(fd, path):  # renamed between our open and our lock: again
                os.close(fd)
                continue
            break
        else:
            raise OSError(errno.EAGAIN, f"cannot lock {self.path}")
        self._fd = fd
        self._size = os.fstat(fd).st_size
        if self._timed and self._rotation is not None:
            self._deadline = self._rotation.deadline(time.time()) or float("inf")
        return fd

    def _rotate(self) -> int:
        """Close, rename, open; the rotated file goes to the housekeeper. Never raises: if the
        rename fails, the current file goes on (and rotation is tried again one limit later)."""
        old = self._fd
        live = self.path
        try:
            target = _rotated_path(self.directory, self._stem, time.time())
            os.rename(live, target)
        except OSError as exc:
            self._size = 0
            if self._rotation is not None:
                self._deadline = self._rotation.deadline(time.time()) or float("inf")
            _stderr_warning(f"cannot rotate {live}: {type(exc).__name__}: {exc}")
            return old
        self._fd = -1
        try:
            fd = self._open()
        finally:
            os.close(old)
            self.housekeeper.submit(target)
        return fd

    def stop(self) -> None:
        """Close the live file (it stays live-named: a restart appends to it, a per-process
        file is adopted by the next pass that finds its pid gone) and drain the housekeeper."""
        if self._fd >= 0 and os.getpid() == self._pid:
            os.close(self._fd)
        self._fd = -1
        self.housekeeper.stop(self._drain_seconds)

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until queued compressions and passes are done (tests, benchmarks)."""
        return self.housekeeper.wait_idle(timeout)
