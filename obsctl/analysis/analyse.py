"""Analysis: records in, answers out. Pure functions and value objects, no I/O, no printing.

* Trace: :func:`resolve_id` (full ID or unambiguous prefix), :func:`build_trace` (summary of
  one request + its timeline in time order) and :meth:`TraceSummary.plain_words` (the sentence
  for support staff).
* Errors: :class:`ErrorAccumulator` counts ERROR/CRITICAL records by ``internal_code``,
  route, exception or status; accumulators from several processes :meth:`merge`; the
  :meth:`~ErrorAccumulator.report` is an :class:`ErrorReport` that renderers and ``--json`` use.
  Any other source (Loki) can build an :class:`ErrorReport` itself and reuse the rendering.
* Time: :func:`parse_time_bound` reads ``15m``/``2h``/``7d`` or RFC 3339 into epoch seconds.
* Tail: :class:`RecordFilter` decides which records ``tail`` shows.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from obsctl.errors import UsageError
from obsctl.readers.parse import Record, as_int, ts_to_epoch

__all__ = [
    "ACCESS_MESSAGE",
    "GROUP_FIELDS",
    "LEVEL_NAMES",
    "DownstreamCall",
    "ErrorAccumulator",
    "ErrorGroup",
    "ErrorReport",
    "GroupBy",
    "JobOutcome",
    "RecordFilter",
    "Trace",
    "TraceSummary",
    "build_trace",
    "epoch_to_ts",
    "level_rank",
    "normalise_id",
    "parse_time_bound",
    "resolve_id",
]

#: The message of the one access line per request (contract 1).
ACCESS_MESSAGE = "request finished"

MIN_PREFIX = 8

GroupBy = Literal["internal_code", "route", "exception", "status"]
#: ``--by`` value → the JSON field that carries the group's key.
GROUP_FIELDS: dict[str, str] = {
    "internal_code": "internal_code",
    "route": "route",
    "exception": "exception",
    "status": "http_code",
}

_LEVELS = {
    "TRACE": 5,
    "DEBUG": 10,
    "INFO": 20,
    "SUCCESS": 25,
    "WARNING": 30,
    "WARN": 30,
    "ERROR": 40,
    "CRITICAL": 50,
    "FATAL": 50,
}

# Keys shown in their own columns of a timeline; everything else is an "extra".
BASE_KEYS = frozenset(
    {
        "ts",
        "level",
        "correlation_id",
        "message",
        "logger",
        "function",
        "line",
        "exception",
        "service",
        # W3C trace context (contract 7): shown as the line's service and span, not as extras
        "trace_id",
        "span_id",
    }
)


#: Level names ``--level`` accepts.
LEVEL_NAMES = frozenset(_LEVELS)


#: foundation's code for unhandled exceptions: their external message is the generic one, so the
#: sentence names the exception type instead.
UNHANDLED_CODE = 10500


def level_rank(level: str) -> int:
    """Numeric severity of a Loguru level name (unknown names rank like INFO)."""
    return _LEVELS.get(level.upper(), 20)


def epoch_to_ts(epoch: float) -> str:
    """Epoch seconds → RFC 3339 UTC with microseconds (the log's own format)."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time_bound(text: str, *, now: float, flag: str) -> float:
    """``15m``/``2h``/``7d``/``1h30m`` (that long before ``now``) or an RFC 3339 time → epoch."""
    compact = text.strip().lower()
    if _DURATION.match(compact):
        seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(compact))
        return now - seconds
    epoch = ts_to_epoch(text.strip().replace(" ", "T", 1))
    if epoch is None:
        raise UsageError(
            f"invalid {flag} {text!r}",
            hint="give a duration like 15m, 2h, 7d or a time like 2026-11-26T02:00:00Z",
        )
    return epoch


_HEX_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)


def normalise_id(text: str) -> str:
    """What the user typed → what the logs contain: trimmed; a hex UUID in canonical 32 lower-case
    hex (hyphens dropped), since foundation writes that form. Other IDs are left as typed."""
    value = text.strip()
    if _HEX_UUID.match(value):
        return value.replace("-", "").lower()
    if re.fullmatch(r"[0-9a-fA-F]+", value):
        return value.lower()
    return value


