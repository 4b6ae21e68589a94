"""Latency from access lines: exact percentiles per route and the slowest requests. Pure.

* :class:`LatencyAccumulator` — fed one access line at a time (:meth:`~LatencyAccumulator.add`)
  with its route, ``duration_ms``, status, ID and time; keeps every duration (8 bytes each, so
  percentiles are exact) and the ``limit`` slowest requests; mergeable across processes (a
  worker :meth:`~LatencyAccumulator.seal` s its durations into sorted runs first, so the sorting
  is done on every core and the parent only selects ranks across runs: :func:`ranked`).
* :meth:`LatencyAccumulator.report` — a :class:`LatencyReport`: per route the count, p50, p95,
  p99 and max by the **nearest-rank** method (:func:`nearest_rank`: the smallest duration with at
  least p % of the requests at or below it — always a duration that was logged, never an
  interpolation), routes slowest p99 first; then the slowest requests, slowest first.
"""

from __future__ import annotations

import heapq
import math
from array import array
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "PERCENTILES",
    "LatencyAccumulator",
    "LatencyReport",
    "RouteLatency",
    "SlowRequest",
    "nearest_rank",
    "ranked",
]

PERCENTILES = (50, 95, 99)


def nearest_rank(ordered: Sequence[float], percent: float) -> float:
    """The ``percent`` percentile of ascending ``ordered`` values by nearest rank."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


#: Above this many sorted runs of one route, they are merged and sorted instead of selected from.
_SELECT_MAX_RUNS = 16


def ranked(runs: Sequence[Sequence[float]], rank: int) -> float:
    """The ``rank``-th smallest value (1-based) of the union of ascending ``runs``: in each run,
    the first value with at least ``rank`` values at or below it over all runs (a binary
    search); the smallest of those is the answer."""
    if len(runs) == 1:
        return runs[0][rank - 1]
    best = math.inf
    for run in runs:
        lo, hi = 0, len(run)
        while lo < hi:
            mid = (lo + hi) // 2
            value = run[mid]
            if sum(bisect_right(other, value) for other in runs) >= rank:
                hi = mid
            else:
                lo = mid + 1
        if lo < len(run) and run[lo] < best:
            best = run[lo]
    return best


@dataclass(frozen=True, slots=True)
class SlowRequest:
    """One request among the slowest: enough to paste its ID into ``obsctl trace``."""

    duration_ms: float
    route: str
    status: int | None
    correlation_id: str | None
    ts: str

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "request",
            "correlation_id": self.correlation_id,
            "route": self.route,
            "status": self.status,
            "duration_ms": self.duration_ms,
            "ts": self.ts,
        }


@dataclass(frozen=True, slots=True)
class RouteLatency:
    route: str
    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "route",
            "route": self.route,
            "count": self.count,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
        }


@dataclass(frozen=True, slots=True)
class LatencyReport:
    routes: tuple[RouteLatency, ...]
    slowest: tuple[SlowRequest, ...]
    total: int


@dataclass
class LatencyAccumulator:
    """Durations per route and the ``limit`` slowest requests (picklable, mergeable).

    ``since``/``until`` (epoch seconds, inclusive/exclusive) drop requests outside the window
    (requests without a readable time too, when a window is given); ``route`` keeps only routes
    whose ``METHOD /template`` or template equals it.
    """

    limit: int = 10
    since: float | None = None
    until: float | None = None
    route: str | None = None
    durations: dict[str, array[float]] = field(default_factory=dict)
    #: Durations already sorted (:meth:`seal`), per route: runs of different processes.
    runs: dict[str, list[array[float]]] = field(default_factory=dict)
    # A min-heap of (duration, tie-breaker, request): its smallest is the first to drop.
    _slowest: list[tuple[float, int, SlowRequest]] = field(default_factory=list)
    _seen: int = 0

    def wants(self, epoch: float | None) -> bool:
        if self.since is None and self.until is None:
            return True
        if epoch is None:
            return False
        if self.since is not None and epoch < self.since:
            return False
        return self.until is None or epoch < self.until

    def slowest_floor(self) -> float:
        """A request must be slower than this to enter the slowest ``limit`` (-inf while there
        is room): scans test it inline and call :meth:`add` only then."""
        if self.limit <= 0:
            return math.inf
        return self._slowest[0][0] if len(self._slowest) >= self.limit else -math.inf

    def durations_of(self, route: str, template: str | None) -> array[float] | None:
        """The durations of ``route`` for a scan to append to, or None when ``--route`` leaves it
        out. Only for requests that :meth:`wants` and that are not slower than
        :meth:`slowest_floor` (those go through :meth:`add`)."""
        if self.route is not None and self.route not in (route, template):
            return None
        values = self.durations.get(route)
        if values is None:
            values = self.durations[route] = array("d")
        return values

    def add(
        self,
        *,
        route: str,
        template: str | None,
        duration_ms: float,
        status: int | None,
        correlation_id: str | None,
        ts: str,
    ) -> None:
        """Count one request (its time already checked with :meth:`wants`)."""
        if self.route is not None and self.route not in (route, template):
            return
        values = self.durations.get(route)
        if values is None:
            values = self.durations[route] = array("d")
        values.append(duration_ms)
        self._seen += 1
        if self.limit <= 0:
            return
        if len(self._slowest) < self.limit:
            request = SlowRequest(duration_ms, route, status, correlation_id, ts)
            heapq.heappush(self._slowest, (duration_ms, -self._seen, request))
        elif duration_ms > self._slowest[0][0]:
            request = SlowRequest(duration_ms, route, status, correlation_id, ts)
            heapq.heapreplace(self._slowest, (duration_ms, -self._seen, request))

    def seal(self) -> None:
        """Sort the durations into runs (in a worker, before the parent merges it)."""
        for route, values in self.durations.items():
            if values:
                self.runs.setdefault(route, []).append(array("d", sorted(values)))
        self.durations = {}

    def merge(self, other: LatencyAccumulator) -> None:
        for route, values in other.durations.items():
            mine = self.durations.get(route)
            if mine is None:
                self.durations[route] = values
            else:
                mine.extend(values)
        for route, runs in other.runs.items():
            self.runs.setdefault(route, []).extend(runs)
        for duration, _, request in other._slowest:
            self._seen += 1
            if len(self._slowest) < self.limit:
                heapq.heappush(self._slowest, (duration, -self._seen, request))
            elif duration > self._slowest[0][0]:
                heapq.heapreplace(self._slowest, (duration, -self._seen, request))

    def report(self) -> LatencyReport:
        rows = []
        for route in {**self.durations, **self.runs}:
            runs: list[Sequence[float]] = list(self.runs.get(route, ()))
            values = self.durations.get(route)
            if values:
                runs.append(sorted(values))
            if len(runs) > _SELECT_MAX_RUNS:
                merged: list[float] = []
                for run in runs:
                    merged.extend(run)
                merged.sort()
                runs = [merged]
            count = sum(len(run) for run in runs)
            if not count:
                continue
            p50, p95, p99 = (ranked(runs, max(1, math.ceil(p / 100 * count))) for p in PERCENTILES)
            longest = max(run[-1] for run in runs if run)
            rows.append(RouteLatency(route, count, p50, p95, p99, longest))
        rows.sort(key=lambda r: (-r.p99_ms, -r.count, r.route))
        slowest = sorted(
            (request for _, _, request in self._slowest),
            key=lambda r: (-r.duration_ms, r.ts, r.correlation_id or ""),
        )
        return LatencyReport(tuple(rows), tuple(slowest), sum(r.count for r in rows))
