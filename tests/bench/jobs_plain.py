"""Celery app of the job benchmark without foundation (Celery's own logging, no hooks)."""

from __future__ import annotations

import os

from celery import Celery

BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:1/0")
app = Celery("plain", broker=BROKER, backend=BROKER.rsplit("/", 1)[0] + "/1")
app.conf.update(worker_prefetch_multiplier=1, task_acks_late=True)


@app.task(name="bench.noop")
def noop(n: int) -> int:
    return n
