"""Typed errors of obsctl and the exit codes they map to (contract 4 in DESIGN.md).

    ObsctlError                 exit 2 unless a subclass says otherwise
    ├── UsageError              2  bad flag value, bad setting, unreadable path
    ├── NothingMatched          1  the query ran and found nothing (like grep)
    └── BackendError            3  base for server trouble
        ├── BackendUnreachable  3  connection refused, DNS, TLS, timeout
        ├── BackendMalformed    3  a 200 whose body is not what the API promises
        └── BackendRejected     4  the server understood and refused (bad query, auth, limits)

One place, ``obsctl.cli.app.main``, turns these into exit codes and a one-line stderr message.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_NO_MATCH = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_REJECTED = 4


class ObsctlError(Exception):
    """Base class: ``str(exc)`` is the one line printed for people; ``hint`` says what to do."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def one_line(self) -> str:
        text = str(self)
        return f"{text} ({self.hint})" if self.hint else text


class UsageError(ObsctlError):
    exit_code = EXIT_USAGE


class NothingMatched(ObsctlError):
    exit_code = EXIT_NO_MATCH


class BackendError(ObsctlError):
    exit_code = EXIT_UNREACHABLE


class BackendUnreachable(BackendError):
    exit_code = EXIT_UNREACHABLE


class BackendMalformed(BackendError):
    exit_code = EXIT_UNREACHABLE


class BackendRejected(BackendError):
    exit_code = EXIT_REJECTED
