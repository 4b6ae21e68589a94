"""obsctl slow reads foundation's access lines from their bytes: over every kind of line it does
not read that way (other keys, escapes, damage a crash leaves), its answer is the parser's."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obsctl.analysis.latency import LatencyAccumulator, nearest_rank, ranked
from obsctl.query import latency, scan
from obsctl.readers.parse import parse_records_checked, ts_to_epoch
from obsctl.sources import files
from obsctl.sources.files import Damage, expand_paths
from tests.obsctl.logdata import access, line, ts

Variant = Callable[[int, random.Random], bytes]


def _plain(n: int, rng: random.Random) -> bytes:
    route = rng.choice(["/orders/{order_id}", "/orders", "/health"])
    method = "POST" if route == "/orders" else "GET"
    ms = round(rng.lognormvariate(2, 0.8), 3)
    return access(n * 0.01, f"{n:032x}", method, route.replace("{order_id}", "7"), route, 200, ms)


def _record(n: int, rng: random.Random, **changes: object) -> bytes:
    doc = orjson.loads(_plain(n, rng))
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return orjson.dumps(doc) + b"\n"


def _words_elsewhere(n: int, rng: random.Random) -> bytes:
    """The access message's words as another key's value, before the access keys."""
    doc = orjson.loads(_plain(n, rng))
    head = {"ts": doc.pop("ts"), "message": "cache miss", "event": doc.pop("message")}
    return orjson.dumps({**head, **doc}) + b"\n"


VARIANTS: dict[str, Variant] = {
    "plain": _plain,
    "integer duration": lambda n, rng: _record(n, rng, duration_ms=rng.randrange(1, 40)),
    "no route (the path is used)": lambda n, rng: _record(n, rng, route=None),
    "empty route": lambda n, rng: _record(n, rng, route=""),
    "escaped route": lambda n, rng: _record(n, rng, route='/a"b\\c'),
    "non-ASCII path": lambda n, rng: _record(n, rng, path="/caf\u00e9"),
    "extra after the duration": lambda n, rng: _record(n, rng, user_id=n),
    "nested extra": lambda n, rng: _record(n, rng, route=None, ctx={"route": "/x"}),
    "no correlation ID": lambda n, rng: _record(n, rng, correlation_id=None),
    "string duration": lambda n, rng: _record(n, rng, duration_ms="12.5"),
    "boolean duration": lambda n, rng: _record(n, rng, duration_ms=True),
    "another message": lambda n, rng: _record(n, rng, message="request finished soon"),
    "the words in another key": _words_elsewhere,
    "status as text": lambda n, rng: _record(n, rng, status="200"),
    "app line": lambda n, rng: line(n * 0.01, "INFO", f"{n:032x}", "working"),
    "spaced writer": lambda n, rng: json.dumps(orjson.loads(_plain(n, rng))).encode() + b"\n",
}


def _damage(raw: bytes, how: str, rng: random.Random) -> bytes:
    body = raw.rstrip(b"\n")
    if how == "torn":  # a writer killed mid-line, the next record written after it
        return body[: rng.randrange(1, len(body))] + raw
    if how == "nul run":
        return b"\x00" * rng.randrange(1, 9) + raw
    if how == "non-UTF-8":
        at = rng.randrange(len(body))
        return body[:at] + b"\xff\xfe" + body[at:] + b"\n"
    if how == "cut":
        return body[: rng.randrange(1, len(body))] + b"\n"
    if how == "end cut":  # the closing brace, or the duration's last digits, lost
        return body[: -rng.randrange(1, 4)] + b"\n"
    return raw


def _parser_answer(
    raw_lines: list[bytes], *, since: float | None, until: float | None, route: str | None
) -> tuple[dict[str, tuple[int, float, float, float, float]], int]:
    """Per route (count, p50, p95, p99, max), and the access lines, by parsing every line."""
    by_route: dict[str, list[float]] = {}
    access_lines = 0
    for raw in raw_lines:
        records, _ = parse_records_checked(raw)
        for record in records:
            data = record.data
            duration = data.get("duration_ms")
            if data.get("message") != "request finished" or isinstance(duration, bool):
                continue
            if not isinstance(duration, int | float):
                continue
            access_lines += 1
            epoch = record.epoch
            if (since is not None or until is not None) and epoch is None:
                continue
            if (since is not None and epoch < since) or (until is not None and epoch >= until):
                continue
            target = data.get("route") or data.get("path") or "?"
            method = data.get("method")
            name = f"{method} {target}" if isinstance(method, str) and method else target
            if route is not None and route not in (name, target):
                continue
            by_route.setdefault(name, []).append(float(duration))
    answer = {}
    for name, values in by_route.items():
        ordered = sorted(values)
        answer[name] = (
            len(ordered),
            nearest_rank(ordered, 50),
            nearest_rank(ordered, 95),
            nearest_rank(ordered, 99),
            ordered[-1],
        )
    return answer, access_lines


def _collect(
    path: Path,
    *,
    limit: int = 3,
    since: float | None = None,
    until: float | None = None,
    route: str | None = None,
) -> latency.LatencyScan:
    return latency.collect_latency(
        expand_paths([str(path)], default_dir="x"),
        limit=limit,
        since=since,
        until=until,
        route=route,
        damage=Damage(),
    )


def _scanned(
    path: Path, *, since: float | None, until: float | None, route: str | None
) -> tuple[dict[str, tuple[int, float, float, float, float]], int]:
    found = _collect(path, since=since, until=until, route=route)
    report = found.accumulator.report()
    rows = {r.route: (r.count, r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms) for r in report.routes}
    return rows, found.access_lines


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kinds=st.lists(
        st.tuples(
            st.sampled_from(sorted(VARIANTS)),
            st.sampled_from(
                ["none", "none", "none", "torn", "nul run", "non-UTF-8", "cut", "end cut"]
            ),
        ),
        min_size=1,
        max_size=80,
    ),
    seed=st.integers(0, 2**16),
    window=st.sampled_from([None, "since", "until"]),
    route=st.sampled_from([None, "/health", "POST /orders"]),
    pieces=st.booleans(),
)
def test_the_byte_reader_answers_what_the_parser_answers(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kinds: list[tuple[str, str]],
    seed: int,
    window: str | None,
    route: str | None,
    pieces: bool,
) -> None:
    rng = random.Random(seed)
    raw = [_damage(VARIANTS[kind](n, rng), how, rng) for n, (kind, how) in enumerate(kinds)]
    path = tmp_path / "app.log"
    path.write_bytes(b"".join(raw))
    lines = [x + b"\n" for x in path.read_bytes().split(b"\n")[:-1]]
    cut = ts_to_epoch(ts(len(kinds) * 0.005))
    since = cut if window == "since" else None
    until = cut if window == "until" else None
    if pieces:  # small blocks, byte ranges, worker processes: the same answer
        monkeypatch.setattr(files, "BLOCK_BYTES", 1 << 12)
        monkeypatch.setattr(scan, "MIN_PIECE_BYTES", 1 << 12)
        monkeypatch.setattr(scan, "PARALLEL_MIN_BYTES", 0)
    expected = _parser_answer(lines, since=since, until=until, route=route)
    assert _scanned(path, since=since, until=until, route=route) == expected


def test_lines_with_every_variant_are_all_counted(tmp_path: Path) -> None:
    """One line of each variant, undamaged: the access lines the parser accepts are counted
    (a fast path that dropped a kind would show here even without hypothesis' luck)."""
    rng = random.Random(3)
    raw = [variant(n, rng) for n, variant in enumerate(VARIANTS.values())]
    path = tmp_path / "app.log"
    path.write_bytes(b"".join(raw))
    expected = _parser_answer(raw, since=None, until=None, route=None)
    assert expected[1] == 11  # all but the other message, the app line, bool and string
    assert _scanned(path, since=None, until=None, route=None) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(st.floats(-1e3, 1e6, allow_nan=False), min_size=1, max_size=30),
        min_size=1,
        max_size=5,
    ),
    st.sampled_from([1, 50, 95, 99, 100]),
)
def test_ranks_selected_across_sorted_runs_match_one_sort(
    runs: list[list[float]], percent: int
) -> None:
    merged = sorted(v for run in runs for v in run)
    rank = max(1, math.ceil(percent / 100 * len(merged)))
    assert ranked([sorted(run) for run in runs], rank) == nearest_rank(merged, percent)


