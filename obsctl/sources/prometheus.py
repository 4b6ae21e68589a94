"""Prometheus HTTP API client and its result model (vector, matrix, scalar, string).

Values stay as Prometheus wrote them (``raw``) next to their float (``NaN``, ``+Inf`` and
``-Inf`` parse to the IEEE values), so a table shows exactly what ``promtool`` shows and
``--json`` prints Prometheus' own result items untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from obsctl.errors import BackendMalformed, BackendRejected
from obsctl.sources.http import BackendHttp
from obsctl.timespec import ns_to_seconds_text


@dataclass(frozen=True, slots=True)
class Point:
    ts: float
    value: float
    raw: str


@dataclass(frozen=True, slots=True)
class Sample:
    metric: dict[str, str]
    point: Point


@dataclass(frozen=True, slots=True)
class Series:
    metric: dict[str, str]
    points: tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class PromResult:
    """One answer. ``items`` are the result items exactly as the server sent them."""

    result_type: str
    vector: tuple[Sample, ...] = ()
    matrix: tuple[Series, ...] = ()
    scalar: Point | None = None
    string: tuple[float, str] | None = None
    items: tuple[Any, ...] = ()
    warnings: tuple[str, ...] = ()


def prom_error_text(body: bytes) -> str:
    """The message of Prometheus' error envelope, or the body itself when it is not one."""
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", errors="replace")
    if isinstance(envelope, dict) and isinstance(envelope.get("error"), str):
        kind = envelope.get("errorType")
        return f"{kind}: {envelope['error']}" if isinstance(kind, str) else envelope["error"]
    return body.decode("utf-8", errors="replace")


