"""Fixtures of the foundation core tests: a clean Loguru per test, in-process clients, a
loopback server that echoes the headers it received."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from loguru import logger

from tests.foundation import apps
from tests.foundation.servers import read_records


@pytest.fixture(autouse=True)
def _clean_loguru() -> Iterator[None]:
    """Each test configures logging itself; nothing it installed survives it."""
    apps.SEEN.clear()
    apps.CLEANUPS.clear()
    yield
    logger.remove()


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path / "logs"


@pytest.fixture
def records(log_dir: Path) -> Callable[[], list[dict[str, Any]]]:
    """Parsed lines foundation wrote so far (strict JSON, one per physical line)."""
    return lambda: read_records(log_dir)


@pytest.fixture
def make_app(log_dir: Path) -> Callable[..., FastAPI]:
    """The test app, logging to ``log_dir`` only (stdout sink off, no compression)."""

    def make(**options: Any) -> FastAPI:
        options.setdefault("log_dir", str(log_dir))
        options.setdefault("log_stdout", False)
        options.setdefault("log_compression", None)
        return apps.build_app(env={}, **options)

    return make


def client_for(app: FastAPI, **kwargs: Any) -> httpx.AsyncClient:
    """In-process client; ``raise_app_exceptions=False`` so that 500s are seen as responses."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", **kwargs)


@pytest.fixture
async def client(make_app: Callable[..., FastAPI]) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_app()) as http:
        yield http


class _EchoHeaders(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        received: dict[str, str | None] = {"x-request-id": None}
        received.update((k.lower(), v) for k, v in self.headers.items())
        body = json.dumps(received).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def echo_url() -> Iterator[str]:
    """A loopback HTTP server answering with the request headers it received, as JSON."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHeaders)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/echo"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
