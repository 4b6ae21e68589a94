"""Celery app of the job benchmark with ``foundation.setup_celery`` (same task, same settings)."""

from __future__ import annotations

import os

from celery import Celery

import foundation

BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:1/0")
app = Celery("stamped", broker=BROKER, backend=BROKER.rsplit("/", 1)[0] + "/1")
app.conf.update(worker_prefetch_multiplier=1, task_acks_late=True)
foundation.setup_celery(app, service="bench-worker")


@app.task(name="bench.noop")
def noop(n: int) -> int:
    return n
