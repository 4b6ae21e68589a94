"""obsctl serve over HTTP: sign-in, headers, escaping, lookups, limits, audit (in process)."""

from __future__ import annotations

import asyncio
import io
import re
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from obsctl.settings import Settings
from obsctl.web.app import Audit, ServeConfig, create_app
from obsctl.web.guard import MAX_FAILURES
from obsctl.web.work import Busy, Lookups, TooSlow
from tests.obsctl.logdata import CID_A, CID_B, CID_C, access, app_error, line, order_request, run
from tests.obsctl.logdata import write as write_log
from tests.support import free_port

TOKEN = "s3cret-token-for-the-support-desk"
BEARER = {"Authorization": f"Bearer {TOKEN}"}

HOSTILE_CID = "4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d"
HOSTILE = [
    "<script>alert('pwned')</script>",
    '<img src=x onerror="alert(1)">',
    '"><svg onload=alert(1)>',
    "javascript:alert(document.cookie)",
    "\u202egnp.exe",
    "\x1b[31mred\x1b[0m\x1b]0;title\x07",
    "</td></tr></table><h1>broken layout</h1>",
    "\x9b31mC1 CSI\x1b[2J\r\ncleared",
    "one\u2028two\u2029three\x85four",
    "z" * 100_000,
]


def _logs(tmp_path: Path) -> Path:
    hostile = [
        line(1.0 + i / 100, "WARNING", HOSTILE_CID, text, logger=text, link=text, **{text: text})
        for i, text in enumerate(HOSTILE)
    ]
    hostile.append(
        app_error(
            1.2, HOSTILE_CID, 30101, 409, HOSTILE[0], HOSTILE[1], HOSTILE[2], traceback=HOSTILE[6]
        )
    )
    hostile.append(access(1.3, HOSTILE_CID, "GET", HOSTILE[3], "/x", 409, 3.0))
    return write_log(
        tmp_path / "logs" / "shop.jsonl",
        *order_request(0.0),
        *order_request(0.5, CID_C),
        line(0.7, "INFO", CID_B, "charged", logger="shop.payments"),
        access(0.71, CID_B, "POST", "/charges", "/charges", 201, 4.2),
        *hostile,
    )


def _app(logs: Path, audit: io.BytesIO, **options: object) -> httpx.AsyncClient:
    config = ServeConfig(
        settings=Settings(),
        paths=(str(logs),),
        token=TOKEN,
        audit=Audit(audit),
        **options,  # type: ignore[arg-type]
    )
    transport = httpx.ASGITransport(app=create_app(config))
    return httpx.AsyncClient(transport=transport, base_url="http://support.test")


@pytest.fixture
def audit() -> io.BytesIO:
    return io.BytesIO()


@pytest.fixture
async def client(tmp_path: Path, audit: io.BytesIO) -> AsyncIterator[httpx.AsyncClient]:
    async with _app(_logs(tmp_path), audit) as c:
        yield c


def _audit_lines(audit: io.BytesIO) -> list[dict[str, object]]:
    return [orjson.loads(raw) for raw in audit.getvalue().splitlines()]


# -- who may look ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", f"/trace/{CID_A}", "/errors", f"/api/trace/{CID_A}"])
async def test_every_answer_needs_the_token(client: httpx.AsyncClient, path: str) -> None:
    anonymous = await client.get(path)
    wrong = await client.get(path, headers={"Authorization": "Bearer not-the-token"})
    for response in (anonymous, wrong):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "out of stock" not in response.text and "answered" not in response.text


