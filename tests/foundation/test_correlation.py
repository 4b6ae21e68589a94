"""Correlation IDs: the strict validator, the header corpus over real HTTP, integrity under
concurrency, propagation into threads, tasks and streams, and outgoing calls."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import re
import string
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asgi_correlation_id
import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

import foundation
from foundation.correlation import (
    StrictCorrelationIdMiddleware,
    canonical_correlation_id,
    is_valid_correlation_id,
    new_correlation_id,
)
from tests.foundation import apps
from tests.foundation.conftest import client_for
from tests.foundation.servers import (
    Server,
    log_lines,
    raw_request,
    read_records,
    run_uvicorn,
    wait_until,
)

# RFC 9562 v7 in lower-case hex: 12 digits of milliseconds, version 7, variant 10 (8, 9, a, b).
V7 = re.compile(r"[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}")
# The 74 bits that are neither time, version nor variant, as positions in the 128-bit integer.
RANDOM_BITS = [*range(64, 76), *range(62)]


def is_fresh_id(value: str) -> bool:
    """An ID foundation issued itself: a UUIDv7 in 32 lower-case hex."""
    return V7.fullmatch(value) is not None


def id_ms(value: str) -> int:
    return int(value[:12], 16)


# -- the generator ------------------------------------------------------------------------------


def test_generated_ids_are_rfc9562_version_7_in_32_lower_case_hex() -> None:
    for _ in range(10_000):
        value = new_correlation_id()
        assert is_fresh_id(value), value
        parsed = uuid.UUID(value)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert parsed.hex == value
        assert is_valid_correlation_id(value)
        assert canonical_correlation_id(value) == value


def test_generated_id_carries_the_clock_reading_in_milliseconds() -> None:
    for _ in range(1000):
        before = time.time_ns() // 1_000_000
        value = new_correlation_id()
        after = time.time_ns() // 1_000_000
        assert before <= id_ms(value) <= after


def test_rfc_test_vector_decodes_as_the_generator_encodes() -> None:
    """RFC 9562 Appendix A.6: 017F22E2-79B0-7CC3-98C4-DC0C0C07398F is 2022-02-22T19:22:22Z."""
    value = canonical_correlation_id("017F22E2-79B0-7CC3-98C4-DC0C0C07398F")
    assert is_fresh_id(value)
    assert id_ms(value) == 1_645_557_742_000


def test_every_one_of_the_74_random_bits_varies_evenly() -> None:
    total = 20_000
    ones = [0] * 128
    for _ in range(total):
        number = int(new_correlation_id(), 16)
        for bit in RANDOM_BITS:
            ones[bit] += (number >> bit) & 1
    # Binomial(20000, 0.5): the standard deviation is ~71, so 45-55 % is about 14 sigma.
    skewed = {bit: ones[bit] / total for bit in RANDOM_BITS if not 0.45 < ones[bit] / total < 0.55}
    assert skewed == {}


def test_a_frozen_or_stepped_back_clock_keeps_the_true_time_and_unique_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No counter that runs ahead: the embedded time is the clock reading, even when it repeats
    or goes backwards (an NTP step); uniqueness rests on the 74 random bits."""
    readings = iter([1_800_000_000_000_000_000] * 50_000 + [1_799_999_000_000_000_000] * 50_000)
    monkeypatch.setattr(time, "time_ns", lambda: next(readings))
    values = [new_correlation_id() for _ in range(100_000)]
    assert {id_ms(v) for v in values[:50_000]} == {1_800_000_000_000}
    assert {id_ms(v) for v in values[50_000:]} == {1_799_999_000_000}
    assert len(set(values)) == len(values)


def _generate(count: int, path: str) -> None:
    with open(path, "w", encoding="ascii") as out:
        out.write("\n".join(new_correlation_id() for _ in range(count)))


def _ids_from_forked_children(
    tmp_path: Path, target: Callable[[int, str], None], *, children: int, each: int
) -> list[str]:
    """The IDs that ``children`` processes forked from this one issued, ``each`` apiece."""
    context = multiprocessing.get_context("fork")
    paths = [str(tmp_path / f"ids-{n}.txt") for n in range(children)]
    workers = [context.Process(target=target, args=(each, p)) for p in paths]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    return [v for p in paths for v in Path(p).read_text(encoding="ascii").split("\n")]


