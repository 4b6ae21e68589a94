"""``obsctl trace``: one request across every log file, for on-call and for support staff."""

from __future__ import annotations

import gzip
import io
import os
import select
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import orjson
import pytest

from tests.obsctl.logdata import (
    CID_A,
    CID_B,
    CID_C,
    access,
    app_error,
    line,
    order_request,
    run,
    write,
)

ROOT = Path(__file__).resolve().parents[2]


def _rotated_set(directory: Path) -> list[bytes]:
    """A request whose lines are split over a rotated, compressed file and the live file."""
    first, error, finished = order_request(100.0)
    old = [line(99.0, cid=CID_B), first, line(100.001, cid=CID_B)]
    write(
        directory / "shop.2026-11-26_02-13-00_000000.jsonl.gz",
        gzip.compress(b"".join(old)),
    )
    write(directory / "shop.jsonl", error, line(100.011, cid=CID_B), finished)
    return [first, error, finished]


def test_trace_reads_the_default_log_directory_across_rotation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    expected = _rotated_set(Path("var/log"))
    code, out, err = run(capsys, "trace", CID_A, "--json")
    assert code == 0, err
    assert err == ""
    assert out.encode().splitlines() == [raw.rstrip(b"\n") for raw in expected]


def test_trace_summary_tells_support_staff_what_happened(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _rotated_set(Path("var/log"))
    code, out, _ = run(capsys, "trace", CID_A)
    assert code == 0
    assert (
        "Request POST /orders answered 409 Conflict after 12.3 ms: "
        "This product is out of stock. (code 30101)"
    ) in out
    assert "sku=A-1 stock=0" in out  # the internal message, for on-call
    # the timeline, in time order, with offsets from the first line
    assert out.index("checking stock") < out.index("+10.0 ms") < out.index("request finished")
    assert "+12.3 ms" in out


def test_zip_and_plain_files_given_as_paths_and_globs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, error, finished = order_request(5.0)
    with zipfile.ZipFile(tmp_path / "old.zip", "w") as archive:
        archive.writestr("shop.jsonl", first + error)
    write(tmp_path / "new" / "shop.jsonl", finished)
    code, out, _ = run(capsys, "trace", CID_A, str(tmp_path / "old.zip"), str(tmp_path / "n*"))
    assert code == 0
    assert len(out.splitlines()) > 3
    code, out, _ = run(
        capsys, "trace", CID_A, str(tmp_path / "old.zip"), str(tmp_path / "new"), "--json"
    )
    assert out.encode().splitlines() == [r.rstrip(b"\n") for r in (first, error, finished)]


def test_the_same_line_in_two_files_is_shown_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = b"".join(order_request(1.0))
    write(tmp_path / "shop.jsonl", lines)
    write(tmp_path / "copy-of-shop.jsonl.gz", gzip.compress(lines))
    code, out, _ = run(capsys, "trace", CID_A, str(tmp_path), "--json")
    assert code == 0
    assert len(out.splitlines()) == 3


def test_nothing_matched_exits_1_like_grep(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "shop.jsonl", *order_request(1.0))
    code, out, err = run(capsys, "trace", "deadbeefdeadbeef", str(tmp_path))
    assert code == 1
    assert out == ""
    assert err.startswith("obsctl: no log line has correlation ID 'deadbeefdeadbeef'")
    assert err.count("\n") == 1


def test_an_id_mentioned_only_in_a_message_is_not_a_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "a.jsonl", line(1.0, cid=CID_B, message=f"retrying {CID_A}"))
    code, _, _ = run(capsys, "trace", CID_A, str(tmp_path))
    assert code == 1


def test_ambiguous_prefix_exits_2_listing_the_candidates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "a.jsonl", *order_request(1.0, CID_A), *order_request(2.0, CID_C))
    code, out, err = run(capsys, "trace", "773fa688", str(tmp_path))
    assert code == 2
    assert out == ""
    assert f"matches 2 requests: {CID_A}, {CID_C}" in err
    code, out, _ = run(capsys, "trace", "773fa6885c", str(tmp_path), "--json")
    assert code == 0
    assert {orjson.loads(raw)["correlation_id"] for raw in out.splitlines()} == {CID_A}


def test_prefix_shorter_than_8_characters_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "trace", "773fa68", "whatever")
    assert code == 2
    assert "at least its first 8 characters" in err


def test_an_id_read_off_a_screenshot_in_uuid_form_still_matches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "a.jsonl", *order_request(1.0))
    uuid_form = "773FA688-5C2E-4D7F-9A6B-1C0D2E3F4A5B"
    code, out, _ = run(capsys, "trace", uuid_form, str(tmp_path), "--json")
    assert code == 0
    assert len(out.splitlines()) == 3