def resolve_id(records: Iterable[Record], query: str) -> list[str]:
    """The distinct correlation IDs and trace-ids among ``records`` equal to or starting with
    ``query`` (in the common cases they are the same ID: contract 7).

    An exact match wins over longer IDs sharing the prefix. The caller decides what an empty
    (nothing matched) or longer (ambiguous) list means.
    """
    found: set[str] = set()
    for record in records:
        data = record.data
        cid = data.get("correlation_id")
        if cid.__class__ is str and cid and cid.startswith(query):
            found.add(cid)
        tid = data.get("trace_id")
        if tid.__class__ is str and tid and tid != cid and tid.startswith(query):
            found.add(tid)
    if query in found:
        return [query]
    return sorted(found)


def check_prefix(query: str) -> None:
    """A prefix shorter than 8 characters matches too much to be useful: a usage error."""
    if len(query) < MIN_PREFIX:
        raise UsageError(
            f"correlation ID {query!r} is too short",
            hint=f"give the full ID or at least its first {MIN_PREFIX} characters",
        )


# --------------------------------------------------------------------------------------- trace


@dataclass(frozen=True, slots=True)
class DownstreamCall:
    """A request the traced request made to another service (or itself) with the same ID: its
    own access line, and the error code that service logged while answering, if any."""

    service: str | None
    method: str | None
    path: str | None
    route: str | None
    status: int | None
    duration_ms: float | None
    internal_code: int | None = None
    #: The callee's own span (from its access line), when its lines carry trace context.
    span_id: str | None = None
    #: Its place in the call tree: 1 for a call of the outermost request, 2 for a call that
    #: one of those made, and so on (nesting of the requests' time spans).
    depth: int = 1

    @property
    def endpoint(self) -> str | None:
        return _endpoint(self.method, self.path or self.route)

    def tree_line(self) -> str:
        """``describe()`` placed in the call tree: a call made by another call is drawn under
        it (``└─``, indented by depth), and the callee's span is named when known."""
        prefix = "" if self.depth <= 1 else "   " * (self.depth - 2) + "└─ "
        span = f" [span {self.span_id}]" if self.span_id else ""
        return f"{prefix}{self.describe()}{span}"

    def describe(self) -> str:
        """``payments: POST /charges answered 402 Payment Required after 0.8 ms (code 30201)``."""
        who = f"{self.service}: " if self.service else ""
        told = f"{who}{self.endpoint or 'a request'}"
        if self.status is not None:
            told += f" answered {_status_text(self.status)}"
        if self.duration_ms is not None:
            told += f" after {_ms(self.duration_ms)}"
        if self.internal_code is not None:
            told += f" (code {self.internal_code})"
        return told


#: The message of the line foundation writes at the end of every background job execution.
JOB_FINISHED = "job finished"
_JOB_ENDINGS = {"success": "succeeded", "retry": "is to be retried", "failure": "failed"}


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """A background job the traced request enqueued (its lines carry ``job`` and ``job_id``):
    how many times it ran, how its last run ended and the error it logged."""

    job: str
    job_id: str | None
    service: str | None
    state: str | None
    executions: int
    retries: int | None
    #: Seconds from the request's answer to the job's first start (None without a request).
    delay_s: float | None
    duration_ms: float | None = None
    internal_code: int | None = None
    external_message: str | None = None
    internal_message: str | None = None
    exception_type: str | None = None

    def describe(self) -> str:
        """``job shop.send_receipt ran 5.2 s later in worker and failed: … (code 30301)``."""
        told = f"job {self.job} ran"
        if self.delay_s is not None and self.delay_s < 0:
            told += " during the request"  # inline (eager), in the request's own process
        elif self.delay_s is not None and self.delay_s < 0.0005:
            told += " right after the request"
        elif self.delay_s is not None:
            later = f"{self.delay_s:.1f} s" if self.delay_s >= 1 else _ms(self.delay_s * 1000)
            told += f" {later} later"
        if self.service:
            told += f" in {self.service}"
        if self.executions > 1:
            told += f" ({self.executions} times)"
        if self.state is None:
            return f"{told} and has no finished line (still running, or its worker stopped)"
        told += f" and {_JOB_ENDINGS.get(self.state, self.state)}"
        if self.state != "failure":
            return told
        code = f" (code {self.internal_code})" if self.internal_code is not None else ""
        if self.external_message and self.internal_code != UNHANDLED_CODE:
            return f"{told}: {self.external_message.rstrip().rstrip('.')}.{code}"
        if self.exception_type:
            return f"{told}: an internal error ({self.exception_type}){code}"
        return f"{told}{code}"