@pytest.mark.proc
def test_a_million_ids_from_two_forked_processes_are_unique_and_well_formed(
    tmp_path: Path,
) -> None:
    """Two workers forked from one parent (as uvicorn/gunicorn workers are) share no random
    stream: 2 x 500,000 IDs, no duplicate, every one a v7 with a time inside the run."""
    started = time.time_ns() // 1_000_000
    values = _ids_from_forked_children(tmp_path, _generate, children=2, each=500_000)
    finished = time.time_ns() // 1_000_000
    assert len(values) == 1_000_000
    assert len(set(values)) == 1_000_000
    assert all(V7.fullmatch(v) for v in values)
    assert started <= min(map(id_ms, values)) and max(map(id_ms, values)) <= finished


def _generate_frozen(count: int, path: str) -> None:
    time.time_ns = lambda: 1_800_000_000_000_000_000  # every ID of the same millisecond
    _generate(count, path)


@pytest.mark.proc
def test_forked_children_never_reuse_the_random_bytes_their_parent_read_ahead(
    tmp_path: Path,
) -> None:
    """The random bits are read ahead for many IDs at once: a child forked mid-way through that
    pool must discard it, or it would issue its parent's next IDs (with a frozen clock, the
    random bits are all that tells IDs apart)."""
    new_correlation_id()  # the parent's pool is now read part-way
    values = _ids_from_forked_children(tmp_path, _generate_frozen, children=3, each=600)
    parent = [new_correlation_id()[12:] for _ in range(600)]
    assert len(values) == 1800
    assert len({v[12:] for v in values} | set(parent)) == 2400


def test_threads_issuing_ids_at_once_never_share_random_bits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: 1_800_000_000_000_000_000)
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, mid-ID included
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            batches = list(
                pool.map(lambda _: [new_correlation_id() for _ in range(5000)], range(8))
            )
    finally:
        sys.setswitchinterval(previous)
    values = [v for batch in batches for v in batch]
    assert len(set(values)) == len(values) == 40_000


# -- the validator ----------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_validator_accepts_only_short_printable_ascii_canonicalised_to_32_hex(value: str) -> None:
    if not is_valid_correlation_id(value):
        return
    assert len(value) <= 36
    assert value.isascii() and value.isprintable()
    assert "\r" not in value and "\n" not in value
    canonical = canonical_correlation_id(value)
    assert len(canonical) == 32 and set(canonical) <= set(string.hexdigits.lower())
    assert canonical == uuid.UUID(value).hex


@settings(max_examples=200, deadline=None)
@given(st.uuids(), st.sampled_from(["hex", "str", "upper-hex", "upper-str"]))
def test_validator_accepts_every_uuid_spelling_and_canonicalises_it(
    value: uuid.UUID, spelling: str
) -> None:
    text = {
        "hex": value.hex,
        "str": str(value),
        "upper-hex": value.hex.upper(),
        "upper-str": str(value).upper(),
    }[spelling]
    assert is_valid_correlation_id(text)
    assert canonical_correlation_id(text) == value.hex


@pytest.mark.parametrize(
    "value",
    [
        "",
        "urn:uuid:" + uuid.uuid4().hex,
        "{" + str(uuid.uuid4()) + "}",
        " " + uuid.uuid4().hex,
        uuid.uuid4().hex + "\n",
        uuid.uuid4().hex[:16] + "-" * 1000 + uuid.uuid4().hex[:16],
        uuid.uuid4().hex[:31],
        uuid.uuid4().hex + "0",
        "g" * 32,
        "１" * 32,  # full-width digits: str.isdigit-style checks would take them
    ],
)
def test_validator_refuses_non_canonical_forms(value: str) -> None:
    assert not is_valid_correlation_id(value)


def test_upstream_default_validator_still_accepts_a_kilobyte_of_hyphens() -> None:
    """Regression guard: if upstream ever tightens this, foundation's reason to exist changes."""
    hex16 = uuid.uuid4().hex[:16]
    assert asgi_correlation_id.middleware.is_valid_uuid4(hex16 + "-" * 1000 + hex16)


