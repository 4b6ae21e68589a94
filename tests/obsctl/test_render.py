"""obsctl.render.logs: log content is shown, never obeyed, even on a colour terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console, RenderableType

from obsctl.analysis.analyse import ErrorAccumulator, build_trace
from obsctl.readers.parse import parse_line
from obsctl.render.logs import escape, render_error_report, render_record, render_trace
from tests.obsctl.logdata import CID_A, access, app_error, line

HOSTILE = "a\x07b\x1b[2Jc\x1b]0;title\x07d\x9b31me\u202ef\u2066g\u2028h\x85i\x00j\rk"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[2J", "\\u001b[2J"),
        ("\x9b31m", "\\u009b31m"),
        ("\u202eevil", "\\u202eevil"),
        ("one\u2028two", "one\\u2028two"),
        ("bell\x07", "bell\\u0007"),
        ("tab\tnew\nline\r", "tab\\tnew\\nline\\r"),
        ("café ✓ 日本", "café ✓ 日本"),
    ],
)
def test_escape(raw: str, shown: str) -> None:
    assert escape(raw) == shown


def test_long_values_are_cut_with_a_marker() -> None:
    assert escape("x" * 3000) == "x" * 2000 + "… [1000 more chars]"


def _records() -> list[bytes]:
    return [
        line(1.0, "INFO", CID_A, HOSTILE, **{"k\x1b[1m": HOSTILE}),
        app_error(1.001, CID_A, 1, 500, HOSTILE, HOSTILE, HOSTILE, traceback=HOSTILE),
        access(1.002, CID_A, "GET", HOSTILE, HOSTILE, 500, 2.0),
    ]


def _on_colour_terminal(renderable: RenderableType) -> str:
    out = io.StringIO()
    Console(file=out, force_terminal=True, color_system="truecolor", width=120).print(renderable)
    return out.getvalue()


def test_no_hostile_sequence_reaches_a_colour_terminal() -> None:
    records = [r for r in map(parse_line, _records()) if r is not None]
    accumulator = ErrorAccumulator("internal_code")
    for record in records:
        accumulator.add(record)
    shown = "".join(
        _on_colour_terminal(renderable)
        for renderable in (
            render_trace(build_trace(records, CID_A)),
            render_error_report(accumulator.report(now=0.0)),
            *(render_record(r) for r in records),
        )
    )
    for raw in ("\x1b[2J", "\x1b]0;", "\x07", "\x9b", "\u202e", "\u2066", "\u2028", "\x85", "\x00"):
        assert raw not in shown
    assert "\r" not in shown
    assert "\\u001b[2Jc" in shown


def test_no_colour_when_not_a_terminal_or_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    record = parse_line(app_error(1.0, CID_A, 1, 500, "boom", "Boom.", "E"))
    assert record is not None
    out = io.StringIO()
    Console(file=out).print(render_record(record))
    assert "\x1b" not in out.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    out = io.StringIO()
    Console(file=out, force_terminal=True).print(render_record(record))
    assert "\x1b[31m" not in out.getvalue() and "\x1b[1;31m" not in out.getvalue()


def test_a_huge_trace_shows_its_first_and_last_lines() -> None:
    records = [
        r for n in range(1000) if (r := parse_line(line(n / 1000, cid=CID_A, message=f"step {n}")))
    ]
    shown = _on_colour_terminal(render_trace(build_trace(records, CID_A)))
    assert "step 199" in shown and "step 800" in shown
    assert "step 200" not in shown and "step 799" not in shown
    assert "600 more lines (obsctl trace ID --json prints them all)" in shown
