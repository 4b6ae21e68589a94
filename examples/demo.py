"""``make demo``: the shop and its payment service under uvicorn, real traffic, then obsctl.

Starts ``examples.payments.app:app`` and ``examples.shop.app:app`` on loopback ports (the
preferred ones when free), drives a few hundred requests through the shop, stops both servers
cleanly, then runs ``obsctl errors top`` and ``obsctl trace <ID of the 500>`` on the logs they
wrote. No question asked, no server left behind: the servers are stopped in a ``finally``, also
on Ctrl-C or SIGTERM (exit 130 / 143), and the kernel stops them if this process is killed.

    python -m examples.demo [--log-dir var/demo/log] [--data-dir var/demo/data] [--port 8000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from types import FrameType

import orjson

from examples.broker import BrokerUnavailable, Worker, start_redis, start_worker
from examples.servers import Server, ServerFailed, Servers, pick_port
from examples.traffic import Report, drive

READY_TIMEOUT = 20.0
# The worker is not waited for before the traffic (the receipts wait in Redis meanwhile): on a
# loaded machine its start alone took over 20 s. This bounds its start and the receipts.
RECEIPTS_TIMEOUT = 60.0
RECEIPT_JOB = "shop.send_receipt"
START_ATTEMPTS = 3
_DB_FILES = (
    "shop.db",
    "shop.db-wal",
    "shop.db-shm",
    "shop.uvicorn.txt",
    "payments.uvicorn.txt",
    "worker.celery.txt",
)


@dataclass(frozen=True, slots=True)
class Options:
    log_dir: Path
    data_dir: Path
    port: int
    concurrency: int
    seed: int
    argv: tuple[str, ...]


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m examples.demo",
        description="Run the shop and payments services, send traffic, show what obsctl sees.",
    )
    parser.add_argument("--log-dir", default="var/demo/log", help="JSON logs (emptied first)")
    parser.add_argument("--data-dir", default="var/demo/data", help="SQLite file and server output")
    parser.add_argument("--port", type=int, default=8000, help="preferred shop port")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--seed", type=int, default=7, help="seed of the traffic plan")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65535:
        parser.error("--port must be between 1 and 65534")
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    return Options(
        log_dir=Path(args.log_dir).absolute(),
        data_dir=Path(args.data_dir).absolute(),
        port=args.port,
        concurrency=args.concurrency,
        seed=args.seed,
        argv=tuple(argv),
    )


def _say(text: str = "") -> None:
    print(text, flush=True)


def _shown(path: Path) -> str:
    """``path`` as a user would type it here: relative when under the cwd, shell-quoted."""
    try:
        text = str(path.relative_to(Path.cwd()))
    except ValueError:
        text = str(path)
    return shlex.quote(text)


def _obsctl() -> list[str]:
    """How to run obsctl: the console script next to this interpreter when there is one."""
    script = Path(sys.executable).with_name("obsctl")
    return [str(script)] if script.exists() else [sys.executable, "-m", "obsctl.cli.entry"]


def _obsctl_shown() -> str:
    script = Path(sys.executable).with_name("obsctl")
    return _shown(script) if script.exists() else "obsctl"


def _clean(options: Options) -> None:
    """Remove the JSON logs and the database of an earlier run; nothing else is deleted."""
    options.log_dir.mkdir(parents=True, exist_ok=True)
    options.data_dir.mkdir(parents=True, exist_ok=True)
    for path in options.log_dir.iterdir():
        if path.is_file() and ".jsonl" in path.name:
            path.unlink()
    for name in _DB_FILES:
        (options.data_dir / name).unlink(missing_ok=True)


def _start(servers: Servers, options: Options) -> tuple[Server, Server]:
    """Payments, then the shop pointing at it; fresh ports and another try if a bind failed."""
    last: ServerFailed | None = None
    for attempt in range(START_ATTEMPTS):
        shop_port = pick_port(options.port if attempt == 0 else None)
        payments_port = pick_port(
            options.port + 1 if attempt == 0 else None, avoid=frozenset({shop_port})
        )
        database = options.data_dir / "shop.db"
        payments = servers.start("payments", "examples.payments.app:app", payments_port)
        shop = servers.start(
            "shop",
            "examples.shop.app:app",
            shop_port,
            env={
                "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
                "PAYMENTS_URL": payments.url,
            },
        )
        try:
            servers.wait_ready(payments, READY_TIMEOUT)
            servers.wait_ready(shop, READY_TIMEOUT)
        except ServerFailed as exc:
            last = exc
            servers.stop_all()
            _say(f"  start failed ({exc.args[0].splitlines()[0]}); trying other ports")
            continue
        return shop, payments
    assert last is not None
    raise last


def _summary(report: Report) -> str:
    counts = sorted(report.statuses().items())
    parts = ", ".join(f"{status} {HTTPStatus(status).phrase} ×{n}" for status, n in counts)
    return f"{len(report.outcomes)} requests in {report.seconds:.1f} s: {parts}"


def _run_obsctl(args: list[str]) -> int:
    _say(f"$ {_obsctl_shown()} {shlex.join(args[:-1])} {_shown(Path(args[-1]))}")
    code = subprocess.run([*_obsctl(), *args], check=False).returncode
    _say()
    return code


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP: stop the servers, then exit 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_interrupted(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


@contextmanager
def _signals(handler: Callable[[int, FrameType | None], None] | int) -> Iterator[None]:
    signums = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WEB_CONCURRENCY",)}
    env.update(FOUNDATION_LOG_STDOUT="0", FOUNDATION_LOG_PER_PROCESS="0")
    return env


def _records(log_dir: Path) -> Iterator[dict[str, object]]:
    """Every JSON line of the demo's log files (the worker's included)."""
    for path in sorted(log_dir.glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record


def _receipts_done(log_dir: Path) -> list[dict[str, object]]:
    """The receipt jobs that ended (succeeded or failed; a retry is not an end)."""
    return [
        r
        for r in _records(log_dir)
        if r.get("message") == "job finished"
        and r.get("job") == RECEIPT_JOB
        and r.get("state") != "retry"
    ]


def _start_worker(stack: ExitStack, options: Options, env: dict[str, str]) -> Worker | None:
    """A private redis-server and a Celery worker for the shop's receipts, when Redis exists.

    Without Debian's ``redis-server`` the shop gets no broker URL and sends receipts inline
    (Celery's eager mode): the demo runs the same plan and shows the same job lines.
    """
    try:
        redis = stack.enter_context(start_redis(options.data_dir / "redis"))
    except BrokerUnavailable as exc:
        _say(f"  no broker: {exc.args[0].splitlines()[0]}")
        _say("  so the shop sends receipts itself, inline (Celery's eager mode), not a worker")
        return None
    env["CELERY_BROKER_URL"] = redis.url()
    worker = stack.enter_context(
        start_worker(
            "examples.shop.tasks",
            env={**env, "FOUNDATION_LOG_PER_PROCESS": "1"},
            output=options.data_dir / "worker.celery.txt",
            ready=lambda: True,  # see RECEIPTS_TIMEOUT
            pool="prefork",
            concurrency=2,
        )
    )
    _say(
        f"  {'worker':<9} pid {worker.process.pid:<7} celery prefork pool of 2, "
        f"broker: redis-server on 127.0.0.1:{redis.port}"
    )
    return worker


def _wait_for_receipts(options: Options, report: Report, worker: Worker | None) -> None:
    orders = sum(1 for o in report.outcomes if o.call.path == "/orders" and o.status == 201)
    deadline = time.monotonic() + RECEIPTS_TIMEOUT
    done = _receipts_done(options.log_dir)
    while len(done) < orders and time.monotonic() < deadline:
        if worker is not None and worker.process.poll() is not None:
            raise BrokerUnavailable(
                f"the celery worker exited with code {worker.process.returncode}; "
                f"its output is in {_shown(worker.output)}"
            )
        time.sleep(0.1)
        done = _receipts_done(options.log_dir)
    failed = sum(1 for r in done if r.get("state") == "failure")
    _say(f"  receipts: {len(done)} of {orders} jobs ended, {failed} failed")


def run(options: Options) -> int:
    _clean(options)
    env = _env()
    env["FOUNDATION_LOG_DIR"] = str(options.log_dir)
    servers = Servers(env=env, output_dir=options.data_dir)
    jobs = ExitStack()
    worker: Worker | None = None
    _say(
        "foundation demo: a shop, its payment service and its receipt worker, real traffic, obsctl."
    )
    _say()
    try:
        with _signals(_raise_interrupted):
            worker = _start_worker(jobs, options, env)
            shop, payments = _start(servers, options)
            for server in (payments, shop):
                _say(f"  {server.name:<9} pid {server.process.pid:<7} {server.url}")
            if shop.port != options.port:
                _say(f"  (port {options.port} was taken, so the shop listens on {shop.port})")
            _say()
            _say(f"Sending requests to the shop ({options.concurrency} at a time)...")
            report = asyncio.run(
                drive(shop.url, seed=options.seed, concurrency=options.concurrency)
            )
            _say(f"  {_summary(report)}")
            _wait_for_receipts(options, report, worker)
    except Interrupted as exc:
        with _signals(signal.SIG_IGN):
            servers.stop_all()
            jobs.close()
        _say(f"\nInterrupted by {signal.Signals(exc.signum).name}: servers stopped.")
        return 128 + exc.signum
    except (ServerFailed, BrokerUnavailable) as exc:
        with _signals(signal.SIG_IGN):
            servers.stop_all()
            jobs.close()
        print(f"demo: could not start the services: {exc}", file=sys.stderr)
        return 1
    finally:
        # Whatever happened above (a bug included), no server outlives the demo.
        with _signals(signal.SIG_IGN):
            codes = servers.stop_all()
            if worker is not None and worker.process.poll() is None:
                codes["worker"] = worker.stop()
            jobs.close()
    _say(f"  servers stopped: {', '.join(_stopped(name, code) for name, code in codes.items())}")
    return _report(options, report)


def _stopped(name: str, code: int) -> str:
    # uvicorn re-raises the SIGTERM it handled once its shutdown is complete.
    if code in (0, -signal.SIGTERM):
        return f"{name} cleanly"
    if code == -signal.SIGKILL:
        return f"{name} killed (did not stop in time)"
    return f"{name} with exit code {code}"


def _show_serve(log_dir: str, correlation_id: str) -> int:
    """Start ``obsctl serve`` on a free port, read the 500's page as a script would, stop it."""
    import html
    import re
    import secrets

    import httpx

    token = secrets.token_hex(24)
    logs = _shown(Path(log_dir))
    _say(f"$ OBSCTL_SERVE_TOKEN=… {_obsctl_shown()} serve {logs} --listen 127.0.0.1:0")
    process = subprocess.Popen(
        [*_obsctl(), "serve", log_dir, "--listen", "127.0.0.1:0"],
        env={**_env(), "OBSCTL_SERVE_TOKEN": token},
        stderr=subprocess.PIPE,
        text=True,
    )
    status = 0
    try:
        assert process.stderr is not None
        first = process.stderr.readline().strip()
        _say(first)
        found = re.search(r"http://\S+/", first)
        if found is None:
            return 1
        url = f"{found.group(0)}trace/{correlation_id}"
        page = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        sentence = re.search(r'<h1 class="sentence">(.*?)</h1>', page.text, re.S)
        status = page.status_code
        shown = html.unescape(sentence.group(1)) if sentence else page.text[:80]
        _say(f"  GET /trace/{correlation_id[:12]}… → {status}: {shown}")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
    _say(f"  serve stopped (exit {process.returncode}); 'Look further' below keeps it running")
    _say()
    return 0 if process.returncode == 0 and status == 200 else 1


def _report(options: Options, report: Report) -> int:
    crashed = report.with_status(500)
    if not crashed:
        print("demo: the shop answered no 500; the traffic plan did not run", file=sys.stderr)
        return 1
    bug = crashed[0]
    _say(f"  the 500: {bug.call.method} {bug.call.path} (correlation ID {bug.correlation_id})")
    failed = sorted(
        (r for r in _receipts_done(options.log_dir) if r.get("state") == "failure"),
        key=lambda r: str(r.get("ts")),
    )
    if failed:
        receipt = str(failed[0].get("correlation_id"))
        _say(f"  a receipt that failed: job {RECEIPT_JOB} (correlation ID {receipt})")
    _say()
    log_dir = str(options.log_dir)
    codes = [
        _run_obsctl(["errors", "top", log_dir]),
        _run_obsctl(["trace", bug.correlation_id, log_dir]),
        _show_serve(log_dir, bug.correlation_id),
    ]
    if failed:
        codes.append(_run_obsctl(["trace", receipt, log_dir]))
    obsctl, logs = _obsctl_shown(), _shown(options.log_dir)
    again = (
        "make demo" if not options.argv else f"python -m examples.demo {shlex.join(options.argv)}"
    )
    _say(f"Run it again: {again}")
    _say("Look further:")
    declined = report.first("order-declined")
    if declined is not None:
        _say(f"  {obsctl} trace {declined.correlation_id} {logs}   # one order, two services")
    _say(f"  {obsctl} errors top --by route {logs}")
    _say(f"  {obsctl} tail --level WARNING {logs}")
    _say(
        f"  OBSCTL_SERVE_TOKEN=$(openssl rand -hex 24) {obsctl} serve {logs}   # the same, as pages"
    )
    _say("  .venv/bin/uvicorn examples.shop.app:app   # the shop on its own (var/log, var/data)")
    if any(codes):
        print(f"demo: obsctl exited with {codes}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
