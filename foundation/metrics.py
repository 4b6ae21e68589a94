"""Prometheus metrics for a FastAPI app: a pure ASGI middleware, ``/metrics``, and the observers
that the exception handlers and ``Database`` feed.

Series (contract 3)::

    http_requests_total{method,route,status}                 counter
    http_request_duration_seconds{method,route}               histogram, exemplars (IDs)
    http_requests_in_progress{method}                         gauge (livesum across workers)
    app_exceptions_total{internal_code,exception,http_code}   counter
    db_transaction_duration_seconds{outcome}                  histogram, commit|rollback|error

Labels never explode: ``route`` is the matched template (``<unmatched>`` otherwise) and
``method`` is one of the standard verbs or ``OTHER``.

Every metric lives in an injected ``CollectorRegistry`` (a fresh one per app by default), so an
app can be built twice in one process. With ``PROMETHEUS_MULTIPROC_DIR`` in the environment of
the server process, values go to per-process files in that directory and ``/metrics`` sums them
(prometheus_client's multiprocess mode); see ``prepare_multiprocess_dir``.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import math
import os
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import parse_qs

import anyio.to_thread
from asgi_correlation_id import correlation_id
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    values,
)
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar
from prometheus_client.utils import floatToGoString

from foundation.routing import route_template
from foundation.tracecontext import trace_ids

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
EXEMPLAR_LABEL: Final = "correlation_id"
EXEMPLAR_TRACE_LABEL: Final = "trace_id"
# OpenMetrics caps an exemplar's label set (names and values) at 128 characters. Both IDs fit
# (14 + 32 + 8 + 32 = 86); an ID longer than allowed (a client can send anything the validator
# lets through) is left off rather than failing the request, the trace-id first.
_MAX_EXEMPLAR_CHARS: Final = 128
_MAX_EXEMPLAR_VALUE: Final = _MAX_EXEMPLAR_CHARS - len(EXEMPLAR_LABEL)

#: Latency buckets of ``http_request_duration_seconds`` (prometheus_client's defaults).
HTTP_BUCKETS: Final[tuple[float, ...]] = Histogram.DEFAULT_BUCKETS
#: Buckets of ``db_transaction_duration_seconds``: transactions are usually faster than requests.
DB_BUCKETS: Final[tuple[float, ...]] = (
    0.001,
    0.0025,
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
)
DB_OUTCOMES: Final = ("commit", "rollback", "error")
KNOWN_METHODS: Final = frozenset(
    ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
)
_MARKER: Final = ".foundation-server"
_LOCK: Final = ".foundation-lock"


def _exemplar_labels(cid: str | None, ids: tuple[str, str] | None) -> dict[str, str]:
    """``{correlation_id, trace_id}`` within OpenMetrics' 128 characters (what fits of it)."""
    labels: dict[str, str] = {}
    size = 0
    if cid and len(cid) <= _MAX_EXEMPLAR_VALUE:
        labels[EXEMPLAR_LABEL] = cid
        size = len(EXEMPLAR_LABEL) + len(cid)
    if ids is not None:
        trace_id = ids[0]
        if size + len(EXEMPLAR_TRACE_LABEL) + len(trace_id) <= _MAX_EXEMPLAR_CHARS:
            labels[EXEMPLAR_TRACE_LABEL] = trace_id
    return labels


class ExceptionObserver(Protocol):
    """Called by the exception handlers once per exception turned into a response."""

    def __call__(self, *, exception: str, internal_code: int, http_code: int) -> None: ...


class TransactionObserver(Protocol):
    """Called by ``Database`` once per finished transaction (outcome commit|rollback|error)."""

    def __call__(self, outcome: str, seconds: float) -> None: ...


class _ObserverList(Protocol):
    def append(self, observer: TransactionObserver, /) -> None: ...


class HasTransactionObservers(Protocol):
    """What ``install_metrics(database=...)`` needs of a database (``foundation.Database``)."""

    @property
    def transaction_observers(self) -> _ObserverList: ...


class MultiprocessConfigError(RuntimeError):
    """Multiprocess mode is configured in a way that would export wrong or no numbers."""


