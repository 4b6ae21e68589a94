"""``obsctl errors top``: errors ranked for triage, from files."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
from loguru import logger

from tests.obsctl.logdata import access, ago, app_error, line, run, write

CIDS = [f"{n:032x}" for n in range(1, 40)]


def _incident(directory: Path) -> None:
    """Errors at known times before now: 21101 x4 (two routes), 30101 x2, a crash with no code,
    a CRITICAL, a WARNING (not an error) and an old error two hours back."""
    lines = [
        app_error(ago(7200), CIDS[0], 21101, 404, "order 1 not found", "Not found.", "NotFound"),
        access(ago(7200), CIDS[0], "GET", "/orders/1", "/orders/{order_id}", 404, 3.0),
    ]
    for n, (seconds, path) in enumerate(((1650, "/orders/2"), (750, "/orders/3"), (60, "/o/4"))):
        cid = CIDS[1 + n]
        route = "/orders/{order_id}" if path.startswith("/orders") else "/o/{id}"
        lines.append(
            app_error(
                ago(seconds), cid, 21101, 404, f"order {n} not found", "Not found.", "NotFound"
            )
        )
        lines.append(access(ago(seconds - 0.01), cid, "GET", path, route, 404, 2.0))
    for n, seconds in enumerate((600, 30)):
        cid = CIDS[10 + n]
        lines.append(line(ago(seconds + 0.01), cid=cid, message="reserving"))
        lines.append(
            app_error(ago(seconds), cid, 30101, 409, "sku=A stock=0", "Out of stock.", "OutOfStock")
        )
        lines.append(access(ago(seconds - 0.01), cid, "POST", "/orders", "/orders", 409, 5.0))
    # unhandled crash: its access line comes first (the 500 handler runs outside middleware)
    lines.append(access(ago(300.01), CIDS[20], "GET", "/crash", "/crash", 500, 1.0))
    lines.append(
        line(
            ago(300),
            "ERROR",
            CIDS[20],
            "Unhandled ZeroDivisionError",
            http_code=500,
            exception={"type": "ZeroDivisionError", "value": "division by zero"},
        )
    )
    lines.append(
        line(ago(200), "CRITICAL", None, "disk full", internal_code=50001, logger="shop.io")
    )
    lines.append(
        app_error(
            ago(100),
            CIDS[21],
            10404,
            404,
            "HTTP 404",
            "Not found.",
            "RouteNotFound",
            level="WARNING",
        )
    )
    write(directory / "shop.jsonl", *lines)


def _json(out: str) -> list[dict[str, object]]:
    return [orjson.loads(raw) for raw in out.splitlines()]


def test_errors_are_ranked_by_code_with_every_column(capsys: pytest.CaptureFixture[str]) -> None:
    _incident(Path("var/log"))
    code, out, err = run(capsys, "errors", "top", "--json")
    assert code == 0, err
    rows = _json(out)
    assert [(r["internal_code"], r["count"]) for r in rows] == [
        (21101, 4),
        (30101, 2),
        (50001, 1),
        (None, 1),  # no code: a group of its own, after the coded ones of the same count
    ]
    top = rows[0]
    assert list(top)[:2] == ["internal_code", "count"]
    assert top["share"] == 0.5
    assert top["http_code"] == 404
    assert top["external_message"] == "Not found."
    assert top["internal_message"] in {f"order {n} not found" for n in range(3)} | {
        "order 1 not found"
    }
    assert top["routes"] == {"GET /orders/{order_id}": 3, "GET /o/{id}": 1}
    assert top["first_seen"] < top["last_seen"]
    assert top["sample_correlation_id"] == CIDS[3]  # the most recent one
    assert sum(top["trend"]) == 4  # type: ignore[arg-type]
    crash = rows[3]
    assert crash["exception"] == "ZeroDivisionError"
    assert crash["routes"] == {"GET /crash": 1}  # joined from the access line before it


def test_since_keeps_the_window_and_the_trend_covers_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _incident(Path("var/log"))
    code, out, _ = run(capsys, "errors", "top", "--since", "1h", "--json")
    rows = {r["internal_code"]: r for r in _json(out)}
    assert code == 0
    assert rows[21101]["count"] == 3
    trend = rows[21101]["trend"]
    assert isinstance(trend, list) and len(trend) == 12
    assert trend == [0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1]  # 27.5, 12.5 and 1 minute(s) ago
    code, out, _ = run(capsys, "errors", "top", "--since", "20m", "--until", "6m", "--json")
    assert {r["internal_code"]: r["count"] for r in _json(out)} == {21101: 1, 30101: 1}


@pytest.mark.parametrize(
    ("by", "field", "expected"),
    [
        (
            "route",
            "route",
            {"/orders/{order_id}": 3, "/orders": 2, "/crash": 1, "/o/{id}": 1, None: 1},
        ),
        (
            "exception",
            "exception",
            {"NotFound": 4, "OutOfStock": 2, "ZeroDivisionError": 1, None: 1},
        ),
        ("status", "http_code", {404: 4, 409: 2, 500: 1, None: 1}),
    ],
)
def test_group_by_other_fields(
    capsys: pytest.CaptureFixture[str], by: str, field: str, expected: dict[object, int]
) -> None:
    _incident(Path("var/log"))
    code, out, _ = run(capsys, "errors", "top", "--by", by, "--json")
    assert code == 0
    assert {r[field]: r["count"] for r in _json(out)} == expected


def test_limit_and_the_table_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    _incident(Path("var/log"))
    code, out, _ = run(capsys, "errors", "top", "--limit", "1", "--json")
    assert code == 0 and len(out.splitlines()) == 1
    code, out, _ = run(capsys, "errors", "top", "--limit", "2")
    assert code == 0
    assert "21101" in out and "30101" in out and "50001" not in out
    assert "2 more groups (2 errors): raise --limit to see them" in out
    assert CIDS[3] in out  # the sample ID to paste into obsctl trace


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "invalid --since 'yesterday'"),
        (["--since", "5m", "--until", "1h"], "the time window is empty"),
        (["--by", "colour"], "colour"),
    ],
)
def test_bad_flags_are_usage_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    _incident(Path("var/log"))
    code, out, err = run(capsys, "errors", "top", *args)
    assert code == 2
    assert out == ""
    assert message in err


def test_no_errors_in_the_window_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    _incident(Path("var/log"))
    code, out, err = run(capsys, "errors", "top", "--since", "10s")
    assert code == 1
    assert out == ""
    assert err == "obsctl: no ERROR or CRITICAL records since 10s\n"


def test_loguru_native_shape_is_counted_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = io.StringIO()
    handler = logger.add(sink, serialize=True)
    try:
        for code in (7, 7, 8):
            logger.bind(internal_code=code, correlation_id=CIDS[code]).error("failed")
        logger.warning("not an error")
    finally:
        logger.remove(handler)
    write(tmp_path / "native.log", sink.getvalue().encode())
    code, out, _ = run(capsys, "errors", "top", str(tmp_path), "--json")
    assert code == 0
    assert {r["internal_code"]: r["count"] for r in _json(out)} == {7: 2, 8: 1}


def test_a_writer_with_spaced_separators_is_counted_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spaced = b'{"ts": "2026-11-26T02:11:52.000000Z", "level": "ERROR", "internal_code": 9}\n'
    write(tmp_path / "spaced.log", spaced * 3)
    code, out, _ = run(capsys, "errors", "top", str(tmp_path), "--json")
    assert code == 0
    assert [(r["internal_code"], r["count"]) for r in _json(out)] == [(9, 3)]


def test_a_list_or_object_as_external_message_is_shown_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        tmp_path / "odd.jsonl",
        line(1.0, "ERROR", CIDS[0], "a", internal_code=7, external_message=["x", 1]),
        line(2.0, "ERROR", CIDS[1], "b", internal_code=8, external_message={"k": "v"}),
    )
    code, out, err = run(capsys, "errors", "top", str(tmp_path), "--json")
    assert code == 0, err
    rows = {row["internal_code"]: row for row in map(orjson.loads, out.splitlines())}
    assert rows[7]["external_message"] == '["x",1]'
    assert rows[8]["external_message"] == '{"k":"v"}'


def test_columns_past_the_distinct_bound_count_as_line_by_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """6,000 errors of one code over 300 routes and 6,000 distinct messages: the first 256
    routes seen are counted exactly (the bound), the others never; the count stays exact."""
    lines = [
        line(
            float(n) / 1000,
            "ERROR",
            f"{n + 1:032x}",
            f"failure {n}",
            internal_code=50001,
            http_code=503,
            method="GET",
            route=f"/r{n % 300}",
        )
        for n in range(6000)
    ]
    write(tmp_path / "many.jsonl", *lines)
    code, out, _ = run(capsys, "errors", "top", str(tmp_path), "--json")
    assert code == 0
    (row,) = map(orjson.loads, out.splitlines())
    assert row["count"] == 6000
    assert row["internal_message"] == "failure 0"
    assert len(row["routes"]) == 256
    assert set(row["routes"]) == {f"GET /r{n}" for n in range(256)}
    assert set(row["routes"].values()) == {20}
