"""obsctl on the golden file (real foundation logger output, described in tests/data/README.md)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.obsctl.logdata import run

GOLDEN = str(Path(__file__).resolve().parents[1] / "data" / "golden.jsonl")


def test_trace_of_the_404_says_what_happened_in_plain_words(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "trace", "773fa6885c2e4d7f9a6b1c0d2e3f4a5b", GOLDEN)
    assert code == 0
    assert err == ""
    assert (
        "Request GET /orders/42 answered 404 Not Found after 12.5 ms: Record not found. "
        "(code 21101)"
    ) in out
    assert "order id=42 not found" in out
    assert "RecordNotFound" in out


def test_trace_of_the_crash_shows_the_exception_and_its_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "trace", "c3d4e5f60718293a4b5c6d7e8f90a1b2", GOLDEN)
    assert code == 0
    assert "answered 500 Internal Server Error after 12.5 ms" in out
    # Support staff read what broke, not the generic message the client got.
    flat = " ".join(out.replace("│", " ").split())
    assert (
        "an internal error (ZeroDivisionError); the client got a generic error message. "
        "(code 10500)"
    ) in flat
    assert "(code 10500)" in out
    assert "ZeroDivisionError" in out
    assert "Traceback (most recent call last):" in out


def test_trace_json_prints_the_request_lines_exactly(capsys: pytest.CaptureFixture[str]) -> None:
    cid = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    code, out, _ = run(capsys, "trace", cid, GOLDEN, "--json")
    expected = [raw for raw in Path(GOLDEN).read_text().splitlines() if cid in raw]
    assert code == 0
    assert out.splitlines() == expected
    assert len(expected) == 3


def test_trace_by_unambiguous_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "trace", "b2c3d4e5", GOLDEN, "--json")
    assert code == 0
    assert {orjson.loads(raw)["correlation_id"] for raw in out.splitlines()} == {
        "b2c3d4e5f60718293a4b5c6d7e8f90a1"
    }


def test_hostile_message_is_escaped_in_the_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "trace", "0f1e2d3c4b5a69788796a5b4c3d2e1f0", GOLDEN)
    assert code == 0
    assert "\x1b" not in out and "\u2028" not in out
    assert "\\u001b[31mescape" in out and "odd label\\u2028with" in out


def test_errors_top_json_ranks_the_error_records_by_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "errors", "top", GOLDEN, "--json")
    rows = [orjson.loads(raw) for raw in out.splitlines()]
    assert code == 0
    assert [(r["internal_code"], r["count"]) for r in rows] == [
        (39901, 2),
        (10422, 1),
        (10500, 1),
        (21101, 1),
    ]
    assert sum(r["count"] for r in rows) == 5  # the WARNING 404 (10404) is not an error
    top = rows[0]
    assert top["http_code"] == 409
    assert top["external_message"] == "This product is out of stock."
    assert top["exception"] == "OutOfStock"
    assert top["routes"] == {"POST /orders": 2}
    assert top["share"] == 0.4
    assert top["sample_correlation_id"] == "b2c3d4e5f60718293a4b5c6d7e8f90a1"


def test_errors_top_by_route_counts_two_errors_on_orders(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "errors", "top", GOLDEN, "--by", "route", "--json")
    rows = {orjson.loads(raw)["route"]: orjson.loads(raw)["count"] for raw in out.splitlines()}
    assert code == 0
    assert rows == {"/orders": 2, "/orders/{order_id}": 1, "/crash": 1, "/users": 1}


def test_errors_top_table_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "errors", "top", GOLDEN)
    assert code == 0
    first_row = next(row for row in out.splitlines() if "39901" in row)
    assert "│     2 │" in first_row and "40.0%" in first_row
    assert "b2c3d4e5f60718293a4b5c6d7e8f90a1" in first_row