_HTTP_REQUESTS_HELP: Final = (
    "HTTP requests answered, by method, matched route template and status code."
)
_HTTP_DURATION_HELP: Final = (
    "Time from the request reaching the metrics middleware to the end of the response."
)
_HTTP_IN_PROGRESS_HELP: Final = "HTTP requests being served right now, by method."


class HttpRecorder(Protocol):
    """Where the middleware records requests: ``started`` on entry, ``finished`` on exit."""

    def started(self, method: str) -> None: ...

    def finished(
        self, method: str, route: str, status: int, seconds: float, now: float
    ) -> None: ...


class _Latency:
    """One latency series: per-bucket counts, sum, and the newest exemplar per bucket."""

    __slots__ = ("counts", "exemplars", "stamps", "total")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size
        self.total = 0.0
        self.stamps = [-math.inf] * size
        self.exemplars: list[Exemplar | None] = [None] * size


class FastHttpMetrics:
    """The three HTTP series of one process, kept in plain dicts and exported by ``collect``.

    prometheus_client's metric objects cost about a microsecond per call (checks, one lock per
    value); recording a request here takes one lock and a few dict and list operations.
    Multiprocess mode cannot use it (values must go to the shared files): see
    ``ClientHttpMetrics``.
    """

    def __init__(self, bounds: tuple[float, ...], exemplar_interval: float = 1.0) -> None:
        self.bounds = bounds
        self.exemplar_interval = exemplar_interval
        self.exemplars = True
        self._le = [floatToGoString(bound) for bound in bounds]  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latency: dict[tuple[str, str], _Latency] = {}
        self._in_progress: dict[str, int] = {}

    def started(self, method: str) -> None:
        with self._lock:
            self._in_progress[method] = self._in_progress.get(method, 0) + 1

    def finished(self, method: str, route: str, status: int, seconds: float, now: float) -> None:
        bucket = bisect_left(self.bounds, seconds)
        with self._lock:
            self._in_progress[method] -= 1
            key = (method, route, status)
            self._requests[key] = self._requests.get(key, 0) + 1
            latency = self._latency.get((method, route))
            if latency is None:
                latency = self._latency[(method, route)] = _Latency(len(self.bounds))
            latency.counts[bucket] += 1
            latency.total += seconds
            if self.exemplars and now - latency.stamps[bucket] >= self.exemplar_interval:
                labels = _exemplar_labels(correlation_id.get(), trace_ids())
                if labels:
                    latency.stamps[bucket] = now
                    latency.exemplars[bucket] = Exemplar(labels, seconds, time.time())

    def describe(self) -> list[Metric]:
        return list(self._families({}, {}, {}))

    def collect(self) -> list[Metric]:
        with self._lock:
            requests = dict(self._requests)
            latency = {
                pair: (list(s.counts), s.total, list(s.exemplars))
                for pair, s in self._latency.items()
            }
            in_progress = dict(self._in_progress)
        return list(self._families(requests, latency, in_progress))

    def _families(
        self,
        requests: dict[tuple[str, str, int], int],
        latency: dict[tuple[str, str], tuple[list[int], float, list[Exemplar | None]]],
        in_progress: dict[str, int],
    ) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "http_requests", _HTTP_REQUESTS_HELP, labels=("method", "route", "status")
        )
        for (method, route, status), count in requests.items():
            family.add_metric((method, route, str(status)), count)
        yield family
        histogram = HistogramMetricFamily(
            "http_request_duration_seconds", _HTTP_DURATION_HELP, labels=("method", "route")
        )
        for (method, route), (counts, total, exemplars) in latency.items():
            buckets: list[Any] = []
            cumulative = 0
            for le, count, exemplar in zip(self._le, counts, exemplars, strict=True):
                cumulative += count
                buckets.append((le, cumulative, exemplar) if exemplar else (le, cumulative))
            histogram.add_metric((method, route), buckets, total)
        yield histogram
        gauge = GaugeMetricFamily(
            "http_requests_in_progress", _HTTP_IN_PROGRESS_HELP, labels=("method",)
        )
        for method, count in in_progress.items():
            gauge.add_metric((method,), count)
        yield gauge


