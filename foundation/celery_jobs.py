"""``foundation.setup_celery(celery_app, service=...)``: correlation, logs and metrics for Celery.

Call it where the Celery app is defined (the module both the web app and the worker import).
It only connects signal receivers, so importing that module does nothing else; Celery then calls:

    any process         before_task_publish   stamp CORRELATION_ID (current ID, or a fresh one)
                        send_task (wrapped)   broker unreachable → JobQueueUnavailable (503)
    worker main         worker_init           note the pool; prepare the metrics directory
                        setup_logging         configure_logging (Celery then leaves logging alone)
                        worker_ready          serve /metrics when ``metrics_port`` is set
    each pool child     worker_process_init   configure_logging again: one file per process
    where tasks run     task_prerun           restore the ID, start the clock
                        task_failure/retry    remember the exception
                        task_postrun          error line, ``job finished`` line, metrics, clear

Traps this handles (Celery 5.7, measured): ``correlation_id`` is Celery's own name for the task
ID (a header of that name is overwritten on the worker), hence ``CORRELATION_ID``; headers passed
to ``apply_async`` do not follow chains, so the ID is stamped at every publish, including the
ones a worker makes for chain links, chord bodies and retries; a pool child is reused, so the ID
is cleared after each task; a child that inherits the main process's open log file and rotates
it would rename it under the others, so each child writes its own ``<service>-<pid>.jsonl``.
Celery's own "Task ... succeeded/raised/retry" lines are dropped: the ``job finished`` line and
the error line replace them (with the traceback logged once).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from foundation.correlation import (
    canonical_correlation_id,
    get_correlation_id,
    is_valid_correlation_id,
    new_correlation_id,
)
from foundation.exceptions import JobQueueUnavailable
from foundation.jobs import CORRELATION_HEADER, JobRun, serve_job_metrics
from foundation.logging import log_record
from foundation.metrics import MULTIPROC_ENV, prepare_multiprocess_dir
from foundation.setup import FoundationSettings, configure_logging_from, resolve_settings
from foundation.tracecontext import TRACEPARENT, TRACESTATE, outgoing_trace_headers

_LOGGER = __name__
_STATES = {"SUCCESS": "success", "FAILURE": "failure", "RETRY": "retry"}
_STATES.update(IGNORED="success", REJECTED="failure")  # Ignore: replaced or dropped by design


@dataclass(slots=True)
class CelerySetup:
    """What ``setup_celery`` installed on one Celery app (``celery_app.foundation``)."""

    settings: FoundationSettings
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    prefork: bool = False
    metrics_server: Any = None
    runs: dict[str, JobRun] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)


_setups: list[CelerySetup] = []


def setup_celery(
    celery_app: Any,
    *,
    service: str,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    env: Mapping[str, str] | None = None,
    **options: Any,
) -> CelerySetup:
    """Carry correlation IDs through ``celery_app``'s tasks; in its workers, log and count them.

    ``options`` are ``setup``'s logging options (``log_dir``, ``log_level``, ``log_stdout``,
    ``log_rotation``..., each also ``FOUNDATION_<NAME>``). ``metrics_port`` (or
    ``FOUNDATION_WORKER_METRICS_PORT``) makes the worker's main process serve ``/metrics`` with
    ``jobs_total`` and ``job_duration_seconds``; a prefork pool needs ``PROMETHEUS_MULTIPROC_DIR``
    in the worker's environment for that (its children write the values there). Tasks always
    run with the ID; calling it again for the same app replaces the settings.
    """
    from celery import signals

    environ = os.environ if env is None else env
    settings = resolve_settings(service, options, environ)
    if metrics_port is None and environ.get("FOUNDATION_WORKER_METRICS_PORT"):
        metrics_port = int(environ["FOUNDATION_WORKER_METRICS_PORT"])
    existing = getattr(celery_app, "foundation", None)
    if isinstance(existing, CelerySetup):
        existing.settings = settings
        existing.metrics_port = metrics_port
        existing.metrics_host = metrics_host
        return existing
    state = CelerySetup(settings=settings, metrics_port=metrics_port, metrics_host=metrics_host)
    celery_app.foundation = state
    _setups.append(state)
    celery_app.send_task = _translating_send_task(celery_app.send_task)

    # Connected once per process (dispatch_uid), strongly: they are module functions.
    for signal, receiver in (
        (signals.before_task_publish, _stamp),
        (signals.worker_init, _worker_init),
        (signals.setup_logging, _setup_logging),
        (signals.worker_process_init, _process_init),
        (signals.worker_ready, _worker_ready),
        (signals.worker_shutdown, _worker_shutdown),
        (signals.task_prerun, _prerun),
        (signals.task_failure, _failure),
        (signals.task_retry, _retry),
        (signals.task_postrun, _postrun),
    ):
        signal.connect(receiver, weak=False, dispatch_uid=f"foundation.{receiver.__name__}")
    trace_logger = logging.getLogger("celery.app.trace")
    if not any(isinstance(f, _ReplacedTraceLines) for f in trace_logger.filters):
        trace_logger.addFilter(_ReplacedTraceLines())
    return state


def _translating_send_task(send_task: Any) -> Any:
    from kombu.exceptions import OperationalError

    @functools.wraps(send_task)
    def send(name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return send_task(name, *args, **kwargs)
        except OperationalError as exc:
            raise JobQueueUnavailable(
                internal_message=f"could not publish {name}: {type(exc).__name__}: {exc}"[:500],
                job=name,
            ) from exc

    return send


def _current(app: Any = None) -> CelerySetup | None:
    state = getattr(app, "foundation", None)
    if isinstance(state, CelerySetup):
        return state
    return _setups[-1] if _setups else None


# -- every process: publishing ------------------------------------------------------------------


def _stamp(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """The current ID and trace go with the task; a valid ID set by the caller is kept, and so
    is a ``traceparent`` already there (a retry keeps its first parent)."""
    if headers is None:
        return
    given = headers.get(CORRELATION_HEADER)
    if isinstance(given, str) and is_valid_correlation_id(given):
        headers[CORRELATION_HEADER] = canonical_correlation_id(given)
    else:
        headers[CORRELATION_HEADER] = get_correlation_id() or new_correlation_id()
    if TRACEPARENT not in headers:
        headers.update(outgoing_trace_headers())


# -- worker main process ------------------------------------------------------------------------


def _worker_init(sender: Any = None, **_: Any) -> None:
    from celery.concurrency import get_implementation
    from celery.concurrency.prefork import TaskPool

    state = _current(getattr(sender, "app", None))
    if state is None:
        return
    pool = get_implementation(getattr(sender, "pool_cls", None) or "prefork")
    state.prefork = isinstance(pool, type) and issubclass(pool, TaskPool)
    directory = os.environ.get(MULTIPROC_ENV, "")
    if directory and state.prefork:
        # Before the pool forks: last run's files would be added to this run's counters.
        prepare_multiprocess_dir(directory)


def _logging_settings(state: CelerySetup) -> FoundationSettings:
    if state.settings.log_per_process is None:
        return replace(state.settings, log_per_process=state.prefork)
    return state.settings


def _configure(state: CelerySetup) -> None:
    configure_logging_from(_logging_settings(state))


def _setup_logging(**_: Any) -> None:
    # Any receiver of this signal stops Celery from configuring logging (and from removing
    # the root logger's handlers).
    state = _current()
    if state is not None:
        _configure(state)


def _worker_ready(sender: Any = None, **_: Any) -> None:
    state = _current(getattr(sender, "app", None))
    if state is None or state.metrics_port is None:
        return
    if state.prefork and not os.environ.get(MULTIPROC_ENV):
        log_record(
            "ERROR",
            "job metrics not served",
            _LOGGER,
            {
                "reason": f"a prefork pool needs {MULTIPROC_ENV} in the worker's environment "
                "(an empty directory of its own): its processes count jobs separately",
                "metrics_port": state.metrics_port,
            },
        )
        return
    try:
        state.metrics_server = serve_job_metrics(port=state.metrics_port, host=state.metrics_host)
    except (OSError, RuntimeError) as exc:
        log_record(
            "ERROR",
            "job metrics not served",
            _LOGGER,
            {"reason": f"{type(exc).__name__}: {exc}", "metrics_port": state.metrics_port},
        )
        return
    log_record(
        "INFO",
        "job metrics served",
        _LOGGER,
        {"url": f"http://{state.metrics_host}:{state.metrics_port}/metrics"},
    )


def _worker_shutdown(**_: Any) -> None:
    for state in _setups:
        if state.metrics_server is not None:
            state.metrics_server.shutdown()
            state.metrics_server.server_close()
            state.metrics_server = None


# -- each pool process --------------------------------------------------------------------------


def _process_init(**_: Any) -> None:
    state = _current()
    if state is not None:
        _configure(state)


# -- around each task ---------------------------------------------------------------------------


def _headers_of(request: Any) -> dict[str, Any]:
    # On a worker a header is an attribute of the request; in eager mode only in .headers.
    extra = getattr(request, "headers", None) or {}
    found: dict[str, Any] = {}
    for name in (CORRELATION_HEADER, TRACEPARENT, TRACESTATE):
        value = request.get(name) if hasattr(request, "get") else None
        if value is None:
            value = extra.get(name)
        if value is not None:
            found[name] = value
    if CORRELATION_HEADER not in found and get_correlation_id() is not None:
        # Eager mode (task_always_eager, task.apply): nothing was published, and the task runs
        # right here, inside the caller's request.
        found[CORRELATION_HEADER] = get_correlation_id()
        found.update(outgoing_trace_headers())
    return found


def _prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    state = _current(getattr(task, "app", None))
    if state is None or task_id is None:
        return
    request = getattr(task, "request", None)
    run = JobRun(
        job=getattr(task, "name", None) or "unknown",
        job_id=task_id,
        retries=int(getattr(request, "retries", 0) or 0),
    )
    state.runs[task_id] = run.start(_headers_of(request) if request is not None else {})


def _failure(task_id: str | None = None, exception: BaseException | None = None, **kw: Any) -> None:
    state = _current(getattr(kw.get("sender"), "app", None))
    if state is not None and task_id is not None and exception is not None:
        state.errors[task_id] = exception


def _retry(request: Any = None, reason: Any = None, **kw: Any) -> None:
    state = _current(getattr(kw.get("sender"), "app", None))
    task_id = getattr(request, "id", None)
    if state is not None and task_id and isinstance(reason, BaseException):
        state.errors[task_id] = reason


def _postrun(task_id: str | None = None, task: Any = None, state: str = "", **_: Any) -> None:
    setup = _current(getattr(task, "app", None))
    if setup is None or task_id is None:
        return
    run = setup.runs.pop(task_id, None)
    error = setup.errors.pop(task_id, None)
    if run is not None:
        run.finish(_STATES.get(state, "failure"), error)


class _ReplacedTraceLines(logging.Filter):
    """Drops Celery's per-task outcome lines; the ``job finished`` line replaces them."""

    def __init__(self) -> None:
        super().__init__()
        from celery.app import trace

        self._formats = frozenset(
            text.strip() for text in (trace.LOG_SUCCESS, trace.LOG_FAILURE, trace.LOG_RETRY)
        )

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.strip() in self._formats)
