"""A throwaway Redis (Debian's ``redis-server``) and Celery workers, for the demo and the tests.

``start_redis(directory)`` runs ``redis-server`` on a free 127.0.0.1 port with its files in
``directory`` (no persistence) and waits for ``PING`` with a bounded loop; ``start_worker`` runs
``celery worker`` on a given module and waits until its log says it is ready. Both are context
managers that always stop what they started (SIGTERM, bounded wait, SIGKILL of the group). The
machine's own Redis (6379) is never used: a fresh machine may not have one, and tests must not
touch data that is not theirs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from examples.servers import _LIBC, REPO_ROOT, _die_with_parent, pick_port

READY_TIMEOUT = 20.0


class BrokerUnavailable(RuntimeError):
    """``redis-server`` is not installed, or did not start; the message says what to do."""


def redis_binary() -> str | None:
    """Path of Debian's ``redis-server`` (``apt-get install redis-server``), if installed."""
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if Path(p).exists()), None
    )


@dataclass(frozen=True, slots=True)
class Redis:
    port: int
    process: subprocess.Popen[bytes]

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes], timeout: float = 5.0) -> int:
    if process.poll() is None:
        with suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.wait(timeout=timeout)


@contextmanager
def start_redis(directory: Path, *, timeout: float = READY_TIMEOUT) -> Iterator[Redis]:
    """A private ``redis-server`` on 127.0.0.1, stopped on exit; ``BrokerUnavailable`` if none."""
    binary = redis_binary()
    if binary is None:
        raise BrokerUnavailable(
            "redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    port = pick_port(None)
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    args += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"]
    with (directory / "redis.txt").open("wb") as output:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # The kernel stops it if this process dies without cleaning up (even on SIGKILL).
            preexec_fn=_die_with_parent if _LIBC is not None else None,  # noqa: PLW1509
        )
    try:
        deadline = time.monotonic() + timeout
        while not _ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (directory / "redis.txt").read_text(errors="replace")[-800:]
                raise BrokerUnavailable(f"redis-server did not start on port {port}:\n{tail}")
            time.sleep(0.05)
        yield Redis(port=port, process=process)
    finally:
        _stop(process)


@dataclass(frozen=True, slots=True)
class Worker:
    process: subprocess.Popen[bytes]
    output: Path

    def stop(self, timeout: float = 10.0) -> int:
        """Warm shutdown (SIGTERM: running tasks finish), bounded; SIGKILL after ``timeout``."""
        return _stop(self.process, timeout)

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once (a crash, not a shutdown)."""
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@contextmanager
def start_worker(
    module: str,
    *,
    env: Mapping[str, str],
    output: Path,
    ready: Callable[[], bool],
    pool: str = "prefork",
    concurrency: int = 2,
    queues: Sequence[str] = (),
    loglevel: str = "INFO",
    timeout: float = READY_TIMEOUT,
) -> Iterator[Worker]:
    """``celery -A module worker`` until the block ends; waits until ``ready()`` is true."""
    child_env = {**os.environ, **env}
    child_env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), child_env.get("PYTHONPATH")])
    )
    args = [sys.executable, "-m", "celery", "-A", module, "worker", "--pool", pool]
    args += ["--concurrency", str(concurrency), "--loglevel", loglevel, "--without-heartbeat"]
    args += ["--without-gossip", "--without-mingle"]
    if queues:
        args += ["--queues", ",".join(queues)]
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("wb") as sink:
        process = subprocess.Popen(
            args,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # The kernel stops it if this process dies without cleaning up (even on SIGKILL).
            preexec_fn=_die_with_parent if _LIBC is not None else None,  # noqa: PLW1509
        )
    worker = Worker(process=process, output=output)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                tail = output.read_text(errors="replace")[-1500:]
                state = "exited" if process.poll() is not None else "not ready"
                raise BrokerUnavailable(f"celery worker {state} after start:\n{tail}")
            time.sleep(0.1)
        yield worker
    finally:
        if process.poll() is None:
            worker.stop()
