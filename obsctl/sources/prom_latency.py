"""``slow --prom-url``: latency per route from ``http_request_duration_seconds`` (contract 3) and
the exemplars of its slowest buckets, whose ``correlation_id`` leads to one request's logs.

Percentiles are Prometheus' own ``histogram_quantile`` (interpolated inside a bucket, so an
estimate, unlike the exact figures from access lines); "max" is the upper bound of the highest
bucket that counted a request in the window. Exemplars come from ``/api/v1/query_exemplars``
(Prometheus keeps them only with ``--enable-feature=exemplar-storage``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from obsctl.errors import BackendMalformed, BackendRejected
from obsctl.sources.prometheus import PromClient, PromResult
from obsctl.timespec import ns_to_seconds_text

__all__ = ["ExemplarRow", "PromLatency", "PromLatencyRow", "exemplars", "latency_report"]

METRIC = "http_request_duration_seconds"
#: Exemplar labels that name a request, most specific first.
ID_LABELS = ("correlation_id", "request_id", "trace_id", "traceID", "trace.id")


@dataclass(frozen=True, slots=True)
class PromLatencyRow:
    route: str
    count: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_le_ms: float  # the upper bound of the highest bucket with a request (+Inf possible)

    def to_json(self) -> dict[str, Any]:
        def number(value: float) -> float | None:
            return round(value, 3) if math.isfinite(value) else None

        return {
            "kind": "route",
            "route": self.route,
            "count": round(self.count, 3),
            "p50_ms": number(self.p50_ms),
            "p95_ms": number(self.p95_ms),
            "p99_ms": number(self.p99_ms),
            "max_le_ms": number(self.max_le_ms),
        }


@dataclass(frozen=True, slots=True)
class ExemplarRow:
    route: str
    le: str
    duration_ms: float
    correlation_id: str | None
    labels: dict[str, str]
    ts: float

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "exemplar",
            "route": self.route,
            "le": self.le,
            "duration_ms": round(self.duration_ms, 3),
            "correlation_id": self.correlation_id,
            "labels": self.labels,
            "ts": self.ts,
        }


@dataclass(frozen=True, slots=True)
class PromLatency:
    routes: tuple[PromLatencyRow, ...]
    warnings: tuple[str, ...]


def _route(labels: dict[str, str]) -> str:
    route = labels.get("route", "?")
    method = labels.get("method")
    return f"{method} {route}" if method else route


def _selector(route: str | None) -> str:
    if route is None:
        return ""
    # Either the template alone or "METHOD /template".
    method, _, template = route.partition(" ") if " " in route else ("", "", route)
    escaped = template.replace("\\", "\\\\").replace('"', '\\"')
    labels = [f'route="{escaped}"'] + ([f'method="{method}"'] if method else [])
    return "{" + ",".join(labels) + "}"


def _by_route(result: PromResult) -> dict[str, float]:
    return {_route(s.metric): s.point.value for s in result.vector}


def latency_report(
    client: PromClient, *, window_s: int, time_ns: int, route: str | None
) -> PromLatency:
    """Count, p50/p95/p99 and the top bucket per route over ``window_s`` before ``time_ns``."""
    window = f"{max(window_s, 1)}s"
    sel = _selector(route)
    rate = f"rate({METRIC}_bucket{sel}[{window}])"
    answers = {
        "count": client.query(
            f"sum by (method, route) (increase({METRIC}_count{sel}[{window}]))", time_ns=time_ns
        ),
        "buckets": client.query(
            f"sum by (method, route, le) (increase({METRIC}_bucket{sel}[{window}]))",
            time_ns=time_ns,
        ),
    }
    for q in (50, 95, 99):
        answers[f"p{q}"] = client.query(
            f"histogram_quantile({q / 100}, sum by (method, route, le) ({rate}))", time_ns=time_ns
        )
    counts = _by_route(answers["count"])
    quantiles = {name: _by_route(answers[name]) for name in ("p50", "p95", "p99")}
    top: dict[str, float] = {}
    cumulative: dict[str, list[tuple[float, float]]] = {}
    for sample in answers["buckets"].vector:
        le = sample.metric.get("le", "")
        try:
            bound = math.inf if le == "+Inf" else float(le)
        except ValueError:
            continue
        cumulative.setdefault(_route(sample.metric), []).append((bound, sample.point.value))
    for name, buckets in cumulative.items():
        buckets.sort()
        total = buckets[-1][1] if buckets else 0.0
        # The first bucket that already holds every request bounds the slowest one.
        top[name] = next((b for b, c in buckets if c >= total - 1e-9), math.inf)
    rows = [
        PromLatencyRow(
            name,
            count,
            quantiles["p50"].get(name, math.nan) * 1000,
            quantiles["p95"].get(name, math.nan) * 1000,
            quantiles["p99"].get(name, math.nan) * 1000,
            top.get(name, math.nan) * 1000,
        )
        for name, count in counts.items()
        if count > 0
    ]
    rows.sort(key=lambda r: (-(r.p99_ms if math.isfinite(r.p99_ms) else -1.0), r.route))
    warnings: list[str] = []
    for answer in answers.values():
        warnings.extend(w for w in answer.warnings if w not in warnings)
    return PromLatency(tuple(rows), tuple(warnings))


def exemplars(
    client: PromClient, *, start_ns: int, end_ns: int, route: str | None, limit: int
) -> tuple[ExemplarRow, ...]:
    """The ``limit`` slowest exemplars of the latency histogram in ``[start, end]``."""
    envelope = client.http.get_json(
        "api/v1/query_exemplars",
        {
            "query": f"{METRIC}_bucket{_selector(route)}",
            "start": ns_to_seconds_text(start_ns),
            "end": ns_to_seconds_text(end_ns),
        },
    )
    if isinstance(envelope, dict) and envelope.get("status") == "error":
        raise BackendRejected(
            f"Prometheus rejected the exemplar query: {envelope.get('errorType')}: "
            f"{envelope.get('error')}",
            hint="check the --route value",
        )
    data = envelope.get("data") if isinstance(envelope, dict) else None
    if not isinstance(data, list):
        raise BackendMalformed(
            f"malformed exemplars from Prometheus at {client.http.client.base_url}",
            hint="check that the URL points at a Prometheus-compatible API",
        )
    rows: list[ExemplarRow] = []
    for series in data:
        if not isinstance(series, dict):
            continue
        labels = series.get("seriesLabels") or {}
        for item in series.get("exemplars") or []:
            if not isinstance(item, dict):
                continue
            exemplar_labels = {str(k): str(v) for k, v in (item.get("labels") or {}).items()}
            try:
                seconds = float(item["value"])
                ts = float(item["timestamp"])
            except (KeyError, TypeError, ValueError):
                continue
            cid = next((exemplar_labels[k] for k in ID_LABELS if k in exemplar_labels), None)
            rows.append(
                ExemplarRow(
                    _route(labels),
                    str(labels.get("le", "")),
                    seconds * 1000,
                    cid,
                    exemplar_labels,
                    ts,
                )
            )
    rows.sort(key=lambda r: (-r.duration_ms, -r.ts))
    return tuple(rows[:limit])
