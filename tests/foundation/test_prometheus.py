"""foundation's metrics as an operator sees them: a real Prometheus server scrapes an app served
by uvicorn on 127.0.0.1 every second, then its HTTP API is queried."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import sqlalchemy
from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry

import foundation
from foundation.db._core import Database, DbManager
from tests.prometheus_server import (
    PrometheusServer,
    promtool_binary,
    serve_app,
    start_prometheus,
)

pytestmark = [pytest.mark.proc, pytest.mark.prometheus]

ITEMS_OK = 20
ITEMS_MISSING = 3
CRASHES = 2
SUB_CALLS = 5
UNMATCHED = 120
COMMITS = 3
ROLLBACKS = 2


class OutOfStock(foundation.ApiException):
    http_code = 409
    external_message = "This product is out of stock."
    internal_code = 39101
    internal_message = "Stock check failed."


def build_app(database: Database) -> FastAPI:
    api = APIRouter()

    @api.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        if item_id == 0:
            raise foundation.RecordNotFound(internal_message="item 0")
        return {"id": item_id}

    @api.post("/items/{item_id}/buy")
    async def buy(item_id: int) -> dict[str, int]:
        raise OutOfStock(internal_message=f"sku={item_id} stock=0")

    @api.get("/crash")
    async def crash() -> dict[str, str]:
        raise RuntimeError("dsn=postgres://u:pw@db")

    @api.get("/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(0.3)
        return {"ok": "slow"}

    @api.post("/orders/{n}")
    async def order(n: int) -> dict[str, int]:
        async with DbManager(database=database) as session:
            await session.execute(sqlalchemy.text("SELECT 1"))
            if n == 0:
                raise foundation.RecordNotFound(internal_message="order 0")
        return {"order": n}

    sub = FastAPI()

    @sub.get("/hello/{name}")
    async def hello(name: str) -> dict[str, str]:
        return {"hello": name}

    app = FastAPI()
    app.include_router(api, prefix="/api")
    app.mount("/sub", sub)
    foundation.setup(
        app,
        service="prom-test",
        log_dir=None,
        log_stdout=False,
        database=database,
        metrics_registry=CollectorRegistry(),
    )
    return app


# The slow request arrives from a traced gateway: its exemplar carries both IDs.
SLOW_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SLOW_TRACEPARENT = f"00-{SLOW_TRACE_ID}-00f067aa0ba902b7-01"


@dataclass(frozen=True)
class Scenario:
    prom: PrometheusServer
    app_url: str
    slow_id: str
    started: float
    exposition: str


def _traffic(client: httpx.Client, slow_id: str) -> None:
    for i in range(1, ITEMS_OK + 1):
        assert client.get(f"/api/items/{i}").status_code == 200
    for _ in range(ITEMS_MISSING):
        assert client.get("/api/items/0").status_code == 404
    assert client.post("/api/items/7/buy").status_code == 409
    for _ in range(CRASHES):
        assert client.get("/api/crash").status_code == 500
    for i in range(SUB_CALLS):
        assert client.get(f"/sub/hello/n{i}").status_code == 200
    for i in range(UNMATCHED):
        assert client.get(f"/scan/{uuid.uuid4().hex}/{i}").status_code == 404
    for i in range(1, COMMITS + 1):
        assert client.post(f"/api/orders/{i}").status_code == 200
    for _ in range(ROLLBACKS):
        assert client.post("/api/orders/0").status_code == 404
    response = client.get(
        "/api/slow", headers={"X-Request-ID": slow_id, "traceparent": SLOW_TRACEPARENT}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == slow_id


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    workdir = tmp_path_factory.mktemp("prom")
    database = Database(f"sqlite+aiosqlite:///{workdir / 'shop.db'}")
    app = build_app(database)
    slow_id = uuid.uuid4().hex
    started = time.time()
    with serve_app(app) as app_url, start_prometheus(workdir, {"app": [app_url]}) as prom:
        with httpx.Client(base_url=app_url, timeout=10.0) as client:
            _traffic(client, slow_id)
            exposition = client.get("/metrics").text
        # Everything is counted once the last request's series has reached Prometheus.
        prom.wait_for('http_requests_total{job="app",route="/api/slow"}', lambda v: v == 1)
        yield Scenario(prom, app_url, slow_id, started, exposition)


def _value(scenario: Scenario, expr: str) -> float | None:
    return scenario.prom.value(expr)


def test_target_is_scraped_and_up(scenario: Scenario) -> None:
    targets = scenario.prom.targets()
    assert [t["health"] for t in targets] == ["up"]
    assert targets[0]["lastError"] == ""


@pytest.mark.parametrize(
    ("route", "status", "count"),
    [
        ("/api/items/{item_id}", "200", ITEMS_OK),
        ("/api/items/{item_id}", "404", ITEMS_MISSING),
        ("/api/items/{item_id}/buy", "409", 1),
        ("/api/crash", "500", CRASHES),
        ("/sub/hello/{name}", "200", SUB_CALLS),
        ("<unmatched>", "404", UNMATCHED),
        ("/api/orders/{n}", "200", COMMITS),
        ("/api/orders/{n}", "404", ROLLBACKS),
    ],
)
def test_requests_counted_per_route_template_and_status(
    scenario: Scenario, route: str, status: str, count: int
) -> None:
    expr = f'http_requests_total{{job="app",route="{route}",status="{status}"}}'
    assert _value(scenario, expr) == count


def test_raw_paths_never_become_series(scenario: Scenario) -> None:
    """120 distinct unknown paths and 20 item ids collapse into one series each."""
    routes = {r["metric"]["route"] for r in scenario.prom.query('http_requests_total{job="app"}')}
    assert routes == {
        "/api/items/{item_id}",
        "/api/items/{item_id}/buy",
        "/api/crash",
        "/api/slow",
        "/sub/hello/{name}",
        "/api/orders/{n}",
        "<unmatched>",
    }
    assert _value(scenario, 'count(http_requests_total{job="app"})') == 9


def test_metrics_endpoint_is_not_counted(scenario: Scenario) -> None:
    assert scenario.prom.query('http_requests_total{job="app",route=~".*metrics.*"}') == []


@pytest.mark.parametrize(
    ("internal_code", "exception", "http_code", "count"),
    [
        ("21101", "RecordNotFound", "404", ITEMS_MISSING + ROLLBACKS),
        ("39101", "OutOfStock", "409", 1),
        ("10500", "RuntimeError", "500", CRASHES),
        ("10404", "RouteNotFound", "404", UNMATCHED),
    ],
)
def test_exceptions_counted_by_internal_code(
    scenario: Scenario, internal_code: str, exception: str, http_code: str, count: int
) -> None:
    expr = (
        f'app_exceptions_total{{job="app",internal_code="{internal_code}",'
        f'exception="{exception}",http_code="{http_code}"}}'
    )
    assert _value(scenario, expr) == count


def test_latency_histogram_buckets(scenario: Scenario) -> None:
    """The 0.3 s request sits above the 0.25 bucket and within 0.5."""
    series = 'http_request_duration_seconds_bucket{job="app",route="/api/slow",method="GET"'
    assert _value(scenario, series + ',le="0.25"}') == 0
    assert _value(scenario, series + ',le="0.5"}') == 1
    assert _value(scenario, series + ',le="+Inf"}') == 1
    count = 'http_request_duration_seconds_count{job="app",route="/api/items/{item_id}"}'
    assert _value(scenario, count) == ITEMS_OK + ITEMS_MISSING
    total = _value(scenario, 'http_request_duration_seconds_sum{job="app",route="/api/slow"}')
    assert total is not None and 0.3 <= total < 2.0


def test_slow_request_exemplar_carries_its_correlation_and_trace_ids(scenario: Scenario) -> None:
    found = scenario.prom.exemplars(
        'http_request_duration_seconds_bucket{job="app",route="/api/slow"}', scenario.started
    )
    exemplars = [e for series in found for e in series["exemplars"]]
    assert exemplars, found
    assert {e["labels"]["correlation_id"] for e in exemplars} == {scenario.slow_id}
    assert {e["labels"]["trace_id"] for e in exemplars} == {SLOW_TRACE_ID}
    assert all(0.3 <= float(e["value"]) < 2.0 for e in exemplars)
    buckets = {series["seriesLabels"]["le"] for series in found}
    assert buckets == {"0.5"}


def test_database_transactions_by_outcome(scenario: Scenario) -> None:
    base = 'db_transaction_duration_seconds_count{job="app",outcome="%s"}'
    assert _value(scenario, base % "commit") == COMMITS
    assert _value(scenario, base % "rollback") == ROLLBACKS
    assert _value(scenario, base % "error") is None


def test_in_progress_back_to_zero(scenario: Scenario) -> None:
    assert _value(scenario, 'sum(http_requests_in_progress{job="app"})') == 0


def test_promtool_accepts_the_exposition(scenario: Scenario) -> None:
    result = subprocess.run(
        [promtool_binary(), "check", "metrics"],
        input=scenario.exposition.encode(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert 'http_requests_total{method="GET",route="/api/crash",status="500"} 2.0' in (
        scenario.exposition
    )
