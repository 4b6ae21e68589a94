"""What foundation.setup_celery adds to a Celery task: round trips with and without, alternated.

Two real solo workers on one real redis-server (Debian's), the same no-op task: one plain
Celery (its own "Task ... succeeded" line to a file), one with ``setup_celery`` (the ID stamped
at publish, restored and cleared around the task, the ``job finished`` JSON line, the job
metrics). This process publishes one task and waits for its result, sequentially, in chunks
that alternate between the two sides (the order flipped every round); the publish hook is
connected only during the stamped side's chunks. Medians of the per-round microseconds.

Wall time of a round trip (~1-3 ms) moves by more than the difference on a shared machine, so
the table also gives the CPU time each worker spent per task (/proc/PID/schedstat) and this
publishing process's CPU time per task; the second table times the hooks themselves, in parts.
``OBS_BENCH_ROUNDS`` (default 7), ``OBS_BENCH_TASKS`` (tasks per chunk, default 200),
``OBS_BENCH_LOG_LEVEL`` (both workers' level, default INFO: Celery's "received" line per task).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from celery import signals
from loguru import logger

from examples.broker import BrokerUnavailable, start_redis, start_worker

WORKER_WAIT = 30.0


def _log_has(path: Path, text: str) -> Callable[[], bool]:
    return lambda: any(text in p.read_text(errors="replace") for p in path.parent.glob(path.name))


def _cpu_ns(pid: int) -> int:
    """Nanoseconds a process has run on a CPU (/proc/PID/schedstat: precise, unlike ticks)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def _round_trips(task: Any, queue: str, count: int, worker: int) -> tuple[float, float, float]:
    """Wall, worker CPU and publisher CPU microseconds per task."""
    wall, cpu, mine = time.perf_counter(), _cpu_ns(worker), time.process_time()
    for n in range(count):
        assert task.apply_async(args=[n], queue=queue).get(timeout=WORKER_WAIT) == n
    return (
        (time.perf_counter() - wall) / count * 1e6,
        (_cpu_ns(worker) - cpu) / count / 1e3,
        (time.process_time() - mine) / count * 1e6,
    )


def _hooks(count: int, log_dir: Path) -> dict[str, float]:
    """The hooks alone, in this process, in parts: µs per task (best of 5)."""
    from foundation.celery_jobs import _stamp
    from foundation.jobs import JobRun, job_metrics
    from foundation.logging import configure_logging, log_record

    configure_logging(service="bench", log_dir=log_dir, log_stdout=False, compression=None)
    headers: dict[str, Any] = {}
    _stamp(headers=headers)
    task_id = "0e1f2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
    line = {"job": "bench.noop", "job_id": task_id, "state": "success", "duration_ms": 0.12}
    metrics = job_metrics()

    def restore() -> None:
        JobRun(job="bench.noop", job_id=task_id).start(headers)._restore()

    parts: dict[str, Callable[[], object]] = {
        "stamp (publish hook)": lambda: _stamp(headers={}),
        "restore + clear the ID": restore,
        "job finished line (file)": lambda: log_record("INFO", "job finished", "b", line),
        "job metrics": lambda: metrics.observe("bench.noop", "success", 0.001),
        "all of it (one JobRun)": lambda: (
            JobRun(job="bench.noop", job_id=task_id).start(headers).finish("success")
        ),
    }
    try:
        return {
            name: min(timeit.repeat(fn, number=count, repeat=5)) / count * 1e6
            for name, fn in parts.items()
        }
    finally:
        logger.remove()


def main() -> None:
    rounds = int(os.environ.get("OBS_BENCH_ROUNDS", "7"))
    count = int(os.environ.get("OBS_BENCH_TASKS", "200"))
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp)
        try:
            redis = stack.enter_context(start_redis(root / "redis"))
        except BrokerUnavailable as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            return
        os.environ["BENCH_BROKER_URL"] = redis.url()
        from tests.bench import jobs_plain, jobs_stamped

        env = {"BENCH_BROKER_URL": redis.url(), "FOUNDATION_LOG_DIR": str(root / "log")}
        env["FOUNDATION_LOG_STDOUT"] = "0"
        level = os.environ.get("OBS_BENCH_LOG_LEVEL", "INFO")
        env["FOUNDATION_LOG_LEVEL"] = level
        pids: dict[str, int] = {}
        for module, queue in (("jobs_plain", "plain"), ("jobs_stamped", "stamped")):
            output = root / f"{queue}.txt"
            ready = (
                _log_has(output, " ready.")
                if queue == "plain"
                else _log_has(root / "log" / "bench-worker.jsonl", " ready.")
            )
            if level != "INFO":  # no "ready." line: the warm-up round trips wait instead
                ready = lambda: True  # noqa: E731
            worker = stack.enter_context(
                start_worker(
                    f"tests.bench.{module}",
                    env=env,
                    output=output,
                    ready=ready,
                    pool="solo",
                    queues=[queue],
                    loglevel=level,
                )
            )
            pids[queue] = worker.process.pid
        sides = {
            "plain Celery": (jobs_plain.noop, "plain"),
            "setup_celery": (jobs_stamped.noop, "stamped"),
        }
        hook = signals.before_task_publish
        times: dict[str, list[tuple[float, float, float]]] = {name: [] for name in sides}
        for task, queue in sides.values():  # warm-up: connections, result subscriptions
            _round_trips(task, queue, 20, pids[queue])
        names = list(sides)
        for number in range(rounds):
            for name in names if number % 2 == 0 else reversed(names):
                task, queue = sides[name]
                stamped = name == "setup_celery"
                if not stamped:
                    hook.disconnect(dispatch_uid="foundation._stamp")
                try:
                    times[name].append(_round_trips(task, queue, count, pids[queue]))
                finally:
                    if not stamped:
                        from foundation.celery_jobs import _stamp

                        hook.connect(_stamp, weak=False, dispatch_uid="foundation._stamp")
        print(f"{count} sequential round trips per chunk, {rounds} alternated rounds, solo workers")
        print(f"{'side':<16}{'wall µs':>10}{'worker CPU µs':>15}{'publisher CPU µs':>18}")
        medians = {}
        for name, values in times.items():
            medians[name] = [statistics.median(v[i] for v in values) for i in range(3)]
            wall, worker_cpu, publisher_cpu = medians[name]
            print(f"{name:<16}{wall:>10.0f}{worker_cpu:>15.1f}{publisher_cpu:>18.1f}")
        added = [
            s - p for s, p in zip(medians["setup_celery"], medians["plain Celery"], strict=True)
        ]
        print(
            f"added per task: wall {added[0]:+.0f} µs, worker CPU {added[1]:+.1f} µs, "
            f"publisher CPU {added[2]:+.1f} µs"
        )
        spread = max(
            max(v[i] for v in values) / min(v[i] for v in values)
            for values in times.values()
            for i in range(3)
        )
        print(f"noise: slowest round / fastest round of one side and column up to {spread:.2f}x")
        print("\nthe hooks alone, in this process (best of 5 x 20,000):")
        for name, micros in _hooks(20_000, root / "hooks").items():
            print(f"  {name:<30}{micros:>8.2f} µs")


if __name__ == "__main__":
    main()
