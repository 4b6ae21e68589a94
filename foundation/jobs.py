"""Background jobs on any queue: carry the correlation ID to the worker, one line per execution.

    headers = foundation.job_headers()                 # where the job is enqueued
    with foundation.job_context(headers, job="export"):  # around the job, in the worker
        ...                                              # (``async with`` too)

``job_headers`` returns the current correlation ID (a fresh one outside a request) under
``CORRELATION_ID``, the header name asgi-correlation-id's own Celery extension uses, so both sides
interoperate, and the W3C ``traceparent``/``tracestate`` of the current trace (contract 7): the
job is a child span of the request that enqueued it, and its lines carry the same ``trace_id``.
``job_context`` checks the incoming ID as strictly as the HTTP middleware does (32 hex digits or
a canonical UUID): a missing or hostile value (a megabyte, control characters) is
replaced, by the job's own ID when that is a valid UUID (so a redelivered job keeps its ID), by a
fresh ID otherwise, and is never logged. Inside, every line carries ``correlation_id``, ``job``
and ``job_id``; at the end one ``job finished`` line records ``job``, ``job_id``, ``state``
(success | failure | retry), ``duration_ms`` and ``retries``, and ``jobs_total{job,state}`` and
``job_duration_seconds{job}`` are updated. A failure is logged like a request's: an
``AppException`` with its ``internal_code`` (and its traceback when its ``http_code`` is 5xx),
anything else once, with its traceback, as code 10500.

``JobRun`` is the same thing as two calls (``start``/``finish``) for frameworks that report a
job's start and end as separate events (Celery's signals, see ``foundation.celery_jobs``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from contextvars import Token
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from asgi_correlation_id import correlation_id
from loguru._logger import context as _loguru_context  # what logger.contextualize() sets
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from foundation.correlation import (
    canonical_correlation_id,
    is_valid_correlation_id,
    new_correlation_id,
)
from foundation.exceptions import AppException
from foundation.logging import log_record
from foundation.metrics import MULTIPROC_ENV, _check_multiprocess_mode
from foundation.tracecontext import TRACEPARENT, TRACESTATE, continue_trace, outgoing_trace_headers
from foundation.tracecontext import _current as _trace_context  # use_trace_context's variable

CORRELATION_HEADER: Final = "CORRELATION_ID"
JOB_FINISHED: Final = "job finished"
JOB_STATES: Final = ("success", "failure", "retry")
#: Buckets of ``job_duration_seconds``: jobs run from milliseconds to minutes.
JOB_BUCKETS: Final[tuple[float, ...]] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
_LOGGER: Final = __name__


def job_headers() -> dict[str, str]:
    """Headers to send with a job: the current correlation ID, or a fresh one outside a request.

    Put them wherever the queue carries metadata (Kafka headers, SQS message attributes, an arq
    keyword argument) and hand them to ``job_context`` in the worker.
    """
    return {
        CORRELATION_HEADER: correlation_id.get() or new_correlation_id(),
        **outgoing_trace_headers(),
    }


def incoming_correlation_id(value: object, job_id: str | None = None) -> tuple[str, bool]:
    """The ID a job runs under, and whether the one it brought was accepted.

    A missing or invalid value is replaced by the job's own ID when that is a valid UUID (a
    redelivered or retried job then keeps its correlation ID), else by a fresh ID.
    """
    if isinstance(value, str) and is_valid_correlation_id(value):
        return canonical_correlation_id(value), True
    if job_id and is_valid_correlation_id(job_id):
        return canonical_correlation_id(job_id), False
    return new_correlation_id(), False


class JobMetrics:
    """``jobs_total{job,state}`` and ``job_duration_seconds{job}`` in one registry.

    In prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set before the worker
    started) the values go to per-process files, which ``serve_job_metrics`` sums.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.total = Counter(
            "jobs_total",
            "Background job executions, by job name and state (success, failure, retry).",
            ("job", "state"),
            registry=registry,
        )
        self.duration = Histogram(
            "job_duration_seconds",
            "Background job execution time, by job name.",
            ("job",),
            registry=registry,
            buckets=JOB_BUCKETS,
        )
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def observe(self, job: str, state: str, seconds: float) -> None:
        pair = self._children.get((job, state))
        if pair is None:
            pair = self._children[(job, state)] = (
                self.total.labels(job, state),
                self.duration.labels(job),
            )
        pair[0].inc()
        pair[1].observe(seconds)


_metrics_lock = threading.Lock()
_metrics: list[JobMetrics] = []


def job_metrics() -> JobMetrics:
    """This process's job metrics (created on first use, in their own registry)."""
    if not _metrics:
        with _metrics_lock:
            if not _metrics:
                _metrics.append(JobMetrics(CollectorRegistry(auto_describe=True)))
    return _metrics[0]


def job_metrics_registry() -> CollectorRegistry:
    """What a worker's ``/metrics`` serves: this process's job metrics, or in multiprocess mode
    the sum of every process's files (a prefork pool's children write their own)."""
    directory = os.environ.get(MULTIPROC_ENV, "")
    if not directory:
        return job_metrics().registry
    _check_multiprocess_mode(Path(directory))
    registry = CollectorRegistry(auto_describe=True)
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