async def test_setup_replaces_the_upstream_default_validator(
    make_app: Callable[..., FastAPI],
) -> None:
    """The value upstream would accept is replaced by a fresh ID in an app using foundation."""
    app = make_app()
    names = [getattr(m.cls, "__name__", "") for m in app.user_middleware]
    assert names.count(StrictCorrelationIdMiddleware.__name__) == 1
    hostile = uuid.uuid4().hex[:16] + "-" * 1000 + uuid.uuid4().hex[:16]
    async with client_for(app) as http:
        response = await http.get("/ok", headers={"X-Request-ID": hostile})
    assert response.status_code == 200
    assert is_fresh_id(response.headers["X-Request-ID"])
    assert response.json()["correlation_id"] == response.headers["X-Request-ID"]


# -- the header corpus over real HTTP -----------------------------------------------------------


@pytest.fixture(scope="module", params=["h11", "httptools"])
def corpus_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp(f"corpus-{request.param}")
    with run_uvicorn(workdir, http=request.param) as server:
        yield server


def _corpus() -> list[tuple[str, bytes, str, str]]:
    """(name, raw header value, expected outcome, a marker that must never reach the log)."""
    u = [uuid.uuid4() for _ in range(16)]
    junk = "".join(random.Random(7).choices(string.ascii_letters + string.punctuation, k=8192))
    return [
        ("canonical hex", u[0].hex.encode(), "echo", u[0].hex),
        ("hyphenated uuid", str(u[1]).encode(), "echo", u[1].hex),
        ("upper-case hex", u[2].hex.upper().encode(), "echo", u[2].hex),
        # RFC 9110: leading whitespace is not part of a field value; the server strips it.
        ("leading tab", b"\t" + u[3].hex.encode(), "echo", u[3].hex),
        ("urn prefix", f"urn:uuid:{u[4]}".encode(), "replace", u[4].hex[:16]),
        ("braces", f"{{{u[5]}}}".encode(), "replace", u[5].hex[:16]),
        (
            "1,000 hyphens",
            u[6].hex[:16].encode() + b"-" * 1000 + u[6].hex[16:].encode(),
            "replace",
            u[6].hex[:16],
        ),
        (
            "100,000 hyphens",
            u[7].hex[:16].encode() + b"-" * 100_000 + u[7].hex[16:].encode(),
            "replace",
            u[7].hex[:16],
        ),
        (
            "tab inside",
            u[8].hex[:16].encode() + b"\t" + u[8].hex[16:].encode(),
            "replace",
            u[8].hex[:16],
        ),
        (
            "embedded LF",
            u[9].hex[:16].encode() + b"\n" + u[9].hex[16:].encode(),
            "replace",
            u[9].hex[:16],
        ),
        ("control byte", u[10].hex.encode() + b"\x01", "replace", u[10].hex[:16]),
        ("Latin-1 byte", b"caf\xe9-" + u[11].hex.encode(), "replace", u[11].hex[:16]),
        ("UTF-8 bytes", "café-ü-".encode() + u[12].hex.encode(), "replace", u[12].hex[:16]),
        ("8 KB junk", (u[13].hex + junk).encode(), "replace", u[13].hex[:16]),
    ]


CORPUS = _corpus()


@pytest.mark.proc
@pytest.mark.parametrize(("name", "value", "outcome", "marker"), CORPUS, ids=[c[0] for c in CORPUS])
def test_header_corpus_over_real_http(
    corpus_server: Server, name: str, value: bytes, outcome: str, marker: str
) -> None:
    response = raw_request(corpus_server.port, "/ok", [(b"X-Request-ID", value)])
    if outcome == "echo":
        assert response.status == 200, name
        assert response.headers["x-request-id"] == marker
    else:
        # Either the server refuses the request itself, or the app replaces the ID.
        assert response.status in (200, 400), (name, response.status, response.body[:200])
        if response.status == 200:
            sent = response.headers["x-request-id"]
            assert is_fresh_id(sent), sent
            assert marker not in sent
    if response.status == 200:
        answered = response.headers["x-request-id"]
        assert len(answered) <= 36
        assert wait_until(
            lambda: any(
                r.get("correlation_id") == answered and r["message"] == "request finished"
                for r in read_records(corpus_server.log_dir)
            ),
            5.0,
        ), f"no access line with {answered}"
    raw_log = b"\n".join(log_lines(corpus_server.log_dir))
    if outcome == "replace":
        assert marker.encode() not in raw_log, f"{name}: the raw header value reached the log"
        assert b"-" * 8 not in raw_log