def _endpoint(method: str | None, target: str | None) -> str | None:
    if method and target:
        return f"{method} {target}"
    return target or method


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """What happened to one request, from its log records.

    With several access lines for the ID (one service calling another with the same ID), the
    summary describes the outermost request, the one the client made; the others are its
    ``calls``, in the order they started.
    """

    correlation_id: str
    first_ts: str
    last_ts: str
    lines: int
    sources: tuple[str, ...]
    service: str | None = None
    method: str | None = None
    path: str | None = None
    route: str | None = None
    status: int | None = None
    duration_ms: float | None = None
    worst_level: str = ""
    internal_code: int | None = None
    http_code: int | None = None
    external_message: str | None = None
    internal_message: str | None = None
    exception_type: str | None = None
    exception_value: str | None = None
    calls: tuple[DownstreamCall, ...] = ()
    #: The W3C trace-id of the request (contract 7) and its own span, when its lines have them.
    trace_id: str | None = None
    span_id: str | None = None
    #: The correlation IDs of the lines, when they differ from the ID asked for (a trace-id).
    request_ids: tuple[str, ...] = ()
    jobs: tuple[JobOutcome, ...] = ()

    @property
    def endpoint(self) -> str | None:
        return _endpoint(self.method, self.path or self.route)

    def plain_words(self) -> str:
        """One sentence for support staff, e.g. "Request POST /orders answered 409 Conflict
        after 12.3 ms: This product is out of stock. (code 30101)"."""
        status = self.status if self.status is not None else self.http_code
        if self.jobs and status is None and self.endpoint is None:
            # Work enqueued outside any request (a script, a schedule): only the jobs to tell.
            told = "; then ".join(job.describe() for job in self.jobs)
            return f"{told[0].upper()}{told[1:]}."
        what = f"Request {self.endpoint}" if self.endpoint else "The request"
        if status is None:
            told = f"{what} has no finished line in the logs"
            told += " (still running, or the app stopped before answering)"
        else:
            told = f"{what} answered {_status_text(status)}"
            if self.duration_ms is not None:
                told += f" after {_ms(self.duration_ms)}"
        reason = self._reason(status)
        sentence = f"{told}: {reason}" if reason else f"{told}."
        if self.calls:
            called = "; ".join(call.describe() for call in self.calls)
            sentence = f"{sentence.removesuffix('.')}; it called {called}."
        for job in self.jobs:
            sentence = f"{sentence.removesuffix('.')}; then {job.describe().removesuffix('.')}."
        return sentence

    def _reason(self, status: int | None) -> str:
        code = f" (code {self.internal_code})" if self.internal_code is not None else ""
        unhandled = self.internal_code == UNHANDLED_CODE
        if self.external_message and not unhandled:
            text = self.external_message.rstrip()
            if not text.endswith((".", "!", "?")):
                text += "."
            return f"{text}{code}"
        if unhandled or (status is not None and status >= 500):
            crash = f" ({self.exception_type})" if self.exception_type else ""
            return f"an internal error{crash}; the client got a generic error message.{code}"
        if status is not None and status >= 400:
            return f"the request was refused.{code}"
        if self.exception_type:
            return f"it logged {self.exception_type}.{code}"
        if code:
            return f"it logged an error.{code}"
        return ""


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def _status_text(status: int) -> str:
    from http import HTTPStatus

    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One record of a trace and its offset from the first record, in milliseconds."""

    offset_ms: float | None
    record: Record

    @property
    def extras(self) -> dict[str, Any]:
        return {k: v for k, v in self.record.data.items() if k not in BASE_KEYS}


@dataclass(frozen=True, slots=True)
class Trace:
    """A request's summary and its records in time order.

    Timeline entries (offsets from the first record) are made on demand: ``--json`` prints the
    records as they are and a long text timeline shows only its edges, so computing every
    offset of a 50,000-line request up front would be work nobody sees.
    """

    summary: TraceSummary
    records: tuple[Record, ...]
    base_epoch: float | None = None
    #: Indices of the records that carry an ``exception`` object (their tracebacks are shown).
    exception_indices: tuple[int, ...] = ()

    def entry(self, index: int) -> TimelineEntry:
        """The timeline entry of ``records[index]``."""
        record = self.records[index]
        base = self.base_epoch
        epoch = record.epoch if base is not None else None
        offset = None if base is None or epoch is None else round((epoch - base) * 1000, 3)
        return TimelineEntry(offset, record)

    @property
    def timeline(self) -> tuple[TimelineEntry, ...]:
        """Every record as a timeline entry, in time order."""
        return tuple(self.entry(index) for index in range(len(self.records)))


def _time_key(record: Record) -> tuple[str, int]:
    ts = record.data.get("ts")
    return (ts if ts.__class__ is str else "", record.seq)


def order_records(records: Iterable[Record]) -> list[Record]:
    """Records in time order; the same line found in two files (a copy) is kept once."""
    ordered = sorted(records, key=_time_key)
    result: list[Record] = []
    append = result.append
    # The time is part of the raw line, so equal raw lines are the same record.
    seen: set[bytes] = set()
    remember = seen.add
    for record in ordered:
        raw = record.raw
        if raw:
            if raw in seen:
                continue
            remember(raw)
        append(record)
    return result


def _first(records: Iterable[Record], key: str) -> Any:
    for record in records:
        data = record.data
        if key in data:  # most records lack the key: one lookup is all they cost
            value = data[key]
            if value is not None and value != "":
                return value
    return None


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(frozen=True, slots=True)
class _Span:
    """One access line as the time span of its request (epoch seconds, when known)."""

    record: Record
    start: float | None
    end: float | None
    duration_ms: float | None

    @classmethod
    def of(cls, record: Record) -> _Span:
        end = record.epoch
        duration = _num(record.data.get("duration_ms"))
        start = end - duration / 1000 if end is not None and duration is not None else end
        return cls(record, start, end, duration)

    def order(self) -> tuple[bool, int, float]:
        """Earliest start first; on a tie the longest (the caller outlives its callees).
        Starts are compared in whole microseconds, the precision of the log's times."""
        start = round(self.start * 1_000_000) if self.start is not None else 0
        return (self.start is None, start, -(self.duration_ms or 0.0))

    def holds(self, record: Record) -> bool:
        """Whether ``record`` was logged by this request: the same span-id when both lines have
        one, else the same service and inside its time span."""
        span_id = self.record.data.get("span_id")
        if span_id and record.data.get("span_id"):
            return bool(record.data.get("span_id") == span_id)
        if self.start is None or self.end is None:
            return record is self.record
        if record.data.get("service") != self.record.data.get("service"):
            return False
        epoch = record.epoch
        return epoch is not None and self.start <= epoch <= self.end

    def contains(self, other: _Span) -> bool:
        """Whether ``other`` ran within this request's time (to the log's microsecond)."""
        if self.start is None or self.end is None or other.start is None or other.end is None:
            return False
        slack = 1e-6
        return self.start - slack <= other.start and other.end <= self.end + slack

    def call(self, errors: Sequence[Record], depth: int = 1) -> DownstreamCall:
        mine = _worst([r for r in errors if self.holds(r)])
        data = self.record.data
        return DownstreamCall(
            service=_str_or_none(data.get("service")),
            method=_str_or_none(data.get("method")),
            path=_str_or_none(data.get("path")),
            route=_str_or_none(data.get("route")),
            status=self.record.status,
            duration_ms=self.duration_ms,
            internal_code=mine.internal_code if mine is not None else None,
            span_id=_str_or_none(data.get("span_id")),
            depth=depth,
        )


