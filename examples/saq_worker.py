"""Any other queue: the correlation ID through saq (asyncio jobs on Redis), by hand.

    python -m saq examples.saq_worker.settings --quiet     # the worker (SAQ_REDIS_URL)

Queues without Celery's signals take two calls: ``foundation.job_headers()`` where the job is
enqueued (here into saq's ``meta``, which travels with the job) and
``foundation.job_context(headers, job=...)`` around it in the worker. Every line the job writes
then carries the request's correlation ID, ``job`` and ``job_id``, and the job ends with one
``job finished`` line. arq, the other asyncio queue, pins ``redis<6`` while Celery's Redis
transport needs ``redis>=6.1``, so it cannot share this environment; with arq the two calls
are the same (headers as a keyword argument of ``enqueue_job``, ``retry_on=(arq.Retry,)``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from loguru import logger
from saq import Queue

import foundation
from foundation import ApiException

REDIS_URL = os.environ.get("SAQ_REDIS_URL", "redis://127.0.0.1:6379/0")
queue = Queue.from_url(REDIS_URL)


class ExportFailed(ApiException):
    """The report could not be written (raised in the worker)."""

    http_code = 502
    external_message = "The export could not be written."
    internal_code = 30401
    internal_message = "Export target refused the report."


async def enqueue_export(report: str, *, on: Queue = queue) -> str:
    """Called inside a request: the job carries the request's correlation ID in its meta."""
    job = await on.enqueue("export_report", report=report, meta=foundation.job_headers(), retries=2)
    assert job is not None  # None only for a duplicate key, which this example never sends
    return job.key


async def export_report(ctx: dict[str, Any], *, report: str) -> int:
    job = ctx["job"]
    # An error of an attempt that saq will retry is a retry, not the job's failure.
    retry_on: tuple[type[BaseException], ...] = (Exception,) if job.retryable else ()
    async with foundation.job_context(
        job.meta, job="export_report", job_id=job.key, retries=job.attempts - 1, retry_on=retry_on
    ):
        logger.info("exporting", report=report, attempt=job.attempts)
        if report == "broken":
            raise ExportFailed(internal_message=f"report {report}: bucket refused the write")
        return len(report)


class _Replaced(logging.Filter):
    """saq logs each job's exception with its traceback; job_context already logged it once."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Error processing job %s"


async def startup(ctx: dict[str, Any]) -> None:
    foundation.configure_logging(
        service="exporter",
        log_dir=os.environ.get("FOUNDATION_LOG_DIR", "var/log"),
        log_stdout=os.environ.get("FOUNDATION_LOG_STDOUT", "1") not in ("0", "false"),
    )
    logging.getLogger("saq").addFilter(_Replaced())
    logger.info("exporter started", queue=queue.name)


settings = {
    "queue": queue,
    "functions": [export_report],
    # One job at a time: with 2, saq 0.26 ran an already finished job a second time in our tests.
    "concurrency": 1,
    "startup": startup,
}
