"""Durations and points in time as people type them on the command line.

Durations: ``90s``, ``5m``, ``1h30m``, ``2d``, ``1w``, ``250ms`` (Prometheus/Loki units).
Times: ``now``, ``-15m`` (relative to now), Unix seconds (≤ 10 digits) or nanoseconds (longer),
float seconds, or RFC 3339 (``2026-11-26T02:11:52Z``; no zone means UTC).
Times are returned as integer Unix nanoseconds so that no float ever rounds a log timestamp.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from obsctl.errors import UsageError

NS_PER_S = 1_000_000_000
_UNITS_NS = {
    "ms": 1_000_000,
    "s": NS_PER_S,
    "m": 60 * NS_PER_S,
    "h": 3600 * NS_PER_S,
    "d": 86400 * NS_PER_S,
    "w": 7 * 86400 * NS_PER_S,
    "y": 365 * 86400 * NS_PER_S,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


def parse_duration_ns(text: str, *, flag: str = "duration") -> int:
    """``1h30m`` → nanoseconds; a bare number means seconds."""
    raw = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        value = int(float(raw) * NS_PER_S)
    else:
        pos, value = 0, 0
        for match in _DURATION.finditer(raw):
            if match.start() != pos:
                break
            value += int(match.group(1)) * _UNITS_NS[match.group(2)]
            pos = match.end()
        if pos != len(raw) or not raw:
            raise UsageError(
                f"invalid {flag} {text!r}", hint="use a duration such as 30s, 15m, 1h30m or 2d"
            )
    if value <= 0:
        raise UsageError(f"invalid {flag} {text!r}", hint="the duration must be positive")
    return value


def format_duration(ns: int) -> str:
    """Nanoseconds → the shortest exact PromQL/LogQL duration (``3600s`` → ``1h``)."""
    for unit in ("w", "d", "h", "m", "s", "ms"):
        size = _UNITS_NS[unit]
        if ns >= size and ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{max(ns // 1_000_000, 1)}ms"


def now_ns() -> int:
    return (datetime.now(tz=UTC) - _EPOCH) // timedelta(microseconds=1) * 1000


def parse_time_ns(text: str, *, now: int | None = None, flag: str = "time") -> int:
    """Parse a point in time (see the module docstring) into Unix nanoseconds."""
    raw = text.strip()
    current = now_ns() if now is None else now
    if raw == "now":
        return current
    if raw.startswith("-"):
        return current - parse_duration_ns(raw[1:], flag=flag)
    if raw.isdigit():
        return int(raw) * NS_PER_S if len(raw) <= 10 else int(raw)
    if re.fullmatch(r"\d+\.\d*", raw):
        whole, _, frac = raw.partition(".")
        return int(whole) * NS_PER_S + int((frac + "0" * 9)[:9])
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise UsageError(
            f"invalid {flag} {text!r}",
            hint="use now, -15m, Unix seconds or RFC 3339 such as 2026-11-26T02:11:52Z",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def ns_to_seconds_text(ns: int) -> str:
    """Unix nanoseconds → decimal seconds text, exact to the nanosecond (for API params)."""
    whole, frac = divmod(ns, NS_PER_S)
    return f"{whole}.{frac:09d}".rstrip("0").rstrip(".")
