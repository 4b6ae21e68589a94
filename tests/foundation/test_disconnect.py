"""A client that goes away mid-request (reliability catalogue item 15), over a real socket to a
real uvicorn: the access line says 499 with the duration, nothing else is logged (no traceback,
no error line), the open transaction rolls back, and the server answers the next client."""

from __future__ import annotations

import socket
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.foundation.servers import Server, read_records, run_uvicorn, wait_until

FACTORY = "tests.foundation.db_app:create_app"


def _access_line(server: Server, cid: str) -> dict[str, Any] | None:
    for record in read_records(server.log_dir):
        if record.get("correlation_id") == cid and record["message"] == "request finished":
            return record
    return None


def _send_and_leave(server: Server, head: bytes, body: bytes, stay: float) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head + body)
        time.sleep(stay)  # the request is being served now; then the client closes


@pytest.mark.proc
@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_client_gone_during_a_transaction(tmp_path: Path, http: str) -> None:
    database = tmp_path / "notes.db"
    gone, kept = uuid.uuid4().hex, uuid.uuid4().hex
    with run_uvicorn(
        tmp_path, http=http, factory=FACTORY, env={"TESTAPP_DB": str(database)}
    ) as server:
        head = (
            f"POST /notes?name=gone&wait=1.0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"X-Request-ID: {gone}\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        started = time.monotonic()
        _send_and_leave(server, head, b"", stay=0.3)
        assert wait_until(lambda: _access_line(server, gone) is not None, 10.0)
        # The server still serves the next client, whose write commits.
        response = httpx.post(
            f"{server.url}/notes", params={"name": "kept"}, headers={"X-Request-ID": kept}
        )
        assert response.status_code == 200
        elapsed_ms = (time.monotonic() - started) * 1000
        records = read_records(server.log_dir)
    access = _access_line_from(records, gone)
    assert access["status"] == 499
    assert 900 <= access["duration_ms"] <= elapsed_ms
    assert access["trace_id"] == gone  # the line has the request's trace context too
    mine = [r for r in records if r.get("correlation_id") == gone]
    assert [r["message"] for r in mine] == ["note written, waiting", "request finished"]
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL")]
    assert "Traceback" not in server.stderr.read_text(errors="replace")
    with sqlite3.connect(database) as connection:
        names = [row[0] for row in connection.execute("SELECT name FROM notes")]
    assert names == ["kept"]  # the abandoned write was rolled back


def _access_line_from(records: list[dict[str, Any]], cid: str) -> dict[str, Any]:
    (line,) = [
        r for r in records if r.get("correlation_id") == cid and r["message"] == "request finished"
    ]
    return line


@pytest.mark.proc
def test_client_gone_halfway_through_its_body(tmp_path: Path) -> None:
    cid = uuid.uuid4().hex
    database = tmp_path / "notes.db"
    with run_uvicorn(tmp_path, factory=FACTORY, env={"TESTAPP_DB": str(database)}) as server:
        head = (
            f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: {cid}\r\n"
            "Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
        ).encode()
        _send_and_leave(server, head, b"x" * 1000, stay=0.3)
        assert wait_until(lambda: _access_line(server, cid) is not None, 10.0)
        records = read_records(server.log_dir)
    access = _access_line_from(records, cid)
    assert access["status"] == 499
    assert [r["message"] for r in records if r.get("correlation_id") == cid] == ["request finished"]
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL", "WARNING")]
    assert "Traceback" not in server.stderr.read_text(errors="replace")