def _depths(requests: Sequence[_Span]) -> list[int]:
    """Each request's depth in the call tree, the requests in start order: a request's caller
    is the latest-started earlier one whose time span holds it (0 for the outermost).

    The IDs on the wire cannot say it: the caller's hook sends a new span-id per call, which no
    line records. Time nesting can, as long as the services' clocks agree to within the calls'
    own durations."""
    depths: list[int] = []
    open_spans: list[tuple[_Span, int]] = []
    for index, span in enumerate(requests):
        while open_spans and not open_spans[-1][0].contains(span):
            open_spans.pop()
        # A request that no other one holds is told as a call of the outermost.
        depth = (open_spans[-1][1] + 1 if open_spans else 1) if index else 0
        depths.append(depth)
        open_spans.append((span, depth))
    return depths


def _worst(records: Sequence[Record]) -> Record | None:
    """The first of the most severe records (None for none)."""
    return max(records, key=lambda r: level_rank(r.level)) if records else None


def _own(head: Record | None, records: Sequence[Record], key: str) -> Any:
    """``key`` from the outermost access line, else from the first record that has it."""
    if head is not None:
        value = head.data.get(key)
        if value is not None and value != "":
            return value
    return _first(records, key)


def build_trace(records: Iterable[Record], correlation_id: str) -> Trace:
    """The summary and time-ordered records of ``correlation_id``.

    One pass over the records picks the access lines, the error lines, the worst level and the
    sources; everything else is read from those few records.
    """
    mine = order_records(
        r
        for r in records
        if r.data.get("correlation_id") == correlation_id
        or r.data.get("trace_id") == correlation_id
    )
    if not mine:
        raise ValueError(f"no record has correlation_id or trace_id {correlation_id!r}")
    access: list[Record] = []
    errors: list[Record] = []
    jobs: dict[tuple[str, object], list[Record]] = {}
    sources: dict[str, None] = {}
    worst, worst_rank = mine[0], -1
    levels = _LEVELS
    with_exception: list[int] = []
    for index, record in enumerate(mine):
        data = record.data
        level = data.get("level")
        rank = levels.get(level) if level.__class__ is str else None
        if rank is None:
            rank = level_rank(record.level)
        if rank > worst_rank:
            worst, worst_rank = record, rank
        if data.get("message") == ACCESS_MESSAGE and record.status is not None:
            access.append(record)
        source = record.source
        if source and source not in sources:
            sources[source] = None
        failed = "exception" in data and record.exception is not None
        if failed:
            with_exception.append(index)
        job = data.get("job")
        if job.__class__ is str and job:
            # A background job's line: it tells the job's story, not the request's.
            jobs.setdefault((job, data.get("job_id")), []).append(record)
        elif failed or ("internal_code" in data and record.internal_code is not None):
            errors.append(record)
    requests = sorted((_Span.of(record) for record in access), key=_Span.order)
    depths = _depths(requests)
    outer = requests[0] if requests else None
    inner = requests[1:]
    # What the inner requests logged describes them, not the request the client made.
    own_errors = [r for r in errors if not any(span.holds(r) for span in inner)]
    scope: Iterable[Record] = mine
    if inner or jobs:  # lazily: the first record with the key usually comes early
        scope = (
            r for r in mine if "job" not in r.data and not any(span.holds(r) for span in inner)
        )
    error_rec = _worst(own_errors or errors)
    exc = error_rec.exception if error_rec is not None else None
    internal_msg = None
    if error_rec is not None:
        internal_msg = error_rec.data.get("internal_message") or error_rec.message or None
    head = outer.record if outer is not None else None
    summary = TraceSummary(
        correlation_id=correlation_id,
        first_ts=mine[0].ts,
        last_ts=mine[-1].ts,
        lines=len(mine),
        sources=tuple(sources),
        service=_str_or_none(_own(head, mine, "service")),
        method=_str_or_none(_own(head, mine, "method")),
        path=_str_or_none(_own(head, mine, "path")),
        route=_str_or_none(_own(head, mine, "route")),
        status=head.status if head is not None else None,
        duration_ms=outer.duration_ms if outer is not None else None,
        worst_level=worst.level,
        internal_code=error_rec.internal_code if error_rec is not None else None,
        http_code=error_rec.http_code if error_rec is not None else None,
        external_message=_str_or_none(_first(scope, "external_message")),
        internal_message=_str_or_none(internal_msg),
        exception_type=_str_or_none(exc.get("type")) if exc else None,
        exception_value=_str_or_none(exc.get("value")) if exc else None,
        calls=tuple(
            span.call(errors, depth) for span, depth in zip(inner, depths[1:], strict=True)
        ),
        trace_id=_str_or_none(_own(head, mine, "trace_id")),
        span_id=_str_or_none(_own(head, mine, "span_id")),
        request_ids=_request_ids(mine, correlation_id),
        jobs=_jobs(
            jobs,
            outer.end if outer is not None else None,
            _str_or_none(head.data.get("service")) if head is not None else None,
        ),
    )
    return Trace(summary, tuple(mine), mine[0].epoch, tuple(with_exception))


