"""Reading log files: find them, open them by their magic bytes, cut them into whole lines.

* :func:`expand_paths` turns files, directories and globs (or the default log directory) into
  an ordered list of :class:`LogFile` (kind sniffed from the first bytes, not the name).
* :func:`iter_blocks` yields buffers holding only *complete* lines, read in large pieces into
  one reused buffer (memory stays bounded whatever the file or line size). Plain, gzip
  (multi-member), bzip2, xz and zip are read; a damaged compressed stream keeps its readable
  prefix and is reported.
* :class:`Damage` counts what had to be skipped, per kind and file, and renders the single
  stderr line the user sees ("skipped 3 corrupt lines, 1 incomplete final line in app.log").

Nothing here parses JSON: :mod:`obsctl.readers.parse` does, and only for the lines worth parsing.
"""

from __future__ import annotations

import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Literal, Protocol, TypeAlias

from obsctl.errors import UsageError

if TYPE_CHECKING:  # bz2, lzma and zipfile are imported when such a file is met (start-up time)
    import bz2
    import lzma
    import mmap
    import zipfile

__all__ = [
    "BLOCK_BYTES",
    "Buffer",
    "Damage",
    "LogFile",
    "expand_paths",
    "iter_blocks",
    "iter_lines",
    "sniff_kind",
]

Kind = Literal["plain", "gzip", "bzip2", "xz", "zip"]

#: Size of the reused read buffer; a line that does not fit is skipped ("oversized").
BLOCK_BYTES = 8 << 20

_MAGIC: tuple[tuple[bytes, Kind], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
)

# Line-level kinds are counted per line; the others describe a whole file.
_LINE_KINDS = (
    "corrupt",
    "non-UTF-8",
    "not a log record",
    "NUL-filled",
    "oversized",
    "incomplete final",
)


@dataclass
class Damage:
    """Counts of skipped or damaged input, by kind and file name (mergeable across processes)."""

    lines: Counter[tuple[str, str]] = field(default_factory=Counter)
    files: list[tuple[str, str]] = field(default_factory=list)

    def line(self, kind: str, source: str, count: int = 1) -> None:
        self.lines[(kind, source)] += count

    def file(self, problem: str, source: str) -> None:
        if (problem, source) not in self.files:
            self.files.append((problem, source))

    def merge(self, other: Damage) -> None:
        self.lines.update(other.lines)
        for item in other.files:
            self.file(*item)

    def __bool__(self) -> bool:
        return bool(self.lines) or bool(self.files)

    def summary(self) -> str | None:
        """One line for stderr, or None when nothing was skipped."""
        if not self:
            return None
        parts: list[str] = []
        order = {kind: i for i, kind in enumerate(_LINE_KINDS)}
        by_kind: dict[str, Counter[str]] = {}
        for (kind, source), count in self.lines.items():
            by_kind.setdefault(kind, Counter())[source] += count
        for kind in sorted(by_kind, key=lambda k: (order.get(k, 99), k)):
            sources = by_kind[kind]
            total = sum(sources.values())
            noun = "line" if total == 1 else "lines"
            label = f"{kind} {noun}" if kind != "incomplete final" else f"incomplete final {noun}"
            parts.append(f"{total} {label} in {_names(sources)}")
        for problem, source in self.files:
            parts.append(f"{os.path.basename(source)} ({problem})")
        return "skipped " + ", ".join(parts)


def _names(sources: Counter[str]) -> str:
    names = [os.path.basename(s) for s in sources]
    if len(names) > 3:
        return ", ".join(names[:3]) + f" and {len(names) - 3} more"
    return ", ".join(names)


@dataclass(frozen=True, slots=True)
class LogFile:
    """A file to read: its path, sniffed kind and size in bytes (compressed size if compressed)."""

    path: str
    kind: Kind
    size: int


