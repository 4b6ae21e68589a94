"""``obsctl trace`` of a UUIDv7 ID: it looks where the ID's time points (contract 6).

Proof that only the window is read: the same ID also appears on a line a day away (an ID reused
by a buggy client); a lookup by time shows the request's lines only, ``--all`` shows that line
too. Every miss widens and says which time range it searched.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from obsctl.analysis.idtime import (
    MARGIN_S,
    Span,
    ago_text,
    extensions,
    id_time,
    issued_text,
    trusted_id_time,
    widening_steps,
    window_around,
)
from obsctl.sources.archives import member_index
from tests.obsctl.archives import fx_archive, rotated_name, v7, write_archive
from tests.obsctl.logdata import access, line, run, write

DAY = 86400.0
# 2026-11-20 11:43:22.5 UTC
T0 = datetime(2026, 11, 20, 11, 43, 22, 500000, tzinfo=UTC).timestamp()


def ts(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def traffic(start: float, end: float, *, every: float = 60.0, service: str = "shop") -> list[bytes]:
    """Other requests, one every ``every`` seconds: a line and an access line each."""
    out = []
    moment = start
    number = 0
    while moment < end:
        cid = v7(moment, tail=number + 1_000_000)
        out.append(line(ts(moment), cid=cid, message="listing", service=service))
        out.append(access(ts(moment + 0.004), cid, "GET", f"/items/{number}", "/items/{n}", 200, 4))
        moment += every
        number += 1
    return out


def request(cid: str, start: float, *, service: str = "shop", steps: int = 1, gap: float = 0.01):
    """The traced request: ``steps`` work lines ``gap`` apart, then its access line."""
    lines = [
        line(ts(start + i * gap), cid=cid, message=f"step {i}", service=service)
        for i in range(steps)
    ]
    took = steps * gap
    lines.append(
        line(
            ts(start + took),
            "INFO",
            cid,
            "request finished",
            logger="foundation.access",
            service=service,
            method="POST",
            path="/orders",
            route="/orders",
            status=201,
            duration_ms=round(took * 1000, 3),
        )
    )
    return lines


def merged(*groups: list[bytes]) -> list[bytes]:
    return sorted((ln for group in groups for ln in group), key=lambda ln: orjson.loads(ln)["ts"])


def json_trace(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict], str]:
    code, out, err = run(capsys, "trace", *args, "--json")
    return code, [orjson.loads(x) for x in out.splitlines()], err


CID = v7(T0, tail=42)


# -- pure: the time in an ID and the windows -------------------------------------------------


def test_rfc_vector_time_and_shapes() -> None:
    assert id_time("017f22e279b07cc398c4dc0c0c07398f") == 1_645_557_742.0
    assert id_time(CID) == pytest.approx(T0, abs=0.001)
    assert id_time("773fa6885c2e4d7f9a6b1c0d2e3f4a5b") is None  # v4
    assert id_time("017f22e2") is None  # a prefix carries no time
    assert id_time("017f22e279b07cc3c8c4dc0c0c07398f") is None  # wrong variant


def test_untrusted_times_say_why() -> None:
    now = T0 + 11 * DAY
    issued, why = trusted_id_time(CID, now=now)
    assert why is None and issued is not None
    assert issued.start == issued.end == pytest.approx(T0, abs=0.001)
    old = v7(datetime(2019, 6, 1, tzinfo=UTC).timestamp())
    assert trusted_id_time(old, now=now)[1] == (
        "the time in the ID (2019-06-01 00:00:00 UTC) is before 2020"
    )
    future = v7(now + 3600)
    moment, why = trusted_id_time(future, now=now)
    assert moment is None and why is not None and "in the future" in why
    assert trusted_id_time("773fa6885c2e4d7f9a6b1c0d2e3f4a5b", now=now) == (None, None)
    # A prefix of a v7 ID stands for a range of times (8 hex digits: 65.5 seconds)...
    prefix, why = trusted_id_time(CID[:8], now=now)
    assert why is None and prefix is not None
    assert prefix.start <= T0 <= prefix.end and prefix.end - prefix.start == pytest.approx(65.535)
    # ...but a v4 prefix read as a time is nowhere near now: no time, and no notice.
    assert trusted_id_time("773fa688", now=now) == (None, None)
    assert trusted_id_time(CID[:12] + "4abc", now=now) == (None, None)  # version 4


def test_window_extensions_and_widening() -> None:
    window = window_around(Span(T0, T0), now=T0 + DAY)
    assert window == Span(T0 - MARGIN_S, T0 + 2 * MARGIN_S)
    assert extensions(window, [T0, T0 + 1, T0 + 240]) == []
    # A line 7 minutes after the ID: the window must reach 5 minutes past it.
    assert extensions(window, [T0 + 420]) == [Span(T0 + 2 * MARGIN_S, T0 + 420 + MARGIN_S)]
    assert extensions(window, [T0 - 360]) == [Span(T0 - 360 - MARGIN_S, T0 - MARGIN_S)]
    # Never past now.
    assert window_around(Span(T0, T0), now=T0 + 10).end == T0 + 10
    steps = widening_steps(T0, window, limit_s=2 * DAY, now=T0 + 30 * DAY)
    assert [s.end - s.start for s in steps] == [7200, 43200, 2 * DAY]


def test_issued_text() -> None:
    assert issued_text(T0, now=T0 + 11 * DAY + 3600) == "2026-11-20 11:43:22 UTC, 11 days ago"
    assert ago_text(3 * 3600 + 5) == "3 hours ago"
    assert ago_text(1) == "just now"
    assert ago_text(-300) == "in 5 minutes"


# -- the archive format's member index --------------------------------------------------------


def test_member_index_reads_times_without_inflating_and_zcat_reads_it_all(tmp_path: Path) -> None:
    lines = traffic(T0, T0 + 3 * 3600, every=5)
    data = fx_archive(lines, member_bytes=64 << 10)
    path = write_archive(tmp_path / rotated_name("shop", T0 + 3 * 3600), data)
    index = member_index(str(path))
    assert index is not None and index.rest is None
    assert len(index.members) > 5
    assert sum(m.size for m in index.members) == len(data)
    firsts = [m.bounds()[0] for m in index.members]
    assert firsts == sorted(firsts)
    assert index.members[0].bounds()[0] == pytest.approx(T0, abs=1e-6)
    assert gzip.decompress(data) == b"".join(lines)
    for tool in (["gzip", "-t"], ["zcat"]):
        if shutil.which(tool[0]) is None:
            pytest.skip(f"{tool[0]} is not installed")
        done = subprocess.run([*tool, str(path)], capture_output=True, check=False, timeout=30)
        assert done.returncode == 0, done.stderr
        if tool[0] == "zcat":
            assert done.stdout == b"".join(lines)


def test_a_plain_gzip_has_no_index_and_a_lying_size_is_not_trusted(tmp_path: Path) -> None:
    plain = write_archive(tmp_path / "a.jsonl.gz", gzip.compress(b"".join(traffic(T0, T0 + 60))))
    assert member_index(str(plain)) is None
    data = bytearray(fx_archive(traffic(T0, T0 + 3600, every=5), member_bytes=16 << 10))
    # The first member claims 7 bytes more than it has: it and what follows are read as gzip.
    size = int.from_bytes(data[16:24], "little")
    data[16:24] = (size + 7).to_bytes(8, "little")
    index = member_index(str(write_archive(tmp_path / "b.jsonl.gz", bytes(data))))
    assert index is None


# -- lookups over files -----------------------------------------------------------------------


def _far_copy(cid: str, at: float) -> bytes:
    return line(ts(at), cid=cid, message="far away: the same ID reused a day later")


def test_plain_file_is_read_around_the_time_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = request(CID, T0 + 0.002)
    log = merged(traffic(T0 - DAY, T0 + DAY), mine, [_far_copy(CID, T0 + 0.9 * DAY)])
    write(tmp_path / "shop.jsonl", *log)
    code, records, err = json_trace(capsys, CID, str(tmp_path))
    assert code == 0, err
    assert [r["message"] for r in records] == ["step 0", "request finished"]
    code, records, _ = json_trace(capsys, CID, str(tmp_path), "--all")
    assert code == 0
    assert records[-1]["message"].startswith("far away")


def test_a_prefix_of_a_v7_id_is_looked_up_around_its_time_and_may_be_ambiguous(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Support staff paste the first characters: with v7 IDs those are the time, so a prefix
    narrows the search too; IDs issued in the same minute share 8 characters."""
    neighbour = v7(T0 + 1.5, tail=43)
    assert neighbour[:8] == CID[:8]
    log = merged(
        traffic(T0 - DAY, T0 + DAY),
        request(CID, T0),
        request(neighbour, T0 + 1.5),
        [_far_copy(CID, T0 + 0.9 * DAY)],
    )
    write(tmp_path / "shop.jsonl", *log)
    code, _, err = run(capsys, "trace", CID[:8], str(tmp_path))
    assert code == 2
    # The other traffic had a request in that minute too.
    assert f"ID prefix {CID[:8]!r} matches 3 requests" in err
    assert CID in err and neighbour in err
    code, records, _ = json_trace(capsys, CID[:30], str(tmp_path))
    assert code == 0
    assert [r["message"] for r in records] == ["step 0", "request finished"]


