"""``obsctl trace`` and ``obsctl errors top`` over Loki give the same answers as over files.

The golden log file is pushed into the loopback fake Loki, one entry per line at the line's
own timestamp; then each command runs once on the file and once on Loki and the outputs are
compared.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from obsctl.cli.app import main
from tests.obsctl.fake_loki import FakeLoki

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden.jsonl"
pytestmark = pytest.mark.timeout(60)


def _ns(ts: str) -> int:
    moment = datetime.fromisoformat(ts)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


@pytest.fixture
def loki(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLoki]:
    for name in ("OBSCTL_LOKI_URL", "OBSCTL_TENANT", "OBSCTL_LOKI_SELECTOR"):
        monkeypatch.delenv(name, raising=False)
    # The golden lines carry a fixed date: search far enough back to include it.
    days = int((datetime.now().timestamp() - _ns("2026-11-26T00:00:00Z") / 1e9) // 86400) + 2
    monkeypatch.setenv("OBSCTL_LOKI_SINCE", f"{max(days, 2)}d")
    with FakeLoki() as fake:
        lines = GOLDEN.read_text(encoding="utf-8").splitlines()
        fake.push(
            {"service": "golden", "env": "test"},
            [(_ns(orjson.loads(line)["ts"]), line) for line in lines],
        )
        fake.push({"service": "other"}, [(_ns("2026-11-26T02:11:52.124956Z"), "unrelated")])
        yield fake


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "cid",
    [
        "a1b2c3d4e5f60718293a4b5c6d7e8f90",
        "c3d4e5f60718293a4b5c6d7e8f90a1b2",
        "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "773fa688",  # a prefix, as support staff paste it
    ],
)
def test_trace_over_loki_matches_trace_over_files(
    loki: FakeLoki, capsys: pytest.CaptureFixture[str], cid: str
) -> None:
    code, from_files, err = run(capsys, "trace", cid, str(GOLDEN), "--json")
    assert code == 0, err
    code, from_loki, err = run(capsys, "trace", cid, "--loki-url", loki.url, "--json")
    assert code == 0, err
    assert from_loki == from_files
    assert from_loki.count("\n") >= 2
    code, text_files, _ = run(capsys, "trace", cid, str(GOLDEN))
    code, text_loki, _ = run(capsys, "trace", cid, "--loki-url", loki.url)
    assert code == 0
    # Identical but for where the lines came from ("3 in golden.jsonl" / "3 in loki").
    assert " in loki" in text_loki
    assert _without_sources(text_loki) == _without_sources(text_files)


def _without_sources(text: str) -> list[str]:
    return [
        line
        for line in text.splitlines()
        if " in golden.jsonl" not in line and " in loki" not in line
    ]


def test_trace_over_loki_sends_an_escaped_line_filter(
    loki: FakeLoki, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = 'abc"def\\ghi'
    code, _, err = run(
        capsys, "trace", hostile, "--loki-url", loki.url, "--selector", '{env="test"}'
    )
    assert code == 1, err
    assert "no log line has correlation ID" in err
    query = loki.requests[-1]["query"]
    assert query == '{env="test"} |= "abc\\"def\\\\ghi"'
    assert loki.requests[-1]["direction"] == "forward"


def test_trace_over_loki_pages_past_the_entry_cap(
    loki: FakeLoki, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request with more lines than Loki returns at once still comes back whole."""
    loki.max_entries_limit_per_query = 2
    code, from_loki, err = run(
        capsys, "trace", "a1b2c3d4e5f60718293a4b5c6d7e8f90", "--loki-url", loki.url, "--json"
    )
    assert code == 0, err
    assert from_loki.count("\n") == 3
    assert len(loki.requests) >= 3


def test_trace_over_loki_unknown_id_exits_1(
    loki: FakeLoki, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "trace", "ffffffffffffffff", "--loki-url", loki.url)
    assert code == 1
    assert "no log line has correlation ID" in err
    assert out == ""


def test_paths_and_loki_together_are_a_usage_error(
    loki: FakeLoki, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "trace", "a1b2c3d4", str(GOLDEN), "--loki-url", loki.url)
    assert code == 2
    assert "Loki URL" in err


WINDOW = ["--since", "2026-11-26T02:11:00Z", "--until", "2026-11-26T02:13:00Z"]


@pytest.mark.parametrize("by", ["internal_code", "exception", "status"])
def test_errors_top_over_loki_matches_files(
    loki: FakeLoki, capsys: pytest.CaptureFixture[str], by: str
) -> None:
    code, from_files, err = run(capsys, "errors", "top", str(GOLDEN), "--by", by, *WINDOW, "--json")
    assert code == 0, err
    code, from_loki, err = run(
        capsys, "errors", "top", "--by", by, *WINDOW, "--json", "--loki-url", loki.url
    )
    assert code == 0, err
    files_rows = [orjson.loads(line) for line in from_files.splitlines()]
    loki_rows = [orjson.loads(line) for line in from_loki.splitlines()]
    assert loki_rows == files_rows


def test_errors_top_over_loki_counts_with_a_metric_query(
    loki: FakeLoki, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "errors", "top", *WINDOW, "--loki-url", loki.url)
    assert code == 0, err
    assert "39901" in out
    counting = [r for r in loki.requests if r["path"] == "/loki/api/v1/query"]
    assert len(counting) == 1
    assert counting[0]["query"].startswith("sum by (internal_code) (count_over_time(")
    # Lines are fetched only as samples (first and last per group), never all of them.
    log_queries = [r for r in loki.requests if "count_over_time" not in r["query"]]
    assert log_queries
    assert all(int(r["limit"]) <= 6 for r in log_queries)


def test_errors_top_over_loki_refuses_by_route(
    loki: FakeLoki, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "errors", "top", "--by", "route", "--loki-url", loki.url)
    assert code == 2
    assert "access line" in err