def _jobs(
    runs: dict[tuple[str, object], list[Record]], since: float | None, service: str | None
) -> tuple[JobOutcome, ...]:
    """One outcome per job ID, in the order the jobs started.

    A worker may pick a job up before the request has written its access line: a job in another
    service never counts as running "during the request" (its delay is at least 0)."""
    outcomes: list[tuple[float, JobOutcome]] = []
    for (job, job_id), records in runs.items():
        ends = [r for r in records if r.data.get("message") == JOB_FINISHED]
        last = ends[-1] if ends else None
        start = records[0].epoch
        if ends and ends[0].epoch is not None:
            took = _num(ends[0].data.get("duration_ms"))
            start = ends[0].epoch - (took or 0.0) / 1000
        failed = [r for r in records if r.internal_code is not None or r.exception is not None]
        error = _worst(failed) if last is not None and last.data.get("state") == "failure" else None
        exc = error.exception if error is not None else None
        state = last.data.get("state") if last is not None else None
        where = _str_or_none(_first(records, "service"))
        delay = start - since if start is not None and since is not None else None
        if delay is not None and delay < 0 and where != service:
            delay = 0.0
        outcome = JobOutcome(
            job=job,
            job_id=_str_or_none(job_id),
            service=where,
            state=_str_or_none(state),
            executions=len(ends),
            retries=as_int(last.data.get("retries")) if last is not None else None,
            delay_s=delay,
            duration_ms=_num(last.data.get("duration_ms")) if last is not None else None,
            internal_code=error.internal_code if error is not None else None,
            external_message=_str_or_none(error.data.get("external_message")) if error else None,
            internal_message=_str_or_none(error.message) if error is not None else None,
            exception_type=_str_or_none(exc.get("type")) if exc else None,
        )
        outcomes.append((start if start is not None else float("inf"), outcome))
    return tuple(outcome for _, outcome in sorted(outcomes, key=lambda pair: pair[0]))