def test_summary_says_when_the_request_was_issued(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "shop.jsonl", *merged(traffic(T0 - 3600, T0 + 3600), request(CID, T0)))
    code, out, _ = run(capsys, "trace", CID, str(tmp_path))
    assert code == 0
    assert "issued" in out and "2026-11-20 11:43:22 UTC," in out and "ago" in out


@pytest.mark.parametrize("skew", [-120.0, 120.0])
def test_two_services_with_clocks_two_minutes_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], skew: float
) -> None:
    shop = merged(traffic(T0 - DAY, T0 + DAY), request(CID, T0))
    payments = merged(
        traffic(T0 - DAY, T0 + DAY, service="payments"),
        request(CID, T0 + skew, service="payments"),
    )
    write(tmp_path / "shop.jsonl", *shop)
    write(tmp_path / "payments.jsonl", *payments)
    code, records, err = json_trace(capsys, CID, str(tmp_path))
    assert code == 0, err
    assert sorted({r["service"] for r in records}) == ["payments", "shop"]
    assert len(records) == 4


def test_background_lines_after_the_access_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    late = [line(ts(T0 + 60 * k), cid=CID, message=f"background {k}") for k in (1, 4, 8)]
    write(tmp_path / "shop.jsonl", *merged(traffic(T0 - DAY, T0 + DAY), request(CID, T0), late))
    code, records, _ = json_trace(capsys, CID, str(tmp_path))
    assert code == 0
    assert [r["message"] for r in records][-3:] == ["background 1", "background 4", "background 8"]


