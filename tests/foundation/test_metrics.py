"""foundation.metrics: what an app's ``/metrics`` says after real requests (section G)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import APIRouter, FastAPI
from fastapi.responses import StreamingResponse
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Exemplar

import foundation
from foundation.metrics import (
    Message,
    MetricsMiddleware,
    Receive,
    Scope,
    Send,
    _exemplar_labels,
    create_metrics,
    install_metrics,
)
from tests.prometheus_server import serve_app

OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def build_app(
    *, registry: CollectorRegistry | None = None, metrics_path: str = "/metrics"
) -> FastAPI:
    users = APIRouter()

    @users.get("/users/{user_id}")
    async def user(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    @users.get("/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError("secret=hunter2")

    @users.get("/half")
    async def half() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            yield b"first chunk\n"
            raise RuntimeError("broke after the response started")

        return StreamingResponse(body(), media_type="text/plain")

    app = FastAPI()
    app.include_router(users, prefix="/v1")
    foundation.setup(
        app,
        service="metrics-test",
        log_dir=None,
        log_stdout=False,
        metrics_registry=registry,
        metrics_path=metrics_path,
    )
    return app


def client_for(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Exposition text -> {(sample name, sorted labels): value}, parsed by prometheus_client."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def requests_total(text: str) -> dict[tuple[str, str, str], float]:
    return {
        (dict(labels)["method"], dict(labels)["route"], dict(labels)["status"]): value
        for (name, labels), value in samples(text).items()
        if name == "http_requests_total"
    }


async def scrape(client: httpx.AsyncClient, path: str = "/metrics") -> str:
    response = await client.get(path)
    assert response.status_code == 200
    return response.text


async def test_cardinality_bounded_by_route_templates() -> None:
    """500 user ids and 200 unknown paths make 2 series, not 700."""
    app = build_app()
    async with client_for(app) as client:
        for i in range(500):
            assert (await client.get(f"/v1/users/{i}")).status_code == 200
        for i in range(200):
            assert (await client.get(f"/random/{i}/x{i * 7}")).status_code == 404
        counts = requests_total(await scrape(client))
    assert counts == {
        ("GET", "/v1/users/{user_id}", "200"): 500,
        ("GET", "<unmatched>", "404"): 200,
    }


async def test_unknown_methods_share_one_label() -> None:
    app = build_app()
    async with client_for(app) as client:
        for verb in ("BREW", "PROPFIND", "X" * 40):
            await client.request(verb, "/v1/users/1")
        counts = requests_total(await scrape(client))
    assert counts == {("OTHER", "/v1/users/{user_id}", "405"): 3}


async def test_unhandled_exception_counted_once_as_500() -> None:
    app = build_app()
    async with client_for(app) as client:
        response = await client.get("/v1/boom")
        assert response.status_code == 500
        assert "hunter2" not in response.text
        text = await scrape(client)
    assert requests_total(text) == {("GET", "/v1/boom", "500"): 1}
    exceptions = {
        labels: value
        for (name, labels), value in samples(text).items()
        if name == "app_exceptions_total"
    }
    assert exceptions == {
        (("exception", "RuntimeError"), ("http_code", "500"), ("internal_code", "10500")): 1
    }


def test_error_after_response_started_counted_once_as_500() -> None:
    """The client sees a cut response, the counter one 500, and the server keeps serving."""
    app = build_app()
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=10.0) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/v1/half")
        assert client.get("/v1/users/1").status_code == 200
        counts = requests_total(client.get("/metrics").text)
    assert counts == {
        ("GET", "/v1/half", "500"): 1,
        ("GET", "/v1/users/{user_id}", "200"): 1,
    }


async def test_app_created_twice_in_one_process() -> None:
    """No 'Duplicated timeseries': each app has its own registry and its own numbers."""
    first, second = build_app(), build_app()
    shared = CollectorRegistry()
    third = build_app(registry=shared)
    async with client_for(first) as a, client_for(second) as b, client_for(third) as c:
        await a.get("/v1/users/1")
        for _ in range(3):
            await b.get("/v1/users/1")
        await c.get("/v1/users/2")
        assert requests_total(await scrape(a)) == {("GET", "/v1/users/{user_id}", "200"): 1}
        assert requests_total(await scrape(b)) == {("GET", "/v1/users/{user_id}", "200"): 3}
        assert requests_total(await scrape(c)) == {("GET", "/v1/users/{user_id}", "200"): 1}
    assert (
        shared.get_sample_value(
            "http_requests_total",
            {"method": "GET", "route": "/v1/users/{user_id}", "status": "200"},
        )
        == 1
    )


def test_installing_twice_on_one_app_is_refused() -> None:
    app = FastAPI()
    install_metrics(app)
    with pytest.raises(RuntimeError, match="already installed"):
        install_metrics(app)


async def test_metrics_path_configurable_and_not_counted() -> None:
    app = build_app(metrics_path="/internal/prom")
    async with client_for(app) as client:
        await client.get("/v1/users/1")
        for _ in range(3):
            await scrape(client, "/internal/prom")
        assert (await client.get("/metrics")).status_code == 404
        counts = requests_total(await scrape(client, "/internal/prom"))
    assert counts == {
        ("GET", "/v1/users/{user_id}", "200"): 1,
        ("GET", "<unmatched>", "404"): 1,
    }


async def test_openmetrics_when_asked_with_exemplar_of_the_request() -> None:
    app = build_app()
    async with client_for(app) as client:
        request_id = "0123456789abcdef0123456789abcdef"
        await client.get("/v1/users/1", headers={"X-Request-ID": request_id})
        plain = await client.get("/metrics")
        om = await client.get("/metrics", headers={"Accept": OPENMETRICS})
    assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# {" not in plain.text
    assert om.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert om.text.endswith("# EOF\n")
    exemplars = [
        sample.exemplar
        for family in openmetrics_families(om.text)
        if family.name == "http_request_duration_seconds"
        for sample in family.samples
        if sample.exemplar is not None
    ]
    # foundation started the trace: its trace-id is the correlation ID (contract 7).
    assert [e.labels for e in exemplars] == [{"correlation_id": request_id, "trace_id": request_id}]


async def test_gzip_head_and_name_filter() -> None:
    app = build_app()
    async with client_for(app) as client:
        await client.get("/v1/users/1")
        zipped = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
        head = await client.head("/metrics")
        only = await client.get("/metrics", params={"name[]": "http_requests_total"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert "http_requests_total" in zipped.text  # httpx decoded it
    assert int(zipped.headers["content-length"]) < len(zipped.text)
    assert head.status_code == 200
    assert head.content == b""
    names = {family.name for family in text_string_to_metric_families(only.text)}
    assert names == {"http_requests"}


async def test_overlong_correlation_id_is_left_out_of_exemplars() -> None:
    """A client ID too long for an exemplar (128 characters) must not fail the request."""
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"ok": "yes"}

    metrics = create_metrics(registry=CollectorRegistry())
    stack = CorrelationIdMiddleware(
        MetricsMiddleware(app, metrics=metrics), validator=None, transformer=None
    )
    transport = httpx.ASGITransport(app=stack)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        long_id = "a" * 300
        response = await client.get("/ping", headers={"X-Request-ID": long_id})
        assert response.status_code == 200
        om = await client.get("/metrics", headers={"Accept": OPENMETRICS})
    assert long_id not in om.text
    assert (
        metrics.registry.get_sample_value(
            "http_request_duration_seconds_count", {"method": "GET", "route": "/ping"}
        )
        == 1
    )


@pytest.mark.parametrize(
    ("cid", "ids", "expected"),
    [
        ("c" * 32, ("t" * 32, "s" * 16), {"correlation_id": "c" * 32, "trace_id": "t" * 32}),
        (None, ("t" * 32, "s" * 16), {"trace_id": "t" * 32}),
        ("c" * 32, None, {"correlation_id": "c" * 32}),
        # 14 + 74 + 8 + 32 = 128 fits exactly; one more character and the trace-id is left off
        ("c" * 74, ("t" * 32, "s" * 16), {"correlation_id": "c" * 74, "trace_id": "t" * 32}),
        ("c" * 75, ("t" * 32, "s" * 16), {"correlation_id": "c" * 75}),
        ("c" * 115, ("t" * 32, "s" * 16), {"trace_id": "t" * 32}),
    ],
)
def test_exemplar_labels_stay_within_openmetrics_128_characters(
    cid: str | None, ids: tuple[str, str] | None, expected: dict[str, str]
) -> None:
    labels = _exemplar_labels(cid, ids)
    assert labels == expected
    Exemplar(labels, 0.1, 0.0)  # prometheus_client raises past 128 characters
    assert sum(len(k) + len(v) for k, v in labels.items()) <= 128


async def test_websocket_and_lifespan_pass_through() -> None:
    """Non-HTTP scopes are not measured (and not broken)."""
    app = FastAPI()
    events: list[str] = []
    metrics = create_metrics(registry=CollectorRegistry())
    stack = MetricsMiddleware(app, metrics=metrics)
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, str]:
        return next(messages)

    async def send(message: dict[str, str]) -> None:
        events.append(message["type"])

    await stack({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert events == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert metrics.registry.get_sample_value("http_requests_total", {}) is None


async def test_client_gone_before_the_end_counts_as_499() -> None:
    """A stream that stops because the client disconnected is not a server error."""

    async def stream(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        message = await receive()
        assert message["type"] == "http.disconnect"

    metrics = create_metrics(registry=CollectorRegistry())
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/feed",
        "root_path": "",
        "headers": [],
        "query_string": b"",
    }

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        return None

    await MetricsMiddleware(stream, metrics=metrics)(scope, receive, send)
    labels = {"method": "GET", "route": "<unmatched>", "status": "499"}
    assert metrics.registry.get_sample_value("http_requests_total", labels) == 1


@pytest.fixture
def served_app() -> Iterator[str]:
    with serve_app(build_app()) as url:
        yield url


async def test_metrics_valid_under_concurrent_scrapes_and_traffic(served_app: str) -> None:
    """200 scrapes race 1,000 requests: every scrape parses and counters never go back."""
    limits = httpx.Limits(max_connections=40)
    async with httpx.AsyncClient(base_url=served_app, timeout=30.0, limits=limits) as client:

        async def traffic(worker: int) -> None:
            for i in range(50):
                response = await client.get(f"/v1/users/{worker * 100 + i}")
                assert response.status_code == 200

        async def scraper() -> list[float]:
            seen: list[float] = []
            for _ in range(20):
                text = (await client.get("/metrics", headers={"Accept": OPENMETRICS})).text
                families = {f.name: f for f in openmetrics_families(text)}
                family = families.get("http_requests")
                total = (
                    sum(s.value for s in family.samples if s.name.endswith("_total"))
                    if family
                    else 0.0
                )
                seen.append(total)
            return seen

        async with asyncio.timeout(90):
            results = await asyncio.gather(
                *(traffic(w) for w in range(20)), *(scraper() for _ in range(10))
            )
        final = requests_total(await scrape(client))
    for seen in results[20:]:
        assert seen is not None
        assert seen == sorted(seen), "a counter went backwards between scrapes"
    assert final == {("GET", "/v1/users/{user_id}", "200"): 1000}


def _exemplar_ids(metrics_registry: CollectorRegistry) -> list[str]:
    from prometheus_client.openmetrics.exposition import generate_latest

    text = generate_latest(metrics_registry).decode()
    return [
        sample.exemplar.labels["correlation_id"]
        for family in openmetrics_families(text)
        if family.name == "http_request_duration_seconds"
        for sample in family.samples
        if sample.exemplar is not None
    ]


@pytest.mark.parametrize(("interval", "expected"), [(1.0, "a" * 32), (0.0, "b" * 32)])
def test_bucket_exemplar_refreshed_at_most_once_per_interval(
    interval: float, expected: str
) -> None:
    from asgi_correlation_id import correlation_id

    metrics = create_metrics(registry=CollectorRegistry(), exemplar_interval=interval)
    for now, cid in ((100.0, "a" * 32), (100.5, "b" * 32)):
        token = correlation_id.set(cid)
        try:
            metrics.http.started("GET")
            metrics.http.finished("GET", "/x", 200, 0.001, now)
        finally:
            correlation_id.reset(token)
    assert _exemplar_ids(metrics.registry) == [expected]
