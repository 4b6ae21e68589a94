"""obsctl over Loki: exact paging, ``obsctl loki query`` and Loki's documented faults.

Everything runs against ``fake_loki.FakeLoki``, a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import httpx
import orjson
import pytest

from obsctl.cli.app import main
from obsctl.errors import BackendRejected
from obsctl.sources.http import BackendHttp, RetryPolicy
from obsctl.sources.loki import LogEntry, LokiClient, PagingReport, loki_error_text
from tests.obsctl.fake_loki import FakeLoki, parse_logql

T0 = 1_795_659_263_123_456_789  # beyond float precision: float(T0) != T0
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OBSCTL_LOKI_URL", "OBSCTL_TENANT", "OBSCTL_TOKEN", "OBSCTL_USERNAME"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeLoki]:
    with FakeLoki() as server:
        yield server


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


_open: list[LokiClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _open:
        _open.pop().http.close()


def client(fake: FakeLoki, *, page_size: int = 5000, tenant: str | None = None) -> LokiClient:
    headers = {"X-Scope-OrgID": tenant} if tenant else {}
    http = BackendHttp(
        httpx.Client(base_url=fake.url, headers=headers, timeout=5),
        name="Loki",
        retry=RetryPolicy(retries=0),
        error_text=loki_error_text,
    )
    _open.append(LokiClient(http, page_size=page_size))
    return _open[-1]


def crowded(fake: FakeLoki, *, streams: int = 3, stamps: int = 120, seed: int = 1) -> set[tuple]:
    """Entries where most timestamps are shared by several streams (page-boundary bait)."""
    rng = random.Random(seed)
    expected: set[tuple] = set()
    for s in range(streams):
        values = []
        for i in range(stamps):
            if rng.random() < 0.8:
                ts = T0 + i * 1000
                values.append((ts, f"s{s} i{i}"))
                if rng.random() < 0.3:  # two lines of one stream in one nanosecond
                    values.append((ts, f"s{s} i{i} again"))
        fake.push({"service": "api", "pod": f"p{s}"}, values)
        expected |= {(ts, (("pod", f"p{s}"), ("service", "api")), line) for ts, line in values}
    return expected


@pytest.mark.parametrize("tie_order", ["labels", "reverse", "shuffle"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("page_size", [3, 7, 50])
def test_paging_neither_loses_nor_repeats_equal_timestamps(
    fake: FakeLoki, tie_order: str, direction: str, page_size: int
) -> None:
    """Several streams share nanoseconds at page boundaries: every entry comes back once."""
    fake.tie_order = tie_order
    expected = crowded(fake)
    report = PagingReport()
    got = list(
        client(fake, page_size=page_size).entries(
            '{service="api"}',
            start_ns=T0,
            end_ns=T0 + 10**9,
            limit=None,
            direction=direction,
            report=report,
        )
    )
    keys = [e.key() for e in got]
    assert len(keys) == len(set(keys)), "an entry came back twice"
    assert set(keys) == expected
    stamps = [e.ts for e in got]
    assert stamps == sorted(stamps, reverse=direction == "backward")
    assert report.pages > len(expected) // page_size
    assert not report.truncated


def test_naive_paging_past_the_last_timestamp_loses_entries(fake: FakeLoki) -> None:
    """Control: paging like logcli (start = last + 1ns) drops entries sharing a boundary."""
    expected = crowded(fake)
    loki = client(fake)
    seen: list[LogEntry] = []
    start = T0
    while True:
        page, _ = loki.query_range_page(
            '{service="api"}', start_ns=start, end_ns=T0 + 10**9, limit=7, direction="forward"
        )
        seen.extend(page)
        if len(page) < 7:
            break
        start = page[-1].ts + 1
    assert len(seen) < len(expected)


def test_limit_counts_entries_across_streams_and_reports_truncation(fake: FakeLoki) -> None:
    expected = crowded(fake)
    report = PagingReport()
    got = list(
        client(fake, page_size=7).entries(
            '{service="api"}', start_ns=T0, end_ns=T0 + 10**9, limit=100, report=report
        )
    )
    assert len(got) == 100
    assert report.truncated
    exact = PagingReport()
    everything = list(
        client(fake).entries(
            '{service="api"}', start_ns=T0, end_ns=T0 + 10**9, limit=len(expected), report=exact
        )
    )
    assert len(everything) == len(expected)
    assert not exact.truncated


def test_start_is_inclusive_and_end_exclusive(fake: FakeLoki) -> None:
    fake.push({"service": "api"}, [(T0, "first"), (T0 + 1, "second"), (T0 + 2, "third")])
    page, _ = client(fake).query_range_page(
        '{service="api"}', start_ns=T0 + 1, end_ns=T0 + 2, limit=10, direction="forward"
    )
    assert [e.line for e in page] == ["second"]


def test_lower_server_entry_cap_is_learned(fake: FakeLoki) -> None:
    """A Loki configured with max_entries_limit_per_query=10 refuses 5000; paging adapts."""
    fake.max_entries_limit_per_query = 10
    expected = crowded(fake, stamps=40)
    got = list(client(fake).entries('{service="api"}', start_ns=T0, end_ns=T0 + 10**9, limit=None))
    assert {e.key() for e in got} == expected
    assert len(got) == len(expected)
    assert fake.requests[0]["limit"] == "5000"
    assert fake.requests[1]["limit"] == "10"


def test_too_many_entries_in_one_nanosecond_is_an_error_not_a_loop(fake: FakeLoki) -> None:
    """More entries in one nanosecond than the server's cap cannot be paged: say so."""
    fake.max_entries_limit_per_query = 8
    fake.push({"service": "api"}, [(T0, f"line {i}") for i in range(10)])
    with pytest.raises(BackendRejected, match="share the timestamp"):
        list(
            client(fake, page_size=4).entries(
                '{service="api"}', start_ns=T0, end_ns=T0 + 10, limit=None
            )
        )


