"""The time inside a correlation ID (contract 6), and the time ranges a lookup searches.

* :func:`id_time` reads the Unix milliseconds of a UUIDv7 ID; :func:`trusted_id_time` adds the
  sanity checks (not before 2020, not in the future) and says why a time is not used.
* :class:`Span` is a closed range of epoch seconds with its text for messages.
* :func:`window_around` is where a lookup starts; :func:`extensions` says which parts still
  have to be searched so that a request still writing lines at an edge comes out whole;
  :func:`widening_steps` is how a lookup that found nothing widens (Loki).
* :func:`issued_text` is the summary's "issued 2026-11-20 11:43:22 UTC, 11 days ago".

Pure: no I/O, the current time is always passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "EARLIEST",
    "MARGIN_S",
    "Span",
    "ago_text",
    "extensions",
    "id_time",
    "issued_text",
    "trusted_id_time",
    "widening_steps",
    "window_around",
]

#: Around the ID's time and around the first and last line found, a lookup searches this far
#: (5 minutes): clock skew between the services that log one request, the issuing host's clock
#: against the writers', and work that logs after the response (background tasks) up to this
#: long after the request's previous line. A request whose lines come less than this far apart
#: is always found whole, however long it runs.
MARGIN_S = 300.0
#: IDs that claim a time before this are not trusted (no v7 ID of this project predates it).
EARLIEST = datetime(2020, 1, 1, tzinfo=UTC).timestamp()

_HEX = frozenset("0123456789abcdef")


def id_time(cid: str) -> float | None:
    """Epoch seconds in a UUIDv7 in 32 lower-case hex (RFC 9562 shape), else None."""
    # RFC 9562 shape in lower-case hex: version nibble 7 at 12, variant 10 (8, 9, a, b) at 16.
    if len(cid) != 32 or cid[12] != "7" or cid[16] not in "89ab" or not set(cid) <= _HEX:
        return None
    return int(cid[:12], 16) / 1000


def _prefix_span(prefix: str) -> Span | None:
    """The issue times a prefix (8+ characters) of a v7 ID can stand for: its first 12 hex
    digits are the milliseconds, so ``01a1f8c4`` is a 65-second range."""
    if not 8 <= len(prefix) <= 31 or not set(prefix) <= _HEX:
        return None
    if len(prefix) > 12 and prefix[12] != "7":
        return None
    if len(prefix) > 16 and prefix[16] not in "89ab":
        return None
    head = prefix[:12]
    shift = 4 * (12 - len(head))
    value = int(head, 16)
    return Span((value << shift) / 1000, (((value + 1) << shift) - 1) / 1000)


def trusted_id_time(cid: str, *, now: float) -> tuple[Span | None, str | None]:
    """When the request of ``cid`` was issued, as far as the ID tells and it can steer a lookup:

    * a full v7 ID: ``(its instant, None)``, or ``(None, why)`` when that time is before 2020
      or later than now plus the margin (a wrong clock: not trusted, and the user is told);
    * a prefix of 8 or more hex digits: the range of times it stands for when that range is
      plausible (a v4 prefix read this way almost never is: it is then an ID without a time);
    * anything else: ``(None, None)``.
    """
    moment = id_time(cid)
    if moment is not None:
        if moment < EARLIEST:
            return None, f"the time in the ID ({_utc(moment)}) is before 2020"
        if moment > now + MARGIN_S:
            return None, f"the time in the ID ({_utc(moment)}) is in the future"
        return Span(moment, moment), None
    span = _prefix_span(cid) if len(cid) < 32 else None
    if span is not None and span.start >= EARLIEST and span.end <= now + MARGIN_S:
        return span, None
    return None, None


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class Span:
    """``[start, end]`` in epoch seconds."""

    start: float
    end: float

    def text(self) -> str:
        """``2026-11-20 11:38:22 → 2026-11-20 11:48:22 UTC``."""
        b = datetime.fromtimestamp(self.end, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        if self.start == float("-inf"):
            return f"up to {b} UTC"
        a = datetime.fromtimestamp(self.start, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
        return f"{a} → {b} UTC"

    def overlaps(self, start: float | None, end: float | None) -> bool:
        """Whether ``[start, end]`` (None: unbounded on that side) meets this span."""
        return (start is None or start <= self.end) and (end is None or end >= self.start)

    def union(self, other: Span) -> Span:
        return Span(min(self.start, other.start), max(self.end, other.end))


def window_around(issued: Span, *, now: float | None = None) -> Span:
    """Where a lookup for an ID issued in ``issued`` starts (not later than ``now``): the
    margin before it, twice the margin after it, so that a request of a few minutes needs no
    extension (its last line plus the margin is still inside)."""
    end = issued.end + 2 * MARGIN_S
    if now is not None:
        end = min(end, max(now, issued.end))
    return Span(issued.start - MARGIN_S, end)


def extensions(searched: Span, times: Iterable[float], *, now: float | None = None) -> list[Span]:
    """The parts still to search so that ``MARGIN_S`` around the found lines' ``times`` is
    covered: empty when the request's lines stay clear of the searched span's edges."""
    found = list(times)
    if not found:
        return []
    want_start = min(found) - MARGIN_S
    want_end = max(found) + MARGIN_S
    if now is not None:
        want_end = min(want_end, max(now, searched.end))
    parts = []
    # Less than a second short of the margin is close enough (a v7 ID's time is cut to the
    # millisecond; a query or a file read for a few microseconds is not worth it).
    if want_start < searched.start - 1.0:
        parts.append(Span(want_start, searched.start))
    if want_end > searched.end + 1.0:
        parts.append(Span(searched.end, want_end))
    return parts


#: How far around the ID's time a Loki lookup that found nothing widens, step by step.
_WIDEN_S = (3600.0, 6 * 3600.0, 86400.0, 3 * 86400.0, 7 * 86400.0, 30 * 86400.0)


def widening_steps(moment: float, searched: Span, *, limit_s: float, now: float) -> list[Span]:
    """Spans, each wider than the last, centred on ``moment``, up to ``limit_s`` in total
    length, never later than ``now``. The last step is exactly the limit."""
    halves = [h for h in _WIDEN_S if 2 * h < limit_s] + [limit_s / 2]
    steps = []
    for half in halves:
        span = Span(moment - half, min(moment + half, now))
        if span.start < searched.start or span.end > searched.end:
            steps.append(span)
    return steps


def ago_text(seconds: float) -> str:
    """``11 days ago``, ``3 hours ago``, ``just now``, ``in 4 minutes`` (rounded down)."""
    future = seconds < 0
    value = abs(seconds)
    if value < 60:
        return "just now" if value < 10 else ("in a minute" if future else "under a minute ago")
    for size, unit in ((86400 * 365, "year"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if value >= size:
            count = int(value // size)
            words = f"{count} {unit}{'s' if count != 1 else ''}"
            return f"in {words}" if future else f"{words} ago"
    return "just now"  # pragma: no cover - the loop always returns for value >= 60


def issued_text(moment: float, *, now: float) -> str:
    """``2026-11-20 11:43:22 UTC, 11 days ago``."""
    return f"{_utc(moment)}, {ago_text(now - moment)}"