@pytest.mark.parametrize("where", ["plain", "archive"])
def test_a_ten_minute_request_comes_out_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    long = request(CID, T0, steps=41, gap=15.0)  # a line every 15 s for 10 minutes, then done
    log = merged(traffic(T0 - DAY, T0 + DAY, every=20), long)
    if where == "plain":
        write(tmp_path / "shop.jsonl", *log)
    else:
        data = fx_archive(log, member_bytes=32 << 10)
        write_archive(tmp_path / rotated_name("shop", T0 + DAY), data)
    code, records, err = json_trace(capsys, CID, str(tmp_path))
    assert code == 0, err
    assert len(records) == 42
    assert records[-1]["duration_ms"] == 615000.0


def test_request_split_by_a_rotation_across_archive_members(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lines in several small members of the rotated archive and in the live file."""
    rotation = T0 + 90
    steps = request(CID, T0, steps=13, gap=15.0)
    before = merged(traffic(T0 - DAY, rotation, every=2), [s for s in steps if _at(s) < rotation])
    after = merged(
        traffic(rotation, rotation + 3600, every=2), [s for s in steps if _at(s) >= rotation]
    )
    write_archive(
        tmp_path / rotated_name("shop", rotation), fx_archive(before, member_bytes=8 << 10)
    )
    write(tmp_path / "shop.jsonl", *after)
    index = member_index(str(tmp_path / rotated_name("shop", rotation)))
    assert index is not None
    holding = [m for m in index.members if _holds(m.bounds(), T0, rotation)]
    assert len(holding) > 1  # the request's lines really span a member boundary
    code, records, err = json_trace(capsys, CID, str(tmp_path))
    assert code == 0, err
    assert len(records) == 14
    assert len({r["message"] for r in records}) == 14


def _at(raw: bytes) -> float:
    return datetime.fromisoformat(orjson.loads(raw)["ts"].replace("Z", "+00:00")).timestamp()


def _holds(bounds: tuple[float | None, float | None], start: float, end: float) -> bool:
    first, last = bounds
    return first is not None and last is not None and first <= end and last >= start


def test_daily_plain_gzip_archives_as_loguru_writes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for day in range(5):
        start = T0 - 2 * DAY + day * DAY
        lines = traffic(start, start + DAY, every=120)
        if day == 2:
            lines = merged(lines, request(CID, T0))
        stamp = datetime.fromtimestamp(start, tz=UTC).strftime("%Y-%m-%d_%H-%M-%S_%f")
        write_archive(
            tmp_path / f"shop.{stamp}.log.gz", gzip.compress(b"".join(lines)), mtime=start + DAY
        )
    code, records, err = json_trace(capsys, CID, str(tmp_path))
    assert code == 0, err
    assert len(records) == 2


def test_lines_out_of_time_order_are_still_found(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pieces of two days pasted in the wrong order: the binary search is not trusted there."""
    early = traffic(T0 - DAY, T0 - 3600)
    late = traffic(T0 + 3600, T0 + DAY)
    middle = merged(traffic(T0 - 3600, T0 + 3600), request(CID, T0))
    write(tmp_path / "pasted.jsonl", *early, *late, *middle)
    code, records, err = json_trace(capsys, CID, str(tmp_path))
    assert code == 0, err
    assert len(records) == 2
    assert "pasted.jsonl: lines are not in time order; read it whole" in err


def test_an_id_made_with_a_wrong_clock_is_found_by_widening(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A client made a v7 ID with a clock three hours slow: found, and said so."""
    cid = v7(T0 - 3 * 3600, tail=7)
    write(tmp_path / "shop.jsonl", *merged(traffic(T0 - DAY, T0 + DAY), request(cid, T0)))
    code, records, err = json_trace(capsys, cid, str(tmp_path))
    assert code == 0
    assert len(records) == 2
    assert "around the time in its ID" in err and "3 hours later" in err


@pytest.mark.parametrize("why", ["before 2020", "in the future"])
def test_v7_ids_from_the_future_or_before_2020_are_searched_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], why: str
) -> None:
    past = datetime(2019, 3, 1, tzinfo=UTC).timestamp()
    cid = v7(past if why == "before 2020" else time.time() + 3 * DAY, tail=9)
    write(tmp_path / "shop.jsonl", *merged(traffic(T0 - DAY, T0 + DAY), request(cid, T0)))
    code, records, err = json_trace(capsys, cid, str(tmp_path))
    assert code == 0
    assert len(records) == 2
    assert why in err and "searching as for an ID without a time" in err


def test_a_miss_widens_and_names_what_it_searched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "shop.jsonl", *traffic(T0 - DAY, T0 + DAY))
    write_archive(
        tmp_path / rotated_name("shop", T0 - DAY),
        fx_archive(traffic(T0 - 2 * DAY, T0 - DAY, every=300)),
    )
    code, out, err = run(capsys, "trace", CID, str(tmp_path))
    assert code == 1
    assert out == ""
    assert (
        f"no log line has correlation ID {CID!r} around the time in its ID "
        "(2026-11-20 11:38:22 → 2026-11-20 11:53:22 UTC) nor in all 2 files "
        "(2026-11-18 11:43:22 → 2026-11-21 11:42:22 UTC)"
    ) in err


def test_since_until_bound_any_lookup_and_a_miss_names_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v4 = "773fa6885c2e4d7f9a6b1c0d2e3f4a5b"
    mine = request(v4, T0)
    write(tmp_path / "shop.jsonl", *merged(traffic(T0 - DAY, T0 + DAY), mine))
    code, records, _ = json_trace(
        capsys, v4, str(tmp_path), "--since", ts(T0 - 600), "--until", ts(T0 + 600)
    )
    assert code == 0 and len(records) == 2
    code, out, err = run(
        capsys, "trace", v4, str(tmp_path), "--since", ts(T0 + 600), "--until", ts(T0 + 3600)
    )
    assert code == 1 and out == ""
    assert "in 2026-11-20 11:53:22 → 2026-11-20 12:43:22 UTC (--since/--until)" in err
    assert "widen --since/--until" in err
    code, _, err = run(capsys, "trace", v4, str(tmp_path), "--all", "--since", "1h")
    assert code == 2
    assert "--all and --since/--until both given" in err


# -- archives written by foundation's own rotation ---------------------------------------------


@pytest.mark.proc
def test_archives_from_foundations_rotation_under_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines written at full speed through foundation's rotating file (rotation every 128 KB,
    members of 32 KB, compression in its background thread meanwhile): every archive passes
    ``gzip -t``, ``zcat`` gives back every line, and a ten-minute request spread over several
    archives and members comes out whole, read by member headers."""
    from foundation import logfiles

    monkeypatch.setattr(logfiles, "MEMBER_BYTES", 32 << 10)
    long = request(CID, T0, steps=41, gap=15.0)
    written = merged(traffic(T0 - 4 * 3600, T0 + 4 * 3600, every=3), long)
    sink = logfiles.RotatingFile(
        str(tmp_path),
        "shop",
        per_process=False,
        rotation=logfiles.Rotation.parse(128 << 10),
        retention=None,
        compress=True,
    )
    try:
        for raw in written:
            sink.write(raw)
        assert sink.drain(timeout=60)
    finally:
        sink.stop()
    archives = sorted(tmp_path.glob("shop.*.jsonl.gz"))
    assert len(archives) >= 5
    assert not list(tmp_path.glob("shop.*.jsonl"))  # every rotated file was compressed
    read_back = b""
    for archive in archives:
        index = member_index(str(archive))
        assert index is not None and index.rest is None and len(index.members) >= 2
        if shutil.which("gzip") is not None:
            tested = subprocess.run(
                ["gzip", "-t", str(archive)], capture_output=True, timeout=30, check=False
            )
            assert tested.returncode == 0, tested.stderr
            unzipped = subprocess.run(
                ["zcat", str(archive)], capture_output=True, timeout=30, check=False
            )
            assert unzipped.returncode == 0
            assert unzipped.stdout == gzip.decompress(archive.read_bytes())
        read_back += gzip.decompress(archive.read_bytes())
    read_back += (tmp_path / "shop.jsonl").read_bytes()
    assert read_back == b"".join(written)
    code, records, err = json_trace(capsys, CID, str(tmp_path))
    assert code == 0, err
    assert len(records) == 42
    assert [r["message"] for r in records][-1] == "request finished"