def test_loki_query_json_keeps_nanoseconds_exact(
    fake: FakeLoki, capsys: pytest.CaptureFixture[str]
) -> None:
    line = '{"level":"ERROR","message":"boom"}'
    fake.push({"service": "api"}, [(T0, line)])
    assert float(T0) != T0
    code, out, err = run(
        capsys, "loki", "query", '{service="api"}', "--loki-url", fake.url,
        "--from", str(T0 - 5), "--to", str(T0 + 5), "--json",
    )  # fmt: skip
    assert code == 0, err
    assert orjson.loads(out) == {"ts": str(T0), "labels": {"service": "api"}, "line": line}
    assert out.count("\n") == 1


def test_loki_query_says_when_the_limit_cut_the_result(
    fake: FakeLoki, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.push({"service": "api"}, [(T0 + i, f"line {i}") for i in range(30)])
    code, out, err = run(
        capsys, "loki", "query", '{service="api"}', "--loki-url", fake.url,
        "--from", str(T0), "--to", str(T0 + 100), "--limit", "10", "--json",
    )  # fmt: skip
    assert code == 0
    assert len(out.splitlines()) == 10
    assert "stopped at --limit 10" in err
    # Newest first by default.
    assert orjson.loads(out.splitlines()[0])["line"] == "line 29"
    code, out, err = run(
        capsys, "loki", "query", '{service="api"}', "--loki-url", fake.url,
        "--from", str(T0), "--to", str(T0 + 100), "--limit", "30", "--forward", "--json",
    )  # fmt: skip
    assert code == 0
    assert len(out.splitlines()) == 30
    assert orjson.loads(out.splitlines()[0])["line"] == "line 0"
    assert err == ""


def test_hostile_lines_are_escaped_on_screen_and_kept_in_json(
    fake: FakeLoki, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = "evil \x1b[2J \x9b31m \u202e end\u2028more"
    fake.push({"service": "api"}, [(T0, hostile)])
    args = ["loki", "query", '{service="api"}', "--loki-url", fake.url, "--from", str(T0 - 1)]
    code, out, _ = run(capsys, *args, "--to", str(T0 + 1))
    assert code == 0
    for raw in ("\x1b", "\x9b", "\u202e", "\u2028"):
        assert raw not in out
    assert "\\u001b[2J" in out
    code, out, _ = run(capsys, *args, "--to", str(T0 + 1), "--json")
    assert orjson.loads(out)["line"] == hostile


def test_nothing_matched_exits_1(fake: FakeLoki, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "loki", "query", '{service="none"}', "--loki-url", fake.url)
    assert code == 1
    assert out == ""
    assert "no log lines matched" in err


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ('{service="api"', "parse error at line 1"),
        ('{place="g\\arden"} |= "x"', "invalid char escape"),
        ('{service=~".*"}', "empty-compatible value"),
    ],
)
def test_bad_logql_is_rejected_with_lokis_message(
    fake: FakeLoki, capsys: pytest.CaptureFixture[str], query: str, shown: str
) -> None:
    code, out, err = run(capsys, "loki", "query", query, "--loki-url", fake.url)
    assert code == 4
    assert out == ""
    assert shown in err
    assert err.count("\n") == 1
    assert len(fake.requests) == 1, "a 400 must not be retried"