def test_damaged_input_is_counted_on_one_stderr_line_and_the_answer_stands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, error, finished = order_request(1.0)
    write(
        tmp_path / "shop.jsonl",
        first,
        b'{"correlation_id":"' + CID_A.encode() + b'","message":"caf\xe9"}\n',
        b'{"ts":"2026-11-26T02:11:53Z","correlation_id":"' + CID_A.encode() + b'","mess\n',
        error,
        finished,
        line(9.0, cid=CID_A)[:30],
    )
    old = gzip.compress(b"".join(line(0.5, cid=CID_B) for _ in range(2000)))
    write(tmp_path / "shop.old.jsonl.gz", old[: len(old) // 2])
    code, out, err = run(capsys, "trace", CID_A, str(tmp_path), "--json")
    assert code == 0
    assert len(out.splitlines()) == 3
    assert err.count("\n") == 1
    assert err.startswith("obsctl: skipped ")
    assert "1 corrupt line in shop.jsonl" in err
    assert "1 non-UTF-8 line in shop.jsonl" in err
    assert "1 incomplete final line in shop.jsonl," in err  # the cut .gz line is not counted
    assert "shop.old.jsonl.gz (truncated compressed file, readable part used)" in err


HOSTILE = "bell\x07 esc\x1b[2J\x1b]0;pwned\x07 csi\x9b31m bidi\u202eevil\u2066 nel\x85 ls\u2028end"


def test_hostile_log_content_cannot_drive_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        tmp_path / "a.jsonl",
        line(1.0, "INFO", CID_A, HOSTILE, **{"k\x1b[1m": HOSTILE}),
        app_error(1.001, CID_A, 1, 500, HOSTILE, HOSTILE, "E\x1b[5m", traceback=HOSTILE),
        access(1.002, CID_A, "GET", "/x\x1b[2J", "/x", 500, 2.0),
    )
    code, out, _ = run(capsys, "trace", CID_A, str(tmp_path))
    assert code == 0
    for raw in ("\x07", "\x1b", "\x9b", "\u202e", "\u2066", "\x85", "\u2028"):
        assert raw not in out
    assert "esc\\u001b[2J" in out and "bidi\\u202eevil" in out
    # --json stays the exact record JSON
    code, out, _ = run(capsys, "trace", CID_A, str(tmp_path), "--json")
    assert orjson.loads(out.split("\n")[0])["message"] == HOSTILE


def _readline(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> bytes:
    """One line of the child's stdout, or fail after ``timeout`` seconds (never hang)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        pytest.fail(f"no output within {timeout} s")
    return proc.stdout.readline()


@pytest.mark.proc
def test_follow_prints_new_lines_of_the_request_as_they_are_written(tmp_path: Path) -> None:
    log = write(tmp_path / "shop.jsonl", order_request(1.0)[0])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    command = [sys.executable, "-m", "obsctl.cli.entry", "trace", CID_A, str(log), "-f", "--json"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path
    ) as proc:
        try:
            assert orjson.loads(_readline(proc))["message"] == "checking stock"
            with log.open("ab") as out:
                out.write(line(2.0, cid=CID_B))
                out.write(order_request(1.0)[1][:40])  # half a line: waits for its end
                out.flush()
                time.sleep(0.6)
                out.write(order_request(1.0)[1][40:])
            assert orjson.loads(_readline(proc))["internal_code"] == 30101
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
    assert code == 0


def _frame(path: str, line_no: int, function: str, source: str) -> str:
    return f'  File "{path}", line {line_no}, in {function}\n    {source}\n'


CRASH_TRACEBACK = (
    "Traceback (most recent call last):\n"
    + _frame("/srv/app/foundation/handlers.py", 266, "__call__", "await self.app(scope)")
    + _frame("/usr/lib/python3.11/site-packages/starlette/routing.py", 683, "__call__", "await x()")
    + _frame(
        "/opt/venv/lib/python3.11/site-packages/fastapi/routing.py", 381, "run", "return await f()"
    )
    + _frame("/usr/lib/python3.11/asyncio/tasks.py", 10, "step", "coro.send(None)")
    + _frame("/srv/app/shop/app.py", 268, "get_receipt", "vat = VAT_RATES[user.country]")
    + "                ~~~~~~~~~^^^^^^^^^^^^^^\n"
    + _frame("/usr/local/lib/python3.11/dist-packages/anyio/x.py", 5, "run", "return fn()")
    + "KeyError: 'CH'\n"
)


def test_traceback_folds_framework_frames_and_json_keeps_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(
        tmp_path / "shop.jsonl",
        app_error(
            1.0, CID_A, 10500, 500, "Unhandled KeyError", "", "KeyError", traceback=CRASH_TRACEBACK
        ),
        access(1.003, CID_A, "GET", "/orders/45/receipt", "/orders/{order_id}/receipt", 500, 3.0),
    )
    code, out, _ = run(capsys, "trace", CID_A, str(tmp_path))
    assert code == 0
    panel = [text.strip("│ ").rstrip() for text in out[out.index("traceback at") :].splitlines()]
    assert panel[1:-1] == [
        "Traceback (most recent call last):",
        'File "/srv/app/foundation/handlers.py", line 266, in __call__',
        "await self.app(scope)",
        "… 3 framework frames …",
        'File "/srv/app/shop/app.py", line 268, in get_receipt',
        "vat = VAT_RATES[user.country]",
        "~~~~~~~~~^^^^^^^^^^^^^^",
        "… 1 framework frame …",
        "KeyError: 'CH'",
    ]
    assert "starlette" not in out and "site-packages" not in out
    # --json prints the record exactly as logged, every frame included
    code, out, _ = run(capsys, "trace", CID_A, str(tmp_path), "--json")
    assert orjson.loads(out.splitlines()[0])["exception"]["traceback"] == CRASH_TRACEBACK


def test_folded_frames_line_is_dimmed_on_a_colour_terminal(tmp_path: Path) -> None:
    from rich.console import Console

    from obsctl.analysis.analyse import build_trace
    from obsctl.readers.parse import parse_line
    from obsctl.render.logs import render_trace

    raw = app_error(1.0, CID_A, 10500, 500, "boom", "", "KeyError", traceback=CRASH_TRACEBACK)
    record = parse_line(raw)
    assert record is not None
    console = Console(force_terminal=True, color_system="standard", width=200, file=io.StringIO())
    console.print(render_trace(build_trace([record], CID_A)))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[2m  … 3 framework frames …\x1b[0m" in shown