def _request_ids(records: Sequence[Record], wanted: str) -> tuple[str, ...]:
    """The lines' correlation IDs, when the ID asked for is not (only) one of them."""
    ids = dict.fromkeys(r.correlation_id for r in records if r.correlation_id)
    if list(ids) == [wanted] or not ids:
        return ()
    return tuple(i for i in ids if i is not None)[:20]


def _str_or_none(value: object) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


# -------------------------------------------------------------------------------- errors top

#: Distinct messages/routes remembered per group; later new values are not tracked (bounded).
_MAX_DISTINCT = 256


_Columns = tuple[int | None, str | None, str | None, str | None, int | None]
#: Distinct pending combinations per group before they are settled into the counters.
_MAX_PENDING = 4096


@dataclass(slots=True)
class _GroupState:
    count: int = 0
    first: tuple[str, float] = ("", float("inf"))
    last: tuple[str, float, str | None] = ("", float("-inf"), None)
    statuses: Counter[int] = field(default_factory=Counter)
    external: Counter[str] = field(default_factory=Counter)
    internal: Counter[str] = field(default_factory=Counter)
    routes: Counter[str] = field(default_factory=Counter)
    exceptions: Counter[str] = field(default_factory=Counter)
    codes: Counter[int] = field(default_factory=Counter)
    times: list[float] = field(default_factory=list)
    #: (status, external, route, exception, code) → count, not yet in the counters: one dict
    #: update per error line instead of five bounded counter updates. (The internal message,
    #: often different on every line, is counted directly.)
    pending: dict[_Columns, int] = field(default_factory=dict)

    def settle(self) -> None:
        """Move the pending combinations into their counters, in the order they first came
        (so the bound keeps the same values as counting line by line would)."""
        for (status, external, route, exception, code), n in self.pending.items():
            _count(self.statuses, status, n)
            _count(self.external, external, n)
            _count(self.routes, route, n)
            _count(self.exceptions, exception, n)
            _count(self.codes, code, n)
        self.pending.clear()

    def merge(self, other: _GroupState) -> None:
        self.settle()
        other.settle()
        self.count += other.count
        if other.first[1] < self.first[1]:
            self.first = other.first
        if other.last[1] > self.last[1]:
            self.last = other.last
        _merge_counts(self.statuses, other.statuses)
        _merge_counts(self.external, other.external)
        _merge_counts(self.internal, other.internal)
        _merge_counts(self.routes, other.routes)
        _merge_counts(self.exceptions, other.exceptions)
        _merge_counts(self.codes, other.codes)
        self.times.extend(other.times)


def _merge_counts(mine: Counter[Any], theirs: Counter[Any]) -> None:
    for key, count in theirs.items():
        if key in mine or len(mine) < _MAX_DISTINCT:
            mine[key] += count


def _route(data: dict[str, Any]) -> str | None:
    job = data.get("job")
    if isinstance(job, str) and job:
        return f"job:{job}"  # a background job's error: where a request's route would be
    target = data.get("route") or data.get("path")
    if not isinstance(target, str) or not target:
        return None
    method = data.get("method")
    return f"{method} {target}" if isinstance(method, str) and method else target


def _route_template(data: dict[str, Any]) -> str | None:
    job = data.get("job")
    if isinstance(job, str) and job:
        return f"job:{job}"
    target = data.get("route") or data.get("path")
    return target if isinstance(target, str) and target else None


def _exception_type(data: dict[str, Any]) -> str | None:
    exc = data.get("exception")
    if not isinstance(exc, dict):
        return None
    kind = exc.get("type")
    return kind if isinstance(kind, str) and kind else None


def _status(data: dict[str, Any]) -> int | None:
    code = as_int(data.get("http_code"))
    return code if code is not None else as_int(data.get("status"))