def test_lying_json_content_type_on_a_400_shows_the_text(
    fake: FakeLoki, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.inject(400, "parse error : syntax error: unexpected $end", content_type="application/json")
    code, _, err = run(capsys, "loki", "query", '{service="api"}', "--loki-url", fake.url)
    assert code == 4
    assert "parse error : syntax error: unexpected $end" in err


def test_tenant_header_is_required_and_sent(
    fake: FakeLoki, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.require_tenant = True
    fake.push({"service": "api"}, [(T0, "hello")])
    span = ["--from", str(T0 - 1), "--to", str(T0 + 1)]
    code, _, err = run(capsys, "loki", "query", '{service="api"}', "--loki-url", fake.url, *span)
    assert code == 4
    assert "no org id" in err
    assert "--tenant" in err
    monkeypatch.setenv("OBSCTL_TENANT", "team-a")
    code, out, err = run(capsys, "loki", "query", '{service="api"}', "--loki-url", fake.url, *span)
    assert code == 0, err
    assert "hello" in out


def test_504_is_retried_then_reported(fake: FakeLoki, capsys: pytest.CaptureFixture[str]) -> None:
    text = "request timed out, decrease the duration of the request or add more label matchers"
    for _ in range(3):
        fake.inject(504, text)
    code, _, err = run(
        capsys, "loki", "query", '{service="api"}', "--loki-url", fake.url, "--timeout", "2"
    )
    assert code == 3
    assert "HTTP 504 after 3 attempts" in err
    assert "request timed out" in err
    assert len(fake.requests) == 3


def test_no_loki_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "loki", "query", '{service="api"}')
    assert code == 2
    assert "OBSCTL_LOKI_URL" in err


def test_fake_refuses_a_limit_above_the_entry_cap(fake: FakeLoki) -> None:
    response = httpx.get(
        f"{fake.url}/loki/api/v1/query_range",
        params={"query": '{service="api"}', "limit": "10000"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == (
        "max entries limit per query exceeded, limit > max_entries_limit_per_query (10000 > 5000)"
    )


def test_fake_refuses_log_queries_on_the_instant_endpoint(fake: FakeLoki) -> None:
    response = httpx.get(
        f"{fake.url}/loki/api/v1/query", params={"query": '{service="api"}'}, timeout=5
    )
    assert response.status_code == 400
    assert response.text.startswith("log queries are not supported as an instant query type")


def test_fake_json_stage_flattens_nested_keys() -> None:
    query = parse_logql('{a="b"} | json | exception_type="KeyError"')
    from tests.obsctl.fake_loki import run_pipeline

    assert not isinstance(query, type(None))
    stages = query.stages  # type: ignore[union-attr]
    line = '{"exception":{"type":"KeyError"},"tags":["x"]}'
    labels = run_pipeline(stages, {"a": "b"}, line)
    assert labels == {"a": "b", "exception_type": "KeyError"}


def test_log_records_render_with_tails_printer(
    fake: FakeLoki, capsys: pytest.CaptureFixture[str]
) -> None:
    line = (
        '{"ts":"2026-11-26T02:11:52.129456Z","level":"ERROR",'
        '"correlation_id":"773fa6885c2e4d7f9a6b1c0d2e3f4a5b","message":"order id=42 not found",'
        '"logger":"foundation.handlers","internal_code":21101}'
    )
    fake.push({"service": "api"}, [(T0, line), (T0 + 1, "plain [bold]text[/bold]")])
    code, out, err = run(
        capsys, "loki", "query", '{service="api"}', "--loki-url", fake.url,
        "--from", str(T0), "--to", str(T0 + 5), "--forward",
    )  # fmt: skip
    assert code == 0, err
    record_line, plain_line = out.splitlines()
    assert "ERROR" in record_line and "773fa688" in record_line
    assert "order id=42 not found" in record_line
    assert '"level"' not in record_line
    assert plain_line.endswith("{service=api} plain [bold]text[/bold]")
