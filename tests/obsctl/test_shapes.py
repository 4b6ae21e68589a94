"""obsctl.readers: the JSON shapes of other Python stacks, each written by its real library, are
traced, counted and tailed like foundation's own lines."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obsctl.analysis.analyse import RecordFilter
from obsctl.query import scan
from obsctl.readers.fields import FieldMap, level_name, lookup, otlp_level, utc_ts
from obsctl.readers.parse import parse_records_checked
from obsctl.readers.prefilter import error_needles
from obsctl.sources.files import Damage, expand_paths
from tests.obsctl.logdata import run
from tests.obsctl.shapes_data import TRACE_ID, WRITERS, request_ids

SHAPES = sorted(WRITERS)


@pytest.fixture
def berlin() -> Iterator[None]:
    """Writers and reader in UTC+01:00, as the reference captures were (asctime is local)."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    yield
    if previous is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = previous
    time.tzset()


def _json_lines(out: str) -> list[dict[str, object]]:
    return [orjson.loads(x) for x in out.splitlines()]


@pytest.mark.parametrize("shape", SHAPES)
def test_trace_finds_exactly_the_lines_of_the_id(
    shape: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], berlin: None
) -> None:
    path = tmp_path / f"{shape}.log"
    expected = WRITERS[shape](path, request_ids(9))
    logged = path.read_bytes().splitlines()
    for rid in expected.ids:
        code, out, err = run(capsys, "trace", rid, str(path), "--json")
        assert code == 0, err
        printed = out.encode().splitlines()
        assert len(printed) == expected.lines_of(rid)
        if shape == "otlp":  # a line holds several requests: each record is printed alone
            for raw in printed:
                (resource,) = orjson.loads(raw)["resourceLogs"]
                (scope,) = resource["scopeLogs"]
                (item,) = scope["logRecords"]
                assert {"key": "request_id", "value": {"stringValue": rid}} in item["attributes"]
        elif shape == "loguru":  # as before: Loguru's native shape is printed as schema v1
            assert {orjson.loads(raw)["correlation_id"] for raw in printed} == {rid}
        else:
            assert all(raw in logged for raw in printed)  # exactly as logged
            assert all(rid.encode() in raw for raw in printed)


@pytest.mark.parametrize("shape", SHAPES)
def test_trace_timeline_reads_level_message_and_exception(
    shape: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], berlin: None
) -> None:
    path = tmp_path / f"{shape}.log"
    ids = request_ids(3)
    WRITERS[shape](path, ids)
    code, out, err = run(capsys, "trace", ids[2], str(path))
    assert code == 0, err
    assert "order received" in out
    assert "payment failed" in out
    assert "ValueError" in out
    assert "ERROR" in out


@pytest.mark.parametrize("shape", SHAPES)
def test_errors_top_counts_every_error_and_by_code_when_mapped(
    shape: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], berlin: None
) -> None:
    path = tmp_path / f"{shape}.log"
    expected = WRITERS[shape](path, request_ids(12))
    code, out, err = run(capsys, "errors", "top", str(path), "--json")
    assert code == 0, err
    assert sum(int(g["count"]) for g in _json_lines(out)) == expected.rejected + expected.failed  # type: ignore[call-overload]
    code, out, err = run(
        capsys, "errors", "top", str(path), "--json", "--map", "internal_code=error_code"
    )
    assert code == 0, err
    counts = {g["internal_code"]: g["count"] for g in _json_lines(out)}
    assert counts == {30101: expected.rejected, None: expected.failed}


@pytest.mark.parametrize("shape", SHAPES)
def test_tail_shows_the_last_records_of_a_shape(
    shape: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], berlin: None
) -> None:
    path = tmp_path / f"{shape}.log"
    ids = request_ids(6)
    WRITERS[shape](path, ids)
    code, out, err = run(capsys, "tail", str(path), "-n", "100", "--level", "ERROR", "--json")
    assert code == 0, err
    assert len(out.splitlines()) == 4  # 2 rejected + 2 failed


def test_a_directory_of_mixed_shapes_merges_by_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], berlin: None
) -> None:
    rid = "req-mixed5f2c8a1e"
    order = ["otlp", "ecs", "structlog", "python-json-logger", "loguru"]
    for shape in order:
        WRITERS[shape](tmp_path / f"{shape}.log", [rid])
        time.sleep(0.01)  # asctime and ECS keep milliseconds: keep the files apart
    code, out, err = run(capsys, "trace", rid, str(tmp_path), "--json")
    assert code == 0, err
    records = _json_lines(out)
    assert len(records) == len(order)
    shapes = []
    for record in records:
        if "resourceLogs" in record:
            shapes.append("otlp")
        elif "@timestamp" in record:
            shapes.append("ecs")
        elif "event" in record:
            shapes.append("structlog")
        elif "asctime" in record:
            shapes.append("python-json-logger")
        else:
            shapes.append("loguru")
    assert shapes == order


