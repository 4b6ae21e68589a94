"""``foundation.setup(app, service=...)``: everything wired in the right order.

Each keyword option can also come from ``FOUNDATION_<OPTION>`` (an explicit argument wins).
Middleware order, outermost first: correlation ID and trace context → access line → metrics →
catch-all → FastAPI's exception middleware → routes, the middle three as one layer
(``foundation.observe.RequestObserver``: one wrapper per request instead of three). The
correlation ID and the request's span are therefore set before anything logs, and the access
line and metrics see the final status, the catch-all's 500 included. An OpenTelemetry FastAPI
instrumentation goes outside all of them when ``instrument_app`` is called after ``setup``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from foundation.correlation import DEFAULT_HEADER, StrictCorrelationIdMiddleware
from foundation.handlers import add_exception_handlers
from foundation.logging import DEFAULT_MAX_FIELD_CHARS, DEFAULT_REDACT, configure_logging
from foundation.metrics import HasTransactionObservers, install_metrics
from foundation.observe import RequestObserver
from foundation.openapi import document_errors
from foundation.sentry import install_sentry

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingError(ValueError):
    """A ``FOUNDATION_*`` variable has a value that cannot be used."""


@dataclass(frozen=True, slots=True)
class FoundationSettings:
    service: str
    log_dir: str | None = "var/log"
    log_level: str = "INFO"
    log_stdout: bool = True
    log_rotation: str | None = "100 MB"
    log_retention: str | None = "14 days"
    log_compression: str | None = "gz"
    log_per_process: bool | None = None
    log_redact: tuple[str, ...] = DEFAULT_REDACT
    log_max_field_chars: int = DEFAULT_MAX_FIELD_CHARS
    metrics: bool = True
    metrics_path: str = "/metrics"
    expose_error_codes: bool = True
    problem_json: bool = False
    request_id_header: str = DEFAULT_HEADER
    access_log: bool = True
    sentry_client_errors: bool = False


def _from_env(name: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool) or name in {"log_per_process"}:
        folded = raw.strip().lower()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
        raise SettingError(f"FOUNDATION_{name.upper()}={raw!r}: expected true or false")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise SettingError(f"FOUNDATION_{name.upper()}={raw!r}: expected an integer") from None
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if default is None or isinstance(default, str):
        return None if raw.strip().lower() in {"none", "off"} and name != "service" else raw
    return raw


# Options where an explicit ``None`` means "off" (no file, no rotation...) rather than "default".
_NULLABLE = {
    "log_dir": True,
    "log_rotation": True,
    "log_retention": True,
    "log_compression": True,
    "log_per_process": True,
}


def resolve_settings(
    service: str, options: Mapping[str, Any], env: Mapping[str, str] | None = None
) -> FoundationSettings:
    """Explicit options first, then ``FOUNDATION_<OPTION>`` variables, then the defaults."""
    env = os.environ if env is None else env
    defaults = FoundationSettings(service=service)
    values: dict[str, Any] = {"service": service}
    for name in FoundationSettings.__dataclass_fields__:
        if name == "service":
            continue
        if name in options and (options[name] is not None or _NULLABLE.get(name, False)):
            values[name] = options[name]
        elif (raw := env.get(f"FOUNDATION_{name.upper()}")) is not None:
            values[name] = _from_env(name, raw, getattr(defaults, name))
    unknown = set(options) - set(FoundationSettings.__dataclass_fields__)
    if unknown:
        raise TypeError(f"setup() got unknown option(s): {', '.join(sorted(unknown))}")
    return FoundationSettings(**values)


def configure_logging_from(
    settings: FoundationSettings, *, env: Mapping[str, str] | None = None
) -> None:
    """``configure_logging`` with the logging options of resolved settings (apps and workers)."""
    configure_logging(
        service=settings.service,
        log_dir=settings.log_dir,
        log_level=settings.log_level,
        log_stdout=settings.log_stdout,
        rotation=settings.log_rotation,
        retention=settings.log_retention,
        compression=settings.log_compression,
        per_process=settings.log_per_process,
        redact=settings.log_redact,
        max_field_chars=settings.log_max_field_chars,
        env=os.environ if env is None else env,
    )


def setup(
    app: FastAPI,
    *,
    service: str,
    env: Mapping[str, str] | None = None,
    database: HasTransactionObservers | None = None,
    metrics_registry: CollectorRegistry | None = None,
    **options: Any,
) -> FoundationSettings:
    """Give ``app`` correlation IDs, JSON logging, error handlers, access lines and metrics.

    Options (each also ``FOUNDATION_<NAME>``): ``log_dir`` (``var/log``; ``None`` for no file),
    ``log_level`` (``INFO``), ``log_stdout`` (on), ``log_rotation`` (``100 MB``),
    ``log_retention`` (``14 days``), ``log_compression`` (``gz``), ``log_per_process``
    (auto-detected), ``log_redact`` (names of extras to redact), ``log_max_field_chars``,
    ``metrics`` (on), ``metrics_path`` (``/metrics``), ``expose_error_codes`` (on),
    ``problem_json`` (off), ``request_id_header`` (``X-Request-ID``), ``access_log`` (on),
    ``sentry_client_errors`` (off: 4xx errors are not sent to Sentry, see ``foundation.sentry``).
    ``database`` (a ``Database``) gets a ``db_transaction_duration_seconds`` observer when
    metrics are on; ``metrics_registry`` replaces the fresh per-app ``CollectorRegistry``.
    """
    settings = resolve_settings(service, options, env)
    configure_logging_from(settings, env=env)
    # Innermost first: each add_middleware call wraps what is already there.
    add_exception_handlers(
        app,
        expose_codes=settings.expose_error_codes,
        problem_json=settings.problem_json,
        header_name=settings.request_id_header,
        catch_all=False,
    )
    document_errors(app, database=True if database is not None else None)
    install_sentry(app, client_errors=settings.sentry_client_errors, redact=settings.log_redact)
    metrics = None
    if settings.metrics:
        metrics = install_metrics(
            app,
            registry=metrics_registry,
            path=settings.metrics_path,
            database=database,
            middleware=False,
        )
    # The access line, the metrics and the catch-all in one layer, in that order of nesting.
    app.add_middleware(
        RequestObserver,
        access=settings.access_log,
        exclude_paths=(settings.metrics_path,),
        metrics=metrics,
        metrics_path=settings.metrics_path,
    )
    app.add_middleware(StrictCorrelationIdMiddleware, header_name=settings.request_id_header)
    app.state.foundation_settings = settings
    return settings
