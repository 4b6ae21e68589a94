"""``obsctl trace`` over Loki: the query range comes from a v7 ID, narrow, widening only on a
miss up to ``OBSCTL_LOKI_MAX_RANGE``; IDs without a time keep the last ``OBSCTL_LOKI_SINCE``,
with ``--since/--until/--all``. The fake records every range it was asked."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest

from obsctl.cli.app import main
from tests.obsctl.archives import v7
from tests.obsctl.fake_loki import FakeLoki
from tests.obsctl.test_lookup import request, traffic

pytestmark = pytest.mark.timeout(60)

NS = 1_000_000_000
DAY = 86400.0
MINUTE = 60 * NS


def _ns(raw: bytes) -> int:
    from datetime import datetime

    moment = datetime.fromisoformat(orjson.loads(raw)["ts"].replace("Z", "+00:00"))
    return int(moment.timestamp()) * NS + moment.microsecond * 1000


@pytest.fixture
def loki(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLoki]:
    for name in ("OBSCTL_LOKI_URL", "OBSCTL_TENANT", "OBSCTL_LOKI_SELECTOR", "OBSCTL_LOKI_SINCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OBSCTL_LOKI_MAX_RANGE", raising=False)
    with FakeLoki() as fake:
        yield fake


def push(fake: FakeLoki, lines: list[bytes]) -> None:
    fake.push({"service": "shop"}, [(_ns(raw), raw.decode().rstrip("\n")) for raw in lines])


def trace(
    capsys: pytest.CaptureFixture[str], fake: FakeLoki, *args: str
) -> tuple[int, list[dict[str, object]], str]:
    code = main(["trace", *args, "--json", "--loki-url", fake.url])
    captured = capsys.readouterr()
    return code, [orjson.loads(x) for x in captured.out.splitlines()], captured.err


def test_an_id_from_three_days_ago_is_found_with_no_flags_in_a_narrow_range(
    loki: FakeLoki, capsys: pytest.CaptureFixture[str]
) -> None:
    issued = time.time() - 3 * DAY
    cid = v7(issued, tail=1)
    push(loki, traffic(issued - 3600, issued + 3600) + request(cid, issued + 0.01))
    code, records, err = trace(capsys, loki, cid)
    assert code == 0, err
    assert [r["message"] for r in records] == ["step 0", "request finished"]
    ranges = loki.log_ranges()
    assert len(ranges) == 1
    start, end = ranges[0]
    assert end - start <= 16 * MINUTE  # minutes, not a day
    assert start <= int(issued * NS) - 4 * MINUTE and end >= int(issued * NS) + 4 * MINUTE


def test_a_long_request_extends_the_range_at_its_edge(
    loki: FakeLoki, capsys: pytest.CaptureFixture[str]
) -> None:
    issued = time.time() - 2 * DAY
    cid = v7(issued, tail=2)
    push(loki, request(cid, issued, steps=41, gap=15.0))  # ten minutes of lines
    code, records, _ = trace(capsys, loki, cid)
    assert code == 0
    assert len(records) == 42
    ranges = loki.log_ranges()
    assert len(ranges) >= 2
    assert all(b - a <= 16 * MINUTE for a, b in ranges)
    assert all(ranges[i][1] <= ranges[i + 1][0] + 1 for i in range(len(ranges) - 1)), ranges


def test_a_v7_miss_widens_to_the_maximum_and_names_the_range(
    loki: FakeLoki, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBSCTL_LOKI_MAX_RANGE", "2d")
    issued = time.time() - 10 * DAY
    cid = v7(issued, tail=3)
    push(loki, traffic(issued - 3600, issued + 3600))
    code, records, err = trace(capsys, loki, cid)
    assert code == 1 and records == []
    assert f"no log line has correlation ID {cid!r} in Loki from " in err
    assert "(around the time in its ID" in err and "(up to OBSCTL_LOKI_MAX_RANGE=2d)" in err
    assert "give --since/--until to search elsewhere" in err
    ranges = loki.log_ranges()
    # Each step asks only for what was not searched yet; together they make two days.
    covered = sum(b - a for a, b in ranges)
    assert abs(covered - 2 * DAY * NS) <= len(ranges) * 2
    assert min(a for a, _ in ranges) == pytest.approx(int((issued - DAY) * NS), abs=NS)


def test_an_id_made_with_a_wrong_clock_is_found_by_widening(
    loki: FakeLoki, capsys: pytest.CaptureFixture[str]
) -> None:
    happened = time.time() - DAY
    cid = v7(happened - 2 * 3600, tail=4)  # the client's clock was two hours slow
    push(loki, request(cid, happened))
    code, records, err = trace(capsys, loki, cid)
    assert code == 0
    assert len(records) == 2
    assert "found by widening the search to" in err


def test_an_id_without_a_time_searches_the_last_24h_and_the_miss_names_the_flag(
    loki: FakeLoki, capsys: pytest.CaptureFixture[str]
) -> None:
    cid = "773fa6885c2e4d7f9a6b1c0d2e3f4a5b"
    three_days = time.time() - 3 * DAY
    push(loki, request(cid, three_days))
    code, _, err = trace(capsys, loki, cid)
    assert code == 1
    assert "in Loki from " in err and "(the last 24h)" in err
    assert "search further back with --since 7d, or --all (the last 7d)" in err
    ((start, end),) = loki.log_ranges()
    assert end - start == pytest.approx(DAY * NS, abs=NS)
    code, records, _ = trace(capsys, loki, cid, "--since", "4d")
    assert code == 0 and len(records) == 2
    code, records, _ = trace(capsys, loki, cid, "--all")
    assert code == 0 and len(records) == 2
    code, records, err = trace(capsys, loki, cid, "--since", "2d")
    assert code == 1 and "(--since/--until)" in err