def test_map_names_the_id_key_of_an_unknown_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        {"when": 1796161121.5, "sev": "err", "txt": "boom", "rq": "abc-12345678", "ecode": "42"},
        {"when": 1796161122.5, "sev": "info", "txt": "ok", "rq": "other-1234567"},
    ]
    path = tmp_path / "custom.log"
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    maps = ["--map", "correlation_id=rq", "--map", "level=sev", "--map", "ts=when"]
    code, out, err = run(capsys, "trace", "abc-12345678", str(path), *maps)
    assert code == 0, err
    assert "boom" in out
    assert "2026-12-01" in out  # epoch seconds read as a time
    monkeypatch.setenv("OBSCTL_MAP", "level=sev,internal_code=ecode")
    code, out, err = run(capsys, "errors", "top", str(path), "--json")
    assert code == 0, err
    assert [(g["internal_code"], g["count"]) for g in _json_lines(out)] == [(42, 1)]


def test_a_bad_map_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.log").write_bytes(b"")
    code, _, err = run(capsys, "errors", "top", str(tmp_path), "--map", "colour=red")
    assert code == 2
    assert "invalid --map field 'colour'" in err
    code, _, err = run(capsys, "errors", "top", str(tmp_path), "--map", "level")
    assert code == 2
    assert "FIELD=KEY" in err


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("error", "ERROR"),
        ("Error", "ERROR"),
        ("warn", "WARNING"),
        ("fatal", "CRITICAL"),
        ("exception", "ERROR"),
        (40, "ERROR"),
        ("50", "CRITICAL"),
        (20, "INFO"),
        (25, "SUCCESS"),
        (10, "DEBUG"),
        (5, "TRACE"),
    ],
)
def test_levels_in_any_case_alias_or_number(value: object, name: str) -> None:
    assert level_name(value) == name


@pytest.mark.parametrize(
    ("number", "name"),
    [(9, "INFO"), (13, "WARNING"), (17, "ERROR"), (24, "CRITICAL"), (5, "DEBUG")],
)
def test_otlp_severity_numbers(number: int, name: str) -> None:
    assert otlp_level(number, "whatever") == name


@pytest.mark.parametrize(
    "value",
    [
        "2026-12-01T21:38:41.302027Z",
        "2026-12-01T21:38:41.302027+00:00",
        "2026-12-01T22:38:41.302027+01:00",
        1796161121.302027,
        1796161121302,
        "1796161121302027",
        1796161121302027000,
        "1796161121302027000",
    ],
)
def test_times_in_rfc3339_and_epoch_units_are_the_same_instant(value: object) -> None:
    assert utc_ts(value)[:23] == "2026-12-01T21:38:41.302"


def test_asctime_and_naive_times_are_local(berlin: None) -> None:
    assert utc_ts("2026-12-01 22:38:41,466") == "2026-12-01T21:38:41.466000Z"
    assert utc_ts("2026-12-01T22:38:48.497233") == "2026-12-01T21:38:48.497233Z"


def test_ecs_nested_and_dotted_keys_and_error_code() -> None:
    raw = orjson.dumps(
        {
            "@timestamp": "2026-12-01T21:38:41.568Z",
            "log.level": "error",
            "message": "payment failed",
            "error": {
                "code": "30101",
                "type": "ValueError",
                "message": "declined",
                "stack_trace": '  File "a.py", line 1, in f\n',
            },
            "http.request.id": "req-5f2c8a1e",
            "service": {"name": "orders-api"},
            "trace": {"id": TRACE_ID},
        }
    )
    (record,), reason = parse_records_checked(raw)
    assert reason is None
    assert record.correlation_id == "req-5f2c8a1e"
    assert record.internal_code == 30101
    assert record.level == "ERROR"
    assert record.data["service"] == "orders-api"
    assert record.data["trace_id"] == TRACE_ID
    assert record.exception is not None
    assert record.exception["traceback"].endswith("ValueError: declined")


def test_structlog_dict_tracebacks_name_the_exception() -> None:
    raw = (
        b'{"event": "payment failed", "request_id": "req-1", "level": "error", "timestamp": '
        b'"2026-12-01T21:38:41.398469Z", "exception": [{"exc_type": "ValueError", "exc_value": '
        b'"card declined", "frames": [{"filename": "app/main.py", "lineno": 27, "name": "f"}]}]}'
    )
    (record,), _ = parse_records_checked(raw)
    assert record.exception is not None
    assert (record.exception["type"], record.exception["value"]) == ("ValueError", "card declined")
    assert 'File "app/main.py", line 27' in record.exception["traceback"]


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_gets_an_exact_error_prefilter(shape: str, tmp_path: Path) -> None:
    """Every error line holds one of its file's needles, and no INFO-only line does."""
    path = tmp_path / "x.log"
    WRITERS[shape](path, request_ids(6))
    data = path.read_bytes()
    needles = error_needles(data[:4096], FieldMap())
    assert needles
    for raw in data.splitlines():
        records, _ = parse_records_checked(raw)
        has_error = any(r.level in {"ERROR", "CRITICAL"} for r in records)
        assert has_error == any(n in raw for n in needles)