def serve_job_metrics(*, port: int, host: str = "127.0.0.1") -> Any:
    """Serve the job metrics at ``http://host:port/metrics`` from a daemon thread.

    Returns the HTTP server (``shutdown()`` stops it). For a worker that runs jobs in this process
    (arq, a Celery solo or threads pool); a prefork pool's main process calls it with
    ``PROMETHEUS_MULTIPROC_DIR`` set, see ``setup_celery``.
    """
    server, _thread = start_http_server(port, addr=host, registry=job_metrics_registry())
    return server


def _log_failure(exc: BaseException, fields: Mapping[str, Any]) -> None:
    """The job's error, logged once, as the HTTP handlers log a request's."""
    if isinstance(exc, AppException):
        log_record(
            exc.log_level,
            exc.internal_message,
            _LOGGER,
            {
                "internal_code": exc.internal_code,
                "http_code": exc.http_code,
                "external_message": exc.external_message,
                **fields,
                **exc.context,
            },
            exception=exc,
            with_traceback=exc.http_code >= 500,
        )
        return
    log_record(
        "ERROR",
        f"Unhandled {type(exc).__name__}",
        _LOGGER,
        {
            "internal_code": AppException.internal_code,
            "http_code": 500,
            "external_message": AppException.external_message,
            **fields,
        },
        exception=exc,
        with_traceback=True,
    )


@dataclass(slots=True, eq=False)
class JobRun:
    """One execution of a job: ``start`` restores its context, ``finish`` logs and counts it.

    ``start`` and ``finish`` must run in the same thread and context (Celery's prerun and postrun
    signals do); the previous correlation ID is restored by ``finish``.
    """

    job: str
    job_id: str | None = None
    retries: int = 0
    started: float = 0.0
    correlation_id: str = ""
    _tokens: list[Token[Any]] = field(default_factory=list, repr=False)

    def start(self, headers: Mapping[str, Any] | None) -> JobRun:
        raw = headers.get(CORRELATION_HEADER) if headers else None
        cid, accepted = incoming_correlation_id(raw, self.job_id)
        self.correlation_id = cid
        self._tokens.append(correlation_id.set(cid))
        # The caller's trace continues (a new span), or a trace starts whose trace-id is the
        # correlation ID; an invalid traceparent starts one too, as the recommendation says.
        parent = headers.get(TRACEPARENT) if headers else None
        state = headers.get(TRACESTATE) if headers else None
        trace = continue_trace(
            parent if isinstance(parent, str) else None,
            state if isinstance(state, str) else None,
            trace_id=cid,
        )
        self._tokens.append(_trace_context.set(trace))
        # logger.contextualize(job=..., job_id=...) without its generator and lock (a third of
        # the cost of restoring): every record logged through Loguru until finish() has them.
        extra = {**_loguru_context.get(), "job": self.job, "job_id": self.job_id}
        self._tokens.append(_loguru_context.set(extra))
        if raw is not None and not accepted:
            # Never the value itself: it came from outside and may be anything.
            log_record(
                "WARNING",
                "job correlation ID rejected",
                _LOGGER,
                {
                    "job": self.job,
                    "job_id": self.job_id,
                    "header": CORRELATION_HEADER,
                    "received_type": type(raw).__name__,
                    "received_length": len(raw) if isinstance(raw, str | bytes) else None,
                },
            )
        self.started = time.perf_counter()
        return self

    def finish(self, state: str, exc: BaseException | None = None) -> None:
        """Write the ``job finished`` line (and the error before it), count, clear the context."""
        seconds = time.perf_counter() - self.started
        state = state if state in JOB_STATES else "failure"
        fields: dict[str, Any] = {"job": self.job, "job_id": self.job_id}
        try:
            if state == "failure" and exc is not None:
                _log_failure(exc, fields)
            line: dict[str, Any] = {
                **fields,
                "state": state,
                "duration_ms": round(seconds * 1000.0, 3),
                "retries": self.retries,
            }
            if state == "retry" and exc is not None:
                line["retry_reason"] = type(exc).__name__
            log_record("INFO", JOB_FINISHED, _LOGGER, line)
            job_metrics().observe(self.job, state, seconds)
        finally:
            self._restore()

    def _restore(self) -> None:
        if self._tokens:
            extra, trace, cid = self._tokens.pop(), self._tokens.pop(), self._tokens.pop()
            _loguru_context.reset(extra)
            _trace_context.reset(trace)
            correlation_id.reset(cid)


class job_context:
    """Run a job under the correlation ID its headers carry; sync or async.

    ``retry_on`` names exceptions that mean "this job will run again" (``arq.Retry``...): they
    are recorded as state ``retry`` and re-raised. Any other exception is logged as the job's
    failure and re-raised; the queue decides what happens next.
    """

    def __init__(
        self,
        headers: Mapping[str, Any] | None,
        *,
        job: str,
        job_id: str | None = None,
        retries: int = 0,
        retry_on: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._headers = headers
        self._retry_on = retry_on
        self._run = JobRun(job=job, job_id=job_id, retries=retries)

    @property
    def correlation_id(self) -> str:
        return self._run.correlation_id

    def __enter__(self) -> job_context:
        self._run.start(self._headers)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self._run.finish("success")
        elif isinstance(exc, self._retry_on):
            self._run.finish("retry", exc)
        elif isinstance(exc, Exception):
            self._run.finish("failure", exc)
        else:  # cancellation, KeyboardInterrupt, SystemExit: not the job's fault
            self._run.finish("failure")

    async def __aenter__(self) -> job_context:
        return self.__enter__()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(kind, exc, tb)
