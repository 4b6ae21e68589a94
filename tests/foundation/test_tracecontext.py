"""W3C Trace Context (contract 7): the parser's cases, then the recommendation's cases against a
real uvicorn server that calls back through foundation's hooks (as the W3C test harness does),
three services chained by the hooks only, and hostile headers."""

from __future__ import annotations

import itertools
import json
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foundation import tracecontext
from foundation.tracecontext import (
    TraceContext,
    continue_trace,
    outgoing_trace_headers,
    parse_traceparent,
    parse_tracestate,
    use_trace_context,
)
from tests.foundation.servers import (
    Server,
    log_lines,
    raw_request,
    read_records,
    run_uvicorn,
    wait_until,
)

TRACE = "12345678901234567890123456789012"
PARENT = "1234567890123456"
VALID = f"00-{TRACE}-{PARENT}-01"

# -- the parser -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "flags"),
    [
        (VALID, 1),
        (f"00-{TRACE}-{PARENT}-00", 0),
        (f"00-{TRACE}-{PARENT}-02", 2),  # random-trace-id bit (Level 2) kept
        (f"00-{TRACE}-{PARENT}-ff", 3),  # unknown bits dropped, known ones kept
        (f" 00-{TRACE}-{PARENT}-01", 1),
        (f"\t00-{TRACE}-{PARENT}-01", 1),
        (f"00-{TRACE}-{PARENT}-01 ", 1),
        (f"\t 00-{TRACE}-{PARENT}-01 \t", 1),
        (f"cc-{TRACE}-{PARENT}-01", 1),
        (f"cc-{TRACE}-{PARENT}-01-what-the-future-will-be-like", 1),
        (f"01-{TRACE}-{PARENT}-09-x", 1),
    ],
)
def test_valid_traceparent_is_read(value: str, flags: int) -> None:
    assert parse_traceparent(value) == (TRACE, PARENT, flags)


INVALID = [
    f"00-{TRACE}-{PARENT}-01.",
    f"00-{TRACE}-{PARENT}-01-what-the-future-will-be-like",
    f"cc-{TRACE}-{PARENT}-01.what-the-future-will-be-like",
    f"ff-{TRACE}-{PARENT}-01",
    f".0-{TRACE}-{PARENT}-01",
    f"0.-{TRACE}-{PARENT}-01",
    f"000-{TRACE}-{PARENT}-01",
    f"0000-{TRACE}-{PARENT}-01",
    f"0-{TRACE}-{PARENT}-01",
    f"00-{'0' * 32}-{PARENT}-01",
    f"00-.{TRACE[1:]}-{PARENT}-01",
    f"00-{TRACE[:-1]}.-{PARENT}-01",
    f"00-{TRACE}3-{PARENT}-01",
    f"00-{TRACE[:-1]}-{PARENT}-01",
    f"00-{TRACE}-{'0' * 16}-01",
    f"00-{TRACE}-.{PARENT[1:]}-01",
    f"00-{TRACE}-{PARENT[:-1]}.-01",
    f"00-{TRACE}-{PARENT}7-01",
    f"00-{TRACE}-{PARENT[:-1]}-01",
    f"00-{TRACE}-{PARENT}-.0",
    f"00-{TRACE}-{PARENT}-0.",
    f"00-{TRACE}-{PARENT}-001",
    f"00-{TRACE}-{PARENT}-1",
    f"00-{TRACE.upper().replace('1', 'A')}-{PARENT}-01",  # upper-case hex
    f"00-{TRACE}-{PARENT.replace('1', 'A')}-01",
    f"00-{TRACE}-{PARENT}-0A",
    f"cc-{TRACE}-{PARENT}",  # a later version, shorter than 55 characters
    f"00_{TRACE}_{PARENT}_01",
    f"00-{TRACE}-{PARENT}-01\n",
    f"00-{TRACE}-{PARENT}-01, 00-{TRACE}-{PARENT}-01",  # two fields combined
    "",
    "00",
    f"00-{TRACE}-{PARENT}-01" + "-" * 10_000,
]


# A field value cannot hold a line feed on the wire.
SENDABLE_INVALID = [value for value in INVALID if "\n" not in value]


