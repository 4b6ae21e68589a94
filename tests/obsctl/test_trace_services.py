"""``obsctl trace`` of one ID that spans two services (the shop's ``POST /orders`` calls the
payment service's ``POST /charges`` with the same ID), from files and from Loki."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.obsctl.fake_loki import FakeLoki
from tests.obsctl.logdata import BASE, CID_A, app_error, line, run, write

pytestmark = pytest.mark.timeout(60)


def _access(at: float, service: str, method: str, path: str, status: int, ms: float) -> bytes:
    return line(
        at,
        "INFO",
        CID_A,
        "request finished",
        service=service,
        logger="foundation.access",
        method=method,
        path=path,
        route=path,
        status=status,
        duration_ms=ms,
    )


def _error(at: float, service: str, code: int, internal: str, external: str, kind: str) -> bytes:
    raw = app_error(at, CID_A, code, 402, internal, external, kind)
    record = orjson.loads(raw)
    record["service"] = service
    return orjson.dumps(record) + b"\n"


# Captured from make demo: the payment service answers first (it is the inner request), the
# shop's access line comes last but its request started first (50.2 ms - 99.9 ms < 0).
SHOP = [
    line(0.0, "INFO", CID_A, "stock reserved", logger="examples.shop.app", order_id=6),
    line(
        0.0035,
        "INFO",
        CID_A,
        'HTTP Request: POST http://127.0.0.1:8001/charges "HTTP/1.1 402 Payment Required"',
        logger="httpx",
    ),
    line(0.0499, "INFO", CID_A, "stock released", logger="examples.shop.app", order_id=6),
    _error(
        0.0500,
        "shop",
        30102,
        "order 6: payment service answered 402",
        "The payment was declined.",
        "PaymentDeclined",
    ),
    _access(0.0502, "shop", "POST", "/orders", 402, 99.916),
]
PAYMENTS = [
    line(0.0019, "INFO", CID_A, "charging card", service="payments", logger="payments.app"),
    _error(
        0.0020,
        "payments",
        30201,
        "card ending 0002: insufficient funds",
        "The card was declined.",
        "CardDeclined",
    ),
    _access(0.0022, "payments", "POST", "/charges", 402, 0.849),
]
IN_TIME_ORDER = sorted([*SHOP, *PAYMENTS], key=lambda raw: orjson.loads(raw)["ts"])

SENTENCE = (
    "Request POST /orders answered 402 Payment Required after 99.9 ms: The payment was "
    "declined. (code 30102); it called payments: POST /charges answered 402 Payment Required "
    "after 0.8 ms (code 30201)."
)


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wide enough that the summary sentence is on one line of the panel."""
    monkeypatch.setenv("COLUMNS", "400")
    for name in ("OBSCTL_LOKI_URL", "OBSCTL_TENANT", "OBSCTL_LOKI_SELECTOR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def loki(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLoki]:
    monkeypatch.setenv("OBSCTL_LOKI_SINCE", "3650d")
    with FakeLoki() as fake:
        for service, lines in (("shop", SHOP), ("payments", PAYMENTS)):
            fake.push(
                {"service": service},
                [(_ns(raw), raw.decode().rstrip("\n")) for raw in lines],
            )
        yield fake


def _ns(raw: bytes) -> int:
    from obsctl.readers.parse import ts_to_epoch

    epoch = ts_to_epoch(orjson.loads(raw)["ts"])
    assert epoch is not None
    return round(epoch * 1_000_000) * 1000


def _field(out: str, name: str) -> str:
    """The value of one row of the summary panel (``│ service    shop   │`` → ``shop``)."""
    for text in out.splitlines():
        cells = text.strip("│ ").split(None, 1)
        if cells and cells[0] == name:
            return cells[1].rstrip("│ ").strip()
    raise AssertionError(f"no {name!r} row in:\n{out}")


def _check_summary(out: str) -> None:
    assert SENTENCE in out
    assert _field(out, "service") == "shop"
    assert _field(out, "endpoint") == "POST /orders"
    assert _field(out, "status") == "402 in 99.9 ms"
    assert _field(out, "error").startswith("code 30102 (HTTP 402): The payment was declined.")
    assert _field(out, "calls") == (
        "payments: POST /charges answered 402 Payment Required after 0.8 ms (code 30201)"
    )
    assert _field(out, "exception") == "PaymentDeclined: The payment was declined."


def test_files_summary_describes_the_outer_request_and_names_the_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "shop.jsonl", *SHOP)
    write(tmp_path / "payments.jsonl", *PAYMENTS)
    code, out, err = run(capsys, "trace", CID_A, str(tmp_path))
    assert code == 0, err
    _check_summary(out)
    assert _field(out, "lines").startswith("8 in ")


def test_files_json_has_both_services_lines_in_time_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "shop.jsonl", *SHOP)
    write(tmp_path / "payments.jsonl", *PAYMENTS)
    code, out, _ = run(capsys, "trace", CID_A, str(tmp_path), "--json")
    assert code == 0
    assert out.encode().splitlines() == [raw.rstrip(b"\n") for raw in IN_TIME_ORDER]
    services = [orjson.loads(raw)["service"] for raw in out.splitlines()]
    assert services == ["shop", "payments", "payments", "payments", "shop", "shop", "shop", "shop"]


def test_loki_summary_and_json_match_the_files(
    loki: FakeLoki, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "trace", CID_A, "--loki-url", loki.url)
    assert code == 0, err
    _check_summary(out)
    assert _field(out, "lines") == "8 in loki"
    code, out, _ = run(capsys, "trace", CID_A, "--loki-url", loki.url, "--json")
    assert code == 0
    assert out.encode().splitlines() == [raw.rstrip(b"\n") for raw in IN_TIME_ORDER]


def test_one_service_trace_has_no_calls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "payments.jsonl", *PAYMENTS)
    code, out, _ = run(capsys, "trace", CID_A, str(tmp_path))
    assert code == 0
    assert (
        "Request POST /charges answered 402 Payment Required after 0.8 ms: The card was "
        "declined. (code 30201)"
    ) in out
    assert "it called" not in out
    assert _field(out, "service") == "payments"


def test_equal_starts_the_longer_request_is_the_outer_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two access lines whose requests started in the same microsecond: the caller is the
    one that lasted longer, whatever order the lines are in."""
    assert BASE > 0
    write(
        tmp_path / "a.jsonl",
        _access(0.010, "payments", "POST", "/charges", 201, 5.0),
        _access(0.015, "shop", "POST", "/orders", 201, 10.0),
    )
    code, out, _ = run(capsys, "trace", CID_A, str(tmp_path))
    assert code == 0
    assert (
        "Request POST /orders answered 201 Created after 10.0 ms; it called payments: "
        "POST /charges answered 201 Created after 5.0 ms."
    ) in out
