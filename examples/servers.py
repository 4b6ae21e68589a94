"""Run the example services under uvicorn on loopback ports, and always stop them.

``Servers`` starts each service as its own process, records it before anything can go wrong,
waits for ``/healthz`` with a bounded loop, and ``stop_all`` ends them: SIGTERM (uvicorn then
runs the app's lifespan shutdown), a bounded wait, then SIGKILL of the process group. The
children live in their own session, so a Ctrl-C in the terminal reaches only the parent, which
stops them in order; on Linux they also get SIGTERM from the kernel if the parent dies without
cleaning up (even on SIGKILL).
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
_PR_SET_PDEATHSIG = 1
# Loaded in the parent: the child between fork and exec should only make the one system call.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


class ServerFailed(RuntimeError):
    """A service did not become ready; the message names it and quotes its stderr."""


@dataclass(slots=True)
class Server:
    name: str
    app: str
    port: int
    process: subprocess.Popen[bytes]
    output: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def port_is_free(port: int) -> bool:
    """Whether uvicorn could bind 127.0.0.1:``port`` now (with SO_REUSEADDR, as it does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port(preferred: int | None, *, avoid: frozenset[int] = frozenset()) -> int:
    """``preferred`` when it is free, otherwise a port the kernel hands out."""
    if preferred and preferred not in avoid and port_is_free(preferred):
        return preferred
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in avoid:
            return port


def _die_with_parent() -> None:
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass(slots=True)
class Servers:
    """The processes started so far; ``stop_all`` is safe to call at any point, more than once."""

    env: Mapping[str, str]
    output_dir: Path
    started: list[Server] = field(default_factory=list)

    def start(self, name: str, app: str, port: int, env: Mapping[str, str] | None = None) -> Server:
        output = self.output_dir / f"{name}.uvicorn.txt"
        child_env = {**self.env, **(env or {})}
        child_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO_ROOT), child_env.get("PYTHONPATH")])
        )
        args = [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",  # foundation writes one access line per request itself
            "--timeout-graceful-shutdown",
            "3",
        ]
        with output.open("wb") as sink:
            process = subprocess.Popen(
                args,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if _LIBC is not None else None,  # noqa: PLW1509
            )
        server = Server(name=name, app=app, port=port, process=process, output=output)
        self.started.append(server)
        return server

    def wait_ready(self, server: Server, timeout: float) -> None:
        """Return once ``GET /healthz`` answers 200; raise ``ServerFailed`` otherwise."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=server.url, timeout=1.0) as client:
            while time.monotonic() < deadline:
                if server.process.poll() is not None:
                    raise ServerFailed(
                        f"{server.name} exited with code {server.process.returncode} "
                        f"before it was ready:\n{_tail(server.output)}"
                    )
                with suppress(httpx.TransportError):
                    if client.get("/healthz").status_code == 200:
                        return
                time.sleep(0.05)
        raise ServerFailed(
            f"{server.name} was not ready on {server.url} after {timeout:.0f} s:\n"
            f"{_tail(server.output)}"
        )

    def stop_all(self, timeout: float = 5.0) -> dict[str, int]:
        """SIGTERM every running server, wait up to ``timeout``, SIGKILL what is left.

        Returns each server's exit code (uvicorn exits 0 after a clean shutdown)."""
        for server in self.started:
            if server.process.poll() is None:
                with suppress(ProcessLookupError):
                    server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: dict[str, int] = {}
        for server in self.started:
            try:
                codes[server.name] = server.process.wait(
                    timeout=max(0.0, deadline - time.monotonic())
                )
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(server.process.pid, signal.SIGKILL)
                codes[server.name] = server.process.wait(timeout=timeout)
        self.started.clear()
        return codes


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no output)"
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"
