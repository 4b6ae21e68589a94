"""Backend faults (reliability catalogue, section E) against a scripted loopback server.

Each test scripts what the server does with the next requests (answer, stall, cut the
connection, stream forever) and checks what the user sees: exit code, one stderr line,
nothing half-printed on stdout.
"""

from __future__ import annotations

import base64
import socket
import socketserver
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator

import orjson
import pytest

from obsctl.cli.app import main
from tests.support import free_port

pytestmark = pytest.mark.timeout(30)

Behaviour = Callable[[socket.socket], None]


def answer(
    status: int, body: bytes | str, *, content_type: str = "application/json", delay: float = 0
) -> Behaviour:
    raw = body.encode() if isinstance(body, str) else body

    def behave(conn: socket.socket) -> None:
        if delay:
            time.sleep(delay)
        head = (
            f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(raw)}\r\nConnection: close\r\n\r\n"
        )
        conn.sendall(head.encode() + raw)

    return behave


def cut_mid_body(conn: socket.socket) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
    conn.sendall(head + b'{"status":"success","data":{"resultType":"vector","result":[')


def endless(conn: socket.socket) -> None:
    """200 MB of JSON-looking bytes with no Content-Length (the cap must stop the client)."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
    chunk = b"[" + b"1," * (512 * 1024)
    sent = 0
    try:
        while sent < 200 * 1024 * 1024:
            conn.sendall(chunk)
            sent += len(chunk)
    except OSError:
        return


class Scripted:
    """A loopback server that plays one behaviour per request, in order."""

    def __init__(self) -> None:
        self.behaviours: list[Behaviour] = []
        self.requests: list[bytes] = []
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn: socket.socket = self.request
                conn.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data:
                    piece = conn.recv(65536)
                    if not piece:
                        return
                    data += piece
                outer.requests.append(data)
                behave = outer.behaviours.pop(0) if outer.behaviours else answer(500, "no script")
                try:
                    behave(conn)
                except OSError:
                    return

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[Scripted]:
    scripted = Scripted()
    yield scripted
    scripted.close()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OBSCTL_PROMETHEUS_URL", "OBSCTL_LOKI_URL", "OBSCTL_TOKEN", "OBSCTL_TENANT"):
        monkeypatch.delenv(name, raising=False)
    for name in ("OBSCTL_USERNAME", "OBSCTL_PASSWORD", "OBSCTL_MAX_RESPONSE_MB"):
        monkeypatch.delenv(name, raising=False)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


VECTOR = orjson.dumps(
    {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {"__name__": "up", "job": "a"}, "value": [1795659263.73, "1"]}],
        },
    }
)


def test_backend_down_exits_3_naming_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    code, out, err = run(capsys, "prom", "query", "up", "--prom-url", url, "--timeout", "1")
    assert code == 3
    assert out == ""
    assert err.count("\n") == 1
    assert f"{url}/api/v1/query" in err
    assert "unreachable" in err
    assert time.monotonic() - started < 1 * 3 + 3  # connect timeout x attempts + backoff


def test_slow_backend_times_out_after_bounded_retries(
    server: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    server.behaviours = [answer(200, VECTOR, delay=3) for _ in range(5)]
    started = time.monotonic()
    code, out, err = run(capsys, "prom", "query", "up", "--prom-url", server.url, "--timeout", "1")
    elapsed = time.monotonic() - started
    assert code == 3
    assert out == ""
    assert "did not answer within the timeout" in err
    assert "--timeout" in err
    assert len(server.requests) == 3
    assert elapsed < 10


def test_503_plain_text_is_retried_then_shown_sanitised(
    server: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    body = "upstream \x1b[31mbusy\x1b[0m " + "x" * 500
    server.behaviours = [answer(503, body, content_type="text/plain") for _ in range(3)]
    code, out, err = run(capsys, "prom", "query", "up", "--prom-url", server.url)
    assert code == 3
    assert out == ""
    assert "HTTP 503 after 3 attempts" in err
    assert "upstream \\u001b[31mbusy" in err
    assert "\x1b" not in err
    assert "x" * 201 not in err
    assert "JSONDecodeError" not in err
    assert len(server.requests) == 3


def test_503_then_success_recovers(server: Scripted, capsys: pytest.CaptureFixture[str]) -> None:
    server.behaviours = [answer(503, "Service Unavailable", content_type="text/plain")]
    server.behaviours.append(answer(200, VECTOR))
    code, out, err = run(capsys, "prom", "query", "up", "--prom-url", server.url, "--json")
    assert code == 0, err
    assert orjson.loads(out)["metric"]["job"] == "a"


def test_500_is_not_retried(server: Scripted, capsys: pytest.CaptureFixture[str]) -> None:
    server.behaviours = [answer(500, "internal error", content_type="text/plain")]
    code, _, err = run(capsys, "prom", "query", "up", "--prom-url", server.url)
    assert code == 3
    assert "HTTP 500" in err and "internal error" in err
    assert len(server.requests) == 1


def test_lying_content_type_400_is_a_bad_query_not_retried(
    server: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    server.behaviours = [answer(400, "parse error : syntax error: unexpected $end")]
    code, _, err = run(capsys, "prom", "query", "up", "--prom-url", server.url)
    assert code == 4
    assert "parse error : syntax error: unexpected $end" in err
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "behaviour",
    [answer(200, VECTOR[: len(VECTOR) // 2]), cut_mid_body],
    ids=["truncated-json", "connection-cut"],
)
def test_truncated_200_is_malformed_and_prints_nothing(
    server: Scripted, capsys: pytest.CaptureFixture[str], behaviour: Behaviour
) -> None:
    server.behaviours = [behaviour]
    code, out, err = run(capsys, "prom", "query", "up", "--prom-url", server.url)
    assert code == 3
    assert out == ""
    assert "malformed response" in err
    assert "Traceback" not in err


def test_html_200_is_reported_as_non_json(
    server: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    page = "<!doctype html><html><body>Sign in</body></html>"
    server.behaviours = [answer(200, page, content_type="text/html; charset=utf-8")]
    code, out, err = run(capsys, "loki", "query", '{app="x"}', "--loki-url", server.url)
    assert code == 3
    assert out == ""
    assert "unexpected non-JSON response (text/html)" in err


@pytest.mark.parametrize(
    ("status", "error_type", "message", "exit_code"),
    [
        (
            400,
            "bad_data",
            'invalid parameter "query": 1:7: parse error: unclosed left parenthesis',
            4,
        ),
        (422, "execution", "invalid regular expression in label_replace(): (", 4),
        (503, "timeout", "query timed out in expression evaluation", 3),
    ],
)
def test_prometheus_error_envelope_is_shown(
    server: Scripted,
    capsys: pytest.CaptureFixture[str],
    status: int,
    error_type: str,
    message: str,
    exit_code: int,
) -> None:
    body = orjson.dumps({"status": "error", "errorType": error_type, "error": message})
    server.behaviours = [answer(status, body) for _ in range(3)]
    code, out, err = run(capsys, "prom", "query", "up", "--prom-url", server.url)
    assert code == exit_code
    assert out == ""
    assert f"{error_type}: {message}" in err.replace('\\"', '"')
    assert err.count("\n") == 1


def test_warnings_go_to_stderr_while_data_is_shown(
    server: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    envelope = orjson.loads(VECTOR)
    envelope["warnings"] = ["PromQL info: metric might not be a counter"]
    server.behaviours = [answer(200, orjson.dumps(envelope))]
    code, out, err = run(capsys, "prom", "query", "up", "--prom-url", server.url, "--json")
    assert code == 0
    assert orjson.loads(out)["value"] == [1795659263.73, "1"]
    assert "warning from the server: PromQL info: metric might not be a counter" in err


def test_special_values_sort_and_render(
    server: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    result = [
        {"metric": {"k": name}, "value": [1, value]}
        for name, value in (("b", "NaN"), ("a", "+Inf"), ("c", "-Inf"), ("d", "2.5"))
    ]
    body = {"status": "success", "data": {"resultType": "vector", "result": result}}
    server.behaviours = [answer(200, orjson.dumps(body))]
    code, out, err = run(capsys, "prom", "query", "x", "--prom-url", server.url)
    assert code == 0, err
    values = [line.split()[-1] for line in out.splitlines()[1:]]
    assert values == ["+Inf", "NaN", "-Inf", "2.5"]


def test_oversized_response_is_cut_at_the_cap_with_bounded_memory(
    server: Scripted, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OBSCTL_MAX_RESPONSE_MB", "2")
    server.behaviours = [endless]
    tracemalloc.start()
    try:
        code, out, err = run(capsys, "prom", "query", "up", "--prom-url", server.url)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 3
    assert out == ""
    assert "exceeds the 2 MiB cap" in err
    assert peak < 16 * 1024 * 1024


def test_auth_and_tenant_headers_are_sent(
    server: Scripted, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server.behaviours = [answer(200, VECTOR), answer(200, VECTOR)]
    monkeypatch.setenv("OBSCTL_TOKEN", "s3cret")
    code, _, err = run(
        capsys, "prom", "query", "up", "--prom-url", server.url, "--tenant", "team-a"
    )
    assert code == 0, err
    first = server.requests[0].decode().lower()
    assert "authorization: bearer s3cret" in first
    assert "x-scope-orgid: team-a" in first
    monkeypatch.delenv("OBSCTL_TOKEN")
    code, _, err = run(
        capsys, "prom", "query", "up", "--prom-url", server.url,
        "--username", "ann", "--password", "pw",
    )  # fmt: skip
    assert code == 0, err
    assert (
        f"Authorization: Basic {base64.b64encode(b'ann:pw').decode()}"
        in server.requests[1].decode()
    )


def test_401_names_the_credentials_to_check(
    server: Scripted, capsys: pytest.CaptureFixture[str]
) -> None:
    server.behaviours = [answer(401, "no org id", content_type="text/plain")]
    code, _, err = run(capsys, "loki", "query", '{app="x"}', "--loki-url", server.url)
    assert code == 4
    assert "no org id" in err
    assert "--tenant" in err


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["--prom-url", "localhost:9090"], "invalid Prometheus URL"),
        (["--prom-url", "http://127.0.0.1:9", "--ca-bundle", "/nonexistent/ca.pem"], "CA bundle"),
        (["--prom-url", "http://127.0.0.1:9", "--timeout", "0"], "invalid timeout"),
    ],
)
def test_bad_settings_are_usage_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], shown: str
) -> None:
    code, _, err = run(capsys, "prom", "query", "up", *args)
    assert code == 2
    assert shown in err
