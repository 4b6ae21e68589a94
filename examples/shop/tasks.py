"""The shop's background jobs: a Celery app and the receipt e-mail sent after each paid order.

    celery -A examples.shop.tasks worker --pool prefork --concurrency 2

``CELERY_BROKER_URL`` names the broker (a Redis URL, ``redis://127.0.0.1:6379/0``). Without it the
shop still works: tasks run inline in the web process (Celery's eager mode), under the request's
correlation ID, so a laptop with no Redis shows the same lines, in ``shop.jsonl``.

``foundation.setup_celery`` does the rest: the order's correlation ID travels with the task,
the worker logs JSON under it (``worker-<pid>.jsonl``, one file per pool process) and each
execution ends with one ``job finished`` line. The mail server here is a stand-in: it is busy
for every 7th order (the task retries once) and its spam filter refuses receipts of 150.00 or more
(the failure ``obsctl trace`` of such an order then shows). The refusal depends on the amount,
not on the order ID, so the same traffic plan fails the same receipts whatever the order in
which concurrent requests got their IDs.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from loguru import logger

import foundation
from examples.shop.errors import ReceiptUndeliverable

BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")

celery_app = Celery("shop", broker=BROKER_URL or "memory://")
celery_app.conf.update(
    task_always_eager=not BROKER_URL,
    task_acks_late=True,  # a worker killed mid-receipt leaves it for another worker
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)
foundation.setup_celery(celery_app, service="worker")


SPAM_FILTER_CENTS = 15_000


class MailServerBusy(Exception):
    """The stand-in mail server asks to try again later (an SMTP 4xx)."""


@celery_app.task(  # type: ignore[untyped-decorator]  # Celery ships no type hints
    bind=True, name="shop.send_receipt", autoretry_for=(MailServerBusy,), default_retry_delay=0.5
)
def send_receipt(self: Any, order_id: int, total_cents: int) -> None:
    """E-mail the receipt of a paid order (the mail server is simulated)."""
    time.sleep(0.02)  # the SMTP conversation
    if order_id % 7 == 0 and self.request.retries == 0:
        raise MailServerBusy(f"421 try again later (order {order_id})")
    if total_cents >= SPAM_FILTER_CENTS:
        raise ReceiptUndeliverable(
            internal_message=f"order {order_id}: 550 mailbox unavailable", order_id=order_id
        )
    logger.info("receipt sent", order_id=order_id, total_cents=total_cents)
