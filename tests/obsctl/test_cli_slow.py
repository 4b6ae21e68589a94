"""obsctl slow over files: exact nearest-rank percentiles per route and the slowest requests,
checked against a brute-force computation, in one piece and over processes."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obsctl.analysis.latency import nearest_rank
from obsctl.query import scan
from obsctl.sources import files
from tests.obsctl.logdata import access, line, run, write
from tests.obsctl.shapes_data import WRITERS, request_ids

ROUTES = [("GET", "/orders/{order_id}"), ("POST", "/orders"), ("GET", "/health")]


def _percentile_brute_force(values: list[float], percent: float) -> float:
    """The smallest logged value v with at least ``percent`` % of the values <= v."""
    for candidate in sorted(set(values)):
        if sum(1 for v in values if v <= candidate) * 100 >= percent * len(values):
            return candidate
    raise AssertionError("unreachable")


def _requests(path: Path, count: int, seed: int = 7) -> list[tuple[str, str, int, float, str]]:
    rng = random.Random(seed)
    done = []
    lines = []
    for n in range(count):
        method, route = ROUTES[n % len(ROUTES)]
        cid = f"{n:032x}"
        ms = round(rng.lognormvariate(2, 0.8), 3)
        status = rng.choice([200, 200, 200, 404, 500])
        lines.append(line(n * 0.01, "INFO", cid, "working"))
        lines.append(
            access(
                n * 0.01 + 0.001,
                cid,
                method,
                route.replace("{order_id}", str(n)),
                route,
                status,
                ms,
            )
        )
        done.append((f"{method} {route}", cid, status, ms, ""))
    write(path, *lines)
    return done


def _rows(out: str) -> tuple[dict[str, dict[str, object]], list[dict[str, object]]]:
    items = [orjson.loads(x) for x in out.splitlines()]
    routes = {r["route"]: r for r in items if r["kind"] == "route"}
    return routes, [r for r in items if r["kind"] == "request"]


def test_percentiles_are_exact_nearest_rank(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = _requests(tmp_path / "app.log", 999)
    code, out, err = run(capsys, "slow", str(tmp_path), "--json", "--limit", "5")
    assert code == 0, err
    routes, slowest = _rows(out)
    assert set(routes) == {name for name, *_ in done}
    for name, row in routes.items():
        values = [ms for route, _, _, ms, _ in done if route == name]
        assert row["count"] == len(values)
        assert row["p50_ms"] == _percentile_brute_force(values, 50)
        assert row["p95_ms"] == _percentile_brute_force(values, 95)
        assert row["p99_ms"] == _percentile_brute_force(values, 99)
        assert row["max_ms"] == max(values)
    expected = sorted(done, key=lambda d: -d[3])[:5]
    assert [(r["correlation_id"], r["duration_ms"], r["status"]) for r in slowest] == [
        (cid, ms, status) for _, cid, status, ms, _ in expected
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=60),
    st.sampled_from([1, 50, 95, 99, 100]),
)
def test_nearest_rank_matches_the_definition(values: list[float], percent: int) -> None:
    assert nearest_rank(sorted(values), percent) == _percentile_brute_force(values, percent)


def test_the_same_answer_in_one_piece_and_over_processes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _requests(tmp_path / "app.log", 1500)
    code, whole, _ = run(capsys, "slow", str(tmp_path), "--json")
    assert code == 0
    monkeypatch.setattr(files, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(scan, "MIN_PIECE_BYTES", 16 << 10)
    monkeypatch.setattr(scan, "PARALLEL_MIN_BYTES", 0)
    code, pieces, _ = run(capsys, "slow", str(tmp_path), "--json")
    assert code == 0
    assert pieces == whole


def test_route_window_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done = _requests(tmp_path / "app.log", 300)
    code, out, err = run(capsys, "slow", str(tmp_path), "--json", "--route", "/health")
    assert code == 0, err
    routes, slowest = _rows(out)
    assert list(routes) == ["GET /health"]
    assert {r["route"] for r in slowest} == {"GET /health"}
    # The window keeps the first 100 requests (each 10 ms apart from the logs' base time).
    code, out, err = run(
        capsys, "slow", str(tmp_path), "--json", "--until", "2026-11-26T02:11:53.123456Z"
    )
    assert code == 0, err
    routes, _ = _rows(out)
    assert sum(int(r["count"]) for r in routes.values()) == 100  # type: ignore[call-overload]
    code, out, err = run(capsys, "slow", str(tmp_path))
    assert code == 0, err
    slowest_id = max(done, key=lambda d: d[3])[1]
    assert "nearest-rank" in out
    assert slowest_id in out


def test_no_request_in_the_window_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _requests(tmp_path / "app.log", 30)
    code, out, err = run(capsys, "slow", str(tmp_path), "--since", "1m")
    assert code == 1
    assert out == ""
    assert "no request in the window" in err


@pytest.mark.parametrize("shape", ["structlog", "ecs", "otlp"])
def test_a_shape_without_access_lines_is_said_plainly(
    shape: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    WRITERS[shape](tmp_path / "x.log", request_ids(3))
    code, out, err = run(capsys, "slow", str(tmp_path))
    assert code == 1
    assert out == ""
    assert 'no access line (message "request finished" with duration_ms) in these logs' in err


def test_structlog_access_lines_are_read_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {
            "event": "request finished",
            "request_id": f"r{n}",
            "level": "info",
            "timestamp": "2026-12-01T21:38:41.302027Z",
            "method": "GET",
            "route": "/a",
            "status": 200,
            "duration_ms": float(n),
        }
        for n in range(1, 101)
    ]
    (tmp_path / "s.log").write_bytes(
        b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in rows)
    )
    code, out, err = run(capsys, "slow", str(tmp_path), "--json", "--limit", "1")
    assert code == 0, err
    routes, slowest = _rows(out)
    assert routes["GET /a"]["p95_ms"] == 95.0
    assert [r["correlation_id"] for r in slowest] == ["r100"]