@pytest.mark.parametrize("value", INVALID)
def test_invalid_traceparent_is_ignored(value: str) -> None:
    assert parse_traceparent(value) is None


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=120))
def test_parser_never_raises_and_accepts_only_lower_hex(value: str) -> None:
    parsed = parse_traceparent(value)
    if parsed is not None:
        assert tracecontext.is_valid_trace_id(parsed.trace_id)
        assert len(parsed.parent_id) == 16 and parsed.parent_id != "0" * 16
        assert parsed.flags in (0, 1, 2, 3)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (["foo=1,bar=2"], "foo=1,bar=2"),
        (["foo=1,bar=2", "rojo=1,congo=2", "baz=3"], "foo=1,bar=2,rojo=1,congo=2,baz=3"),
        (["foo=1 \t , \t bar=2, \t baz=3"], "foo=1,bar=2,baz=3"),
        (["", "foo=1"], "foo=1"),
        (["foo=1", ""], "foo=1"),
        ([""], ""),
        (["foo=1,,, ,bar=2"], "foo=1,bar=2"),  # empty members are allowed, and not kept
        (["foo=1,foo=2"], "foo=1"),  # one entry per key: the first
        (["foo@=1,bar=2"], "foo@=1,bar=2"),  # Level 2 keys
        (["foo@@bar=1,bar=2"], "foo@@bar=1,bar=2"),
        (["t61rcwkgi@rojo=00f067aa0ba902b7"], "t61rcwkgi@rojo=00f067aa0ba902b7"),
        (["z" * 256 + "=1", "foo=1"], "z" * 256 + "=1,foo=1"),
        (["k=" + "v" * 256], "k=" + "v" * 256),
        (["k=a b"], "k=a b"),  # inner space allowed in a value
        # whole header dropped: grammar broken somewhere
        (["@foo=1,bar=2"], ""),
        (["foo =1"], ""),
        (["FOO=1"], ""),
        (["foo.bar=1"], ""),
        (["foo=bar=baz"], ""),
        (["foo=,bar=3"], ""),
        (["foo=1", "z" * 257 + "=1"], ""),
        (["k=" + "v" * 257], ""),
        (["k=\x01"], ""),
        (["k=caf\xe9"], ""),
        ([",".join(f"bar{n:02d}={n:02d}" for n in range(1, 34))], ""),  # 33 members
    ],
)
def test_tracestate(fields: list[str], expected: str) -> None:
    assert parse_tracestate(fields) == expected


def test_tracestate_of_32_members_spread_over_fields_is_kept() -> None:
    members = [f"bar{n:02d}={n:02d}" for n in range(1, 33)]
    fields = [",".join(members[i : i + 10]) for i in range(0, 32, 10)]
    assert parse_tracestate(fields) == ",".join(members)


def test_tracestate_over_512_chars_drops_long_entries_first_then_from_the_right() -> None:
    long_one = "long=" + "x" * 200  # over 128 characters: goes first
    short = [f"k{n:02d}=" + "v" * 40 for n in range(12)]  # 12 x 44 characters
    value = parse_tracestate([",".join([short[0], long_one, *short[1:]])])
    kept = value.split(",")
    assert len(value) <= 512
    assert "long" not in value
    assert kept == short[: len(kept)]  # then from the right, order unchanged
    assert len(kept) == 11  # 11 x 44 + 10 commas = 494


def test_hostile_tracestate_is_dropped_in_bounded_work() -> None:
    assert parse_tracestate([",".join(f"k{n}=v" for n in range(1000))]) == ""
    assert parse_tracestate(["a=b"] * 1000) == ""
    assert parse_tracestate(["k=" + "v" * 100_000]) == ""


def test_continue_trace_discards_tracestate_of_an_invalid_traceparent() -> None:
    context = continue_trace("00-bad", "foo=1", trace_id="ab" * 16)
    assert context.trace_id == "ab" * 16 and context.tracestate == "" and context.parent_id is None


def test_outgoing_headers_give_each_call_its_own_span_under_the_current_one() -> None:
    context = continue_trace(f"00-{TRACE}-{PARENT}-03", "foo=1")
    assert outgoing_trace_headers() == {}
    with use_trace_context(context):
        first, second = outgoing_trace_headers(), outgoing_trace_headers()
    assert outgoing_trace_headers() == {}
    for headers in (first, second):
        version, trace_id, span_id, flags = headers["traceparent"].split("-")
        assert (version, trace_id, flags) == ("00", TRACE, "03")
        assert span_id not in (PARENT, context.span_id)
        assert headers["tracestate"] == "foo=1"
    assert first["traceparent"] != second["traceparent"]


def test_trace_context_is_a_value() -> None:
    context = TraceContext(TRACE, PARENT)
    assert context.traceparent() == f"00-{TRACE}-{PARENT}-01"
    assert context.sampled


# -- against a real server ------------------------------------------------------------------


