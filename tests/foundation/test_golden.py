"""The golden log file is what the real logger writes; obsctl's tests read the same file."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.data.golden_app import GOLDEN, REQUESTS, generate


def test_logger_output_matches_the_golden_file(tmp_path: Path) -> None:
    """On failure the format drifted: check it, then run `python -m tests.data.make_golden`."""
    produced = generate(tmp_path).splitlines()
    expected = GOLDEN.read_bytes().splitlines()
    for number, (got, want) in enumerate(zip(produced, expected, strict=False), start=1):
        assert got == want, f"line {number} drifted:\n got: {got[:400]!r}\nwant: {want[:400]!r}"
    assert len(produced) == len(expected)


def test_golden_file_follows_schema_v1() -> None:
    """Compact separators, keys in contract order, every request's ID present, one line a record."""
    order = [
        "ts",
        "level",
        "correlation_id",
        "trace_id",
        "span_id",
        "message",
        "service",
        "logger",
        "function",
        "line",
    ]
    ids = set()
    for raw in GOLDEN.read_bytes().splitlines():
        assert b'": ' not in raw and b'", "' not in raw  # compact separators
        assert raw.isascii()  # U+2028 and ESC arrive escaped
        record = orjson.loads(raw)
        keys = [key for key in record if key in order]
        assert keys == [key for key in order if key in record]
        ids.add(record.get("correlation_id"))
    assert {cid for cid, *_ in REQUESTS} <= ids