async def test_a_script_reads_with_the_bearer_token(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/trace/{CID_A}", headers=BEARER)
    assert response.status_code == 200
    assert "Request POST /orders answered 409 Conflict after 12.3 ms" in response.text


async def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_it(
    client: httpx.AsyncClient, audit: io.BytesIO
) -> None:
    page = await client.get("/login")
    assert page.status_code == 200 and 'name="token"' in page.text
    signed = await client.post(
        "/login", data={"token": TOKEN, "name": "Ana (support)", "next": f"/trace/{CID_A}"}
    )
    assert signed.status_code == 303
    assert signed.headers["location"] == f"/trace/{CID_A}"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # served over plain http here
    assert TOKEN not in cookie
    trace = await client.get(f"/trace/{CID_A}")
    assert trace.status_code == 200 and "Ana (support)" in trace.text
    assert _audit_lines(audit)[-1]["user"] == "Ana (support)"
    out = await client.post("/logout")
    assert out.status_code == 303 and out.headers["location"] == "/login"
    client.cookies.clear()
    client.cookies.set("obsctl_session", cookie.split(";")[0].split("=", 1)[1])
    assert (await client.get(f"/trace/{CID_A}")).status_code == 401  # the old session is gone


async def test_over_https_the_cookie_is_secure(tmp_path: Path, audit: io.BytesIO) -> None:
    async with _app(_logs(tmp_path), audit) as c:
        c.base_url = httpx.URL("https://support.test")
        signed = await c.post("/login", data={"token": TOKEN})
    assert signed.status_code == 303
    assert "Secure" in signed.headers["set-cookie"]


async def test_sign_in_goes_back_only_to_a_page_of_this_server(client: httpx.AsyncClient) -> None:
    for target in ("https://evil.test/", "//evil.test/x", "/\\evil.test"):
        signed = await client.post("/login", data={"token": TOKEN, "next": target})
        assert signed.headers["location"] == "/"


async def test_failed_sign_ins_are_rate_limited(client: httpx.AsyncClient) -> None:
    for _ in range(MAX_FAILURES):
        wrong = await client.post("/login", data={"token": "guess"})
        assert wrong.status_code == 401 and "not right" in wrong.text
    blocked = await client.post("/login", data={"token": TOKEN})
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    bearer = await client.get("/", headers=BEARER)
    assert bearer.status_code == 429  # the right token does not help once blocked


async def test_bearer_guesses_count_as_failed_sign_ins(client: httpx.AsyncClient) -> None:
    for _ in range(MAX_FAILURES):
        await client.get("/api/trace/12345678", headers={"Authorization": "Bearer guess"})
    blocked = await client.get(f"/api/trace/{CID_A}", headers=BEARER)
    assert blocked.status_code == 429
    assert "try again" in blocked.json()["error"]


# -- headers and hostile logs --------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/login", f"/trace/{CID_A}", "/errors"])
async def test_pages_carry_the_protective_headers(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, headers=BEARER)
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert "<script>" not in response.text.replace('<script src="/static/copy.js"></script>', "")
    assert " style=" not in response.text  # no inline style for the CSP to allow


async def test_hostile_log_lines_are_inert_text(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/trace/{HOSTILE_CID}", headers=BEARER)
    assert response.status_code == 200
    body = response.text
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in body
    raw_chars = ("\u202e", "\x1b", "\x07", "\x9b", "\u2028", "\u2029", "\x85", "\r")
    for raw in ("<script>alert", "<img src=x", "<svg", "<h1>broken", *raw_chars):
        assert raw not in body
    assert "one\\u2028two\\u2029three\\u0085four" in body
    assert "z" * 2000 + "… [98000 more chars]" in body and "z" * 2001 not in body
    assert "\\u202egnp.exe" in body  # the bidi override is shown, not obeyed
    assert 'href="javascript:' not in body
    tags = re.findall(r"<[a-zA-Z][^>]*>", body)
    assert not [tag for tag in tags if re.search(r"\son[a-z]+=", tag)]


@pytest.mark.parametrize(
    "raw", ["..%2F..%2Fetc%2Fpasswd", "%3Cscript%3E", "abc", "a" * 200, "x%00y", "....%2e%2e"]
)
async def test_path_like_or_malformed_ids_are_refused(client: httpx.AsyncClient, raw: str) -> None:
    page = await client.get(f"/trace/{raw}", headers=BEARER)
    api = await client.get(f"/api/trace/{raw}", headers=BEARER)
    assert page.status_code in (400, 404)
    assert api.status_code in (400, 404)
    assert "root:" not in page.text


async def test_search_refuses_a_non_id_and_redirects_an_id(client: httpx.AsyncClient) -> None:
    bad = await client.get("/search", params={"id": "../../etc/passwd"}, headers=BEARER)
    assert bad.status_code == 400 and "Give a request ID" in bad.text
    good = await client.get(
        "/search", params={"id": "773FA688-5C2E-4D7F-9A6B-1C0D2E3F4A5B"}, headers=BEARER
    )
    assert good.status_code == 303 and good.headers["location"] == f"/trace/{CID_A}"


# -- answers ---------------------------------------------------------------------------------------


async def test_trace_page_tells_what_the_customer_saw(client: httpx.AsyncClient) -> None:
    body = (await client.get(f"/trace/{CID_A[:10]}", headers=BEARER)).text
    assert "Request POST /orders answered 409 Conflict after 12.3 ms" in body
    assert "This product is out of stock." in body and "code 30101 (HTTP 409)" in body
    assert "2026-11-26 02:11:52.123 UTC" in body and "days ago" in body
    ticket = re.search(r'<pre id="ticket" class="ticket">(.*?)</pre>', body, re.S)
    assert ticket is not None
    assert f"Request ID: {CID_A}" in ticket.group(1)
    assert "Customer saw: This product is out of stock." in ticket.group(1)


async def test_an_ambiguous_prefix_lists_the_candidates(client: httpx.AsyncClient) -> None:
    page = await client.get(f"/trace/{CID_A[:8]}", headers=BEARER)
    assert page.status_code == 200
    assert f'href="/trace/{CID_A}"' in page.text and f'href="/trace/{CID_C}"' in page.text
    api = await client.get(f"/api/trace/{CID_A[:8]}", headers=BEARER)
    assert api.status_code == 409
    assert sorted(api.json()["candidates"]) == sorted([CID_A, CID_C])


async def test_nothing_found_says_what_was_searched(client: httpx.AsyncClient) -> None:
    page = await client.get("/trace/deadbeefdeadbeef", headers=BEARER)
    assert page.status_code == 404
    said = "No log line has the ID deadbeefdeadbeef in all 1 file (2026-11-26 02:11:52 → "
    assert said in page.text
    assert "Logs: 1 log file (shop.jsonl)" in page.text
    api = await client.get("/api/trace/deadbeefdeadbeef", headers=BEARER)
    assert api.status_code == 404 and "shop.jsonl" in api.json()["logs"]
    assert "in all 1 file" in api.json()["error"]


async def test_a_v7_id_is_looked_up_around_its_time_and_the_page_says_where(
    client: httpx.AsyncClient,
) -> None:
    missing = "0190a0b0c0d07abc8def0123456789ab"  # v7, 2024-07-11 07:30 UTC
    page = await client.get(f"/trace/{missing}", headers=BEARER)
    assert page.status_code == 404
    assert "around the time in its ID (2024-07-11 07:22:36 → 2024-07-11 07:37:36 UTC)" in page.text


async def test_api_gives_the_records_as_trace_json_prints_them(
    client: httpx.AsyncClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = await client.get(f"/api/trace/{CID_A}", headers=BEARER)
    assert api.status_code == 200 and api.headers["content-type"] == "application/json"
    code, out, _ = run(capsys, "trace", CID_A, str(tmp_path / "logs"), "--json")
    assert code == 0
    assert api.json() == [orjson.loads(raw) for raw in out.splitlines()]


async def test_errors_page_links_each_row_to_a_sample_trace(client: httpx.AsyncClient) -> None:
    page = await client.get("/errors", headers=BEARER)
    assert page.status_code == 200
    assert "30101" in page.text and "This product is out of stock." in page.text
    samples = re.findall(r'class="sample" href="/trace/([0-9a-f]+)"', page.text)
    assert samples
    followed = await client.get(f"/trace/{samples[0]}", headers=BEARER)
    assert followed.status_code == 200 and "answered 409 Conflict" in followed.text
    by_route = await client.get("/errors", params={"by": "route"}, headers=BEARER)
    assert "/orders" in by_route.text
    odd = await client.get("/errors", params={"by": "; rm -rf /", "since": "x"}, headers=BEARER)
    assert odd.status_code == 200 and "30101" in odd.text  # unknown choices fall back


async def test_index_shows_the_search_box_and_latest_errors(client: httpx.AsyncClient) -> None:
    page = await client.get("/", headers=BEARER)
    assert 'name="id"' in page.text and "30101" in page.text


async def test_every_lookup_writes_one_audit_line(
    client: httpx.AsyncClient, audit: io.BytesIO
) -> None:
    await client.get(f"/trace/{CID_A}", headers=BEARER)
    await client.get(f"/api/trace/{CID_A[:8]}", headers=BEARER)
    await client.get("/trace/deadbeefdeadbeef", headers=BEARER)
    lines = _audit_lines(audit)
    assert [(e["id"], e["outcome"]) for e in lines] == [
        (CID_A, "found"),
        (CID_A[:8], "ambiguous"),
        ("deadbeefdeadbeef", "not found"),
    ]
    assert all(e["user"] == "bearer token" and e["event"] == "lookup" for e in lines)
    assert all("ts" in e and "client" in e for e in lines)


async def test_a_dead_loki_gives_a_clear_page_not_a_500(audit: io.BytesIO) -> None:
    port = free_port()
    config = ServeConfig(
        settings=Settings(loki_url=f"http://127.0.0.1:{port}", timeout=1.0),
        paths=(),
        token=TOKEN,
        audit=Audit(audit),
    )
    transport = httpx.ASGITransport(app=create_app(config))
    async with httpx.AsyncClient(transport=transport, base_url="http://support.test") as c:
        page = await c.get(f"/trace/{CID_A}", headers=BEARER)
        api = await c.get(f"/api/trace/{CID_A}", headers=BEARER)
        index = await c.get("/", headers=BEARER)
    assert page.status_code == 502
    assert f"127.0.0.1:{port}" in page.text and "Loki" in page.text
    assert api.status_code == 502 and "Loki" in api.json()["error"]
    assert index.status_code == 200 and "Loki" in index.text


# -- bounded work ----------------------------------------------------------------------------------


async def test_a_thousand_concurrent_lookups_share_scans_and_stay_bounded(
    tmp_path: Path, audit: io.BytesIO
) -> None:
    big = [line(i / 1000, "INFO", CID_A, f"step {i}", payload="x" * 200) for i in range(300)]
    noise = [line(1 + i / 1000, "INFO", None, f"other {i}", payload="y" * 200) for i in range(3000)]
    logs = write_log(tmp_path / "big" / "shop.jsonl", *big, *noise, *order_request(5.0, CID_B))
    ids = [CID_A, CID_B, CID_A[:10], CID_B[:10]]
    async with _app(logs, audit, max_pending=64) as c:
        await c.get(f"/api/trace/{CID_A}", headers=BEARER)  # warm: imports, caches
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            await c.get(f"/api/trace/{CID_A}", headers=BEARER)
            one = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            responses = await asyncio.gather(
                *(c.get(f"/api/trace/{ids[i % 4]}", headers=BEARER) for i in range(1000))
            )
            many = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert {r.status_code for r in responses} == {200}
    assert len(responses[0].json()) == 300 and len(responses[1].json()) == 3
    assert len(_audit_lines(audit)) == 1002
    # The 1,000 answers (about 0.1 MB each for ID A) are all held at the end: measured ~7x one
    # lookup's peak. Scans and parsed records are never repeated side by side (two threads at
    # most, identical lookups shared); 1,000 lookups each scanning would need ~1,000x.
    assert many < one * 12


async def test_lookups_refuse_beyond_the_waiting_room_and_give_up_slow_ones() -> None:
    lookups = Lookups(threads=1, max_pending=2, timeout=0.2)
    try:
        slow = asyncio.ensure_future(lookups.run("a", lambda: time.sleep(0.5)))
        other = asyncio.ensure_future(lookups.run("b", lambda: time.sleep(0.5)))
        await asyncio.sleep(0.05)
        with pytest.raises(Busy):
            await lookups.run("c", lambda: 1)
        shared = await asyncio.gather(lookups.run("same", lambda: 42), return_exceptions=True)
        assert isinstance(shared[0], Busy)
        with pytest.raises(TooSlow):
            await slow
        with pytest.raises(TooSlow):
            await other
    finally:
        lookups.close()


async def test_identical_lookups_run_once() -> None:
    calls = 0

    def work() -> int:
        nonlocal calls
        calls += 1
        time.sleep(0.1)
        return calls

    lookups = Lookups(threads=2, max_pending=4, timeout=5)
    try:
        results = await asyncio.gather(*(lookups.run("k", work) for _ in range(50)))
    finally:
        lookups.close()
    assert results == [1] * 50 and calls == 1


# -- the command -----------------------------------------------------------------------------------


def test_serve_refuses_to_start_without_a_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OBSCTL_SERVE_TOKEN", raising=False)
    code, _, err = run(capsys, "serve", "--listen", "127.0.0.1:0")
    assert code == 2 and "OBSCTL_SERVE_TOKEN" in err
    monkeypatch.setenv("OBSCTL_SERVE_TOKEN", "short")
    code, _, err = run(capsys, "serve", "--listen", "127.0.0.1:0")
    assert code == 2 and "too short" in err


def test_serve_says_which_path_is_missing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OBSCTL_SERVE_TOKEN", TOKEN)
    code, _, err = run(capsys, "serve", str(tmp_path / "nope"), "--listen", "127.0.0.1:0")
    assert code == 2 and "nope" in err
    code, _, err = run(capsys, "serve", "--listen", "nonsense")
    assert code == 2 and "--listen" in err