class _Callbacks(BaseHTTPRequestHandler):
    """The harness's side: answers each callback with the header fields it received, raw."""

    def do_GET(self) -> None:
        body = json.dumps(list(self.headers.items())).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def harness_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Callbacks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/callback"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def traced_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_uvicorn(tmp_path_factory.mktemp("trace")) as server:
        yield server


def _field(headers: list[list[str]], name: str) -> list[str]:
    return [value for key, value in headers if key.lower() == name]


def _call(
    server: Server, harness: str, headers: list[tuple[str, str]], count: int = 1
) -> tuple[dict[str, Any], list[list[list[str]]], dict[str, str]]:
    """One request with raw header lines: (answer, each callback's header fields, headers)."""
    raw = [(name.encode(), value.encode("latin-1")) for name, value in headers]
    response = raw_request(server.port, f"/callback?count={count}&url={quote(harness)}", raw)
    assert response.status == 200, response.body[:300]
    answer = json.loads(response.body)
    return answer, answer["calls"], response.headers


def _sent(call: list[list[str]]) -> tuple[str, str, str, str]:
    (traceparent,) = _field(call, "traceparent")  # exactly one field, like the harness asserts
    version, trace_id, parent_id, flags = traceparent.split("-")
    return version, trace_id, parent_id, flags


def _lines_of(server: Server, cid: str) -> list[dict[str, Any]]:
    def mine() -> list[dict[str, Any]]:
        return [r for r in read_records(server.log_dir) if r.get("correlation_id") == cid]

    wait_until(lambda: any(r["message"] == "request finished" for r in mine()), 5.0)
    return mine()


@pytest.mark.proc
def test_no_traceparent_starts_a_trace_whose_id_is_the_correlation_id(
    traced_server: Server, harness_url: str
) -> None:
    answer, calls, headers = _call(traced_server, harness_url, [("tracestate", "foo=1")])
    cid = headers["x-request-id"]
    version, trace_id, parent_id, flags = _sent(calls[0])
    assert (version, trace_id, flags) == ("00", cid, "01")
    assert parent_id != answer["span_id"]  # a new span per call, under the request's span
    assert _field(calls[0], "tracestate") == []  # a tracestate without traceparent is discarded
    lines = _lines_of(traced_server, cid)
    assert {r["message"] for r in lines} >= {"called back", "request finished"}
    assert all(r["trace_id"] == cid and r["span_id"] == answer["span_id"] for r in lines)


@pytest.mark.proc
def test_valid_traceparent_continues_the_trace_with_a_new_span_per_call(
    traced_server: Server, harness_url: str
) -> None:
    answer, calls, headers = _call(
        traced_server, harness_url, [("traceparent", VALID), ("tracestate", "foo=1,bar=2")], 3
    )
    assert headers["x-request-id"] == TRACE == answer["correlation_id"]  # one ID
    assert answer["parent_id"] == PARENT and answer["span_id"] != PARENT
    parents = set()
    for call in calls:
        version, trace_id, parent_id, flags = _sent(call)
        assert (version, trace_id, flags) == ("00", TRACE, "01")
        parents.add(parent_id)
        assert _field(call, "tracestate") == ["foo=1,bar=2"]
        assert _field(call, "x-request-id") == [TRACE]
    assert len(parents) == 3 and not parents & {PARENT, answer["span_id"]}
    lines = _lines_of(traced_server, TRACE)
    assert {r["message"] for r in lines} >= {"called back", "request finished"}
    assert all(r["trace_id"] == TRACE and r["span_id"] == answer["span_id"] for r in lines)


@pytest.mark.proc
def test_request_id_and_traceparent_are_both_kept(traced_server: Server, harness_url: str) -> None:
    cid = "ab" * 16
    answer, calls, headers = _call(
        traced_server, harness_url, [("X-Request-ID", cid), ("traceparent", VALID)]
    )
    assert headers["x-request-id"] == cid == answer["correlation_id"]
    assert _sent(calls[0])[1] == TRACE
    assert _field(calls[0], "x-request-id") == [cid]
    assert all(r["trace_id"] == TRACE for r in _lines_of(traced_server, cid))


@pytest.mark.proc
@pytest.mark.parametrize("value", SENDABLE_INVALID, ids=range(len(SENDABLE_INVALID)))
def test_invalid_traceparent_starts_a_new_trace_and_drops_tracestate(
    traced_server: Server, harness_url: str, value: str
) -> None:
    _, calls, headers = _call(
        traced_server, harness_url, [("traceparent", value), ("tracestate", "foo=1")]
    )
    _, trace_id, _, flags = _sent(calls[0])
    assert trace_id == headers["x-request-id"] != TRACE
    assert flags == "01"
    assert _field(calls[0], "tracestate") == []


