"""Who may look: the token, sessions, the sign-in rate limit and the response headers.

- Scripts send ``Authorization: Bearer TOKEN``; a person signs in once at ``POST /login`` (form
  field ``token``, and optionally ``name`` for the audit line) and gets a session cookie:
  HttpOnly, SameSite=Strict, Secure when the page was served over https, 12 hours.
- Tokens are compared with :func:`hmac.compare_digest` on their SHA-256 digests (constant time,
  whatever the lengths). Sessions are random 256-bit values kept in memory (at most
  ``MAX_SESSIONS``; a restart signs everyone out), never derived from the token.
- Failed sign-ins (form or bearer) are counted per client address: after ``MAX_FAILURES`` in
  ``FAILURE_WINDOW`` seconds that address gets 429 until the window has passed.
- :class:`SecurityHeaders` stamps every response: a strict Content-Security-Policy (no inline
  script or style, nothing from elsewhere, no framing), nosniff, no referrer, and
  ``Cache-Control: no-store`` so no shared cache keeps an answer about a customer's request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["COOKIE", "Gate", "SecurityHeaders", "Session"]

COOKIE = "obsctl_session"
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 10_000
MAX_FAILURES = 5
FAILURE_WINDOW = 300.0
MAX_TRACKED_CLIENTS = 10_000

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_NO_STORE = (b"cache-control", b"no-store")
_STATIC_CACHE = (b"cache-control", b"private, max-age=3600")


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    expires: float


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class Gate:
    """The token check, the session store and the failure counter of one server."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("a token is required")
        self._token = _digest(token)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def token_ok(self, candidate: str | None) -> bool:
        """Constant-time comparison of a presented token with the server's."""
        if candidate is None:
            return False
        return hmac.compare_digest(_digest(candidate), self._token)

    # -- sessions -------------------------------------------------------------------------------

    def open_session(self, user: str) -> str:
        key = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[key] = Session(user, time.monotonic() + SESSION_SECONDS)
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return key

    def session(self, key: str | None) -> Session | None:
        if not key:
            return None
        with self._lock:
            found = self._sessions.get(key)
            if found is None:
                return None
            if found.expires <= time.monotonic():
                del self._sessions[key]
                return None
            return found

    def close_session(self, key: str | None) -> None:
        if key:
            with self._lock:
                self._sessions.pop(key, None)

    # -- failed sign-ins ------------------------------------------------------------------------

    def blocked_for(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: it may now)."""
        now = time.monotonic()
        with self._lock:
            tries = self._failures.get(client)
            if tries is None:
                return 0.0
            while tries and tries[0] <= now - FAILURE_WINDOW:
                tries.popleft()
            if len(tries) < MAX_FAILURES:
                return 0.0
            return max(tries[0] + FAILURE_WINDOW - now, 1.0)

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            tries = self._failures.pop(client, None) or deque(maxlen=MAX_FAILURES)
            tries.append(now)
            self._failures[client] = tries  # most recent last: the oldest client goes first
            while len(self._failures) > MAX_TRACKED_CLIENTS:
                self._failures.popitem(last=False)


class SecurityHeaders:
    """Pure ASGI middleware: the same protective headers on every HTTP response."""

    def __init__(self, app: ASGIApp, *, static_prefix: str = "/static/") -> None:
        self.app = app
        self.static_prefix = static_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cache = _STATIC_CACHE if scope["path"].startswith(self.static_prefix) else _NO_STORE

        async def stamp(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {b"cache-control", *(name for name, _ in _HEADERS)}
                headers = [(k, v) for k, v in message.get("headers", []) if k not in names]
                message["headers"] = [*headers, *_HEADERS, cache]
            await send(message)

        await self.app(scope, receive, stamp)
