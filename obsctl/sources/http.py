"""The one place where obsctl builds HTTP clients for Loki and Prometheus.

``BackendHttp`` wraps an ``httpx.Client`` configured from ``Settings`` (base URL, bearer or
basic auth, ``X-Scope-OrgID``, CA bundle / verify switch, connect and read timeouts) and adds
what httpx leaves to its callers:

* bounded retries with exponential backoff, only for connection failures and 502/503/504
  (a 400 is never retried: the same query fails the same way);
* a cap on the response size, enforced while streaming so an oversized body never sits in
  memory;
* translation of every failure into a typed error that names the URL and says what to do.

Tests hand in their own ``httpx.Client`` (a ``MockTransport`` or a loopback fake server).
"""

from __future__ import annotations

import random
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from obsctl.errors import BackendMalformed, BackendRejected, BackendUnreachable, UsageError
from obsctl.settings import Settings

DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024
DEFAULT_RETRIES = 2
RETRY_STATUSES = frozenset({502, 503, 504})
_BODY_EXCERPT = 200
# Control characters (C0, DEL, C1) and bidi overrides never reach the terminal raw.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times to retry after the first attempt, and the backoff between attempts."""

    retries: int = DEFAULT_RETRIES
    backoff: float = 0.25
    max_backoff: float = 2.0

    def delay(self, attempt: int) -> float:
        # Full jitter keeps several obsctl processes from retrying in lockstep.
        ceiling = min(self.max_backoff, self.backoff * (2.0**attempt))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def sanitize(text: str, limit: int = _BODY_EXCERPT) -> str:
    """One printable line: control and bidi characters escaped, cut at ``limit`` characters."""
    text = text.strip()
    cut = len(text) > limit
    text = text[:limit]
    text = _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text + "…" if cut else text


def _check_url(url: str, what: str) -> str:
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UsageError(
            f"invalid {what} URL {url!r}", hint="give a full URL such as http://127.0.0.1:3100"
        )
    return url.rstrip("/")


