"""``obsctl trace`` with W3C trace context (contract 7): a trace-id is accepted as well as a
correlation ID, each line is shown with the service and span that wrote it, and the calls
between services are drawn as a tree in the summary."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from obsctl.analysis.analyse import build_trace, resolve_id
from obsctl.readers.parse import parse_line
from tests.obsctl.logdata import line, run, write

pytestmark = pytest.mark.timeout(60)

CID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
# The edge was called by a traced gateway: its requests keep the correlation ID the gateway's
# client sent and continue the gateway's trace (both IDs kept).
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPANS = {"edge": "a000000000000001", "orders": "b000000000000002", "stock": "c000000000000003"}
SPANS["pricing"] = "d000000000000004"


def _line(at: float, service: str, message: str, **extra: object) -> bytes:
    record = orjson.loads(line(at, "INFO", CID, message, **extra))
    record["service"] = service
    record = {
        "ts": record.pop("ts"),
        "level": record.pop("level"),
        "correlation_id": record.pop("correlation_id"),
        "trace_id": TRACE,
        "span_id": SPANS[service],
        **record,
    }
    return orjson.dumps(record) + b"\n"


def _access(end: float, service: str, path: str, ms: float, status: int = 200) -> bytes:
    return _line(
        end,
        service,
        "request finished",
        logger="foundation.access",
        method="GET",
        path=path,
        route=path,
        status=status,
        duration_ms=ms,
    )


# edge (0 → 100 ms) calls orders (10 → 60 ms), which calls stock (20 → 40 ms); then edge calls
# pricing (70 → 90 ms). Access lines are written when each request ends.
EDGE = [
    _line(0.001, "edge", "checkout started"),
    _line(0.095, "edge", "checkout done"),
    _access(0.100, "edge", "/checkout", 100.0),
]
ORDERS = [_line(0.015, "orders", "reserving"), _access(0.060, "orders", "/reserve", 50.0)]
STOCK = [_line(0.025, "stock", "counting"), _access(0.040, "stock", "/count", 20.0, status=409)]
PRICING = [_line(0.075, "pricing", "pricing"), _access(0.090, "pricing", "/price", 20.0)]


def _write_all(tmp_path: Path) -> None:
    write(tmp_path / "edge.jsonl", *EDGE)
    write(tmp_path / "orders.jsonl", *ORDERS)
    write(tmp_path / "stock.jsonl", *STOCK)
    write(tmp_path / "pricing.jsonl", *PRICING)


def test_a_trace_id_resolves_like_a_correlation_id() -> None:
    records = [parse_line(raw) for raw in [*EDGE, *ORDERS, *STOCK, *PRICING]]
    assert resolve_id(records, TRACE) == [TRACE]
    assert resolve_id(records, TRACE[:10]) == [TRACE]
    assert resolve_id(records, CID) == [CID]
    by_trace, by_cid = build_trace(records, TRACE), build_trace(records, CID)
    assert by_trace.records == by_cid.records and len(by_trace.records) == 9
    assert by_trace.summary.request_ids == (CID,)
    assert by_cid.summary.request_ids == ()
    assert by_trace.summary.trace_id == TRACE
    assert by_trace.summary.span_id == SPANS["edge"]


def test_calls_form_a_tree_by_time_nesting() -> None:
    records = [parse_line(raw) for raw in [*EDGE, *ORDERS, *STOCK, *PRICING]]
    summary = build_trace(records, TRACE).summary
    assert summary.service == "edge" and summary.endpoint == "GET /checkout"
    assert [(c.service, c.depth, c.span_id) for c in summary.calls] == [
        ("orders", 1, SPANS["orders"]),
        ("stock", 2, SPANS["stock"]),
        ("pricing", 1, SPANS["pricing"]),
    ]
    assert [c.tree_line() for c in summary.calls] == [
        f"orders: GET /reserve answered 200 OK after 50.0 ms [span {SPANS['orders']}]",
        f"└─ stock: GET /count answered 409 Conflict after 20.0 ms [span {SPANS['stock']}]",
        f"pricing: GET /price answered 200 OK after 20.0 ms [span {SPANS['pricing']}]",
    ]


def _row(out: str, name: str) -> list[str]:
    """The lines of one summary row (``│ calls   a │`` then ``│         b │``)."""
    rows: list[str] = []
    inside = False
    for text in out.splitlines():
        cells = text.strip("│ ").rstrip("│ ")
        if cells.startswith(name + " "):
            inside = True
            rows.append(cells[len(name) :].strip())
        elif inside and text.startswith("│ ") and cells and text[2] == " ":
            rows.append(cells.strip())
        elif inside:
            break
    return rows


def test_trace_by_trace_id_shows_service_and_span_per_line_and_the_tree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    _write_all(tmp_path)
    code, out, err = run(capsys, "trace", TRACE, str(tmp_path))
    assert code == 0, err
    assert _row(out, "trace") == [f"{TRACE}  span {SPANS['edge']}"]
    assert _row(out, "request IDs") == [CID]
    assert _row(out, "calls")[:3] == [
        f"orders: GET /reserve answered 200 OK after 50.0 ms [span {SPANS['orders']}]",
        f"└─ stock: GET /count answered 409 Conflict after 20.0 ms [span {SPANS['stock']}]",
        f"pricing: GET /price answered 200 OK after 20.0 ms [span {SPANS['pricing']}]",
    ]
    assert "service · span" in out
    timeline = out[out.index("timeline") :]
    for service, span in SPANS.items():
        assert service in timeline and span in timeline
    # The IDs are in their column, not repeated as extras of each line.
    assert "trace_id=" not in out and "span_id=" not in out


def test_trace_by_correlation_id_gives_the_same_lines_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_all(tmp_path)
    code_t, by_trace, _ = run(capsys, "trace", TRACE, str(tmp_path), "--json")
    code_c, by_cid, _ = run(capsys, "trace", CID, str(tmp_path), "--json")
    assert code_t == code_c == 0
    assert by_trace == by_cid and len(by_trace.splitlines()) == 9


def test_one_request_shows_no_span_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "edge.jsonl", *EDGE)
    code, out, err = run(capsys, "trace", CID[:8], str(tmp_path))
    assert code == 0, err
    assert "service · span" not in out
    assert f"span {SPANS['edge']}" in out


def test_an_unknown_trace_id_matches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_all(tmp_path)
    code, _, err = run(capsys, "trace", "ffffffffffffffffffffffffffffffff", str(tmp_path))
    assert code == 1, err


def _ns(raw: bytes) -> int:
    from obsctl.readers.parse import ts_to_epoch

    epoch = ts_to_epoch(orjson.loads(raw)["ts"])
    assert epoch is not None
    return round(epoch * 1_000_000) * 1000


def test_trace_id_over_loki_matches_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same trace-id through the loopback Loki: the line filter finds the trace-id inside
    the lines, the analysis does the rest, as for files."""
    from tests.obsctl.fake_loki import FakeLoki

    for name in ("OBSCTL_LOKI_URL", "OBSCTL_TENANT", "OBSCTL_LOKI_SELECTOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OBSCTL_LOKI_SINCE", "3650d")
    _write_all(tmp_path)
    code, from_files, _ = run(capsys, "trace", TRACE, str(tmp_path), "--json")
    assert code == 0
    with FakeLoki() as fake:
        for service, lines in (("edge", EDGE), ("orders", ORDERS), ("stock", STOCK)):
            fake.push({"service": service}, [(_ns(r), r.decode().rstrip("\n")) for r in lines])
        fake.push({"service": "pricing"}, [(_ns(r), r.decode().rstrip("\n")) for r in PRICING])
        code, from_loki, err = run(capsys, "trace", TRACE, "--loki-url", fake.url, "--json")
    assert code == 0, err
    assert from_loki == from_files