def series_name(metric: dict[str, str]) -> str:
    """``up{instance="a", job="b"}`` — the notation promtool prints."""
    name = metric.get("__name__", "")
    labels = ", ".join(
        f'{k}="{_escape_label(v)}"' for k, v in sorted(metric.items()) if k != "__name__"
    )
    if labels or not name:
        return f"{name}{{{labels}}}"
    return name


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    """Render a computed float the way Prometheus writes sample values."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


class PromClient:
    """``/api/v1/query`` and ``/api/v1/query_range`` over a ``BackendHttp``."""

    def __init__(self, http: BackendHttp) -> None:
        self.http = http

    def query(self, expr: str, *, time_ns: int | None = None) -> PromResult:
        params: dict[str, str | int] = {"query": expr}
        if time_ns is not None:
            params["time"] = ns_to_seconds_text(time_ns)
        return self._result(self.http.get_json("api/v1/query", params))

    def query_range(self, expr: str, *, start_ns: int, end_ns: int, step_ns: int) -> PromResult:
        params: dict[str, str | int] = {
            "query": expr,
            "start": ns_to_seconds_text(start_ns),
            "end": ns_to_seconds_text(end_ns),
            "step": ns_to_seconds_text(step_ns),
        }
        return self._result(self.http.get_json("api/v1/query_range", params))

    def _result(self, envelope: Any) -> PromResult:
        url = str(self.http.client.base_url)
        if not isinstance(envelope, dict):
            raise _malformed(url, "the body is not a JSON object")
        if envelope.get("status") == "error":
            raise BackendRejected(
                f"Prometheus rejected the query: {envelope.get('errorType')}: "
                f"{envelope.get('error')}",
                hint="fix the expression or its parameters",
            )
        if envelope.get("status") != "success":
            raise _malformed(url, "no status in the envelope")
        warnings = envelope.get("warnings") or []
        if not isinstance(warnings, list):
            raise _malformed(url, "warnings is not a list")
        try:
            return parse_data(envelope["data"], tuple(str(w) for w in warnings))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise _malformed(url, f"unexpected result shape ({exc})") from exc


def _malformed(url: str, why: str) -> BackendMalformed:
    return BackendMalformed(
        f"malformed response from Prometheus at {url}: {why}",
        hint="check that the URL points at a Prometheus-compatible API",
    )


def _point(pair: list[Any]) -> Point:
    ts, raw = pair
    if not isinstance(raw, str):
        raise TypeError("sample value is not a string")
    return Point(ts=float(ts), value=float(raw), raw=raw)


def _labels(metric: Any) -> dict[str, str]:
    if not isinstance(metric, dict):
        raise TypeError("metric is not an object")
    return {str(k): str(v) for k, v in metric.items()}


def parse_data(data: dict[str, Any], warnings: tuple[str, ...] = ()) -> PromResult:
    """Parse a ``data`` object of the query APIs (Prometheus' and Loki's metric results)."""
    kind = data["resultType"]
    result = data["result"]
    if kind == "vector":
        vector = tuple(Sample(_labels(i["metric"]), _point(i["value"])) for i in result)
        return PromResult(kind, vector=vector, items=tuple(result), warnings=warnings)
    if kind == "matrix":
        matrix = tuple(
            Series(_labels(i["metric"]), tuple(_point(p) for p in i["values"])) for i in result
        )
        return PromResult(kind, matrix=matrix, items=tuple(result), warnings=warnings)
    if kind == "scalar":
        return PromResult(kind, scalar=_point(result), items=(result,), warnings=warnings)
    if kind == "string":
        ts, text = result
        return PromResult(kind, string=(float(ts), str(text)), items=(result,), warnings=warnings)
    raise ValueError(f"unknown resultType {kind!r}")


@dataclass(frozen=True, slots=True)
class RouteRow:
    route: str
    rate: float
    error_ratio: float
    p95_seconds: float


@dataclass(frozen=True, slots=True)
class ExceptionRow:
    internal_code: str
    exception: str
    count: float


@dataclass(frozen=True, slots=True)
class RoutesReport:
    routes: tuple[RouteRow, ...]
    exceptions: tuple[ExceptionRow, ...]
    warnings: tuple[str, ...]


def routes_queries(window: str) -> dict[str, str]:
    """PromQL over foundation's metric names (contract 3) for ``obsctl prom routes``."""
    return {
        "rate": f"sum by (route) (rate(http_requests_total[{window}]))",
        # `5..` matches both "503" and a "5xx" status class label.
        "errors": f'sum by (route) (rate(http_requests_total{{status=~"5.."}}[{window}]))',
        "p95": "histogram_quantile(0.95, sum by (route, le) "
        f"(rate(http_request_duration_seconds_bucket[{window}])))",
        "exceptions": "sum by (internal_code, exception) "
        f"(increase(app_exceptions_total[{window}]))",
    }


def routes_report(client: PromClient, *, window: str, time_ns: int | None) -> RoutesReport:
    """Request rate, 5xx ratio and p95 latency per route, and exceptions by internal_code."""
    queries = routes_queries(window)
    answers = {name: client.query(expr, time_ns=time_ns) for name, expr in queries.items()}
    by_route = {name: _by_label(answers[name], "route") for name in ("rate", "errors", "p95")}
    rows = []
    for route, rate in by_route["rate"].items():
        errors = by_route["errors"].get(route, 0.0)
        ratio = errors / rate if rate > 0 else (0.0 if errors == 0 else math.inf)
        if rate == 0 and errors == 0:
            ratio = math.nan
        rows.append(RouteRow(route, rate, ratio, by_route["p95"].get(route, math.nan)))
    rows.sort(key=lambda r: (-r.rate if math.isfinite(r.rate) else 0.0, r.route))
    exceptions = [
        ExceptionRow(
            s.metric.get("internal_code", ""), s.metric.get("exception", ""), s.point.value
        )
        for s in answers["exceptions"].vector
    ]
    exceptions.sort(key=lambda r: (-r.count if math.isfinite(r.count) else 0.0, r.internal_code))
    warnings: list[str] = []
    for answer in answers.values():
        warnings.extend(w for w in answer.warnings if w not in warnings)
    return RoutesReport(tuple(rows), tuple(exceptions), tuple(warnings))


def _by_label(result: PromResult, label: str) -> dict[str, float]:
    return {s.metric.get(label, ""): s.point.value for s in result.vector}
