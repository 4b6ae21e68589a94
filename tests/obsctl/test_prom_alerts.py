"""``obsctl prom alerts`` against a scripted loopback server speaking ``/api/v1/alerts``.

The bodies follow Prometheus' documented shape (the live test in tests/examples checks the real
server's): ``{"status": "success", "data": {"alerts": [{labels, annotations, state, activeAt,
value}]}}``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from obsctl.cli.app import main
from obsctl.sources.prom_alerts import parse_time
from tests.obsctl.test_backend_faults import Scripted, answer
from tests.support import free_port

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def server() -> Iterator[Scripted]:
    scripted = Scripted()
    yield scripted
    scripted.close()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OBSCTL_PROMETHEUS_URL", "OBSCTL_TOKEN", "OBSCTL_TENANT", "OBSCTL_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "250")  # one table row per line


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _ago(seconds: float) -> str:
    return datetime.fromtimestamp(time.time() - seconds, tz=UTC).isoformat().replace("+00:00", "Z")


def _alert(name: str, state: str, severity: str, ago: float, **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "severity": severity, **labels},
        "annotations": {
            "summary": f"{name} summary",
            "runbook": f"obsctl errors top --since 15m  # {name}",
        },
        "state": state,
        "activeAt": _ago(ago),
        "value": "1.6666666666666666e+02",
    }


def _body(*alerts: dict[str, Any]) -> bytes:
    return orjson.dumps({"status": "success", "data": {"alerts": list(alerts)}})


def firing_page() -> dict[str, Any]:
    return _alert("HttpErrorBudgetBurn", "firing", "page", 720, route="/orders", service="shop")


def pending_page() -> dict[str, Any]:
    return _alert("DatabaseUnavailable", "pending", "page", 600, service="shop")


def firing_ticket() -> dict[str, Any]:
    return _alert("AppErrorCodeSpike", "firing", "ticket", 7200, internal_code="10500")


def test_rows_show_state_severity_since_labels_summary_and_runbook(
    server: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    alerts = pending_page(), firing_ticket(), firing_page()
    server.behaviours = [answer(200, _body(*alerts))]
    code, out, err = run(capsys, "prom", "alerts", "--prom-url", server.url)
    assert code == 0, err
    assert err == ""
    assert b"GET /api/v1/alerts " in server.requests[0]
    # Firing before pending, pages before tickets.
    order = [out.index(name) for name in ("HttpErrorBudgetBurn", "AppErrorCodeSpike")]
    assert order == sorted(order) and out.index("DatabaseUnavailable") > order[-1]
    page_row = next(line for line in out.splitlines() if "HttpErrorBudgetBurn" in line)
    assert page_row.split()[:3] == ["firing", "page", "HttpErrorBudgetBurn"]
    assert "12m ago" in out and "2h ago" in out and "10m ago" in out
    assert "route=/orders" in out and "service=shop" in out and "internal_code=10500" in out
    for alert in alerts:
        assert alert["annotations"]["summary"] in out
        assert "→ " + alert["annotations"]["runbook"] in out


def test_json_prints_each_alert_as_the_server_sent_it(
    server: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    pending, firing = pending_page(), firing_page()
    server.behaviours = [answer(200, _body(pending, firing))]
    code, out, err = run(capsys, "prom", "alerts", "--prom-url", server.url, "--json")
    assert code == 0, err
    assert [orjson.loads(line) for line in out.splitlines()] == [firing, pending]


def test_only_pending_alerts_are_shown_and_exit_1(
    server: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    server.behaviours = [answer(200, _body(pending_page()))]
    code, out, err = run(capsys, "prom", "alerts", "--prom-url", server.url)
    assert code == 1
    assert "DatabaseUnavailable" in out and "pending" in out
    assert "no alert is firing (1 pending)" in err
    assert err.count("\n") == 1


def test_nothing_firing_or_pending_exits_1_with_empty_stdout(
    server: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    server.behaviours = [answer(200, _body()), answer(200, _body())]
    code, out, err = run(capsys, "prom", "alerts", "--prom-url", server.url)
    assert (code, out) == (1, "")
    assert f"no alert is firing or pending at {server.url}" in err
    code, out, _ = run(capsys, "prom", "alerts", "--prom-url", server.url, "--json")
    assert (code, out) == (1, "")


def test_hostile_labels_and_annotations_are_escaped_not_interpreted(
    server: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    alert = _alert("X", "firing", "page", 5, route="/a\x1b[2J[bold]b")
    alert["annotations"]["summary"] = "line\u202eevil [red]markup[/red]"
    server.behaviours = [answer(200, _body(alert))]
    code, out, _ = run(capsys, "prom", "alerts", "--prom-url", server.url)
    assert code == 0
    assert "\x1b" not in out and "\u202e" not in out
    assert "route=/a\\u001b[2J[bold]b" in out
    assert "line\\u202eevil [red]markup[/red]" in out


@pytest.mark.parametrize(
    ("status", "body", "exit_code", "message"),
    [
        (
            503,
            orjson.dumps({"status": "error", "errorType": "unavailable", "error": "no rules"}),
            3,
            "503",
        ),
        (
            422,
            orjson.dumps({"status": "error", "errorType": "execution", "error": "nope"}),
            4,
            "execution: nope",
        ),
        (200, orjson.dumps({"status": "success", "data": {"groups": []}}), 3, "malformed alerts"),
        (200, orjson.dumps({"status": "success", "data": {"alerts": [3]}}), 3, "malformed alerts"),
    ],
)
def test_server_errors_and_malformed_bodies(
    server: Scripted,
    capsys: pytest.CaptureFixture[str],
    status: int,
    body: bytes,
    exit_code: int,
    message: str,
) -> None:
    server.behaviours = [answer(status, body) for _ in range(4)]
    code, out, err = run(capsys, "prom", "alerts", "--prom-url", server.url, "--timeout", "2")
    assert code == exit_code
    assert out == ""
    assert message in err
    assert err.count("\n") == 1


def test_unreachable_server_and_missing_url(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = run(capsys, "prom", "alerts", "--prom-url", url, "--timeout", "1")
    assert (code, out) == (3, "")
    assert url in err
    code, _, err = run(capsys, "prom", "alerts")
    assert code == 2
    assert "OBSCTL_PROMETHEUS_URL" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T02:14:27.6573978Z", 1795659267.657397),
        ("2018-07-04T20:27:12.60602144+02:00", 1530728832.606021),
        ("2026-11-26T02:14:27Z", 1795659267.0),
        ("not a time", None),
        ("2026-11-26T02:14:27", None),  # no zone: ambiguous
        (None, None),
    ],
)
def test_active_at_parses_rfc3339_with_nanoseconds(text: object, expected: float | None) -> None:
    value = parse_time(text)
    assert value == pytest.approx(expected) if expected is not None else value is None