def test_a_sealed_accumulator_reports_as_before() -> None:
    """Worker parts sort their durations before the merge; the report is the same."""
    rng = random.Random(5)
    whole, merged = LatencyAccumulator(), LatencyAccumulator()
    for _ in range(4):
        part = LatencyAccumulator()
        for _ in range(rng.randrange(1, 200)):
            route = rng.choice(["GET /a", "GET /b"])
            ms = round(rng.uniform(0, 50), 1)
            for target in (whole, part):
                target.add(
                    route=route,
                    template=None,
                    duration_ms=ms,
                    status=200,
                    correlation_id=None,
                    ts="",
                )
        part.seal()
        merged.merge(part)
    assert merged.report().routes == whole.report().routes


def test_the_real_writers_access_lines_are_read_from_their_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The golden file is written by foundation's logger: the byte reader's assumptions (key
    order, compact separators) hold for it, so only requests that may be among the slowest
    reach the parser (a change in the writer would send every line there: slower, not wrong)."""
    parsed: list[bool] = []
    original = latency._LatencyWork._line

    def spy(
        self: latency._LatencyWork,
        scan_: latency.LatencyScan,
        raw: bytes,
        source: str,
        *,
        counted: bool = False,
    ) -> None:
        parsed.append(counted)
        original(self, scan_, raw, source, counted=counted)

    monkeypatch.setattr(latency._LatencyWork, "_line", spy)
    golden = Path(__file__).parents[1] / "data" / "golden.jsonl"
    found = _collect(golden, limit=1)
    assert found.access_lines == golden.read_bytes().count(b'"request finished"') > 3
    assert parsed.count(False) == 0  # no access line refused by the byte reader
    assert 1 <= parsed.count(True) < found.access_lines  # only possible slowest ones
