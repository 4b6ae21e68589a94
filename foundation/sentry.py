"""Sentry, when the application uses it: foundation's errors as tagged events, no secret sent.

foundation never imports ``sentry_sdk``: it looks for it in ``sys.modules``, so an app without
it pays nothing and needs nothing. With ``sentry_sdk.init(...)`` in the app (before or after
``setup``; after keeps Sentry's Loguru handlers, which ``configure_logging`` would remove):

- the handlers report what they answer (``report``): unhandled exceptions and 5xx errors always;
  4xx errors (domain errors, validation, route misses) only with ``sentry_client_errors=True``,
  and then at level ``warning``. Each event is tagged ``internal_code``, ``http_code``,
  ``correlation_id``, ``trace_id`` (when the request has trace context) and ``route`` (the
  template, never the raw path), with the external message and the exception's context in a
  ``foundation`` context;
- Sentry's Loguru integration would turn each error line foundation logs into an event of its
  own (every 409 logged at ERROR would reach Sentry as an error): those are dropped, the
  handler's report replaces them;
- every event, foundation's or the application's, is scrubbed with the logging redaction rules
  (``log_redact``) before it leaves the process: a value under a sensitive name (frame
  variables, request headers, cookies and body, contexts, extras, breadcrumbs) becomes
  ``[REDACTED]``, and so does the value of ``name=value`` / ``name: value`` in any text (the
  internal message is the exception's value).

Dropping and scrubbing happen in a ``before_send`` hook placed after the application's own
(by an event processor registered once per process, so a client created later gets it too).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from loguru._logger import context as _loguru_context  # what logger.contextualize() binds

from foundation.correlation import get_correlation_id
from foundation.logging import DEFAULT_REDACT, REDACTED
from foundation.routing import UNMATCHED
from foundation.tracecontext import trace_ids

_HANDLERS_LOGGER = "foundation.handlers"
_MAX_DEPTH = 12


@dataclass(frozen=True, slots=True)
class SentryOptions:
    """How foundation reports to Sentry; stored on ``app.state.foundation_sentry``."""

    client_errors: bool = False
    redact: tuple[str, ...] = DEFAULT_REDACT


_DEFAULT = SentryOptions()


@dataclass(frozen=True, slots=True)
class _Scrubber:
    patterns: tuple[str, ...]
    inline: re.Pattern[str] | None

    @classmethod
    def build(cls, redact: Iterable[str]) -> _Scrubber:
        patterns = tuple(p.lower().replace("-", "_") for p in redact if p)
        if not patterns:
            return cls((), None)
        names = "|".join(re.escape(p).replace("_", "[_-]") for p in patterns)
        inline = re.compile(
            rf"(?i)(?P<key>[\w.\-]*(?:{names})[\w.\-]*[\"']?\s*[=:]\s*)"
            r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s,;&)}\]]+)"
        )
        return cls(patterns, inline)

    def sensitive(self, key: str) -> bool:
        folded = key.lower().replace("-", "_")
        return any(p in folded for p in self.patterns)

    def text(self, value: str) -> str:
        if self.inline is None:
            return value
        return self.inline.sub(lambda m: m.group("key") + REDACTED, value)

    def value(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if depth >= _MAX_DEPTH:
            return REDACTED
        if isinstance(value, Mapping):
            return {
                key: REDACTED
                if isinstance(key, str) and self.sensitive(key) and item not in (None, "")
                else self.value(item, depth + 1)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            if len(value) == 2 and isinstance(value[0], str) and self.sensitive(_unquote(value[0])):
                return [value[0], REDACTED]  # a (name, value) pair: raw ASGI headers, say
            return [self.value(item, depth + 1) for item in value]
        return value  # datetimes and the like: Sentry's serializer formats them


# Sentry's event processors are global to the process, like Loguru's configuration: the last
# ``install_sentry`` decides the redaction rules.
_state: dict[str, _Scrubber] = {"scrubber": _Scrubber.build(DEFAULT_REDACT)}
_registered: list[bool] = []


def install_sentry(
    app: Any, *, client_errors: bool = False, redact: Iterable[str] = DEFAULT_REDACT
) -> None:
    """Remember the options on ``app`` and, when Sentry is loaded, register the event processor."""
    options = SentryOptions(client_errors=client_errors, redact=tuple(redact))
    app.state.foundation_sentry = options
    _state["scrubber"] = _Scrubber.build(options.redact)
    _register()


def _unquote(name: str) -> str:
    return name[2:-1] if name[:2] in ("b'", 'b"') else name


def _register() -> None:
    sentry_sdk = sys.modules.get("sentry_sdk")
    if sentry_sdk is None:
        return
    if not _registered:
        sentry_sdk.scope.add_global_event_processor(_guard_client)
        _registered.append(True)
    _guard_client(None, None)


def _guard_client(event: Any, hint: Any) -> Any:
    """Event processor: make sure the current client's ``before_send`` hooks end with ours.

    Scrubbing cannot be an event processor itself: global processors run before the ones the
    integrations add per request (request headers, query string, body), and only
    ``before_send`` sees the event as it will be sent (serialized, after Sentry's own
    scrubber). The application's hooks run first; ours has the last word.
    """
    sentry_sdk = sys.modules.get("sentry_sdk")
    client = sentry_sdk.get_client() if sentry_sdk is not None else None
    options = getattr(client, "options", None)
    if isinstance(options, dict):
        for key, drop_log_events in (("before_send", True), ("before_send_transaction", False)):
            hook = options.get(key)
            if not getattr(hook, "foundation_guard", False):
                options[key] = _Guard(hook, drop_log_events=drop_log_events)
    return event


class _Guard:
    """A ``before_send`` hook: the application's, then dropping and scrubbing."""

    foundation_guard = True

    def __init__(self, inner: Any, *, drop_log_events: bool) -> None:
        self.inner = inner
        self.drop_log_events = drop_log_events

    def __call__(self, event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        if self.inner is not None:
            event = self.inner(event, hint)
            if event is None:
                return None
        if self.drop_log_events and event.get("logger") == _HANDLERS_LOGGER:
            return None  # a logging integration's copy of a handler's line: report() sent it
        cleaned: dict[str, Any] = _state["scrubber"].value(event)
        return cleaned


def report(
    app: Any,
    exc: BaseException,
    *,
    internal_code: int,
    http_code: int,
    scope: Mapping[str, Any] | None,
    external_message: str,
    context: Mapping[str, Any] | None = None,
) -> None:
    """Send ``exc`` to Sentry with foundation's tags, if Sentry is active and wants it."""
    sentry_sdk = sys.modules.get("sentry_sdk")
    if sentry_sdk is None:
        return
    state = getattr(app, "state", None)
    options = getattr(state, "foundation_sentry", None) if state is not None else None
    if not isinstance(options, SentryOptions):
        options = _DEFAULT
    # The options first: most errors are 4xx, and finding the client walks Sentry's scopes
    # (several µs in a request's task).
    if (http_code < 500 and not options.client_errors) or not sentry_sdk.get_client().is_active():
        return
    _register()
    with sentry_sdk.new_scope() as sentry_scope:
        sentry_scope.set_tag("internal_code", str(internal_code))
        sentry_scope.set_tag("http_code", str(http_code))
        cid = get_correlation_id()
        if cid:
            sentry_scope.set_tag("correlation_id", cid)
        trace_id = _trace_id()
        if trace_id:
            sentry_scope.set_tag("trace_id", trace_id)
        sentry_scope.set_tag("route", _route(scope))
        sentry_scope.set_context(
            "foundation",
            {"external_message": external_message, "context": dict(context or {})},
        )
        sentry_scope.set_level("error" if http_code >= 500 else "warning")
        sentry_sdk.capture_exception(exc)


def _route(scope: Mapping[str, Any] | None) -> str:
    # Not routing.route_template: that caches its answer in the scope, computed here (inside
    # mounts, before the request is done) it could be wrong for the access line and metrics.
    if scope is None:
        return UNMATCHED
    cached = scope.get("foundation.route_template")
    if isinstance(cached, str):
        return cached
    fastapi_scope = scope.get("fastapi")
    if isinstance(fastapi_scope, dict):
        path_format = getattr(fastapi_scope.get("effective_route_context"), "path_format", None)
        if isinstance(path_format, str) and path_format:
            return path_format
    path_format = getattr(scope.get("route"), "path_format", None)
    return path_format if isinstance(path_format, str) else UNMATCHED


def _trace_id() -> str | None:
    """The ``trace_id`` that a log line written now carries, if any.

    As on log lines: one bound with ``logger.contextualize(trace_id=...)`` wins, otherwise the
    request's W3C trace context (or the OpenTelemetry SDK's current span).
    """
    with suppress(LookupError, AttributeError):
        bound = _loguru_context.get().get("trace_id")
        if isinstance(bound, str) and bound:
            return bound
    ids = trace_ids()
    return ids[0] if ids is not None else None
