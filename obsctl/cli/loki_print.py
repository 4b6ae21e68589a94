"""``obsctl loki query``'s output: entries printed as they arrive (the shell's side of
:mod:`obsctl.query.loki`, which only fetches)."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from obsctl.query.loki import entry_json, escape_for_terminal
from obsctl.readers.parse import parse_line
from obsctl.sources.loki import LogEntry
from obsctl.timespec import NS_PER_S

__all__ = ["print_entries"]


def _plain(entry: LogEntry) -> str:
    """A line that is not a log record: its Loki time, labels and text, escaped."""
    from datetime import UTC, datetime

    whole, frac = divmod(entry.ts, NS_PER_S)
    stamp = datetime.fromtimestamp(whole, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    labels = ",".join(f"{k}={v}" for k, v in sorted(entry.labels.items()))
    return escape_for_terminal(f"{stamp}.{frac:09d}Z {{{labels}}} {entry.line}")


def print_entries(entries: Iterable[LogEntry], *, json_out: bool) -> int:
    """Write entries to stdout as they arrive (one page in memory); return how many.

    Log records (foundation's JSON lines, Loguru's native shape) are printed by ``tail``'s
    printer; any other line as Loki time, labels and escaped text.
    """
    count = 0
    if json_out:
        buffer = sys.stdout.buffer
        for entry in entries:
            buffer.write(entry_json(entry) + b"\n")
            count += 1
        buffer.flush()
        return count
    from obsctl.cli.output import stdout_console
    from obsctl.render.logs import render_record

    console = stdout_console()
    for entry in entries:
        record = parse_line(entry.line.encode("utf-8"))
        if record is not None:
            console.print(render_record(record))
        else:
            console.out(_plain(entry), highlight=False)
        count += 1
    return count