def test_a_batch_line_longer_than_the_sniffed_head_still_gets_a_prefilter(tmp_path: Path) -> None:
    """A Collector line of many records passes 4 KiB: the head is read to the end of a line
    (a cut line cannot be sniffed, and every line became a candidate)."""
    path = tmp_path / "otlp.log"
    WRITERS["otlp"](path, request_ids(12), per_line=40)
    first = path.read_bytes().split(b"\n", 1)[0]
    assert len(first) > scan.HEAD_BYTES
    (log,) = expand_paths([str(path)], default_dir="x")
    head = scan._file_head(log)
    assert head.startswith(first + b"\n")
    assert error_needles(head, FieldMap()) == error_needles(first + b"\n", FieldMap())
    assert error_needles(head, FieldMap())


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(1, 24), min_size=1, max_size=6).map(
            lambda numbers: b",".join(b'{"severityNumber":%d}' % n for n in numbers)
        ),
        min_size=1,
        max_size=30,
    ),
    st.booleans(),
)
def test_needles_searched_by_their_shared_prefix_find_the_same_lines(
    lines: list[bytes], spaced: bool
) -> None:
    """OTLP's eight error severities are searched in two passes; each line holding one of them
    is found, once, and no other."""
    needles = tuple(b'"severityNumber":%d' % n for n in range(17, 25))
    if spaced:
        lines = [x.replace(b":", b": ") for x in lines]
        needles = tuple(n.replace(b":", b": ") for n in needles)
    text = b"\n".join(lines) + b"\n"
    found = [text[a:b] for a, b in scan._lines_with(text, 0, len(text), needles)]
    assert found == [x for x in lines if any(n in x for n in needles)]


@pytest.mark.parametrize(
    ("doc", "found"),
    [
        ({"http.request.id": "a"}, "a"),
        ({"http": {"request": {"id": "b"}}}, "b"),
        ({"http": {"request.id": "c"}}, "c"),
        ({"http.request": {"id": "d"}}, "d"),
        ({"http": {"request": {"id": None}}, "http.request": {"id": "e"}}, "e"),
        ({"http": {"request": "f"}}, None),
        ({"http": {"response": {"id": "g"}}}, None),
        ({"http.request.id": None, "http": {"request": {"id": "h"}}}, None),
    ],
)
def test_a_dotted_key_is_found_literal_nested_or_mixed(
    doc: dict[str, object], found: object
) -> None:
    """The longest literal run first, at every depth (ECS writes both spellings)."""
    assert lookup(doc, "http.request.id") == found


def _damaged(lines: list[bytes], draw: st.DrawFn) -> list[bytes]:
    out = []
    for line in lines:
        raw = line
        how = draw(st.sampled_from(["keep", "keep", "cut", "insert", "flip"]))
        if how == "cut":
            raw = raw[: draw(st.integers(0, len(raw)))]
        elif how == "insert":
            at = draw(st.integers(0, len(raw)))
            raw = raw[:at] + draw(st.binary(max_size=8)) + raw[at:]
        elif how == "flip":
            at = draw(st.integers(0, max(0, len(raw) - 1)))
            raw = raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1 :]
        out.append(raw)
    return out


_SAMPLES: dict[str, list[bytes]] = {}


def _sample(shape: str, tmp: Path) -> list[bytes]:
    if shape not in _SAMPLES:
        path = tmp / f"{shape}.sample"
        WRITERS[shape](path, request_ids(6, prefix="soup"))
        _SAMPLES[shape] = path.read_bytes().splitlines()
    return _SAMPLES[shape]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(shape=st.sampled_from(SHAPES), data=st.data())
def test_damaged_lines_of_every_shape_never_break_a_scan(
    tmp_path: Path, shape: str, data: st.DataObject
) -> None:
    good = _sample(shape, tmp_path)
    damaged = _damaged(good, data.draw)
    path = tmp_path / "soup.log"
    path.write_bytes(b"\n".join(damaged) + b"\n")
    lines = path.read_bytes().split(b"\n")[:-1]  # inserted bytes may hold newlines
    logs = expand_paths([str(path)], default_dir="x")
    damage = Damage()
    report = scan.collect_errors(
        logs, by="internal_code", since=None, until=None, damage=damage
    ).report(now=0.0)
    parsed = [parse_records_checked(raw)[0] for raw in lines]
    errors = [sum(1 for r in records if r.level in {"ERROR", "CRITICAL"}) for records in parsed]
    intact = sum(n for raw, n in zip(lines, errors, strict=True) if raw in good)
    assert intact <= report.total <= sum(errors)
    rid = "soup-00025f2c8a1e"
    found = scan.find_trace_records(logs, rid, damage)
    assert len(found) == sum(1 for rs in parsed for r in rs if r.correlation_id == rid)
    tail = scan.last_records(logs, 1000, RecordFilter(), damage)
    assert len(tail) == sum(len(records) for records in parsed)