class ClientHttpMetrics:
    """The HTTP series as prometheus_client metric objects: what multiprocess mode needs."""

    def __init__(self, registry: CollectorRegistry, buckets: tuple[float, ...]) -> None:
        self.exemplars = False
        self.requests_total = Counter(
            "http_requests_total",
            _HTTP_REQUESTS_HELP,
            ("method", "route", "status"),
            registry=registry,
        )
        self.request_duration = Histogram(
            "http_request_duration_seconds",
            _HTTP_DURATION_HELP,
            ("method", "route"),
            registry=registry,
            buckets=buckets,
        )
        self.in_progress = Gauge(
            "http_requests_in_progress",
            _HTTP_IN_PROGRESS_HELP,
            ("method",),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._requests: dict[tuple[str, str, int], Counter] = {}
        self._durations: dict[tuple[str, str], Histogram] = {}
        self._in_progress: dict[str, Gauge] = {}

    def started(self, method: str) -> None:
        gauge = self._in_progress.get(method)
        if gauge is None:
            gauge = self._in_progress[method] = self.in_progress.labels(method)
        gauge.inc()

    def finished(self, method: str, route: str, status: int, seconds: float, now: float) -> None:
        self._in_progress[method].dec()
        key = (method, route, status)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self.requests_total.labels(method, route, status)
        counter.inc()
        histogram = self._durations.get((method, route))
        if histogram is None:
            histogram = self._durations[(method, route)] = self.request_duration.labels(
                method, route
            )
        histogram.observe(seconds)


@dataclass(slots=True, eq=False)
class AppMetrics:
    """The metrics of one app and the registry ``/metrics`` serves.

    ``registry`` is what the endpoint exposes; in multiprocess mode it holds only the collector
    that sums the per-process files. ``http`` records requests (the middleware calls it);
    exemplars exist only in single-process mode, where each latency bucket's exemplar is
    replaced at most once per ``http.exemplar_interval`` seconds.
    """

    registry: CollectorRegistry
    http: FastHttpMetrics | ClientHttpMetrics
    exceptions_total: Counter
    db_transaction_duration: Histogram
    multiprocess_dir: Path | None = None
    _exceptions: dict[tuple[str, int, int], Counter] = field(default_factory=dict, repr=False)
    _transactions: dict[str, Histogram] = field(default_factory=dict, repr=False)

    def observe_exception(self, *, exception: str, internal_code: int, http_code: int) -> None:
        """The ``ExceptionObserver`` installed as ``app.state.foundation_exception_observer``."""
        key = (exception, internal_code, http_code)
        counter = self._exceptions.get(key)
        if counter is None:
            counter = self._exceptions[key] = self.exceptions_total.labels(
                internal_code=internal_code, exception=exception, http_code=http_code
            )
        counter.inc()

    def observe_transaction(self, outcome: str, seconds: float) -> None:
        """The ``TransactionObserver`` appended to ``Database.transaction_observers``."""
        histogram = self._transactions.get(outcome)
        if histogram is None:
            # The contract allows three outcomes; anything else must not mint new series.
            label = outcome if outcome in DB_OUTCOMES else "other"
            histogram = self._transactions[outcome] = self.db_transaction_duration.labels(label)
        histogram.observe(seconds)

    def render(self, accept: str = "", names: Iterable[str] = ()) -> tuple[bytes, str]:
        """Exposition bytes and their content type, OpenMetrics when ``accept`` asks for it."""
        if self.multiprocess_dir is not None:
            check_multiprocess_safe(REGISTRY, self.registry)
        encoder, content_type = choose_encoder(accept)
        wanted = list(names)
        registry: Collector = self.registry.restricted_registry(wanted) if wanted else self.registry
        return encoder(registry), content_type


def create_metrics(
    *,
    registry: CollectorRegistry | None = None,
    buckets: Iterable[float] = HTTP_BUCKETS,
    db_buckets: Iterable[float] = DB_BUCKETS,
    process_metrics: bool = True,
    exemplar_interval: float = 1.0,
) -> AppMetrics:
    """Create the metrics of one app.

    ``registry`` defaults to a fresh ``CollectorRegistry`` (with process, platform and GC
    collectors when ``process_metrics``). With ``$PROMETHEUS_MULTIPROC_DIR`` set, multiprocess
    mode is checked and the directory prepared (see ``claim_multiprocess_dir``).
    """
    bounds = _upper_bounds(buckets)
    env = os.environ.get(MULTIPROC_ENV, "")
    if env:
        directory = _check_multiprocess_mode(Path(env))
        claim_multiprocess_dir(directory)
        # Values are written to per-process files whatever registry the metrics are in; a
        # private registry keeps an app that is created twice free of duplicate names.
        private = CollectorRegistry(auto_describe=True)
        served = registry if registry is not None else CollectorRegistry(auto_describe=True)
        MultiProcessCollector(served, path=str(directory))  # type: ignore[no-untyped-call]
        check_multiprocess_safe(REGISTRY, served)
        http: FastHttpMetrics | ClientHttpMetrics = ClientHttpMetrics(private, bounds)
        return _build(served, private, http, tuple(db_buckets), directory)
    if registry is None:
        registry = CollectorRegistry(auto_describe=True)
        if process_metrics:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
    http = FastHttpMetrics(bounds, exemplar_interval)
    registry.register(http)
    registry.register(LogWriteErrors())
    return _build(registry, registry, http, tuple(db_buckets), None)


class LogWriteErrors(Collector):
    """``log_write_errors_total``: log records a sink could not write (disk full, bad directory).

    Read at scrape time from the logging configuration of this process, so a failing log disk
    shows up on a dashboard even though requests keep succeeding. Single-process mode only: in
    multiprocess mode each worker would report its own count under one name.
    """

    def collect(self) -> Iterable[Metric]:
        from foundation.logging import current_logging

        config = current_logging()
        yield CounterMetricFamily(
            "log_write_errors",
            "Log records dropped because a sink could not write them.",
            value=config.dropped_records if config is not None else 0,
        )


def _build(
    served: CollectorRegistry,
    target: CollectorRegistry,
    http: FastHttpMetrics | ClientHttpMetrics,
    db_buckets: tuple[float, ...],
    directory: Path | None,
) -> AppMetrics:
    return AppMetrics(
        registry=served,
        http=http,
        exceptions_total=Counter(
            "app_exceptions_total",
            "Exceptions turned into error responses, by internal code, class and HTTP status.",
            ("internal_code", "exception", "http_code"),
            registry=target,
        ),
        db_transaction_duration=Histogram(
            "db_transaction_duration_seconds",
            "Database transaction time, by outcome (commit, rollback, error).",
            ("outcome",),
            registry=target,
            buckets=db_buckets,
        ),
        multiprocess_dir=directory,
    )


def _upper_bounds(buckets: Iterable[float]) -> tuple[float, ...]:
    """The histogram's bucket bounds, ``+Inf`` included, as prometheus_client builds them."""
    bounds = [float(b) for b in buckets]
    if not bounds or bounds[-1] != math.inf:
        bounds.append(math.inf)
    if bounds != sorted(bounds) or len(bounds) < 2:
        raise ValueError(f"latency buckets must be sorted and not empty, got {bounds}")
    return tuple(bounds)


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request and serves ``path``.

    Place it inside the correlation-ID middleware (exemplars read the ID) and outside the
    catch-all that turns unhandled exceptions into 500 responses, so that it sees final status
    codes. A response that never completes counts once as a 500 (499 if the client had
    disconnected); an exception that reaches it is counted once as a 500 and re-raised.
    """

    def __init__(self, app: ASGIApp, *, metrics: AppMetrics, path: str = "/metrics") -> None:
        self.app = app
        self.metrics = metrics
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        if scope["path"] == self.path and method in ("GET", "HEAD"):
            await serve_metrics(self.metrics, scope, send)
            return
        if method not in KNOWN_METHODS:
            method = "OTHER"
        # route_template needs root_path as it was before any Mount extended it.
        root_path: str = scope.get("root_path", "")
        status = 500
        complete = False
        disconnected = False

        async def send_status(message: Message) -> None:
            nonlocal status, complete
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
            elif kind == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        async def receive_disconnect() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect":
                disconnected = True
            return message

        http = self.metrics.http
        http.started(method)
        started = time.perf_counter()
        try:
            await self.app(scope, receive_disconnect, send_status)
        except Exception:
            status = 500
            raise
        finally:
            now = time.perf_counter()
            if not complete:
                # The response was cut short: an error after it started that something inside
                # swallowed (499 when the client had gone away, as nginx logs it).
                status = 499 if disconnected else 500
            route = route_template(scope, root_path)
            http.finished(method, route, status, now - started, now)


async def serve_metrics(metrics: AppMetrics, scope: Scope, send: Send) -> None:
    """Answer a GET or HEAD of the metrics path (content negotiation and gzip as Prometheus
    asks)."""
    accept = ""
    accept_encoding = ""
    for name, value in scope["headers"]:
        if name == b"accept":
            accept = f"{accept},{value.decode('latin-1')}" if accept else value.decode("latin-1")
        elif name == b"accept-encoding":
            accept_encoding += "," + value.decode("latin-1")
    names = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("name[]", [])
    try:
        # Collection takes locks and, in multiprocess mode, reads every worker's files:
        # keep it off the event loop.
        body, content_type = await anyio.to_thread.run_sync(metrics.render, accept, names)
    except MultiprocessConfigError as exc:
        body, content_type = f"{exc}\n".encode(), "text/plain; charset=utf-8"
        headers = [(b"content-type", content_type.encode())]
        await send({"type": "http.response.start", "status": 500, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    headers = [(b"content-type", content_type.encode()), (b"vary", b"Accept, Accept-Encoding")]
    if gzip_accepted(accept_encoding):
        body = gzip.compress(body, compresslevel=6)
        headers.append((b"content-encoding", b"gzip"))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


class _App(Protocol):
    state: Any

    def add_middleware(self, middleware_class: Any, *args: Any, **kwargs: Any) -> None: ...


def install_metrics(
    app: _App,
    *,
    registry: CollectorRegistry | None = None,
    path: str = "/metrics",
    database: HasTransactionObservers | None = None,
    buckets: Iterable[float] = HTTP_BUCKETS,
    process_metrics: bool = True,
    middleware: bool = True,
) -> AppMetrics:
    """Add the metrics middleware and ``path`` to ``app`` and wire the observers.

    Sets ``app.state.foundation_exception_observer`` (read by the exception handlers) and
    ``app.state.foundation_metrics``; appends to ``database.transaction_observers`` when a
    database is given. Call it where the middleware belongs in the stack (Starlette's
    ``add_middleware`` puts the latest addition outermost). ``middleware=False`` wires the
    rest only, for a layer that records the requests and serves ``path`` itself
    (``foundation.observe.RequestObserver``, which ``setup`` installs).
    """
    if getattr(app.state, "foundation_metrics", None) is not None:
        raise RuntimeError("metrics are already installed on this app")
    metrics = create_metrics(registry=registry, buckets=buckets, process_metrics=process_metrics)
    if middleware:
        app.add_middleware(MetricsMiddleware, metrics=metrics, path=path)
    app.state.foundation_metrics = metrics
    app.state.foundation_exception_observer = metrics.observe_exception
    if database is not None:
        database.transaction_observers.append(metrics.observe_transaction)
    return metrics


def check_multiprocess_safe(*registries: CollectorRegistry) -> None:
    """Refuse metrics that multiprocess mode silently exports as nothing or 0.

    prometheus_client's multiprocess collector only reads the per-process files: ``Info`` and
    ``Enum`` never write there and a gauge with ``set_function`` keeps its callback in memory.
    """
    for registry in registries:
        # CollectorRegistry has no public way to list its collectors; this attribute has been
        # stable since 2017 and a test guards it.
        collectors = list(getattr(registry, "_collector_to_names", {}))
        for collector in collectors:
            name = getattr(collector, "_name", type(collector).__name__)
            if isinstance(collector, Info | Enum):
                kind = type(collector).__name__
                raise MultiprocessConfigError(
                    f"metric {name!r} is an {kind}: {kind} metrics export nothing in "
                    f"multiprocess mode ({MULTIPROC_ENV} is set); use a Gauge with labels"
                )
            if isinstance(collector, Gauge) and _has_set_function(collector):
                raise MultiprocessConfigError(
                    f"gauge {name!r} uses set_function: its value is not shared in "
                    f"multiprocess mode ({MULTIPROC_ENV} is set); call set() when it changes"
                )


def _has_set_function(gauge: Gauge) -> bool:
    # set_function replaces _child_samples on the instance (on the child when labelled).
    if "_child_samples" in vars(gauge):
        return True
    children = getattr(gauge, "_metrics", {})
    return any("_child_samples" in vars(child) for child in list(children.values()))


def _check_multiprocess_mode(directory: Path) -> Path:
    if not getattr(values.ValueClass, "_multiprocess", False):
        raise MultiprocessConfigError(
            f"{MULTIPROC_ENV}={directory} was set after prometheus_client was imported, so this "
            "process keeps its values in memory; set it in the environment that starts the server"
        )
    env = os.environ.get(MULTIPROC_ENV, "")
    if not env or Path(env).resolve() != directory.resolve():
        raise MultiprocessConfigError(
            f"multiprocess directory {directory} differs from {MULTIPROC_ENV}={env!r}; "
            "prometheus_client writes to the directory named by the environment variable"
        )
    return directory


def prepare_multiprocess_dir(directory: str | os.PathLike[str]) -> int:
    """Create ``directory`` and delete leftover ``*.db`` files; returns how many were removed.

    Run it once per server start, before any worker (``on_starting`` in a gunicorn config, or
    the container entrypoint: ``python -m foundation.metrics prepare DIR``). Leftover files
    from a previous run would otherwise be added to this run's counters.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    removed = 0
    for stale in path.glob("*.db"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
            removed += 1
    (path / _MARKER).unlink(missing_ok=True)
    return removed


def claim_multiprocess_dir(directory: Path) -> bool:
    """Prepare the directory from inside a worker, without an operator hook.

    Workers of one server share a parent (the uvicorn or gunicorn master). The first worker of
    a server run finds a marker naming another parent (or none): it deletes the files of
    processes that are not living siblings (the previous run's) and writes its parent's
    identity. Later workers, including restarted ones, keep every counter file so totals keep
    adding up, and only drop the live gauges of dead workers (what ``mark_process_dead`` does).
    Returns True when leftovers of a previous run were looked for and removed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    parent = os.getppid()
    identity = _process_identity(parent)
    with open(directory / _LOCK, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            marker = directory / _MARKER
            try:
                previous = marker.read_text(encoding="ascii")
            except (FileNotFoundError, UnicodeDecodeError):
                previous = ""
            new_run = previous != identity
            for file, pid in _db_files(directory):
                if new_run and not _sibling(pid, parent):
                    # A sibling that started first may already have files open: keep those.
                    file.unlink(missing_ok=True)
                elif file.name.startswith("gauge_live") and not _alive(pid):
                    mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
            if new_run:
                marker.write_text(identity, encoding="ascii")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return new_run


def _process_identity(pid: int) -> str:
    """``pid:start-time`` so that a recycled pid is not mistaken for the same server."""
    fields = _proc_stat(pid)
    return f"{pid}:{fields[19] if len(fields) > 19 else '?'}"


def _proc_stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (field 3 onwards), [] if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return []
    return stat.rsplit(")", 1)[-1].split()


def _db_files(directory: Path) -> list[tuple[Path, int]]:
    found: list[tuple[Path, int]] = []
    for file in directory.glob("*.db"):
        pid_text = file.stem.rsplit("_", 1)[-1]
        found.append((file, int(pid_text) if pid_text.isdigit() else -1))
    return found


def _sibling(pid: int, parent: int) -> bool:
    if pid == os.getpid():
        return True
    if pid <= 0 or not _alive(pid):
        return False
    fields = _proc_stat(pid)
    # Without /proc (not Linux) a living process is given the benefit of the doubt.
    return not fields or fields[1] == str(parent)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "prepare":
        print("usage: python -m foundation.metrics prepare DIRECTORY", file=sys.stderr)
        return 2
    removed = prepare_multiprocess_dir(argv[1])
    print(f"prepared {argv[1]}: removed {removed} leftover file(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
