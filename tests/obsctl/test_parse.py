"""obsctl.readers.parse: one line of bytes → one record with schema v1 keys, never an exception."""

from __future__ import annotations

import io
import json
import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loguru import logger

from obsctl.readers.parse import SCHEMA_KEYS, parse_line, parse_line_checked
from tests.obsctl.logdata import CID_A, app_error, line


def test_schema_v1_line_is_read_as_is_and_printed_verbatim() -> None:
    raw = app_error(1.0, CID_A, 30101, 409, "sku=A-1 stock=0", "Out of stock.", "OutOfStock")
    record = parse_line(raw)
    assert record is not None
    assert record.correlation_id == CID_A
    assert record.internal_code == 30101
    assert record.level == "ERROR"
    assert record.json_bytes() == raw.rstrip(b"\n")


def _loguru_native(**extra: object) -> bytes:
    sink = io.StringIO()
    handler = logger.add(sink, serialize=True)
    try:
        try:
            raise KeyError("sku")
        except KeyError:
            logger.bind(**extra).exception("stock lookup failed")
    finally:
        logger.remove(handler)
    return sink.getvalue().encode()


def test_loguru_native_shape_is_normalised_to_schema_v1_keys() -> None:
    raw = _loguru_native(correlation_id=CID_A, internal_code=30101, service="shop", sku="A-1")
    record = parse_line(raw)
    assert record is not None
    assert record.correlation_id == CID_A
    assert record.level == "ERROR"
    assert record.message == "stock lookup failed"
    assert record.internal_code == 30101
    assert record.ts.endswith("Z") and len(record.ts) == len("2026-11-26T02:11:52.123456Z")
    assert record.exception is not None and record.exception["type"] == "KeyError"
    assert "Traceback (most recent call last)" in record.exception["traceback"]
    keys = list(record.data)
    known = [k for k in keys if k in SCHEMA_KEYS]
    assert known == [k for k in SCHEMA_KEYS if k in keys], "schema keys keep contract order"
    assert record.data["sku"] == "A-1"
    # --json output of a native record is schema v1 JSON, not Loguru's shape
    printed = orjson.loads(record.json_bytes())
    assert printed["correlation_id"] == CID_A and "record" not in printed


def test_loguru_request_id_extra_counts_as_correlation_id() -> None:
    record = parse_line(_loguru_native(request_id=CID_A))
    assert record is not None and record.correlation_id == CID_A


def test_nan_tokens_are_read_as_floats_and_printed_as_strict_json() -> None:
    raw = b'{"ts":"2026-11-26T02:11:52.000000Z","level":"INFO","ratio":NaN,"x":-Infinity}'
    record = parse_line(raw)
    assert record is not None
    assert math.isnan(record.data["ratio"]) and record.data["x"] == -math.inf
    printed = record.json_bytes()
    assert json.loads(printed, parse_constant=lambda token: pytest.fail(f"non-strict {token}"))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"m":"caf\xe9"}', "non-UTF-8"),
        (b'{"ts":"2026-11-26T', "corrupt"),
        (b"[1, 2, 3]", "not a log record"),
        (b"\x00\x00\x00\x00", "NUL-filled"),
        (b"plain text", "corrupt"),
    ],
)
def test_damaged_lines_are_refused_with_their_reason(raw: bytes, reason: str) -> None:
    assert parse_line_checked(raw) == (None, reason)


def test_blank_line_is_neither_record_nor_damage() -> None:
    assert parse_line_checked(b"  \r\n") == (None, None)


def test_nul_run_before_a_record_is_dropped_and_the_record_kept() -> None:
    record = parse_line(b"\x00" * 4096 + line(1.0, message="after the crash"))
    assert record is not None and record.message == "after the crash"


def test_unicode_line_separators_stay_inside_one_record() -> None:
    raw = line(1.0, message="one\u2028two\u2029three\x85four")
    assert raw.count(b"\n") == 1
    record = parse_line(raw)
    assert record is not None and record.message == "one\u2028two\u2029three\x85four"


def test_level_is_upper_cased_when_a_writer_used_lower_case() -> None:
    record = parse_line(b'{"ts":"2026-11-26T02:11:52.000000Z","level":"error","message":"m"}')
    assert record is not None and record.level == "ERROR"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=20))
def test_byte_soup_never_raises(chunks: list[bytes]) -> None:
    for raw in b"\n".join(chunks).split(b"\n"):
        record, reason = parse_line_checked(raw)
        assert record is None or reason is None
        if record is not None:
            assert isinstance(record.data, dict)
            record.json_bytes()