def _key_of(
    data: dict[str, Any], by: str, access: dict[str, Any] | None = None
) -> int | str | None:
    if by == "internal_code":
        return as_int(data.get("internal_code"))
    if by == "exception":
        return _exception_type(data)
    if by == "route":
        key = _route_template(data)
        return key if key is not None or access is None else _route_template(access)
    status = _status(data)
    return status if status is not None or access is None else _status(access)


def _count(counter: Counter[Any], value: object, n: int = 1) -> None:
    """``n`` more ``value`` (bounded: past _MAX_DISTINCT values, only known ones are counted)."""
    if value is not None and value != "" and (value in counter or len(counter) < _MAX_DISTINCT):
        counter[value] += n


_ERROR_LEVELS = frozenset({"ERROR", "CRITICAL"})


def route_of(record: Record) -> str | None:
    """``"POST /orders/{order_id}"`` from a record's method and route template (or raw path)."""
    return _route(record.data)


def route_template_of(record: Record) -> str | None:
    """The route template (``/orders/{order_id}``), or the raw path when no route matched."""
    return _route_template(record.data)


def exception_of(record: Record) -> str | None:
    return _exception_type(record.data)


def status_of(record: Record) -> int | None:
    return _status(record.data)


@dataclass(frozen=True, slots=True)
class ErrorGroup:
    """One row of ``errors top``: ``key`` is the grouped value (None: records without it)."""

    key: int | str | None
    count: int
    share: float
    http_codes: tuple[tuple[int, int], ...]
    external_message: str | None
    internal_message: str | None
    routes: tuple[tuple[str, int], ...]
    exceptions: tuple[tuple[str, int], ...]
    internal_codes: tuple[tuple[int, int], ...]
    first_seen: str
    last_seen: str
    trend: tuple[int, ...]
    sample_correlation_id: str | None

    def to_json(self, by: str) -> dict[str, Any]:
        """The ``--json`` object: the group field first, then ``count`` and the other columns."""
        field_name = GROUP_FIELDS[by]
        out: dict[str, Any] = {field_name: self.key, "count": self.count}
        out["share"] = round(self.share, 4)
        out["http_code"] = self.http_codes[0][0] if self.http_codes else None
        if by != "internal_code":
            out["internal_code"] = self.internal_codes[0][0] if self.internal_codes else None
        out["external_message"] = self.external_message
        out["internal_message"] = self.internal_message
        if by != "exception":
            out["exception"] = self.exceptions[0][0] if self.exceptions else None
        out["routes"] = dict(self.routes)
        out["first_seen"] = self.first_seen
        out["last_seen"] = self.last_seen
        out["trend"] = list(self.trend)
        out["sample_correlation_id"] = self.sample_correlation_id
        return out


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """Every group (largest first) over a window; ``trend`` buckets split the window evenly."""

    by: str
    groups: tuple[ErrorGroup, ...]
    total: int
    window_start: str
    window_end: str
    bucket_seconds: float


