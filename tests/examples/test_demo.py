"""``python -m examples.demo`` end to end in a subprocess: exit code, what it prints, what it
leaves behind (no server, no open port), twice in a row, from a path with spaces, with the
preferred port taken, and interrupted."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.broker import redis_binary
from examples.demo import Options, _clean
from examples.servers import pick_port, port_is_free
from tests.support import backends_required, port_open

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_LINE = re.compile(r"^  (shop|payments)\s+pid (\d+)\s+http://127\.0\.0\.1:(\d+)$", re.M)
DOMAIN_CODES = ("30101", "30102", "30103", "30201", "30202", "21101", "21102", "21103", "10422")
DOMAIN_CODES += ("30301",)  # the receipt job that fails in the worker
WORKER_LINE = re.compile(r"^  worker\s+pid (\d+)\s+celery prefork", re.M)

pytestmark = pytest.mark.proc


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FOUNDATION_", "OBSCTL_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["COLUMNS"] = "220"  # rich wraps tables at 80 columns when stdout is not a terminal
    return env


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port some other program is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _demo(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "examples.demo", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _servers(stdout: str) -> dict[str, tuple[int, int]]:
    return {name: (int(pid), int(port)) for name, pid, port in SERVER_LINE.findall(stdout)}


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _error_counts(log_dir: Path) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-m", "obsctl.cli.entry", "errors", "top", "--json", str(log_dir)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    return {str(row["internal_code"]): row["count"] for row in rows}


def test_demo_twice_from_a_path_with_spaces_while_the_preferred_port_is_taken(
    tmp_path: Path, taken_port: int
) -> None:
    workdir = tmp_path / "my shop demo"
    workdir.mkdir()
    args = ("--log-dir", "demo logs", "--data-dir", "demo data", "--port", str(taken_port))
    first = _demo(workdir, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert f"port {taken_port} was taken" in out
    servers = _servers(out)
    assert set(servers) == {"shop", "payments"}
    assert servers["shop"][1] != taken_port
    # The errors table ranks the shop's and the payment service's own codes, and foundation's.
    table = out[out.index("errors top") : out.index("$ ", out.index("errors top"))]
    for code in DOMAIN_CODES:
        assert f"│ {code} │" in table, code
    # The trace of the 500 names the bug.
    # The command line shows obsctl's path, shell-quoted when the checkout's path has a space.
    shown = re.search(r"obsctl'? trace ", out)
    assert shown is not None, out
    trace = out[shown.start() :]
    assert "answered 500" in trace
    assert "KeyError: 'CH'" in trace
    assert "/orders/{order_id}/receipt" in trace
    # With Debian's redis-server the receipts ran in a real worker; without it, inline.
    worker = WORKER_LINE.search(out)
    if redis_binary() is None and not backends_required():
        assert "no broker: redis-server is not installed" in out
    else:
        assert worker is not None, out
        assert "worker cleanly" in out
        assert _gone(int(worker.group(1)))
    # Either way the receipt that failed is traced.
    receipt = re.search(
        r"a receipt that failed: job shop.send_receipt \(correlation ID (\w+)\)", out
    )
    assert receipt is not None, out
    receipt_trace = out[out.index(f"trace {receipt.group(1)}") :]
    assert "550 mailbox unavailable" in receipt_trace
    # Commands to run again are quoted for a shell.
    assert "'demo logs'" in out
    assert "Run it again: python -m examples.demo" in out
    # Nothing left running.
    for pid, port in servers.values():
        assert _gone(pid)
        assert not port_open("127.0.0.1", port)

    # The declined order's ID continues into the payment service's log lines.
    declined = re.search(r"trace ([0-9a-f]{32}) .*# one order, two services", out)
    assert declined is not None
    cid = declined.group(1)
    log_dir = workdir / "demo logs"
    by_service: dict[str, list[dict[str, object]]] = {}
    for name in ("shop.jsonl", "payments.jsonl"):
        for line in (log_dir / name).read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("correlation_id") == cid:
                by_service.setdefault(str(record["service"]), []).append(record)
    assert {r.get("internal_code") for r in by_service["shop"]} >= {30102}
    assert {r.get("internal_code") for r in by_service["payments"]} >= {30201}

    counts = _error_counts(log_dir)
    assert counts["10500"] == 1
    second = _demo(workdir, *args)
    assert second.returncode == 0, second.stdout + second.stderr
    # The log directory was emptied first: the same plan gives the same counts, not double.
    # The receipt job's failures (30301) are left out of the equality: which paid orders reach
    # the worker in which order varies with the concurrent traffic (6, 7 or 8 were seen), so
    # that count is only checked not to have doubled.
    again = _error_counts(log_dir)
    jobs = "30301"
    assert 0 < again.pop(jobs) < 2 * counts.pop(jobs)
    assert again == counts
    for pid, port in _servers(second.stdout).values():
        assert _gone(pid)
        assert not port_open("127.0.0.1", port)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_demo_stops_its_servers(tmp_path: Path, signum: signal.Signals) -> None:
    output = tmp_path / "demo.out"
    with output.open("w") as sink:
        demo = subprocess.Popen(
            [sys.executable, "-m", "examples.demo", "--port", str(pick_port(None))],
            cwd=tmp_path,
            env=_env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        servers: dict[str, tuple[int, int]] = {}
        while time.monotonic() < deadline and len(servers) < 2 and demo.poll() is None:
            time.sleep(0.05)
            servers = _servers(output.read_text())
        assert len(servers) == 2, output.read_text()
        demo.send_signal(signum)
        assert demo.wait(timeout=30) == 128 + signum
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(timeout=10)
    out = output.read_text()
    assert f"Interrupted by {signum.name}: servers stopped." in out
    worker = WORKER_LINE.search(out)
    assert worker is None or _gone(int(worker.group(1)))
    for pid, port in servers.values():
        assert _gone(pid)
        assert not port_open("127.0.0.1", port)


def test_pick_port_prefers_a_free_port_and_falls_back_when_taken(taken_port: int) -> None:
    free = pick_port(None)
    assert pick_port(free) == free
    fallback = pick_port(taken_port)
    assert fallback != taken_port
    assert port_is_free(fallback)
    assert pick_port(None, avoid=frozenset({fallback})) != fallback


def test_clean_removes_earlier_logs_and_database_and_nothing_else(tmp_path: Path) -> None:
    logs, data = tmp_path / "logs", tmp_path / "data"
    logs.mkdir()
    data.mkdir()
    stale = [logs / "shop.jsonl", logs / "demo.jsonl", logs / "shop.2026-01-01.jsonl.gz"]
    stale += [data / "shop.db", data / "shop.db-wal"]
    kept = [logs / "notes.txt", data / "other.db"]
    for path in stale + kept:
        path.write_text("x")
    _clean(Options(log_dir=logs, data_dir=data, port=8000, concurrency=1, seed=1, argv=()))
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in kept)
