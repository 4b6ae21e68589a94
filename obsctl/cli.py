"""The ``obsctl`` command line: wiring only.

Each command parses its flags, calls the pure layers (parse → analyse → render) and prints.
``main`` is the one place where typed errors become exit codes and one-line stderr messages.
"""

from __future__ import annotations

import sys

import typer

from obsctl import __version__
from obsctl.commands_backends import loki_app, prom_app
from obsctl.errors import EXIT_USAGE, ObsctlError

app = typer.Typer(
    name="obsctl",
    help="Follow requests, rank errors and query Loki/Prometheus for services using foundation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"obsctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """obsctl: answers from your logs and metrics during an incident."""


app.add_typer(prom_app, name="prom")
app.add_typer(loki_app, name="loki")


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app and map typed errors to exit codes.

    Typer/click handle their own usage errors (exit 2) in standalone mode; everything obsctl
    raises on purpose is an ``ObsctlError`` and gets one line on stderr and its exit code.
    """
    try:
        app(args=argv, prog_name="obsctl")
    except ObsctlError as exc:
        sys.stderr.write(f"obsctl: {exc.one_line()}\n")
        return exc.exit_code
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