# -- integrity under concurrency ----------------------------------------------------------------


@pytest.mark.proc
async def test_concurrent_requests_never_mix_ids_nor_lose_lines(tmp_path: Path) -> None:
    """400 requests, 50 at a time, each logging 4 times in 4 contexts, over real uvicorn."""
    total, concurrency = 400, 50
    ids = {n: uuid.uuid4().hex for n in range(total)}
    with run_uvicorn(tmp_path) as server:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        gate = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=10.0) as http:

            async def one(n: int) -> tuple[int, str]:
                async with gate:
                    response = await http.get(f"/job/{n}", headers={"X-Request-ID": ids[n]})
                assert response.status_code == 200
                assert response.json() == {"n": n}
                return n, response.headers["X-Request-ID"]

            async with asyncio.timeout(60):
                answered = await asyncio.gather(*(one(n) for n in range(total)))
        assert all(sent == ids[n] for n, sent in answered)

        def work_lines() -> list[dict[str, Any]]:
            return [r for r in read_records(server.log_dir) if "step" in r]

        # Background tasks run after the response: wait (bounded) for the last of them.
        wait_until(lambda: len(work_lines()) >= 4 * total, 10.0)
    lines = work_lines()
    assert len(lines) == 4 * total
    foreign = [r for r in lines if r.get("correlation_id") != ids[r["n"]]]
    assert foreign == []
    steps: dict[int, set[str]] = {}
    for r in lines:
        steps.setdefault(r["n"], set()).add(r["step"])
    assert all(s == {"handler", "thread", "background", "sleep"} for s in steps.values())
    assert len(steps) == total


# -- propagation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/ctx/handler", "id"),
        ("/ctx/create_task", "id"),
        ("/ctx/to_thread", "id"),
        ("/ctx/sync", "id"),
        ("/ctx/stream_async", "id"),
        ("/ctx/stream_sync", "id"),
        ("/ctx/executor_wrapped", "id"),
        # cpython#78195: run_in_executor does not copy the context; with_correlation exists
        # because of this, and this control keeps the reason visible.
        ("/ctx/executor", None),
    ],
)
async def test_correlation_id_reaches_each_execution_context(
    client: httpx.AsyncClient, path: str, expected: str | None
) -> None:
    cid = uuid.uuid4().hex
    response = await client.get(path, headers={"X-Request-ID": cid})
    assert response.status_code == 200
    seen = response.text if "stream" in path else response.json()["seen"]
    assert seen == (cid if expected == "id" else "None" if "stream" in path else None)


async def test_correlation_id_reaches_background_tasks(client: httpx.AsyncClient) -> None:
    cid = uuid.uuid4().hex
    response = await client.get("/ctx/background", headers={"X-Request-ID": cid})
    assert response.status_code == 200
    assert dict(apps.SEEN) == {"background": cid}


async def test_with_correlation_carries_the_id_into_a_thread_pool() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from asgi_correlation_id import correlation_id

    token = correlation_id.set("0" * 32)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            wrapped = pool.submit(foundation.with_correlation(foundation.get_correlation_id))
            assert wrapped.result(timeout=5) == "0" * 32
    finally:
        correlation_id.reset(token)


async def test_outgoing_async_call_carries_the_request_id(
    client: httpx.AsyncClient, echo_url: str
) -> None:
    cid = uuid.uuid4().hex
    response = await client.get(
        "/outgoing", params={"url": echo_url}, headers={"X-Request-ID": cid}
    )
    assert response.json() == {"received": cid}


async def test_outgoing_call_keeps_a_header_the_caller_set(
    client: httpx.AsyncClient, echo_url: str
) -> None:
    response = await client.get(
        "/outgoing",
        params={"url": echo_url, "explicit": "upstream-chosen"},
        headers={"X-Request-ID": uuid.uuid4().hex},
    )
    assert response.json() == {"received": "upstream-chosen"}


