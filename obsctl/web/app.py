"""``obsctl serve``: the support desk's pages, a thin shell over the same core as the CLI.

    GET  /                  search box + the latest errors
    GET  /search?id=…       → 303 to /trace/{id} (or the search page again, saying what is wrong)
    GET  /trace/{id}        the plain-words summary, facts, timeline, tracebacks, ticket text
    GET  /errors            errors top, each row linking to a sample trace
    GET  /api/trace/{id}    the records as ``trace --json`` prints them, in one JSON array
    GET  /login, POST /login, POST /logout
    GET  /static/…          the stylesheet and the one small script (copy to clipboard)

Records come from :mod:`obsctl.query.pick` and answers from :mod:`obsctl.analysis.analyse`,
exactly as for ``obsctl trace`` and ``obsctl errors top``; :mod:`obsctl.web.views` turns them into
escaped values and Jinja2 templates (autoescaping on) into HTML. Log paths and the Loki URL are
fixed when the server starts; a client chooses only an ID (validated here) and, on /errors, a
grouping and a window from fixed lists. Every lookup writes one audit line (who, which ID, what
was found) and runs through :class:`obsctl.web.work.Lookups` (bounded threads and time).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, quote

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape

from obsctl.analysis import analyse
from obsctl.analysis.analyse import ErrorReport, Trace
from obsctl.analysis.idtime import trusted_id_time
from obsctl.errors import BackendError, ObsctlError, UsageError
from obsctl.query import pick
from obsctl.readers.parse import Record
from obsctl.settings import Settings
from obsctl.sources.files import Damage, expand_paths
from obsctl.web import views
from obsctl.web.guard import COOKIE, SESSION_SECONDS, Gate, SecurityHeaders
from obsctl.web.work import Busy, Lookups, TooSlow

__all__ = ["Audit", "ServeConfig", "create_app"]

#: What a client may send as an ID: the forms foundation and other stacks write, nothing that
#: looks like a path or markup. Longer than any real ID is refused before it reaches a scan.
_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.:-]{0,127}")
_MAX_FORM_BYTES = 4096
_ERRORS_TTL = 10.0
_BY = ("internal_code", "route", "exception", "status")
_WINDOWS = ("15m", "1h", "6h", "24h", "7d")


class Audit:
    """One JSON line per lookup to each stream: time, who, from where, which ID, the outcome."""

    def __init__(self, *streams: IO[bytes]) -> None:
        self._streams = streams
        self._lock = threading.Lock()

    def __call__(self, **fields: Any) -> None:
        line = orjson.dumps({"ts": datetime.now(UTC).isoformat(), "event": "lookup", **fields})
        with self._lock:
            for stream in self._streams:
                stream.write(line + b"\n")
                stream.flush()


@dataclass(frozen=True, slots=True)
class ServeConfig:
    settings: Settings
    paths: tuple[str, ...]
    token: str
    audit: Callable[..., None]
    lookup_timeout: float = 30.0
    threads: int = 2
    max_pending: int = 64


@dataclass(frozen=True, slots=True)
class _Found:
    ids: tuple[str, ...]
    trace: Trace | None
    notes: str
    searched: str
    now: float


@dataclass(slots=True)
class _ErrorsCache:
    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: dict[tuple[str, str], tuple[float, ErrorReport | None, str | None]] = field(
        default_factory=dict
    )


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _local_next(target: str | None) -> str:
    """Only a path on this server (never ``//host`` or a scheme) is a place to go back to."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


class _Site:
    """The routes' shared state: config, gate, lookups, templates, the errors cache."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.gate = Gate(config.token)
        self.lookups = Lookups(
            threads=config.threads, max_pending=config.max_pending, timeout=config.lookup_timeout
        )
        self.templates = Environment(
            loader=PackageLoader("obsctl.web", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.errors = _ErrorsCache()

    # -- who --------------------------------------------------------------------------------------

    def who(self, request: Request) -> str | Response:
        """The signed-in user, or the answer to give instead: 401 (sign in) or 429."""
        user = self._user(request)
        if user is None:
            return self.unauthorised(request)
        return user

    def _user(self, request: Request) -> str | Response | None:
        """The signed-in user; ``None`` when nobody is; a 429 response while rate limited."""
        client = _client(request)
        header = request.headers.get("authorization", "")
        if header:
            wait = self.gate.blocked_for(client)
            if wait:
                return self._too_many(request, wait)
            scheme, _, presented = header.partition(" ")
            if scheme.lower() == "bearer" and self.gate.token_ok(presented.strip()):
                return "bearer token"
            self.gate.failed(client)
            return None
        session = self.gate.session(request.cookies.get(COOKIE))
        return session.user if session else None

    def _too_many(self, request: Request, wait: float) -> Response:
        seconds = int(wait) + 1
        text = f"Too many failed sign-ins from this address; try again in {seconds} s."
        headers = {"Retry-After": str(seconds)}
        if request.url.path.startswith("/api/"):
            return _json({"error": text}, 429, headers)
        return self.page("login.html", request, status=429, error=text, headers=headers)

    def unauthorised(self, request: Request) -> Response:
        headers = {"WWW-Authenticate": 'Bearer realm="obsctl"'}
        if request.url.path.startswith("/api/"):
            return _json({"error": "sign in: send Authorization: Bearer TOKEN"}, 401, headers)
        return self.page("login.html", request, status=401, next=request.url.path, headers=headers)

    # -- pages ------------------------------------------------------------------------------------

    def page(
        self,
        name: str,
        request: Request,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **values: Any,
    ) -> HTMLResponse:
        html = self.templates.get_template(name).render(
            signed_in=values.pop("user", None), path=request.url.path, **values
        )
        return HTMLResponse(html, status_code=status, headers=headers)

    def searched(self) -> str:
        """Which logs a lookup reads, in words (said when nothing matched)."""
        settings = self.config.settings
        if settings.loki_url:
            where = f"Loki at {settings.loki_url} ({settings.loki_selector})"
            return f"{where}, the last {settings.loki_since}"
        try:
            logs = expand_paths(list(self.config.paths), default_dir=settings.log_dir)
        except UsageError as exc:
            return exc.one_line()
        names = [log.path.rsplit("/", 1)[-1] for log in logs]
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        return f"{len(names)} log file{'s' if len(names) != 1 else ''} ({shown})"

    # -- work -------------------------------------------------------------------------------------

    def find(self, query: str) -> _Found:
        """The same lookup as ``obsctl trace ID``: where a v7 ID's time points, else everywhere
        (widening before it answers nothing), then the same analysis."""
        now = time.time()
        moment, why = trusted_id_time(query, now=now)
        bounds = pick.TraceBounds(now, moment)
        damage = Damage()
        lookup = pick.trace_records(
            self.config.settings, query, list(self.config.paths), damage, bounds=bounds
        )
        ids = tuple(analyse.resolve_id(lookup.records, query))
        trace = analyse.build_trace(lookup.records, ids[0]) if len(ids) == 1 else None
        notes = [why, *lookup.notes, damage.summary()]
        return _Found(ids, trace, "; ".join(n for n in notes if n), lookup.searched, now)

    def error_report(self, by: str, since: str) -> tuple[ErrorReport | None, str | None]:
        key = (by, since)
        with self.errors.lock:
            cached = self.errors.entries.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1], cached[2]
        now = time.time()
        damage = Damage()
        start = analyse.parse_time_bound(since, now=now, flag="since") if since else None
        report = pick.error_report(
            self.config.settings,
            list(self.config.paths),
            by=by,
            since=start,
            until=None,
            now=now,
            damage=damage,
        )
        result = (report if report.groups else None, damage.summary())
        with self.errors.lock:
            self.errors.entries[key] = (time.monotonic() + _ERRORS_TTL, *result)
        return result


def _json(value: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(value), status_code=status, headers=headers, media_type="application/json"
    )


def _records_json(records: Sequence[Record]) -> bytes:
    return b"[" + b",".join(record.json_bytes() for record in records) + b"]"


def _valid_id(text: str) -> str | None:
    value = analyse.normalise_id(text)
    if not _ID.fullmatch(value) or len(value) < analyse.MIN_PREFIX:
        return None
    return value


def create_app(config: ServeConfig) -> FastAPI:
    """The web application of ``obsctl serve`` (no OpenAPI pages: not an API for the public)."""
    site = _Site(config)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    static = Path(__file__).with_name("static")
    app.mount("/static", StaticFiles(directory=static), name="static")
    app.add_middleware(SecurityHeaders)
    app.router.on_shutdown.append(site.lookups.close)

    def secure(request: Request) -> bool:
        return request.url.scheme == "https"

    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "/") -> Response:
        return site.page("login.html", request, next=_local_next(next))

    @app.post("/login")
    async def login(request: Request) -> Response:
        client = _client(request)
        wait = site.gate.blocked_for(client)
        if wait:
            return site._too_many(request, wait)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_FORM_BYTES:
                return site.page("login.html", request, status=413, error="That form is too large.")
        form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
        token = (form.get("token") or [""])[0]
        name = (form.get("name") or [""])[0].strip()[:64]
        target = _local_next((form.get("next") or ["/"])[0])
        if not site.gate.token_ok(token):
            site.gate.failed(client)
            return site.page(
                "login.html", request, status=401, error="That token is not right.", next=target
            )
        key = site.gate.open_session(name or f"someone at {client}")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            key,
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="strict",
            secure=secure(request),
            path="/",
        )
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        site.gate.close_session(request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(
            COOKIE, httponly=True, samesite="strict", secure=secure(request), path="/"
        )
        return response

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> Response:
        user = site.who(request)
        if isinstance(user, Response):
            return user
        rows, note = await _errors(site, "internal_code", "", limit=10)
        return site.page("index.html", request, user=user, rows=rows, note=note)

    @app.get("/search")
    async def search(request: Request, id: str = "") -> Response:
        user = site.who(request)
        if isinstance(user, Response):
            return user
        query = _valid_id(id)
        if query is None:
            rows, note = await _errors(site, "internal_code", "", limit=10)
            return site.page(
                "index.html",
                request,
                status=400,
                user=user,
                rows=rows,
                note=note,
                error="Give a request ID: the full ID, its first 8 or more characters, or the "
                "UUID form (letters, digits, '-', '_', '.', ':' only).",
            )
        return RedirectResponse(f"/trace/{quote(query, safe='')}", status_code=303)

    @app.get("/trace/{raw_id}", response_class=HTMLResponse)
    async def trace_page(request: Request, raw_id: str) -> Response:
        user = site.who(request)
        if isinstance(user, Response):
            return user
        query = _valid_id(raw_id)
        if query is None:
            return site.page(
                "message.html",
                request,
                status=400,
                user=user,
                title="Not a request ID",
                text="A request ID is made of letters, digits, '-', '_', '.' and ':', and has "
                "at least 8 characters. Paste the ID the customer reported.",
            )
        outcome = await _lookup(site, request, user, query)
        if isinstance(outcome, Response):
            return outcome
        if outcome.trace is None:
            return _unfound_page(site, request, user, query, outcome)
        page = views.trace_page(outcome.trace, now=outcome.now)
        return site.page("trace.html", request, user=user, t=page, damage=outcome.notes)

    @app.get("/api/trace/{raw_id}")
    async def trace_json(request: Request, raw_id: str) -> Response:
        user = site.who(request)
        if isinstance(user, Response):
            return user
        query = _valid_id(raw_id)
        if query is None:
            return _json({"error": "not a request ID"}, 400)
        outcome = await _lookup(site, request, user, query, api=True)
        if isinstance(outcome, Response):
            return outcome
        if outcome.trace is None and outcome.ids:
            return _json(
                {
                    "error": f"ID prefix {query!r} matches {len(outcome.ids)} requests",
                    "candidates": list(outcome.ids[:50]),
                },
                409,
            )
        if outcome.trace is None:
            told = f"no log line has correlation ID {query!r} {outcome.searched}".rstrip()
            return _json({"error": told, "logs": site.searched()}, 404)
        return Response(_records_json(outcome.trace.records), media_type="application/json")

    @app.get("/errors", response_class=HTMLResponse)
    async def errors_page(request: Request, by: str = "internal_code", since: str = "") -> Response:
        user = site.who(request)
        if isinstance(user, Response):
            return user
        by = by if by in _BY else "internal_code"
        since = since if since in _WINDOWS else ""
        rows, note = await _errors(site, by, since, limit=None)
        return site.page(
            "errors.html",
            request,
            user=user,
            rows=rows,
            note=note,
            by=by,
            since=since,
            choices=_BY,
            windows=_WINDOWS,
        )

    return app


async def _lookup(
    site: _Site, request: Request, user: str, query: str, *, api: bool = False
) -> _Found | Response:
    """Run one lookup within the limits and write its audit line; a Response when it failed."""
    started = time.perf_counter()
    outcome = "error"
    try:
        found = await site.lookups.run(("trace", query), lambda: site.find(query))
        outcome = "found" if found.trace else ("ambiguous" if found.ids else "not found")
        return found
    except Busy:
        outcome = "busy"
        return _failure(
            site, request, api, 503, "Too many lookups are running; try again in a moment."
        )
    except TooSlow:
        outcome = "timeout"
        return _failure(
            site,
            request,
            api,
            504,
            f"The lookup took longer than {site.config.lookup_timeout:g} s and was given up.",
        )
    except BackendError as exc:
        return _failure(site, request, api, 502, exc.one_line())
    except ObsctlError as exc:
        return _failure(site, request, api, 503, exc.one_line())
    finally:
        site.config.audit(
            user=user,
            client=_client(request),
            id=query,
            outcome=outcome,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )


def _failure(site: _Site, request: Request, api: bool, status: int, text: str) -> Response:
    if api:
        return _json({"error": text}, status)
    title = {502: "The log backend did not answer", 504: "Too slow"}.get(status, "Not now")
    return site.page("message.html", request, status=status, title=title, text=text)


def _unfound_page(site: _Site, request: Request, user: str, query: str, found: _Found) -> Response:
    if found.ids:
        return site.page(
            "candidates.html",
            request,
            user=user,
            query=query,
            candidates=found.ids[:50],
            more=max(len(found.ids) - 50, 0),
        )
    return site.page(
        "message.html",
        request,
        status=404,
        user=user,
        title="No record of this request",
        text=f"No log line has the ID {query} {found.searched}".rstrip() + ".",
        searched=site.searched(),
    )


async def _errors(
    site: _Site, by: str, since: str, *, limit: int | None
) -> tuple[tuple[views.ErrorRow, ...], str]:
    """The error rows (and a note: the window, or why there are none) for / and /errors."""
    try:
        report, damage = await site.lookups.run(
            ("errors", by, since), lambda: site.error_report(by, since)
        )
    except Busy:
        return (), "Too many lookups are running; the error list will be back in a moment."
    except TooSlow:
        return (), "Counting the errors took too long."
    except ObsctlError as exc:
        return (), exc.one_line()
    if report is None:
        window = f" in the last {since}" if since else ""
        return (), f"No ERROR or CRITICAL records{window}."
    note = (
        f"{report.total} errors, {report.window_start[:19].replace('T', ' ')} → "
        f"{report.window_end[:19].replace('T', ' ')} UTC"
    )
    if damage:
        note += f"; {damage}"
    return views.error_rows(report, limit=limit), note
