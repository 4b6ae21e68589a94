"""Loki HTTP API client: exact paging of log queries, and metric queries.

Paging (``LokiClient.entries``). Loki answers at most ``max_entries_limit_per_query`` (5000 by
default) entries per request, merged across streams in ``direction`` order and cut globally.
logcli pages by moving ``start`` past the last timestamp it saw, which loses entries when
several streams share that nanosecond at a page boundary (or repeats them when it does not
move past it). obsctl moves the bound *onto* the last timestamp instead (``start`` is
inclusive; for ``backward`` the exclusive ``end`` becomes last + 1) and skips the entries it
already yielded at exactly that timestamp, identified by (timestamp, stream labels, line):
Loki itself deduplicates identical entries, so that triple is unique in a result. Nothing is
lost, nothing is repeated, whatever order the server gives equal timestamps.

Timestamps stay integers (nanoseconds) from the JSON string to the caller.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from obsctl.errors import BackendMalformed, BackendRejected
from obsctl.sources.http import BackendHttp
from obsctl.sources.prometheus import PromResult, parse_data

LOKI_MAX_ENTRIES = 5000
_CAP = re.compile(
    r"max entries limit per query exceeded, limit > max_entries_limit\S* \(\d+ > (\d+)\)"
)


@dataclass(slots=True)
class LogEntry:
    """One Loki entry (not frozen: creating a frozen dataclass per line costs twice as much)."""

    ts: int
    labels: dict[str, str]
    line: str

    def key(self) -> tuple[int, tuple[tuple[str, str], ...], str]:
        return (self.ts, tuple(sorted(self.labels.items())), self.line)


@dataclass(slots=True)
class PagingReport:
    """Filled in while ``entries`` runs: what the caller must tell the user afterwards."""

    pages: int = 0
    entries: int = 0
    truncated: bool = False
    warnings: list[str] = field(default_factory=list)


def loki_error_text(body: bytes) -> str:
    """Loki errors are plain text, sometimes under a lying JSON content type."""
    return body.decode("utf-8", errors="replace")


class LokiClient:
    def __init__(self, http: BackendHttp, *, page_size: int = LOKI_MAX_ENTRIES) -> None:
        if page_size <= 0:
            raise ValueError("page_size must be positive")
        self.http = http
        self.page_size = page_size
        # The most the server accepts per request; learnt from its 400 when lower.
        self.max_limit = max(page_size, LOKI_MAX_ENTRIES)

    @property
    def url(self) -> str:
        return str(self.http.client.base_url)

    def query_range_page(
        self, query: str, *, start_ns: int, end_ns: int, limit: int, direction: str
    ) -> tuple[list[LogEntry], list[str]]:
        """One ``query_range`` request for a log query: entries in ``direction`` order."""
        envelope = self.http.get_json(
            "loki/api/v1/query_range",
            {
                "query": query,
                "start": str(start_ns),
                "end": str(end_ns),
                "limit": limit,
                "direction": direction,
            },
        )
        data, warnings = self._data(envelope)
        if data.get("resultType") != "streams":
            raise BackendRejected(
                f"Loki answered a {data.get('resultType')} result, not log lines",
                hint="use a log query here (no count_over_time/rate); metric queries go to "
                "obsctl errors top or Grafana",
            )
        try:
            entries = [
                LogEntry(int(value[0]), labels, value[1])
                for stream in data["result"]
                for labels in (_labels(stream["stream"]),)
                for value in stream["values"]
            ]
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise self._malformed(f"unexpected stream shape ({exc})") from exc
        if not set(map(type, map(_entry_line, entries))) <= {str}:
            raise self._malformed("a log line is not a string")
        # Streams come grouped per label set; the global order is by time in `direction`.
        entries.sort(key=_entry_ts, reverse=direction == "backward")
        return entries, warnings

    def entries(
        self,
        query: str,
        *,
        start_ns: int,
        end_ns: int,
        limit: int | None,
        direction: str = "forward",
        report: PagingReport | None = None,
    ) -> Iterator[LogEntry]:
        """Every entry of ``query`` in [start, end), in ``direction`` order, up to ``limit``.

        Memory holds one page at a time. ``report.truncated`` is set when more entries existed
        beyond ``limit``.
        """
        report = report if report is not None else PagingReport()
        direction = direction.lower()
        if direction not in ("forward", "backward"):
            raise ValueError(f"invalid direction {direction!r}")
        remaining = limit
        boundary_ts: int | None = None
        seen: set[tuple[int, tuple[tuple[str, str], ...], str]] = set()
        lo, hi = start_ns, end_ns
        boost = 1
        while lo < hi:
            # Ask for one more than still wanted, so a cut result is known to be cut.
            want = min(self.page_size * boost, self.max_limit)
            if remaining is not None:
                want = min(want, remaining + 1 + len(seen))
            try:
                page, warnings = self.query_range_page(
                    query, start_ns=lo, end_ns=hi, limit=want, direction=direction
                )
            except BackendRejected as exc:
                # A server with a lower max_entries_limit_per_query: learn it, ask again.
                cap = _server_cap(str(exc))
                if cap is None or cap >= want:
                    raise
                self.max_limit = cap
                self.page_size = min(self.page_size, cap)
                continue
            report.pages += 1
            report.warnings.extend(w for w in warnings if w not in report.warnings)
            # The page is in `direction` order, so the entries at the boundary timestamp (the
            # only ones that can repeat the previous page) come first.
            head = 0
            while head < len(page) and page[head].ts == boundary_ts:
                head += 1
            fresh = [e for e in page[:head] if e.key() not in seen]
            fresh += page[head:]
            if remaining is not None:
                if len(fresh) > remaining:
                    report.entries += remaining
                    report.truncated = True
                    yield from fresh[:remaining]
                    return
                remaining -= len(fresh)
            report.entries += len(fresh)
            yield from fresh
            if len(page) < want:
                return
            last = page[-1].ts
            if not fresh:
                # A whole page inside one nanosecond, all seen: ask for a bigger page.
                if want < self.max_limit:
                    boost *= 2
                    continue
                raise BackendRejected(
                    f"more than {want} entries share the timestamp {last} ns; Loki cannot page "
                    "inside one nanosecond",
                    hint="add label matchers or a line filter so fewer entries match",
                )
            boost = 1
            at_last = {e.key() for e in page if e.ts == last}
            seen = seen | at_last if last == boundary_ts else at_last
            boundary_ts = last
            if direction == "forward":
                lo = last
            else:
                hi = last + 1

    def metric_instant(self, query: str, *, time_ns: int) -> PromResult:
        envelope = self.http.get_json("loki/api/v1/query", {"query": query, "time": str(time_ns)})
        data, warnings = self._data(envelope)
        try:
            return parse_data(data, tuple(warnings))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise self._malformed(f"unexpected metric result ({exc})") from exc

    def metric_range(self, query: str, *, start_ns: int, end_ns: int, step_ms: int) -> PromResult:
        envelope = self.http.get_json(
            "loki/api/v1/query_range",
            {
                "query": query,
                "start": str(start_ns),
                "end": str(end_ns),
                "step": f"{step_ms}ms",
            },
        )
        data, warnings = self._data(envelope)
        try:
            return parse_data(data, tuple(warnings))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise self._malformed(f"unexpected metric result ({exc})") from exc

    def _data(self, envelope: Any) -> tuple[dict[str, Any], list[str]]:
        if not isinstance(envelope, dict) or envelope.get("status") != "success":
            raise self._malformed("no success envelope")
        data = envelope.get("data")
        if not isinstance(data, dict):
            raise self._malformed("data is not an object")
        warnings = envelope.get("warnings") or []
        if not isinstance(warnings, list):
            raise self._malformed("warnings is not a list")
        return data, [str(w) for w in warnings]

    def _malformed(self, why: str) -> BackendMalformed:
        return BackendMalformed(
            f"malformed response from Loki at {self.url}: {why}",
            hint="check that the URL points at Loki's HTTP API",
        )


_entry_ts = attrgetter("ts")
_entry_line = attrgetter("line")


def _server_cap(message: str) -> int | None:
    match = _CAP.search(message)
    return int(match.group(1)) if match and int(match.group(1)) > 0 else None


def _labels(stream: Any) -> dict[str, str]:
    if not isinstance(stream, dict):
        raise TypeError("stream labels are not an object")
    return {str(k): str(v) for k, v in stream.items()}
