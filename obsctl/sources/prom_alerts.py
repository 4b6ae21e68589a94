"""``prom alerts``: the firing and pending alerts of ``/api/v1/alerts``, as the on-call reads them.

Each alert keeps its labels and annotations as the server sent them; ``severity``, ``summary``
and ``runbook`` (the obsctl command to run next, in foundation's rule files) are read out of
them. Alerts sort firing before pending, pages before tickets, then oldest first. Loki's ruler
and Mimir serve the same API under ``/prometheus``: point ``--prom-url`` there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from obsctl.errors import BackendMalformed, BackendRejected
from obsctl.sources.prometheus import PromClient

__all__ = ["Alert", "AlertsReport", "fetch_alerts", "parse_alerts"]

_STATE_ORDER = {"firing": 0, "pending": 1}
_SEVERITY_ORDER = {"critical": 0, "page": 0, "error": 1, "warning": 2, "ticket": 2, "info": 3}


@dataclass(frozen=True, slots=True)
class Alert:
    name: str
    state: str  # firing | pending (| inactive, which the API does not list)
    labels: dict[str, str]
    annotations: dict[str, str]
    active_at: float | None  # Unix seconds; None when the server sent no parsable time
    value: str
    raw: dict[str, Any]  # the item exactly as the server sent it (for --json)

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @property
    def summary(self) -> str:
        return self.annotations.get("summary", "") or self.annotations.get("description", "")

    @property
    def runbook(self) -> str:
        return self.annotations.get("runbook", "") or self.annotations.get("runbook_url", "")

    @property
    def other_labels(self) -> dict[str, str]:
        """The labels that say where: everything but the name and the severity."""
        return {k: v for k, v in self.labels.items() if k not in ("alertname", "severity")}

    def sort_key(self) -> tuple[int, int, float, str]:
        return (
            _STATE_ORDER.get(self.state, 2),
            _SEVERITY_ORDER.get(self.severity.lower(), 4),
            self.active_at if self.active_at is not None else float("inf"),
            self.name,
        )


@dataclass(frozen=True, slots=True)
class AlertsReport:
    alerts: tuple[Alert, ...]
    warnings: tuple[str, ...]

    @property
    def firing(self) -> int:
        return sum(1 for alert in self.alerts if alert.state == "firing")


def parse_time(text: Any) -> float | None:
    """``activeAt`` (RFC 3339, ``Z`` or an offset; digits past microseconds dropped) as Unix
    seconds, or None when it is not a time."""
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp()


def parse_alerts(data: Any) -> tuple[Alert, ...]:
    """The ``data`` object of ``/api/v1/alerts``: ``{"alerts": [...]}``."""
    if not isinstance(data, dict) or not isinstance(data.get("alerts"), list):
        raise TypeError("data has no alerts list")
    alerts: list[Alert] = []
    for item in data["alerts"]:
        if not isinstance(item, dict):
            raise TypeError("an alert is not an object")
        labels = item.get("labels") or {}
        annotations = item.get("annotations") or {}
        if not isinstance(labels, dict) or not isinstance(annotations, dict):
            raise TypeError("labels or annotations are not objects")
        labels = {str(k): str(v) for k, v in labels.items()}
        alerts.append(
            Alert(
                name=labels.get("alertname", ""),
                state=str(item.get("state", "")),
                labels=labels,
                annotations={str(k): str(v) for k, v in annotations.items()},
                active_at=parse_time(item.get("activeAt")),
                value=str(item.get("value", "")),
                raw=item,
            )
        )
    alerts.sort(key=Alert.sort_key)
    return tuple(alerts)


def fetch_alerts(client: PromClient) -> AlertsReport:
    """Firing and pending alerts from ``/api/v1/alerts``."""
    url = str(client.http.client.base_url)
    envelope = client.http.get_json("api/v1/alerts", {})
    if not isinstance(envelope, dict):
        raise _malformed(url, "the body is not a JSON object")
    if envelope.get("status") == "error":
        raise BackendRejected(
            f"Prometheus refused the alerts request: {envelope.get('errorType')}: "
            f"{envelope.get('error')}",
            hint="check --prom-url and the credentials",
        )
    if envelope.get("status") != "success":
        raise _malformed(url, "no status in the envelope")
    warnings = envelope.get("warnings") or []
    try:
        alerts = parse_alerts(envelope.get("data"))
    except TypeError as exc:
        raise _malformed(url, f"unexpected alerts shape ({exc})") from exc
    return AlertsReport(alerts, tuple(str(w) for w in warnings))


def _malformed(url: str, why: str) -> BackendMalformed:
    return BackendMalformed(
        f"malformed alerts from Prometheus at {url}: {why}",
        hint="point --prom-url at a Prometheus-compatible API (Loki's ruler, Mimir: …/prometheus)",
    )
