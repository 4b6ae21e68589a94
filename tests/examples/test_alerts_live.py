"""The shipped rule files in a real Prometheus, scraping a foundation app that starts failing.

Prometheus (Debian's binary) loads examples/observability/rules with a 1 s scrape and evaluation
interval. The app serves /checkout fine, then every call raises an unhandled error: the recording
rules produce the route's request rate and burn rate, HttpErrorBudgetBurn becomes pending (its
`for: 2m` is longer than this test) and AppErrorCodeSpike fires for the never-seen 10500
RuntimeError; ``obsctl prom alerts`` shows both with their runbook commands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

import foundation
from obsctl.cli.app import main
from tests.prometheus_server import PrometheusServer, serve_app, start_prometheus

pytestmark = [pytest.mark.proc, pytest.mark.prometheus, pytest.mark.timeout(60)]

RULES = Path(__file__).resolve().parents[2] / "examples" / "observability" / "rules"
SERVICE = "alerting-test"


def build_app(failing: dict[str, bool]) -> FastAPI:
    app = FastAPI()

    @app.get("/checkout")
    async def checkout() -> dict[str, bool]:
        if failing["on"]:
            raise RuntimeError("payment gateway answered 502")
        return {"ok": True}

    foundation.setup(
        app,
        service=SERVICE,
        log_dir=None,
        log_stdout=False,
        metrics_registry=CollectorRegistry(),
    )
    return app


@pytest.fixture(scope="module")
def failing_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    workdir = tmp_path_factory.mktemp("alerts")
    failing = {"on": False}
    rules = sorted(RULES.glob("*.yml"))
    with (
        serve_app(build_app(failing)) as url,
        start_prometheus(
            workdir, {"app": [url]}, target_labels={"service": SERVICE}, rule_files=rules
        ) as prom,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        for _ in range(20):
            assert client.get("/checkout").status_code == 200
        prom.wait_for('sum(http_requests_total{route="/checkout"})', lambda v: v == 20)
        failing["on"] = True
        # A counter's first sample carries no rate: let Prometheus see the 500 series (and the
        # new exception's) at 1 before the failures pile up.
        assert client.get("/checkout").status_code == 500
        prom.wait_for('sum(http_requests_total{route="/checkout", status="500"})', _is(1))
        for _ in range(100):
            assert client.get("/checkout").status_code == 500
        prom.wait_for('sum(http_requests_total{route="/checkout", status="500"})', _is(101))
        yield prom


def _is(expected: float) -> Callable[[float], bool]:
    return lambda value: value == expected


def _alerts(prom: PrometheusServer) -> list[dict[str, Any]]:
    body = httpx.get(f"{prom.url}/api/v1/alerts", timeout=10).json()
    assert body["status"] == "success"
    alerts: list[dict[str, Any]] = body["data"]["alerts"]
    return alerts


def _find(alerts: list[dict[str, Any]], name: str, **labels: str) -> dict[str, Any] | None:
    return next(
        (
            alert
            for alert in alerts
            if alert["labels"]["alertname"] == name
            and all(alert["labels"].get(k) == v for k, v in labels.items())
        ),
        None,
    )


def test_recording_rules_produce_the_routes_rates_and_burn(failing_app: PrometheusServer) -> None:
    prom = failing_app
    selector = f'{{service="{SERVICE}", route="/checkout"}}'
    prom.wait_for(f"route:http_requests:rate5m{selector}", lambda v: v > 0)
    burn = prom.wait_for(f"route:http_error_budget:burn_rate5m{selector}", lambda v: v > 14.4)
    # Every request Prometheus saw counted as 5xx (the 20 good ones came before the 200
    # series' first sample): a ratio of 1 against a 0.1 % budget.
    assert 500 < burn <= 1000
    assert prom.value(f"route:http_availability:objective{selector}") == 0.999
    assert prom.value(f"route:http_latency_p95:threshold_seconds{selector}") == 0.5
    code = f'code:app_exceptions:rate5m{{service="{SERVICE}", internal_code="10500"}}'
    prom.wait_for(code, lambda v: v > 0)


def test_the_burn_alert_goes_pending_and_the_new_code_fires(
    failing_app: PrometheusServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prom = failing_app

    def ready() -> bool:
        alerts = _alerts(prom)
        burn = _find(alerts, "HttpErrorBudgetBurn", severity="page")
        spike = _find(alerts, "AppErrorCodeSpike", reason="new")
        return burn is not None and spike is not None and spike["state"] == "firing"

    prom.wait_until(ready, "HttpErrorBudgetBurn pending and AppErrorCodeSpike firing", 30)
    alerts = _alerts(prom)
    burn = _find(alerts, "HttpErrorBudgetBurn", severity="page")
    spike = _find(alerts, "AppErrorCodeSpike", reason="new")
    assert burn is not None and spike is not None
    assert burn["state"] == "pending"
    assert burn["labels"] == {
        "alertname": "HttpErrorBudgetBurn",
        "service": SERVICE,
        "route": "/checkout",
        "severity": "page",
    }
    assert burn["annotations"]["runbook"] == "obsctl errors top --since 15m --by route"
    assert spike["labels"]["internal_code"] == "10500"
    assert spike["labels"]["exception"] == "RuntimeError"
    assert spike["annotations"]["runbook"] == "obsctl errors top --since 15m"

    monkeypatch.setenv("COLUMNS", "250")
    code = main(["prom", "alerts", "--prom-url", prom.url])
    out = capsys.readouterr().out
    assert code == 0
    rows = out.splitlines()
    # Firing first, then pending pages, then pending tickets.
    states = [line.split()[:3] for line in rows if line.startswith(("firing", "pending"))]
    assert states[0] == ["firing", "ticket", "AppErrorCodeSpike"]
    assert ["pending", "page", "HttpErrorBudgetBurn"] in states
    assert states.index(["pending", "page", "HttpErrorBudgetBurn"]) < states.index(
        ["pending", "ticket", "HttpErrorBudgetBurn"]
    )
    assert "→ obsctl errors top --since 15m --by route" in out
    assert f"{SERVICE}: new error code 10500 (RuntimeError)" in out
    assert "route=/checkout" in out

    code = main(["prom", "alerts", "--prom-url", prom.url, "--json"])
    lines = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert lines[0] == _find(_alerts(prom), "AppErrorCodeSpike", reason="new")
    page = _find(lines, "HttpErrorBudgetBurn", severity="page")
    assert page is not None
    assert page["annotations"]["runbook"] == "obsctl errors top --since 15m --by route"
    assert page["activeAt"].endswith("Z")
