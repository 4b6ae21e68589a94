"""The ``obsctl`` console script: a fast lane for the incident commands, typer for the rest.

``obsctl trace ID``, ``obsctl errors top``, ``obsctl slow`` and ``obsctl tail`` are run mid-incident
files and must answer in about the time ``grep`` takes; importing typer costs ~40 ms and its
parameter coercion (pydantic) ~100 ms more, more than the whole scan of a large file. So this
module reads exactly the flags those commands declare in :mod:`obsctl.cli.app` and calls the same
command bodies. Anything it does not recognise — ``--help``, an unknown flag, a bad value, a
Loki URL in the environment (whose handling belongs to the typer commands) — goes to
:func:`obsctl.cli.app.main`, which remains the reference for parsing, help and error messages.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

__all__ = ["fast_command", "main"]

# Flags of each fast command: name → (destination, takes a value). Mirrors obsctl.cli.app.
_TRACE = {
    "--json": ("json_out", False),
    "--follow": ("follow", False),
    "-f": ("follow", False),
    "--since": ("since", True),
    "--until": ("until", True),
    "--all": ("everything", False),
}
_ERRORS = {
    "--json": ("json_out", False),
    "--by": ("by", True),
    "--since": ("since", True),
    "--until": ("until", True),
    "--limit": ("limit", True),
}
_TAIL = {
    "--json": ("json_out", False),
    "--follow": ("follow", False),
    "-f": ("follow", False),
    "--lines": ("lines", True),
    "-n": ("lines", True),
    "--level": ("level", True),
    "--code": ("code", True),
    "--id": ("correlation_id", True),
    "--grep": ("grep", True),
    "--since": ("since", True),
}
_SLOW = {
    "--json": ("json_out", False),
    "--since": ("since", True),
    "--until": ("until", True),
    "--route": ("route", True),
    "--limit": ("limit", True),
}
_GROUPS = ("internal_code", "route", "exception", "status")


def _split(
    args: Sequence[str], spec: dict[str, tuple[str, bool]]
) -> tuple[list[str], dict[str, str | bool]] | None:
    """Positionals and options, or None when anything is not plainly one of ``spec``'s flags."""
    positionals: list[str] = []
    options: dict[str, str | bool] = {}
    items = list(args)
    index = 0
    only_positionals = False
    while index < len(items):
        item = items[index]
        index += 1
        if only_positionals or item == "-" or not item.startswith("-"):
            positionals.append(item)
            continue
        if item == "--":
            only_positionals = True
            continue
        name, has_inline, inline = item.partition("=")
        known = spec.get(name)
        if known is None:
            return None
        dest, takes_value = known
        if not takes_value:
            if has_inline or dest in options:
                return None
            options[dest] = True
            continue
        if has_inline:
            value = inline
        elif index < len(items):
            value = items[index]
            index += 1
        else:
            return None
        if dest in options:
            return None
        options[dest] = value
    return positionals, options


def _int(value: str | bool | None, *, minimum: int | None = None) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    if minimum is not None and number < minimum:
        return None
    return number


def _str(value: str | bool | None) -> str | None:
    return value if isinstance(value, str) else None


def fast_command(argv: Sequence[str]) -> Callable[[], None] | None:
    """The command ``argv`` asks for, ready to run, or None to let typer handle it."""
    if not argv or "--help" in argv or "-h" in argv:
        return None
    head, rest = argv[0], argv[1:]
    if head == "trace":
        parsed = _split(rest, _TRACE)
        if parsed is None or not parsed[0]:
            return None
        (cid, *paths), opts = parsed
        from obsctl.cli import commands_files

        return lambda: commands_files.trace(
            cid,
            paths,
            json_out=bool(opts.get("json_out")),
            follow=bool(opts.get("follow")),
            since=_str(opts.get("since")),
            until=_str(opts.get("until")),
            everything=bool(opts.get("everything")),
        )
    if head == "errors" and rest[:1] == ["top"]:
        parsed = _split(rest[1:], _ERRORS)
        if parsed is None:
            return None
        paths, opts = parsed
        by = opts.get("by", "internal_code")
        limit = _int(opts.get("limit", "20"), minimum=1)
        if by not in _GROUPS or limit is None:
            return None
        from obsctl.cli import commands_files

        return lambda: commands_files.errors_top(
            paths,
            by=str(by),
            since=_str(opts.get("since")),
            until=_str(opts.get("until")),
            limit=limit,
            json_out=bool(opts.get("json_out")),
        )
    if head == "slow":
        parsed = _split(rest, _SLOW)
        if parsed is None:
            return None
        paths, opts = parsed
        slow_limit = _int(opts.get("limit", "10"), minimum=1)
        if slow_limit is None:
            return None
        from obsctl.cli import commands_slow
        from obsctl.settings import resolve

        return lambda: commands_slow.slow(
            paths,
            since=_str(opts.get("since")),
            until=_str(opts.get("until")),
            route=_str(opts.get("route")),
            limit=slow_limit,
            json_out=bool(opts.get("json_out")),
            settings=resolve(),
        )
    if head == "tail":
        parsed = _split(rest, _TAIL)
        if parsed is None:
            return None
        paths, opts = parsed
        lines = _int(opts.get("lines"), minimum=0)
        code = _int(opts.get("code"))
        if ("lines" in opts and lines is None) or ("code" in opts and code is None):
            return None
        from obsctl.cli import commands_files

        return lambda: commands_files.tail(
            paths,
            follow=bool(opts.get("follow")),
            lines=lines,
            level=_str(opts.get("level")),
            code=code,
            correlation_id=_str(opts.get("correlation_id")),
            grep=_str(opts.get("grep")),
            since=_str(opts.get("since")),
            json_out=bool(opts.get("json_out")),
        )
    return None


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point (exit codes as in :mod:`obsctl.errors`)."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:
        from obsctl import __version__

        sys.stdout.write(f"obsctl {__version__}\n")
        return 0
    command = None if os.environ.get("OBSCTL_LOKI_URL") else fast_command(args)
    if command is None:
        from obsctl.cli.app import main as typer_main

        return typer_main(args)
    from obsctl.errors import ObsctlError

    try:
        command()
    except ObsctlError as exc:
        sys.stderr.write(f"obsctl: {exc.one_line()}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `obsctl tail | head`: the reader has what it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 0


if __name__ == "__main__":
    sys.exit(main())