class ErrorAccumulator:
    """Counts ERROR and CRITICAL records into groups; mergeable across processes (picklable).

    ``since``/``until`` (epoch seconds, inclusive/exclusive) drop records outside the window;
    records without a parseable ``ts`` are kept only when no window is given.
    """

    def __init__(self, by: str, *, since: float | None = None, until: float | None = None) -> None:
        if by not in GROUP_FIELDS:
            raise UsageError(
                f"unknown --by {by!r}", hint="use internal_code, route, exception or status"
            )
        self.by = by
        self.since = since
        self.until = until
        self.groups: dict[int | str | None, _GroupState] = {}

    def add(self, record: Record) -> bool:
        """Count ``record`` if it is an ERROR/CRITICAL record inside the window."""
        return self.add_fields(record.data, record.epoch)

    def add_fields(
        self, data: dict[str, Any], epoch: float | None, access: dict[str, Any] | None = None
    ) -> bool:
        """Count one record given as its schema-v1 fields (the fast path of file scans);
        ``access`` is its request's access line, where the route and status come from when the
        error line itself has none."""
        level = data.get("level")
        if level not in _ERROR_LEVELS and (not isinstance(level, str) or level_rank(level) < 40):
            return False
        if self.since is not None or self.until is not None:
            if epoch is None:
                return False
            if self.since is not None and epoch < self.since:
                return False
            if self.until is not None and epoch >= self.until:
                return False
        code = data.get("internal_code")
        if type(code) is not int:
            code = as_int(code)
        key = code if self.by == "internal_code" else _key_of(data, self.by, access)
        state = self.groups.get(key)
        if state is None:
            state = self.groups[key] = _GroupState()
        state.count += 1
        ts = data.get("ts")
        ts = ts if isinstance(ts, str) else ""
        cid = data.get("correlation_id")
        cid = cid if isinstance(cid, str) and cid else None
        if epoch is not None:
            state.times.append(epoch)
            if epoch < state.first[1]:
                state.first = (ts, epoch)
            if epoch >= state.last[1]:
                state.last = (ts, epoch, cid)
        elif state.last[2] is None:
            state.last = (ts, 0.0, cid)
        status = data.get("http_code")
        if type(status) is not int:
            status = _status(data)
            if status is None and access is not None:
                status = _status(access)
        route = _route(data)
        if route is None and access is not None:
            route = _route(access)
        internal = data.get("internal_message") or data.get("message")
        external = data.get("external_message")
        if external is not None and type(external) is not str:
            external = _compact(external)  # a list or object would not even be hashable
        if type(internal) is str and internal:
            _count(state.internal, internal[:500])
        columns = (status, external, route, _exception_type(data), code)
        pending = state.pending
        pending[columns] = pending.get(columns, 0) + 1
        if len(pending) > _MAX_PENDING:
            state.settle()
        return True

    def merge(self, other: ErrorAccumulator) -> None:
        for key, theirs in other.groups.items():
            mine = self.groups.get(key)
            if mine is None:
                self.groups[key] = theirs
            else:
                mine.merge(theirs)

    def report(self, *, now: float, buckets: int = 12) -> ErrorReport:
        """Groups sorted by count (then key); the trend covers ``since``..``until``/``now``, or
        the span of the data when no window was given."""
        for state in self.groups.values():
            state.settle()
        total = sum(s.count for s in self.groups.values())
        all_times = [t for s in self.groups.values() for t in (s.first[1], s.last[1])]
        finite = [t for t in all_times if t not in (float("inf"), float("-inf"))]
        start = self.since if self.since is not None else (min(finite) if finite else now)
        end = self.until if self.until is not None else (now if self.since is not None else None)
        if end is None:
            end = max(finite) if finite else now
        span = max(end - start, 1e-6)
        width = span / buckets
        groups = []
        for key, state in self.groups.items():
            trend = [0] * buckets
            for moment in state.times:
                index = int((moment - start) / width)
                trend[min(max(index, 0), buckets - 1)] += 1
            groups.append(
                ErrorGroup(
                    key=key,
                    count=state.count,
                    share=state.count / total if total else 0.0,
                    http_codes=tuple(state.statuses.most_common()),
                    external_message=_top(state.external),
                    internal_message=_top(state.internal),
                    routes=tuple(state.routes.most_common()),
                    exceptions=tuple(state.exceptions.most_common()),
                    internal_codes=tuple(state.codes.most_common()),
                    first_seen=state.first[0],
                    last_seen=state.last[0],
                    trend=tuple(trend),
                    sample_correlation_id=state.last[2],
                )
            )
        groups.sort(key=lambda g: (-g.count, g.key is None, str(g.key)))
        return ErrorReport(
            by=self.by,
            groups=tuple(groups),
            total=total,
            window_start=epoch_to_ts(start),
            window_end=epoch_to_ts(end),
            bucket_seconds=width,
        )


def _compact(value: object) -> str:
    return orjson.dumps(value, default=str).decode()


def _top(counter: Counter[str]) -> str | None:
    common = counter.most_common(1)
    return common[0][0] if common else None


# ---------------------------------------------------------------------------------------- tail


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """Which records ``tail`` shows: all given conditions must hold."""

    min_level: str | None = None
    code: int | None = None
    correlation_id: str | None = None
    grep: re.Pattern[str] | None = None
    since: float | None = None

    def needle(self) -> bytes | None:
        """A byte string every matching raw line must contain (a cheap pre-filter), if any."""
        if self.correlation_id:
            return self.correlation_id.encode()
        return None

    def __call__(self, record: Record) -> bool:
        if self.min_level is not None and level_rank(record.level) < level_rank(self.min_level):
            return False
        if self.code is not None and record.internal_code != self.code:
            return False
        if self.correlation_id is not None and not record.has_id(self.correlation_id):
            return False
        if self.since is not None:
            epoch = record.epoch
            if epoch is None or epoch < self.since:
                return False
        if self.grep is not None:
            exc = record.exception or {}
            haystack = " ".join(
                str(part) for part in (record.message, exc.get("type"), exc.get("value")) if part
            )
            if not self.grep.search(haystack):
                return False
        return True
