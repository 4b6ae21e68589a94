"""Contract 7 with the real OpenTelemetry SDK: two foundation services, each under uvicorn with
the SDK, an in-memory exporter and the FastAPI and httpx instrumentations (``otel_app``). Their
log lines join the exported spans; foundation sends no second or contradicting header."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.foundation.servers import Server, read_records, run_uvicorn, wait_until

pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is a dev dependency")

FACTORY = "tests.foundation.otel_app:create_app"


def _spans(server: Server, trace_id: str) -> list[dict[str, Any]]:
    spans = httpx.get(f"{server.url}/spans", timeout=10).json()
    return [s for s in spans if s["trace_id"] == trace_id]


def _lines(server: Server, cid: str) -> list[dict[str, Any]]:
    def mine() -> list[dict[str, Any]]:
        return [r for r in read_records(server.log_dir) if r.get("correlation_id") == cid]

    wait_until(lambda: any(r["message"] == "request finished" for r in mine()), 5.0)
    return mine()


@pytest.mark.proc
@pytest.mark.parametrize(
    "incoming", [None, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]
)
def test_lines_of_two_instrumented_services_join_the_exported_spans(
    tmp_path: Path, incoming: str | None
) -> None:
    with (
        run_uvicorn(tmp_path, factory=FACTORY, env={"TESTAPP_SERVICE": "front"}) as front,
        run_uvicorn(tmp_path, factory=FACTORY, env={"TESTAPP_SERVICE": "back"}) as back,
    ):
        headers = {"traceparent": incoming} if incoming else {}
        response = httpx.get(
            f"{front.url}/work",
            params={"next_url": f"{back.url}/work"},
            headers=headers,
            timeout=20,
        )
        assert response.status_code == 200
        cid = response.headers["x-request-id"]
        answer = response.json()
        front_lines, back_lines = _lines(front, cid), _lines(back, cid)
        front_spans, back_spans = _spans(front, cid), _spans(back, cid)

    # One ID: the request brought no X-Request-ID, so its correlation ID is the SDK's trace-id
    # (the incoming one when a traceparent arrived), in both services.
    if incoming:
        assert cid == incoming.split("-")[1]
    assert front_spans and back_spans
    assert {s["trace_id"] for s in front_spans + back_spans} == {cid}

    def only(spans: list[dict[str, Any]], kind: str, name: str = "") -> dict[str, Any]:
        (span,) = [s for s in spans if s["kind"] == kind and name in s["name"]]
        return span

    for spans, lines in ((front_spans, front_lines), (back_spans, back_lines)):
        server_span = only(spans, "SERVER")
        inner = only(spans, "INTERNAL", "inner step")
        assert server_span["attributes"]["correlation_id"] == cid  # searchable in a backend
        assert inner["parent_id"] == server_span["span_id"]
        expected = {
            "working": server_span["span_id"],
            "inside my own span": inner["span_id"],
            "work done": server_span["span_id"],
            "request finished": server_span["span_id"],
        }
        seen = {r["message"]: r for r in lines if r["message"] in expected}
        assert set(seen) == set(expected)
        for message, span_id in expected.items():
            assert seen[message]["trace_id"] == cid, message
            assert seen[message]["span_id"] == span_id, message
        assert all(r["trace_id"] == cid for r in lines)

    # The call: the httpx instrumentation's client span is the parent of the back's server
    # span, and it is the only traceparent that went out (foundation's hook added none).
    client_span = only(front_spans, "CLIENT")
    assert client_span["parent_id"] == only(front_spans, "SERVER")["span_id"]
    (sent,) = answer["sent"]
    version, trace_id, parent_id, flags = sent.split("-")
    assert (version, trace_id, parent_id) == ("00", cid, client_span["span_id"])
    assert int(flags, 16) & 0x01  # sampled (SDK >= 1.42 also sets the random bit: 03)
    assert answer["next"]["received"] == answer["sent"][0]
    assert only(back_spans, "SERVER")["parent_id"] == client_span["span_id"]
    if incoming:
        assert only(front_spans, "SERVER")["parent_id"] == incoming.split("-")[2]
