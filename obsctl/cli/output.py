"""Terminal plumbing for the file commands: consoles, progress bar, JSON lines, notices.

Colours only on a terminal and never with ``NO_COLOR`` (rich decides both); people's messages
go to stderr, one line each; ``--json`` writes bytes to stdout and nothing else there.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from obsctl.query.scan import Progress
from obsctl.sources.files import Damage

if TYPE_CHECKING:  # rich is imported only when something is rendered (start-up time)
    from rich.console import Console, RenderableType

__all__ = ["json_lines", "notice", "progress_bar", "report_damage", "show", "stdout_console"]

#: Scans reading more than this from a terminal get a progress bar on stderr.
PROGRESS_MIN_BYTES = 128 << 20


def stdout_console() -> Console:
    """The console for results: real width on a terminal, wide (unless COLUMNS says) in a pipe,
    so that IDs and messages are not cut for scripts and files."""
    from rich.console import Console

    probe = Console()
    width = None if probe.is_terminal else int(os.environ.get("COLUMNS") or 200)
    return Console(width=width, soft_wrap=False, highlight=False, emoji=False)


def show(renderable: RenderableType, console: Console | None = None) -> None:
    (console or stdout_console()).print(renderable)


def notice(text: str) -> None:
    """One line for people on stderr."""
    sys.stderr.write(f"obsctl: {text}\n")
    sys.stderr.flush()


def report_damage(damage: Damage) -> None:
    """The single stderr line that counts skipped or damaged input (if any)."""
    line = damage.summary()
    if line:
        notice(line)


def json_lines(lines: Iterable[bytes]) -> int:
    """Write JSON lines to stdout; a closed pipe (``| head``) ends quietly. Returns the count."""
    out = sys.stdout.buffer
    count = 0
    batch: list[bytes] = []
    try:
        # Written in batches: stdout may be unbuffered (python -u, PYTHONUNBUFFERED), and one
        # write per line is then one system call per line.
        for line in lines:
            batch.append(line)
            if len(batch) == _JSON_BATCH:
                out.write(b"\n".join(batch) + b"\n")
                count += len(batch)
                batch.clear()
        if batch:
            out.write(b"\n".join(batch) + b"\n")
            count += len(batch)
        out.flush()
    except BrokenPipeError:
        _silence_stdout()
    return count


_JSON_BATCH = 512


def _silence_stdout() -> None:
    # The reader went away: point stdout at /dev/null so the interpreter's final flush is quiet.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


@contextmanager
def progress_bar(total: int, what: str) -> Iterator[Progress | None]:
    """A transient progress bar on stderr for long scans, only when stderr is a terminal."""
    if total < PROGRESS_MIN_BYTES or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console

    console = Console(stderr=True)
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress(
        what, BarColumn(), DownloadColumn(), TimeRemainingColumn(), console=console, transient=True
    ) as bar:
        task = bar.add_task(what, total=total)

        def advance(done: int) -> None:
            bar.advance(task, done)

        yield advance