def build_client(settings: Settings, base_url: str, *, what: str = "backend") -> httpx.Client:
    """An ``httpx.Client`` with every connection setting obsctl supports."""
    base_url = _check_url(base_url, what)
    headers = {"User-Agent": "obsctl", "Accept": "application/json"}
    if settings.tenant:
        headers["X-Scope-OrgID"] = settings.tenant
    auth: httpx.Auth | None = None
    if settings.token and settings.username:
        raise UsageError(
            "both a bearer token and a username are set",
            hint="use --token or --username/--password, not both",
        )
    if settings.token:
        headers["Authorization"] = f"Bearer {settings.token}"
    elif settings.username:
        auth = httpx.BasicAuth(settings.username, settings.password or "")
    verify: bool | ssl.SSLContext = settings.verify
    if settings.verify and settings.ca_bundle:
        try:
            verify = ssl.create_default_context(cafile=settings.ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(
                f"cannot use CA bundle {settings.ca_bundle!r}: {exc}",
                hint="give a readable PEM file with --ca-bundle",
            ) from exc
    # Connect fails fast; a query may legitimately take up to the whole timeout to answer.
    timeout = httpx.Timeout(settings.timeout, connect=min(settings.timeout, 5.0))
    return httpx.Client(
        base_url=base_url,
        headers=headers,
        auth=auth,
        verify=verify,
        timeout=timeout,
        follow_redirects=True,
    )


class BackendHttp:
    """GET/POST returning decoded JSON, with retries, a size cap and typed errors.

    ``error_text`` extracts the server's own message from an error body (Prometheus puts it
    in a JSON envelope, Loki sends plain text); it receives the raw bytes.
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        name: str,
        max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        retry: RetryPolicy | None = None,
        error_text: Callable[[bytes], str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.name = name
        self.max_bytes = max_bytes
        self.retry = retry or RetryPolicy()
        self._error_text = error_text or _plain_error_text
        self._sleep = sleep

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> BackendHttp:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def get_json(self, path: str, params: Mapping[str, str | int]) -> Any:
        return self.request_json("GET", path, params)

    def request_json(self, method: str, path: str, params: Mapping[str, str | int]) -> Any:
        """Send, retry what is worth retrying, and return the decoded JSON body."""
        url = str(self.client.base_url.join(path))
        attempt = 0
        while True:
            try:
                status, content_type, body = self._send_once(method, path, params, url)
            except _Retryable as exc:
                if attempt >= self.retry.retries:
                    raise exc.final from exc.__cause__
                self._sleep(self.retry.delay(attempt))
                attempt += 1
                continue
            if status in RETRY_STATUSES and attempt < self.retry.retries:
                self._sleep(self.retry.delay(attempt))
                attempt += 1
                continue
            return self._decode(status, content_type, body, url, attempts=attempt + 1)

    def _send_once(
        self, method: str, path: str, params: Mapping[str, str | int], url: str
    ) -> tuple[int, str, bytes]:
        try:
            with self.client.stream(method, path, params=dict(params)) as response:
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > self.max_bytes:
                    raise self._too_large(url)
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise self._too_large(url)
                    chunks.append(chunk)
                return (
                    response.status_code,
                    response.headers.get("content-type", ""),
                    b"".join(chunks),
                )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _Retryable(
                BackendUnreachable(
                    f"{self.name} at {url} is unreachable: {_reason(exc)}",
                    hint=f"check the {self.name} URL and that the server is running",
                )
            ) from exc
        except httpx.ReadTimeout as exc:
            raise _Retryable(
                BackendUnreachable(
                    f"{self.name} at {url} did not answer within the timeout",
                    hint="raise --timeout or narrow the query (shorter range, more label matchers)",
                )
            ) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            # The connection broke after the request went out: what arrived is incomplete.
            raise BackendMalformed(
                f"malformed response from {self.name} at {url}: connection closed mid-response",
                hint="retry; if it persists, check the proxy or server logs",
            ) from exc
        except httpx.TransportError as exc:
            raise BackendUnreachable(
                f"{self.name} at {url} failed: {_reason(exc)}",
                hint=f"check the {self.name} URL, TLS settings and network",
            ) from exc

    def _too_large(self, url: str) -> BackendMalformed:
        mib = self.max_bytes / (1024 * 1024)
        return BackendMalformed(
            f"response from {self.name} at {url} exceeds the {mib:g} MiB cap",
            hint="narrow the query (shorter range, lower --limit) or raise OBSCTL_MAX_RESPONSE_MB",
        )

    def _decode(
        self, status: int, content_type: str, body: bytes, url: str, *, attempts: int
    ) -> Any:
        if status >= 400:
            raise self._status_error(status, body, url, attempts=attempts)
        stripped = body.lstrip()
        mime = content_type.split(";", 1)[0].strip().lower()
        if not stripped.startswith((b"{", b"[")):
            shown = mime or "no content type"
            raise BackendMalformed(
                f"unexpected non-JSON response ({shown}) from {self.name} at {url}",
                hint=f"check that the URL points at {self.name} itself, not a proxy or login page",
            )
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BackendMalformed(
                f"malformed response from {self.name} at {url}: invalid or truncated JSON",
                hint="retry; if it persists, check the proxy or server logs",
            ) from exc

    def _status_error(self, status: int, body: bytes, url: str, *, attempts: int) -> Exception:
        text = sanitize(self._error_text(body)) or "(empty body)"
        retried = f" after {attempts} attempts" if attempts > 1 else ""
        if status in (401, 403):
            return BackendRejected(
                f"{self.name} at {url} refused access (HTTP {status}): {text}",
                hint="check --token, --username/--password and --tenant (X-Scope-OrgID)",
            )
        if status == 429:
            return BackendUnreachable(
                f"{self.name} at {url} is overloaded (HTTP 429): {text}",
                hint="retry later or narrow the query",
            )
        if status >= 500:
            return BackendUnreachable(
                f"{self.name} at {url} failed (HTTP {status}{retried}): {text}",
                hint="retry later, or narrow the query if it timed out",
            )
        return BackendRejected(
            f"{self.name} rejected the query (HTTP {status}): {text}",
            hint="fix the query or its parameters",
        )


class _Retryable(Exception):
    """Internal: a failure worth another attempt; ``final`` is raised when attempts run out."""

    def __init__(self, final: BackendUnreachable) -> None:
        super().__init__(str(final))
        self.final = final


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return sanitize(text) if text else type(exc).__name__


def _plain_error_text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")