@pytest.mark.proc
@pytest.mark.parametrize(
    "value",
    [
        f"cc-{TRACE}-{PARENT}-01",
        f"cc-{TRACE}-{PARENT}-01-what-the-future-will-be-like",
        f"\t {VALID} \t",
    ],
)
def test_future_versions_and_whitespace_are_accepted_and_sent_as_version_00(
    traced_server: Server, harness_url: str, value: str
) -> None:
    _, calls, _ = _call(traced_server, harness_url, [("traceparent", value)])
    version, trace_id, _, flags = _sent(calls[0])
    assert (version, trace_id, flags) == ("00", TRACE, "01")


@pytest.mark.proc
@pytest.mark.parametrize("name", ["TraceParent", "TRACEPARENT", "tRaCePaReNt"])
def test_header_names_are_case_insensitive(
    traced_server: Server, harness_url: str, name: str
) -> None:
    _, calls, _ = _call(traced_server, harness_url, [(name, VALID), ("TraceState", "foo=1")])
    assert _sent(calls[0])[1] == TRACE
    assert _field(calls[0], "tracestate") == ["foo=1"]


@pytest.mark.proc
@pytest.mark.parametrize("name", ["trace-parent", "trace.parent", "trace_parent"])
def test_other_header_names_are_other_headers(
    traced_server: Server, harness_url: str, name: str
) -> None:
    _, calls, _ = _call(traced_server, harness_url, [(name, VALID)])
    assert _sent(calls[0])[1] != TRACE


@pytest.mark.proc
def test_duplicated_traceparent_starts_a_new_trace(traced_server: Server, harness_url: str) -> None:
    other = f"00-{TRACE[:-1]}1-{PARENT}-01"
    _, calls, _ = _call(
        traced_server, harness_url, [("traceparent", other), ("traceparent", VALID)]
    )
    assert _sent(calls[0])[1] not in (TRACE, TRACE[:-1] + "1")


@pytest.mark.proc
def test_random_flag_and_unsampled_are_propagated_as_received(
    traced_server: Server, harness_url: str
) -> None:
    for flags in ("02", "00", "03"):
        _, calls, _ = _call(traced_server, harness_url, [("traceparent", VALID[:-2] + flags)])
        assert _sent(calls[0])[3] == flags


@pytest.mark.proc
@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (["foo=1,bar=2", "rojo=1,congo=2", "baz=3"], ["foo=1,bar=2,rojo=1,congo=2,baz=3"]),
        (["", "foo=1"], ["foo=1"]),
        ([""], []),
        (["foo=1,foo=2"], ["foo=1"]),
        (["foo@=1,bar=2"], ["foo@=1,bar=2"]),
        (["@foo=1,bar=2"], []),
        (["foo=bar=baz"], []),
        (["foo=,bar=3"], []),
        (["foo=1", "z" * 257 + "=1"], []),
        (
            [
                ",".join(f"bar{n:02d}={n:02d}" for n in range(s, min(s + 10, 34)))
                for s in (1, 11, 21, 31)
            ],
            [],
        ),
        (
            [
                ",".join(f"bar{n:02d}={n:02d}" for n in range(1 + 16 * k, 17 + 16 * k))
                for k in (0, 1)
            ],
            [",".join(f"bar{n:02d}={n:02d}" for n in range(1, 33))],
        ),
    ],
    ids=[
        "combined in order",
        "empty field",
        "only empty",
        "duplicate key",
        "level-2 key",
        "key starts with @",
        "two =",
        "empty value",
        "257-char key",
        "over 32 members",
        "32 members",
    ],
)
def test_tracestate_over_real_http(
    traced_server: Server, harness_url: str, fields: list[str], expected: list[str]
) -> None:
    headers = [("traceparent", VALID), *(("tracestate", field) for field in fields)]
    _, calls, _ = _call(traced_server, harness_url, headers)
    assert _field(calls[0], "tracestate") == expected


@pytest.mark.proc
def test_long_tracestate_is_cut_to_512_chars_by_whole_entries(
    traced_server: Server, harness_url: str
) -> None:
    members = [f"k{n:02d}=" + "v" * 60 for n in range(12)]  # 12 x 64 characters
    _, calls, _ = _call(
        traced_server, harness_url, [("traceparent", VALID), ("tracestate", ",".join(members))]
    )
    (sent,) = _field(calls[0], "tracestate")
    assert len(sent) <= 512 and sent == ",".join(members[:7])


