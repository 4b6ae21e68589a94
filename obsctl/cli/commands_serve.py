"""Body of ``obsctl serve``: check the settings, bind, print the URL, serve until Ctrl-C/SIGTERM.

The token comes only from ``OBSCTL_SERVE_TOKEN`` (a flag would show in ``ps``); without one the
server refuses to start. The socket is bound here, before the app starts, so the URL printed is
the real one (``--listen 127.0.0.1:0`` picks a free port) and a taken port is a usage error.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence

from obsctl.errors import UsageError
from obsctl.settings import Settings

__all__ = ["MIN_TOKEN_CHARS", "parse_listen", "serve"]

MIN_TOKEN_CHARS = 16


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) → (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise UsageError(f"invalid --listen {text!r}", hint="give HOST:PORT, e.g. 127.0.0.1:8080")
    host = host.removeprefix("[").removesuffix("]")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise UsageError(f"invalid port in --listen {text!r}", hint="give a port from 0 to 65535")
    return host, port


def _token(env: Mapping[str, str]) -> str:
    token = env.get("OBSCTL_SERVE_TOKEN", "")
    if not token:
        raise UsageError(
            "obsctl serve needs an access token",
            hint="set OBSCTL_SERVE_TOKEN to a long random value (e.g. `openssl rand -hex 24`) "
            "and give it to the people who may read these logs",
        )
    if len(token) < MIN_TOKEN_CHARS:
        raise UsageError(
            f"OBSCTL_SERVE_TOKEN is too short ({len(token)} characters)",
            hint=f"use at least {MIN_TOKEN_CHARS} random characters",
        )
    return token


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="choose another --listen address or port",
        ) from None
    sock.listen(128)
    return sock


def _quiet(sig: int, frame: object) -> None:
    """A signal handler that does nothing: uvicorn has already shut down when it is called."""


def serve(
    paths: Sequence[str],
    *,
    listen: str,
    settings: Settings,
    audit_log: str | None,
    lookup_timeout: float,
    env: Mapping[str, str] | None = None,
) -> None:
    """Serve the pages until interrupted."""
    import uvicorn

    from obsctl.sources.files import expand_paths
    from obsctl.web.app import Audit, ServeConfig, create_app

    env = os.environ if env is None else env
    token = _token(env)
    host, port = parse_listen(listen)
    if settings.loki_url and paths:
        raise UsageError("give log PATHs or --loki-url, not both")
    if not settings.loki_url:
        expand_paths(list(paths), default_dir=settings.log_dir)  # a missing path: say so now
    if lookup_timeout <= 0:
        raise UsageError("--lookup-timeout must be more than 0 seconds")
    streams = [sys.stderr.buffer]
    if audit_log:
        try:
            streams.append(open(audit_log, "ab"))  # noqa: SIM115 - open for the server's life
        except OSError as exc:
            raise UsageError(f"cannot open the audit log {audit_log!r}: {exc.strerror}") from None
    config = ServeConfig(
        settings=settings,
        paths=tuple(paths),
        token=token,
        audit=Audit(*streams),
        lookup_timeout=lookup_timeout,
    )
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    sys.stderr.write(f"obsctl serve: http://{shown}:{bound}/ (Ctrl-C to stop)\n")
    sys.stderr.flush()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            log_level="warning",
            access_log=False,
            lifespan="on",
            server_header=False,
        )
    )
    # uvicorn stops gracefully on SIGINT/SIGTERM, then re-sends the signal to the handler that
    # was there before it (the default one kills the process with -15). A quiet handler there
    # makes Ctrl-C and SIGTERM a clean stop with exit 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _quiet)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for stream in streams[1:]:
            stream.close()
    sys.stderr.write("obsctl serve: stopped\n")
