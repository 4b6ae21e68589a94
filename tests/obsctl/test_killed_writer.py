"""A real process writing through foundation, SIGKILLed mid-stream: at most the line being
written is lost, and obsctl reads every record before it (reliability catalogue, C 17).

The writer (tests/obsctl/killed_writer.py) logs ~600 KB ERROR records as fast as it can; each is
one write() of its own, so a kill lands between records or inside one (the kernel stops a large
write between pages). The file must then hold records 0..n-1 complete and in order, plus at
most an unfinished piece of record n; ``tail`` (reading backwards), ``errors top`` and ``trace``
(reading forwards) must each return exactly those n records and call the piece incomplete.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from obsctl.cli.app import main

pytestmark = [pytest.mark.proc, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
PADDING = 600_000
COUNT = 400  # at most 240 MB: the kill comes long before


def _kill_while_writing(log_dir: Path, cid: str, threshold: int) -> Path:
    path = log_dir / "killed.jsonl"
    args = [str(log_dir), cid, str(COUNT), str(PADDING)]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.obsctl.killed_writer", *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while not (path.exists() and path.stat().st_size >= threshold):
            if process.poll() is not None:
                assert process.stderr is not None
                pytest.fail(f"the writer ended on its own: {process.stderr.read()!r}")
            if time.monotonic() > deadline:
                pytest.fail("the writer did not reach the kill point in 90 s")
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        assert process.stderr is not None
        process.stderr.close()
    return path


@pytest.mark.parametrize("trial", range(3))
def test_a_writer_killed_mid_write_loses_at_most_that_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], trial: int
) -> None:
    cid = uuid.uuid4().hex
    threshold = random.Random(trial).randint(10, 120) * PADDING
    path = _kill_while_writing(tmp_path, cid, threshold)

    data = path.read_bytes()
    complete, _, unfinished = data.rpartition(b"\n")
    records = [json.loads(line) for line in complete.split(b"\n")]  # every whole line parses
    written = len(records)
    assert [r["i"] for r in records] == list(range(written))  # none lost or doubled
    assert written < COUNT
    assert written * PADDING >= threshold - 2 * PADDING
    if unfinished:  # a piece of record `written`, cut mid-write
        assert unfinished.startswith(b'{"ts":"')
        assert len(unfinished) < PADDING + 1000
    incomplete = "skipped 1 incomplete final line in killed.jsonl"

    code = main(["tail", "-n", str(COUNT), "--json", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [json.loads(line)["i"] for line in out.splitlines()] == list(range(written))
    assert (incomplete in err) == bool(unfinished.strip())

    code = main(["errors", "top", "--json", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["internal_code"], r["count"]) for r in rows] == [(30101, written)]
    assert rows[0]["sample_correlation_id"] == cid
    assert (incomplete in err) == bool(unfinished.strip())

    code = main(["trace", cid, str(path), "--json", "--all"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert [json.loads(line)["i"] for line in out.splitlines()] == list(range(written))