def _hostile() -> list[tuple[str, list[tuple[str, bytes]], bytes]]:
    """(name, raw header lines, a marker that must never reach the log)."""
    rng = random.Random(11)
    marker = "".join(rng.choices("0123456789abcdef", k=32))
    return [
        (
            "10 kB traceparent",
            [(b"traceparent", f"00-{marker}-{PARENT}-01".encode() + b"-" + b"a" * 10_000)],
            marker.encode(),
        ),
        (
            "10 kB future version",
            [(b"traceparent", f"cc-{marker}-{PARENT}-01-".encode() + b"f" * 10_000)],
            marker.encode(),
        ),
        (
            "control characters",
            [(b"traceparent", f"00-{marker}-{PARENT}-01".encode() + b"\x01\x1b[31m")],
            marker.encode(),
        ),
        (
            "1,000 tracestate members",
            [
                (b"traceparent", VALID.encode()),
                (b"tracestate", ",".join(f"m{marker[:8]}{n}=v" for n in range(1000)).encode()),
            ],
            marker[:8].encode(),
        ),
        (
            "1,000 tracestate fields",
            [(b"traceparent", VALID.encode())]
            + [(b"tracestate", f"m{marker[:8]}{n}=v".encode()) for n in range(1000)],
            marker[:8].encode(),
        ),
        (
            "Latin-1 tracestate",
            [(b"traceparent", VALID.encode()), (b"tracestate", b"k=caf\xe9" + marker.encode())],
            marker.encode(),
        ),
    ]


HOSTILE = _hostile()


@pytest.mark.proc
@pytest.mark.parametrize(("name", "headers", "marker"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_trace_headers_are_bounded_never_logged_never_a_500(
    traced_server: Server,
    harness_url: str,
    name: str,
    headers: list[tuple[str, bytes]],
    marker: bytes,
) -> None:
    response = raw_request(traced_server.port, f"/callback?url={quote(harness_url)}", headers)
    # The server may refuse oversized headers itself (431/400); the app never answers 500.
    assert response.status in (200, 400, 431), (name, response.status)
    if response.status == 200:
        calls = json.loads(response.body)["calls"]
        (traceparent,) = _field(calls[0], "traceparent")
        assert len(traceparent) == 55
        assert marker.decode() not in traceparent
        assert all(len(v) <= 512 for v in _field(calls[0], "tracestate"))
        cid = response.headers["x-request-id"]
        assert _lines_of(traced_server, cid)
    assert marker not in b"\n".join(log_lines(traced_server.log_dir))


# -- three services chained by the hooks only ------------------------------------------------


@pytest.mark.proc
def test_three_services_chained_by_hooks_share_one_trace(tmp_path: Path) -> None:
    import httpx

    with (
        run_uvicorn(tmp_path, env={"TESTAPP_SERVICE": "edge"}) as edge,
        run_uvicorn(tmp_path, env={"TESTAPP_SERVICE": "orders"}) as orders,
        run_uvicorn(tmp_path, env={"TESTAPP_SERVICE": "stock"}) as stock,
    ):
        answer = httpx.get(
            f"{edge.url}/chain", params={"hops": f"{orders.url},{stock.url}"}, timeout=20
        ).json()
        servers = {"edge": edge, "orders": orders, "stock": stock}
        hops = [answer, answer["next"], answer["next"]["next"]]
        cid = answer["correlation_id"]
        lines = {name: _lines_of(server, cid) for name, server in servers.items()}
    # One trace-id (the edge's correlation ID, as it started the trace) everywhere.
    assert [hop["service"] for hop in hops] == ["edge", "orders", "stock"]
    assert {hop["trace_id"] for hop in hops} == {cid}
    assert {hop["correlation_id"] for hop in hops} == {cid}
    # Parent/child: each hop received a span of its own caller's trace as parent, a new one per
    # call (never the caller's own span, never reused), and its own span differs from all.
    assert answer["received"] is None and answer["parent_id"] is None
    for caller, callee in itertools.pairwise(hops):
        assert callee["received"] == caller["sent"]
        version, trace_id, parent_id, flags = callee["received"].split("-")
        assert (version, trace_id, flags) == ("00", cid, "01")
        assert callee["parent_id"] == parent_id
        assert parent_id not in {hop["span_id"] for hop in hops}
    assert len({hop["span_id"] for hop in hops}) == 3
    # Every line of every service carries the trace and its own service's span.
    for hop in hops:
        mine = lines[hop["service"]]
        assert {r["message"] for r in mine} >= {"chain step", "request finished"}
        assert all(r["trace_id"] == cid and r["span_id"] == hop["span_id"] for r in mine)