async def test_outgoing_sync_call_from_a_sync_endpoint_carries_the_request_id(
    client: httpx.AsyncClient, echo_url: str
) -> None:
    cid = uuid.uuid4().hex
    response = await client.get(
        "/outgoing_sync", params={"url": echo_url}, headers={"X-Request-ID": cid}
    )
    assert response.json() == {"received": cid}


def test_outgoing_call_outside_a_request_sends_no_id(echo_url: str) -> None:
    with httpx.Client(event_hooks={"request": [foundation.stamp_correlation_id]}) as http:
        assert http.get(echo_url, timeout=5).json()["x-request-id"] is None


# -- no stale ID --------------------------------------------------------------------------------


async def test_no_stale_id_across_requests_on_one_client(make_app: Callable[..., FastAPI]) -> None:
    a, b = uuid.uuid4().hex, uuid.uuid4().hex
    async with client_for(make_app()) as http:
        first = await http.get("/ok", headers={"X-Request-ID": a})
        assert first.headers["X-Request-ID"] == a
        crashed = await http.get("/boom", headers={"X-Request-ID": b})
        assert crashed.status_code == 500
        assert crashed.headers["X-Request-ID"] == b
        assert crashed.json()["correlation_id"] == b
        third = await http.get("/ok")
    fresh = third.headers["X-Request-ID"]
    assert is_fresh_id(fresh) and fresh not in (a, b)
    assert third.json()["correlation_id"] == fresh
    assert foundation.get_correlation_id() is None


# -- issued IDs carry the request's arrival time -------------------------------------------------


async def test_issued_id_is_v7_with_the_time_the_request_arrived(
    make_app: Callable[..., FastAPI],
) -> None:
    async with client_for(make_app()) as http:
        before = time.time_ns() // 1_000_000
        response = await http.get("/ok")
        after = time.time_ns() // 1_000_000
    issued = response.headers["X-Request-ID"]
    assert is_fresh_id(issued)
    assert before <= id_ms(issued) <= after
    assert response.json()["correlation_id"] == issued


@pytest.mark.parametrize(
    "sent",
    [
        uuid.uuid4().hex,  # v4, today's common case
        uuid.uuid1().hex,  # another version
        "0" * 32,  # no version at all
        str(uuid.UUID("017f22e2-79b0-7cc3-98c4-dc0c0c07398f")).upper(),  # a v7 from 2022
    ],
)
async def test_client_ids_of_any_version_are_kept(
    make_app: Callable[..., FastAPI], sent: str
) -> None:
    async with client_for(make_app()) as http:
        response = await http.get("/ok", headers={"X-Request-ID": sent})
    assert response.headers["X-Request-ID"] == canonical_correlation_id(sent)
    assert response.json()["correlation_id"] == canonical_correlation_id(sent)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        pytest.param(None, False, id="absent"),
        pytest.param(b"", False, id="empty"),
        pytest.param(b"not-an-id", False, id="invalid"),
        pytest.param(b"0123456789ABCDEF0123456789ABCDEF", True, id="upper-case"),
        pytest.param(b"0123456789abcdef0123456789abcdef", True, id="canonical"),
    ],
)
async def test_the_app_reads_the_request_id_from_its_own_request_headers(
    sent: bytes | None, kept: bool
) -> None:
    """Upstream's update_request_header: one X-Request-ID in the app's scope, the one answered."""
    from foundation.correlation import StrictCorrelationIdMiddleware

    seen: list[list[tuple[bytes, bytes]]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(list(scope["headers"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    transport = httpx.ASGITransport(app=StrictCorrelationIdMiddleware(inner))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        request = client.build_request("GET", "/")
        request.headers.pop("x-request-id", None)
        if sent is not None:
            request.headers["x-request-id"] = sent.decode()
        answered = (await client.send(request)).headers["x-request-id"]
    ids = [value.decode() for name, value in seen[0] if name == b"x-request-id"]
    assert ids == [answered]
    assert re.fullmatch(r"[0-9a-f]{32}", answered)
    if kept:
        assert answered == sent.decode().lower()  # type: ignore[union-attr]
    elif sent:
        assert answered != sent.decode()
