"""The errors table stays readable on a narrow terminal and complete on a wide one."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from obsctl.analysis.analyse import ErrorAccumulator
from obsctl.readers.parse import parse_line
from obsctl.render.logs import render_error_report
from tests.data.golden_app import GOLDEN


def _render(width: int) -> str:
    records = [r for r in map(parse_line, GOLDEN.read_bytes().splitlines()) if r is not None]
    accumulator = ErrorAccumulator("internal_code")
    for record in records:
        accumulator.add(record)
    report = accumulator.report(now=0.0)
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(render_error_report(report))
    return out.getvalue()


@pytest.mark.parametrize("width", [80, 100])
def test_narrow_terminal_keeps_code_count_status_message_and_a_pasteable_id(width: int) -> None:
    text = _render(width)
    row = next(line for line in text.splitlines() if "39901" in line)
    assert "2" in row.split("│")[2]  # count
    assert "409" in row
    assert "This product is out" in text
    assert "a1b2c3d4e5f6" in text or "b2c3d4e5f607" in text  # 12-char prefix obsctl trace accepts
    assert max(len(line) for line in text.splitlines()) <= width


def test_wide_terminal_shows_every_column_and_the_full_id() -> None:
    text = _render(170)
    assert "first / last seen" in text and "trend" in text and "routes" in text
    full_ids = ("a1b2c3d4e5f60718293a4b5c6d7e8f90", "b2c3d4e5f60718293a4b5c6d7e8f90a1")
    assert any(cid in text for cid in full_ids)
