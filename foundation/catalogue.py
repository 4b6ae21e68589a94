"""The error catalogue: every registered exception with its code, status, public message, cause
and what to do about it.

For docs and support staff (a customer quotes ``code 30101``; the catalogue says what it means
and what to do next)::

    python -m foundation.catalogue --import examples.shop.app             # Markdown on stdout
    python -m foundation.catalogue --import myapp.errors --json errors.json --markdown errors.md

``--import`` loads the modules that define the application's exceptions (repeatable).
The cause is the first paragraph of the class's own docstring; what to do is its ``what_to_do``
attribute (inherited when the class does not set one). The OpenAPI document's error
descriptions use the same two texts (``foundation.exceptions.explain``), so client developers
and support staff read the same words.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from foundation.exceptions import AppException, explain, registered_exceptions


def catalogue_entries() -> list[dict[str, Any]]:
    """One entry per registered exception class, sorted by ``internal_code``."""
    entries = []
    for cls in registered_exceptions():
        cause, what_to_do = explain(cls)
        entries.append(
            {
                "internal_code": cls.internal_code,
                "http_code": cls.http_code,
                "external_message": cls.external_message,
                "exception": cls.__name__,
                "module": cls.__module__,
                "family": _family(cls),
                "log_level": cls.log_level,
                "description": inspect.getdoc(cls) or "",
                "cause": cause,
                "what_to_do": what_to_do,
            }
        )
    return entries


def _family(cls: type[AppException]) -> str:
    for base in cls.__mro__[1:]:
        if base.__module__ == "foundation.exceptions":
            return base.__name__
    return ""


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(entries: Sequence[dict[str, Any]]) -> str:
    """A summary table, then one section per code with its cause and what to do."""
    lines = [
        "# Error catalogue",
        "",
        "Every error response carries `code` and `correlation_id`; look the code up here, and "
        "run `obsctl trace <correlation_id>` for the details of one request.",
        "",
        "| code | HTTP | message sent to clients | exception |",
        "|---:|---:|---|---|",
    ]
    for entry in entries:
        lines.append(
            f"| [{entry['internal_code']}](#{entry['internal_code']}) | {entry['http_code']} "
            f"| {_cell(entry['external_message'])} | `{entry['exception']}` |"
        )
    for entry in entries:
        code, name = entry["internal_code"], entry["exception"]
        lines += [
            "",
            f'<a id="{code}"></a>',
            f"## {code} {name} (HTTP {entry['http_code']})",
            "",
            f"- **Message sent to clients**: {entry['external_message']}",
            f"- **Cause**: {entry['cause'] or '(not documented: the class has no docstring)'}",
            f"- **What to do**: {entry['what_to_do'] or '(not documented)'}",
            f"- **Raised as** `{entry['module']}.{name}`, logged at {entry['log_level']}",
        ]
    return "\n".join(lines) + "\n"


def to_json(entries: Sequence[dict[str, Any]]) -> bytes:
    return orjson.dumps(list(entries), option=orjson.OPT_INDENT_2) + b"\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m foundation.catalogue", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--import",
        dest="modules",
        action="append",
        default=[],
        metavar="MODULE",
        help="module defining exceptions",
    )
    parser.add_argument("--markdown", metavar="FILE", help="write the Markdown table to FILE")
    parser.add_argument("--json", metavar="FILE", help="write the JSON list to FILE")
    parser.add_argument(
        "--format",
        choices=("markdown", "json"),
        default="markdown",
        help="what to print on stdout when no file is given (default: markdown)",
    )
    args = parser.parse_args(argv)
    for module in args.modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # report the import failure in one line, not a traceback
            reason = f"{type(exc).__name__}: {exc}"
            print(f"catalogue: cannot import {module}: {reason}", file=sys.stderr)
            return 2
    entries = catalogue_entries()
    if args.markdown:
        Path(args.markdown).write_text(to_markdown(entries), encoding="utf-8")
    if args.json:
        Path(args.json).write_bytes(to_json(entries))
    if not args.markdown and not args.json:
        if args.format == "json":
            sys.stdout.buffer.write(to_json(entries))
        else:
            sys.stdout.write(to_markdown(entries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
