"""The Celery app the job tests run in real workers (``celery -A tests.foundation.celery_tasks``).

Configured from the environment the test gives the worker: ``TEST_BROKER_URL``; logging comes
from ``FOUNDATION_*`` (log directory, no stdout). Tasks log what they saw, so the tests read the
worker's JSON files like a user would.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from celery import Celery, chain, chord, group
from loguru import logger

import foundation
from foundation import AppException


class ReceiptUndeliverable(AppException):
    """A test domain error raised inside a task."""

    http_code = 502
    external_message = "The receipt could not be delivered."
    internal_code = 40901
    internal_message = "Mail server refused the receipt."


BROKER = os.environ.get("TEST_BROKER_URL", "redis://127.0.0.1:1/0")
# Chords need a result backend: the same Redis, another database.
app = Celery("tests", broker=BROKER, backend=BROKER.rsplit("/", 1)[0] + "/1")
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    broker_transport_options={
        "visibility_timeout": float(os.environ.get("TEST_VISIBILITY", "3600")),
        # Kombu looks for unacknowledged messages to restore every 10 s x 10 by default, and a
        # worker killed during that sweep leaves its lock for 300 s: both made short here.
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
        "unacked_mutex_expire": 3,
    },
    worker_hijack_root_logger=True,
)
foundation.setup_celery(app, service="worker")


@app.task(name="t.echo")
def echo(tag: str) -> str | None:
    logger.info("task ran", tag=tag)
    return foundation.get_correlation_id()


@app.task(name="t.fail_app")
def fail_app(order_id: int) -> None:
    raise ReceiptUndeliverable(internal_message=f"order {order_id}: 550 mailbox unavailable")


@app.task(name="t.fail_bug")
def fail_bug() -> None:
    rates = {"FR": 20}
    rates["CH"]


@app.task(bind=True, name="t.flaky", max_retries=3)
def flaky(self: Any, tag: str) -> None:
    logger.info("flaky attempt", tag=tag, attempt=self.request.retries)
    if self.request.retries < 2:
        raise self.retry(countdown=0.1, exc=ConnectionError("mail server busy"))


@app.task(name="t.step")
def step(previous: Any, tag: str) -> str:
    logger.info("step ran", tag=tag)
    return tag


@app.task(name="t.collect")
def collect(results: list[Any], tag: str) -> None:
    logger.info("chord body ran", tag=tag, parts=len(results))


@app.task(name="t.spawn")
def spawn(tag: str) -> None:
    """Publishes from inside a task: a chain, a group and a chord, each to carry the ID."""
    queue = os.environ.get("TEST_QUEUE", "celery")
    links = [step.s(None, f"{tag}-c1"), step.s(f"{tag}-c2"), step.s(f"{tag}-c3")]
    chain(*(link.set(queue=queue) for link in links)).apply_async()
    group(step.s(None, f"{tag}-g{i}") for i in range(2)).apply_async(queue=queue)
    chord((step.s(None, f"{tag}-h{i}") for i in range(2)), collect.s(f"{tag}-body")).apply_async(
        queue=queue
    )


@app.task(bind=True, name="t.slow", acks_late=True)
def slow(self: Any, marker: str) -> None:
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    logger.info("slow started", redelivered=redelivered, pid=os.getpid())
    if not redelivered:
        Path(marker).write_text(str(os.getpid()))
        time.sleep(60)