def sniff_kind(head: bytes) -> Kind:
    """The compression of a file from its first bytes (names are not trusted)."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return "plain"


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _dir_files(directory: str) -> list[str]:
    names = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            names.append(entry.path)
    return sorted(names)


def expand_paths(paths: Iterable[str], *, default_dir: str) -> list[LogFile]:
    """Files to read, in a stable order, each once: explicit files, directory contents, globs.

    With no paths the default log directory is used. A missing path is a usage error (exit 2)
    naming it; a glob or directory that holds no file is one too.
    """
    wanted = list(paths)
    defaulted = not wanted
    if defaulted:
        wanted = [default_dir]
    found: list[str] = []
    for item in wanted:
        if os.path.isdir(item):
            found.extend(_dir_files(item))
        elif os.path.isfile(item):
            found.append(item)
        elif _is_glob(item):
            import glob

            matches: list[str] = []
            for match in sorted(glob.glob(item)):
                if os.path.isdir(match):
                    matches.extend(_dir_files(match))
                elif os.path.isfile(match):
                    matches.append(match)
            if not matches:
                raise UsageError(f"no file matches {item!r}", hint="check the pattern")
            found.extend(matches)
        elif defaulted:
            raise UsageError(
                f"no log directory {item!r} here",
                hint="give PATH, or set OBSCTL_LOG_DIR to the app's log directory",
            )
        else:
            raise UsageError(f"no such file or directory: {item!r}", hint="check the path")
    result: list[LogFile] = []
    seen: set[str] = set()
    listed = set(found)
    for listed_path in found:
        path = listed_path
        real = os.path.realpath(path)
        if real in seen:
            continue
        # A rotated file and its archive both exist between the archive's rename and the
        # source's unlink: same lines, read once, from the plain file.
        if path.endswith(".gz") and path[:-3] in listed:
            continue
        seen.add(real)
        try:
            try:
                handle = open(path, "rb")  # noqa: SIM115 - closed just below
            except FileNotFoundError:
                if not os.path.isfile(path + ".gz") or path + ".gz" in listed:
                    raise
                path += ".gz"  # compressed (and unlinked) since the directory was listed
                handle = open(path, "rb")  # noqa: SIM115 - closed just below
            with handle:
                head = handle.read(8)
            size = os.path.getsize(path)
        except OSError as exc:
            raise UsageError(
                f"cannot read {path!r}: {exc.strerror}", hint="check permissions"
            ) from None
        result.append(LogFile(path, sniff_kind(head), size))
    if not result:
        raise UsageError(f"no log files in {', '.join(wanted)}", hint="give PATH to the log files")
    return result


class _Readable(Protocol):
    def readinto(self, buffer: memoryview, /) -> int: ...

    def ends_cleanly(self) -> bool:
        """False when the end of the data is not the end of the file (a range, a damaged stream):
        then an unfinished last line is not reported on its own."""


# zlib exposes its decompressor class only through an instance (typeshed: _Decompress).
_ZLIB_DECOMPRESS = type(zlib.decompressobj())


class _Decompressing:
    """``readinto`` over a stream compressed with gzip (several members allowed), bzip2 or xz.

    Damage is reported, not raised: a truncated stream ends after its readable prefix, a
    corrupted one stops at the first bad byte; both leave a note in ``damage``.
    """

    def __init__(self, raw: IO[bytes], kind: Kind, source: str, damage: Damage) -> None:
        self._raw = raw
        self._kind = kind
        self._source = source
        self._damage = damage
        self._errors: tuple[type[Exception], ...] = (OSError, EOFError, ValueError)
        if kind == "xz":
            import lzma

            self._errors = (*self._errors, lzma.LZMAError)
        self._decoder = self._new()
        self._input = b""  # compressed bytes read but not yet given to the decoder
        self._spill = b""  # decompressed bytes not yet handed out
        self._done = False
        self.damaged = False

    def _new(self) -> zlib._Decompress | bz2.BZ2Decompressor | lzma.LZMADecompressor:
        if self._kind == "gzip":
            return zlib.decompressobj(wbits=31)
        if self._kind == "bzip2":
            import bz2

            return bz2.BZ2Decompressor()
        import lzma

        return lzma.LZMADecompressor()

    def readinto(self, buffer: memoryview) -> int:
        want = len(buffer)
        while not self._spill and not self._done:
            self._spill = self._step(want)
        out, self._spill = self._spill[:want], self._spill[want:]
        buffer[: len(out)] = out
        return len(out)

    def _step(self, want: int) -> bytes:
        decoder = self._decoder
        if decoder.eof:
            # Another member may follow (gzip allows several); zero padding ends the stream.
            rest = decoder.unused_data + self._input or self._raw.read(1 << 16)
            self._input = b""
            while rest and not rest.strip(b"\x00"):
                rest = self._raw.read(1 << 16)
            if not rest:
                self._done = True
                return b""
            self._decoder = self._new()
            self._input = rest
            return b""
        if isinstance(decoder, _ZLIB_DECOMPRESS):
            hungry = not self._input
        else:
            hungry = decoder.needs_input and not self._input
        if hungry:
            self._input = self._raw.read(1 << 16)
            if not self._input:
                self._damage.file("truncated compressed file, readable part used", self._source)
                self.damaged = True
                self._done = True
                try:
                    return decoder.flush() if isinstance(decoder, _ZLIB_DECOMPRESS) else b""
                except zlib.error:
                    return b""
        if isinstance(decoder, _ZLIB_DECOMPRESS):
            saved = decoder.copy()
            try:
                out = decoder.decompress(self._input, want)
                self._input = decoder.unconsumed_tail
            except zlib.error:
                # Salvage the output that precedes the damage, byte by byte from the saved state.
                out = self._salvage(saved, self._input)
                self._corrupted()
            return out
        try:
            out = decoder.decompress(self._input, want)
            self._input = b""
        except self._errors:
            self._corrupted()
            return b""
        return out

    def ends_cleanly(self) -> bool:
        return not self.damaged

    def _corrupted(self) -> None:
        self._damage.file("corrupted compressed file, readable part used", self._source)
        self.damaged = True
        self._done = True

    @staticmethod
    def _salvage(decoder: zlib._Decompress, data: bytes) -> bytes:
        pieces: list[bytes] = []
        step = 256
        for pos in range(0, len(data), step):
            try:
                pieces.append(decoder.decompress(data[pos : pos + step]))
            except zlib.error:
                break
        return b"".join(pieces)


def _backed_by_stream(raw: IO[bytes], path: str, kind: Kind) -> bool:
    """Whether the magic bytes that named ``kind`` really start a stream of that kind.

    A text file can begin with bytes that look like a compression magic (garbage, a crash's
    leftovers). When the decoder refuses the stream before producing a single byte, nothing
    could be salvaged from it as a compressed file, so it is read as text instead (and, if it
    is not JSON lines either, reported as such). Plain files cost nothing here.
    """
    if kind == "plain":
        return True
    if kind == "zip":
        import zipfile

        try:  # is_zipfile() only looks for an end record; opening checks the directory too
            zipfile.ZipFile(path).close()
        except (zipfile.BadZipFile, OSError, EOFError):
            return False
        return True
    head = raw.read(1 << 16)
    raw.seek(0)
    try:
        if kind == "gzip":
            zlib.decompressobj(wbits=31).decompress(head, 1)
        elif kind == "bzip2":
            import bz2

            bz2.BZ2Decompressor().decompress(head, max_length=1)
        else:
            import lzma

            try:
                lzma.LZMADecompressor().decompress(head, max_length=1)
            except lzma.LZMAError:
                return False
    except (zlib.error, OSError, EOFError, ValueError):
        return False
    return True


class _ZipMembers:
    """``readinto`` over every member of a zip archive, one after the other; a member without a
    final newline gets one, so that its last line does not glue onto the next member."""

    def __init__(self, path: str, source: str, damage: Damage) -> None:
        import zipfile

        self._zipfile = zipfile
        self._source = source
        self._damage = damage
        self._archive: zipfile.ZipFile | None = None
        self._members: list[zipfile.ZipInfo] = []
        self._current: IO[bytes] | None = None
        self._ends_line = True
        try:
            self._archive = self._zipfile.ZipFile(path)
            self._members = [m for m in self._archive.infolist() if not m.is_dir()]
        except (self._zipfile.BadZipFile, OSError, EOFError):
            damage.file("unreadable zip archive", source)

    def ends_cleanly(self) -> bool:
        return True

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
        if self._archive is not None:
            self._archive.close()

    def readinto(self, buffer: memoryview) -> int:
        while self._archive is not None:
            if self._current is None:
                if not self._members:
                    return 0
                member = self._members.pop(0)
                try:
                    self._current = self._archive.open(member)
                except (self._zipfile.BadZipFile, OSError, EOFError, RuntimeError):
                    # RuntimeError: encrypted member, or a compression method zipfile lacks
                    self._damage.file(f"unreadable member {member.filename}", self._source)
                    continue
            try:
                data = self._current.read(len(buffer))
            except (self._zipfile.BadZipFile, zlib.error, OSError, EOFError):
                self._damage.file("corrupted zip member, readable part used", self._source)
                data = b""
            if data:
                buffer[: len(data)] = data
                self._ends_line = data.endswith(b"\n")
                return len(data)
            self._current.close()
            self._current = None
            if not self._ends_line:
                self._ends_line = True
                buffer[:1] = b"\n"
                return 1
        return 0


class _RawRange:
    """``read`` limited to ``[start, end)`` of a file: the members of a gzip archive that a
    lookup wants (``end`` None: to the end of the file)."""

    def __init__(self, raw: IO[bytes], start: int, end: int | None) -> None:
        raw.seek(start)
        self._raw = raw
        self._left = None if end is None else end - start

    def read(self, size: int) -> bytes:
        if self._left is None:
            return self._raw.read(size)
        data = self._raw.read(min(size, self._left)) if self._left > 0 else b""
        self._left -= len(data)
        return data


class _Range:
    """``readinto`` limited to ``[start, end)`` of a plain file."""

    def __init__(self, raw: IO[bytes], start: int, end: int | None, *, whole: bool) -> None:
        raw.seek(start)
        self._whole = whole
        self._raw = raw
        self._left = end - start if end is not None else None

    def ends_cleanly(self) -> bool:
        return self._whole

    def readinto(self, buffer: memoryview) -> int:
        if self._left is not None:
            if self._left <= 0:
                return 0
            if len(buffer) > self._left:
                buffer = buffer[: self._left]
        count = self._raw.readinto(buffer) or 0  # type: ignore[attr-defined]
        if self._left is not None:
            self._left -= count
        return count


class _Skipping:
    """``readinto`` limited to ``[start, end)`` of a decompressed stream."""

    def __init__(self, inner: _Readable, start: int, end: int | None, *, whole: bool) -> None:
        self._inner = inner
        self._skip = start
        self._left = end - start if end is not None else None
        self._whole = whole

    def ends_cleanly(self) -> bool:
        return self._whole and self._inner.ends_cleanly()

    def readinto(self, buffer: memoryview) -> int:
        while self._skip > 0:
            count = self._inner.readinto(buffer[: self._skip])
            if count == 0:
                return 0
            self._skip -= count
        if self._left is not None:
            if self._left <= 0:
                return 0
            buffer = buffer[: self._left]
        count = self._inner.readinto(buffer)
        if self._left is not None:
            self._left -= count
        return count


#: One buffer of complete lines: ``buf[start:end]`` are whole lines (each ending in ``\n``),
#: and ``base`` is the stream offset of ``buf[0]``.
Buffer: TypeAlias = "bytes | bytearray | mmap.mmap"
Block: TypeAlias = tuple["bytearray | mmap.mmap", int, int, int]

#: Files untouched for this long are read through mmap windows (no copy: ~1.5x faster); a file
#: being written is read with read(), because truncating a mapped file under us (copytruncate
#: rotation) would kill the process with SIGBUS.
MMAP_QUIET_SECONDS = 60.0


def _mapped(
    raw: IO[bytes],
    source: str,
    damage: Damage,
    *,
    start: int,
    end: int | None,
    window: int,
) -> Iterator[Block]:
    """Whole lines of a plain file through read-only mmap windows of ``window`` bytes."""
    import mmap

    fd = raw.fileno()
    size = os.fstat(fd).st_size
    stop = size if end is None else min(end, size)
    granularity = mmap.ALLOCATIONGRANULARITY
    window = max(window, 2 * granularity)
    position = start  # the next line start not yet handed out
    skipping = False  # inside a line longer than the window
    while position < stop:
        base = position - position % granularity
        length = min(window, stop - base)
        view = mmap.mmap(fd, length, access=mmap.ACCESS_READ, offset=base)
        try:
            lo = position - base
            if skipping:
                newline = view.find(b"\n", lo, length)
                if newline < 0:
                    position = base + length
                    continue
                damage.line("oversized", source)
                skipping = False
                lo = newline + 1
                position = base + lo
            cut = view.rfind(b"\n", lo, length)
            if cut < 0:
                if base + length >= stop:
                    break  # the unfinished last line, judged below
                skipping = True
                position = base + length
                continue
            yield view, lo, cut + 1, base
            position = base + cut + 1
        finally:
            view.close()
    if skipping:
        damage.line("oversized", source)
    elif end is None and position < stop:
        raw.seek(position)
        if raw.read(min(stop - position, 1 << 16)).strip(b"\x00 \t\r\n"):
            damage.line("incomplete final", source)


def _frame(
    reader: _Readable,
    source: str,
    damage: Damage,
    *,
    block_bytes: int,
    offset: int,
) -> Iterator[Block]:
    buf = bytearray(block_bytes)
    view = memoryview(buf)
    keep = 0  # bytes of an unfinished line carried at the start of buf
    base = offset
    skipping = False  # inside a line longer than the buffer
    try:
        while True:
            count = reader.readinto(view[keep:])
            if count <= 0:
                # A damaged stream's cut-off last line is part of that damage, not counted again.
                if (
                    keep
                    and not skipping
                    and buf[:keep].strip(b"\x00 \t\r\n")
                    and reader.ends_cleanly()
                ):
                    damage.line("incomplete final", source)
                elif skipping and reader.ends_cleanly():
                    damage.line("oversized", source)
                return
            filled = keep + count
            start = 0
            if skipping:
                newline = buf.find(b"\n", 0, filled)
                if newline < 0:
                    base += filled
                    keep = 0
                    continue
                damage.line("oversized", source)
                skipping = False
                start = newline + 1
            cut = buf.rfind(b"\n", start, filled)
            if cut < 0:
                if filled - start >= block_bytes:
                    skipping = True
                    base += filled
                    keep = 0
                else:
                    buf[: filled - start] = buf[start:filled]
                    base += start
                    keep = filled - start
                continue
            yield buf, start, cut + 1, base
            rest = filled - (cut + 1)
            buf[:rest] = buf[cut + 1 : filled]
            base += cut + 1
            keep = rest
    finally:
        view.release()


def _looks_like_json_lines(head: bytes) -> bool:
    """A file is read as JSON lines when one of its first lines is an object (a damaged first
    line must not hide the rest); text files, binaries and CSVs are skipped and reported."""
    lines = [line.strip(b"\x00 \t\r") for line in head.split(b"\n")[:50]]
    lines = [line for line in lines if line]
    return not lines or any(line.startswith(b"{") for line in lines)


def _quiet(raw: IO[bytes]) -> bool:
    import time

    try:
        stat = os.fstat(raw.fileno())
    except OSError:
        return False
    return stat.st_size > 0 and time.time() - stat.st_mtime > MMAP_QUIET_SECONDS


def iter_blocks(
    log: LogFile,
    damage: Damage,
    *,
    start: int = 0,
    end: int | None = None,
    block_bytes: int | None = None,
) -> Iterator[Block]:
    """Yield ``(buf, lo, hi, base)``: ``buf[lo:hi]`` holds whole lines of ``log``.

    ``buf`` is reused between iterations: copy what you keep. ``start``/``end`` restrict a plain
    file to a byte range (``start`` must be a line start) and a gzip file to whole members
    (``start`` and ``end`` on member boundaries; offsets of the lines then count decompressed
    bytes from ``start``); other compressed files are read whole.
    A final line without ``\\n`` is reported as incomplete and not yielded (a writer may be in
    the middle of it); a line longer than ``block_bytes`` is reported as oversized.
    """
    source = log.path
    size = BLOCK_BYTES if block_bytes is None else block_bytes
    archived = False
    try:
        raw = open(log.path, "rb")  # noqa: SIM115 - closed in finally, after the generator ends
    except FileNotFoundError as exc:
        # A rotated file compressed since it was listed (the archive's rename comes before the
        # source's unlink): its archive holds the same bytes, so the same range is read there.
        try:
            if log.kind != "plain":
                raise
            raw = open(log.path + ".gz", "rb")  # noqa: SIM115 - closed in finally
            archived = True
        except OSError:
            damage.file(f"unreadable: {exc.strerror}", source)
            return
    except OSError as exc:
        damage.file(f"unreadable: {exc.strerror}", source)
        return
    zip_reader: _ZipMembers | None = None
    try:
        reader: _Readable | None = None
        kind = log.kind if archived or _backed_by_stream(raw, log.path, log.kind) else "plain"
        if archived:
            inflated = _Decompressing(raw, "gzip", source, damage)
            reader = _Skipping(inflated, start, end, whole=end is None or end >= log.size)
        elif kind == "plain" and _quiet(raw):
            pass  # mapped below
        elif kind == "plain":
            reader = _Range(raw, start, end, whole=end is None or end >= log.size)
        elif kind == "zip":
            zip_reader = _ZipMembers(log.path, source, damage)
            reader = zip_reader
        elif kind == "gzip" and (start or end is not None):
            ranged: IO[bytes] = _RawRange(raw, start, end)  # type: ignore[assignment]
            reader = _Decompressing(ranged, kind, source, damage)
        else:
            reader = _Decompressing(raw, kind, source, damage)
        blocks = (
            _mapped(raw, source, damage, start=start, end=end, window=size)
            if reader is None
            else _frame(reader, source, damage, block_bytes=size, offset=start)
        )
        first = True
        for block in blocks:
            if first and start == 0:
                first = False
                buf, lo, hi, _ = block
                if not _looks_like_json_lines(bytes(buf[lo : min(hi, lo + (64 << 10))])):
                    damage.file("not a JSON log file", source)
                    return
            yield block
    finally:
        if zip_reader is not None:
            zip_reader.close()
        raw.close()


def iter_lines(
    log: LogFile, damage: Damage, *, keep: Callable[[bytes], bool] | None = None
) -> Iterator[tuple[int, bytes]]:
    """Every complete line of ``log`` as ``(offset, line_without_newline)``, optionally filtered."""
    for buf, lo, hi, base in iter_blocks(log, damage):
        chunk = bytes(buf[lo:hi])
        pos = 0
        size = len(chunk)
        while pos < size:
            newline = chunk.find(b"\n", pos)
            line = chunk[pos:newline]
            if keep is None or keep(line):
                yield base + lo + pos, line
            pos = newline + 1
