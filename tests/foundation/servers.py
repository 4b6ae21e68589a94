"""Real servers and raw clients for the foundation core tests (plain functions, no fixtures).

- ``run_uvicorn``: the test app under a real ``uvicorn`` subprocess on 127.0.0.1, configured by
  ``FOUNDATION_*`` variables, always stopped (SIGTERM, then SIGKILL of its process group).
- ``raw_request``: one HTTP/1.1 request written byte by byte on a socket, for header values that
  httpx refuses to send (LF, control bytes, Latin-1, 100 KB).
- ``read_records``: every JSON line foundation wrote into a log directory (rotated and
  compressed files included), each line parsed strictly.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import free_port, port_open

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_FACTORY = "tests.foundation.apps:create_app"


@dataclass(frozen=True, slots=True)
class Server:
    port: int
    log_dir: Path
    stderr: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds passed (bounded, never hangs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child Python: the checkout importable, no inherited FOUNDATION_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOUNDATION_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("WEB_CONCURRENCY", None)
    env.update(extra or {})
    return env


def stop(process: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM, wait, then SIGKILL the whole process group; returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.wait(timeout=timeout)


@contextmanager
def run_uvicorn(
    workdir: Path,
    *,
    http: str = "httptools",
    workers: int | None = None,
    env: Mapping[str, str] | None = None,
    factory: str = APP_FACTORY,
) -> Iterator[Server]:
    """``uvicorn --factory tests.foundation.apps:create_app`` (or ``factory``) on a free
    loopback port."""
    port = free_port()
    log_dir = workdir / f"logs-{port}"
    stderr_path = workdir / f"uvicorn-{port}.stderr"
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--http",
        http,
        "--no-server-header",
        "--timeout-graceful-shutdown",
        "3",
    ]
    if workers:
        args += ["--workers", str(workers)]
    variables = {
        "FOUNDATION_LOG_DIR": str(log_dir),
        "FOUNDATION_LOG_STDOUT": "0",
        "FOUNDATION_METRICS": "1",
        **(env or {}),
    }
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            args,
            cwd=workdir,
            env=child_env(variables),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        started = wait_until(
            lambda: process.poll() is not None or port_open("127.0.0.1", port, 0.2), 60.0, 0.1
        )
        if not started or process.poll() is not None:
            raise RuntimeError(
                f"uvicorn did not start (exit {process.poll()}): "
                + stderr_path.read_text(errors="replace")[-2000:]
            )
        yield Server(port=port, log_dir=log_dir, stderr=stderr_path, process=process)
    finally:
        stop(process)


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int | None
    headers: dict[str, str]
    body: bytes


def raw_request(
    port: int, path: str, headers: list[tuple[bytes, bytes]], timeout: float = 5.0
) -> RawResponse:
    """Send one GET with the given raw header lines; ``status=None`` if the server hung up."""
    lines = [f"GET {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    payload = b"\r\n".join(lines) + b"\r\n\r\n"
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except (ConnectionResetError, BrokenPipeError):
            pass
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 "):
        return RawResponse(status=None, headers={}, body=data)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return RawResponse(status=int(status_line.split()[1]), headers=parsed, body=body)


def _strict_constant(token: str) -> Any:
    raise ValueError(f"non-standard JSON constant {token}")


def parse_line(line: bytes) -> dict[str, Any]:
    """Strict JSON (no NaN/Infinity) of one physical line."""
    record = json.loads(line, parse_constant=_strict_constant)
    assert isinstance(record, dict), line[:200]
    return record


def log_lines(log_dir: Path) -> list[bytes]:
    """Every physical line of every log file under ``log_dir`` (``.gz`` decompressed)."""
    lines: list[bytes] = []
    if not log_dir.exists():
        return lines
    names = {path.name for path in log_dir.iterdir()}
    for path in sorted(log_dir.iterdir()):
        # As readers must (README, archive format): hidden files (an archive being written)
        # are skipped, and so is an archive whose plain file is not yet unlinked.
        if path.name.startswith(".") or (path.name.endswith(".gz") and path.name[:-3] in names):
            continue
        if path.name.endswith(".gz"):
            data = gzip.decompress(path.read_bytes())
        elif ".jsonl" in path.name:
            data = path.read_bytes()
        else:
            continue
        assert not data or data.endswith(b"\n"), f"{path.name} ends with a partial line"
        lines.extend(data.split(b"\n"))  # contract 1: "\n" is the only record separator
    return [line for line in lines if line]


def read_records(log_dir: Path) -> list[dict[str, Any]]:
    return [parse_line(line) for line in log_lines(log_dir)]
