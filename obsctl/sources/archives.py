"""The member index of the project's seekable archives, read from the gzip headers themselves.

An archive written by foundation's rotation is an ordinary multi-member gzip file whose every
member header carries an ``FX`` extra subfield (RFC 1952 FEXTRA): the member's compressed size,
header to trailer, and the smallest and largest ``ts`` of its records in microseconds (-1 when
none). :func:`member_index` hops from header to header with those sizes, reading a few dozen
bytes per member and inflating nothing, so a reader can decompress only the members whose time
range meets what it looks for. Anything else (Loguru's own ``.gz``, ``gzip``'s, a header that
does not add up) ends the index: the rest of the file is read from there like any gzip stream.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

__all__ = ["Member", "MemberIndex", "member_index"]

_FEXTRA = 0x04
_FX = b"FX"
_FX_PAYLOAD = struct.Struct("<Qqq")
#: Fixed header (10 bytes) + XLEN (2) + the smallest possible trailer (8).
_MIN_MEMBER = 20


@dataclass(frozen=True, slots=True)
class Member:
    """One gzip member: ``[offset, offset + size)`` of the file, records' ``ts`` in µs."""

    offset: int
    size: int
    first_us: int
    last_us: int

    @property
    def end(self) -> int:
        return self.offset + self.size

    def bounds(self) -> tuple[float | None, float | None]:
        """Epoch seconds of its first and last record (None, None when it has none with a time)."""
        if self.first_us < 0 or self.last_us < 0:
            return None, None
        return self.first_us / 1e6, self.last_us / 1e6


@dataclass(frozen=True, slots=True)
class MemberIndex:
    """The indexed members in file order; ``rest`` is where the unindexed remainder starts
    (None when the index covers the whole file)."""

    members: tuple[Member, ...]
    rest: int | None


def _fx(header: bytes) -> tuple[int, int, int] | None:
    """The FX payload of a member whose header starts ``header``, if it has one."""
    if len(header) < 12 or header[:3] != b"\x1f\x8b\x08" or not header[3] & _FEXTRA:
        return None
    xlen = int.from_bytes(header[10:12], "little")
    extra = header[12 : 12 + xlen]
    if len(extra) < xlen:
        return None
    pos = 0
    while pos + 4 <= xlen:
        ident, length = extra[pos : pos + 2], int.from_bytes(extra[pos + 2 : pos + 4], "little")
        body = extra[pos + 4 : pos + 4 + length]
        if len(body) < length:
            return None
        if ident == _FX and length == _FX_PAYLOAD.size:
            size, first, last = _FX_PAYLOAD.unpack(body)
            return size, first, last
        pos += 4 + length
    return None


def member_index(path: str) -> MemberIndex | None:
    """The archive's members, or None when its first member carries no ``FX`` subfield.

    A size that does not lead to another gzip header (nor to the end of the file) is not
    trusted: that member and everything after it become the unindexed remainder.
    """
    members: list[Member] = []
    with open(path, "rb") as handle:
        total = os.fstat(handle.fileno()).st_size
        offset = 0
        while offset < total:
            handle.seek(offset)
            header = handle.read(12)
            if header[:2] != b"\x1f\x8b" and members:
                # Zero padding may follow the last member (gzip allows it); anything else means
                # the previous member's size lied.
                offset = members.pop().offset if header.strip(b"\x00") else total
                break
            if len(header) == 12 and header[:3] == b"\x1f\x8b\x08" and header[3] & _FEXTRA:
                header += handle.read(int.from_bytes(header[10:12], "little"))
            payload = _fx(header)
            if payload is None:
                break
            size, first, last = payload
            if size < len(header) + 8:
                break
            members.append(Member(offset, size, first, last))
            offset += size
    if not members:
        return None
    return MemberIndex(tuple(members), None if offset >= total else offset)
