"""Helpers shared by the test suites (no fixtures here, only plain functions)."""

from __future__ import annotations

import os
import socket
import subprocess
from typing import Any, NoReturn

import pytest


def backends_required() -> bool:
    """CI exports OBS_REQUIRE_BACKENDS=1: a missing server is then a failure, not a skip."""
    return os.environ.get("OBS_REQUIRE_BACKENDS", "") not in ("", "0")


def missing_backend(reason: str) -> NoReturn:
    """Skip (developer machine) or fail (CI) because a real server or binary is absent."""
    if backends_required():
        pytest.fail(f"{reason} (OBS_REQUIRE_BACKENDS=1, so this is a failure)", pytrace=False)
    pytest.skip(reason)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(process: subprocess.Popen[Any], timeout: float = 10) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL: a test never leaves it running."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
