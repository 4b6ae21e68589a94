"""Test archives: the project's seekable format (multi-member gzip with ``FX`` member headers,
as the archive format in README's operators' section fixes it), plain single-member gzip as
Loguru and ``gzip`` write it, and UUIDv7 IDs for a chosen time."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import orjson


def v7(epoch: float, tail: int = 0) -> str:
    """A UUIDv7 in 32 hex issued at ``epoch`` (``tail`` makes several IDs of one instant)."""
    ms = round(epoch * 1000)
    rand_a = (tail >> 62) & 0xFFF
    rand_b = tail & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return f"{value:032x}"


def _ts_us(line: bytes) -> int | None:
    try:
        ts = orjson.loads(line)["ts"]
        moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def fx_member(data: bytes, *, level: int = 6) -> bytes:
    """One gzip member holding ``data`` (whole lines), its header carrying ``FX``."""
    times = [t for t in (_ts_us(line) for line in data.splitlines()) if t is not None]
    first, last = (min(times), max(times)) if times else (-1, -1)
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    body = compressor.compress(data) + compressor.flush()
    trailer = struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)
    extra_len = 4 + 24
    header_len = 10 + 2 + extra_len
    size = header_len + len(body) + len(trailer)
    subfield = b"FX" + struct.pack("<H", 24) + struct.pack("<Qqq", size, first, last)
    header = b"\x1f\x8b\x08\x04" + b"\x00\x00\x00\x00" + b"\x00\xff"
    header += struct.pack("<H", extra_len) + subfield
    return header + body + trailer


def fx_archive(lines: Iterable[bytes], *, member_bytes: int = 4 << 20, level: int = 6) -> bytes:
    """Lines cut into members of about ``member_bytes`` uncompressed, at line boundaries."""
    members: list[bytes] = []
    pending: list[bytes] = []
    size = 0
    for line in lines:
        pending.append(line)
        size += len(line)
        if size >= member_bytes:
            members.append(fx_member(b"".join(pending), level=level))
            pending, size = [], 0
    if pending:
        members.append(fx_member(b"".join(pending), level=level))
    return b"".join(members)


def rotated_name(stem: str, rotated_at: float, *, compressed: bool = True) -> str:
    """``shop.2026-11-26T04-31-59-123456Z.jsonl.gz``: the rotation time in the name."""
    stamp = datetime.fromtimestamp(rotated_at, tz=UTC).strftime("%Y-%m-%dT%H-%M-%S-%fZ")
    return f"{stem}.{stamp}.jsonl" + (".gz" if compressed else "")


def write_archive(path: Path, data: bytes, *, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path
