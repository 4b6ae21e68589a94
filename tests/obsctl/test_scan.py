"""obsctl.query.scan: the same answers whether a file is read in one piece, in blocks, or on 2
cores."""

from __future__ import annotations

import gzip
import os
import signal
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from obsctl.analysis.analyse import RecordFilter
from obsctl.query import scan
from obsctl.sources import files
from obsctl.sources.files import Damage, expand_paths
from tests.obsctl.logdata import access, app_error, line, write


@pytest.fixture(autouse=True, params=["read", "mmap"])
def reading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on both ways of reading plain files: read() for files being written,
    mmap windows for quiet ones."""
    quiet = -1.0 if request.param == "mmap" else 1e12
    monkeypatch.setattr(files, "MMAP_QUIET_SECONDS", quiet)
    return str(request.param)


@pytest.fixture(autouse=True, params=["stringzilla", "bytes.find"])
def search(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """...and with both substring searches: stringzilla's SIMD one and the fallback."""
    if request.param == "bytes.find":
        monkeypatch.setattr(scan, "_stringzilla", lambda: None)
    else:
        assert scan._stringzilla() is not None, "stringzilla is a dependency of obsctl"
    return str(request.param)


CIDS = [f"{n:032x}" for n in range(1, 400)]


def _many_requests(path: Path, count: int = 300) -> None:
    """Requests whose error line comes before (raised) or after (crash) their access line."""
    lines: list[bytes] = []
    for n in range(count):
        at, cid = n * 0.01, CIDS[n]
        lines.append(line(at, cid=cid, message="working", filler="x" * (n % 7) * 40))
        if n % 3 == 0:
            lines.append(app_error(at + 0.001, cid, 21101 + n % 2, 404, "nf", "Not found.", "NF"))
            lines.append(access(at + 0.002, cid, "GET", f"/o/{n}", "/o/{id}", 404, 2.0))
        elif n % 3 == 1:
            lines.append(access(at + 0.001, cid, "GET", "/crash", "/crash", 500, 2.0))
            lines.append(line(at + 0.002, "ERROR", cid, "Unhandled", http_code=500))
        else:
            lines.append(access(at + 0.001, cid, "POST", "/ok", "/ok", 201, 2.0))
    write(path, *lines)


def _errors(path: Path) -> dict[object, tuple[int, tuple[tuple[str, int], ...]]]:
    logs = expand_paths([str(path)], default_dir="unused")
    acc = scan.collect_errors(logs, by="internal_code", since=None, until=None, damage=Damage())
    report = acc.report(now=0.0)
    return {g.key: (g.count, g.routes) for g in report.groups}


@pytest.fixture
def tiny_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 4 KB and byte ranges of 16 KB run on 2 processes: every boundary is exercised."""
    monkeypatch.setattr(files, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(scan, "MIN_PIECE_BYTES", 16 << 10)
    monkeypatch.setattr(scan, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(scan, "ACCESS_WINDOW", 2048)


def test_error_groups_are_the_same_in_one_piece_and_in_many(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _many_requests(tmp_path / "a.jsonl")
    whole = _errors(tmp_path / "a.jsonl")
    assert whole[21101][0] == 50 and whole[21102][0] == 50 and whole[None][0] == 100
    assert whole[None][1] == (("GET /crash", 100),)
    assert sum(n for _, n in whole[21101][1]) == 50  # every raised error found its route
    monkeypatch.setattr(files, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(scan, "MIN_PIECE_BYTES", 16 << 10)
    monkeypatch.setattr(scan, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(scan, "ACCESS_WINDOW", 2048)
    assert len(scan.plan_tasks(expand_paths([str(tmp_path)], default_dir="x"), workers=2)) > 3
    assert _errors(tmp_path / "a.jsonl") == whole


def test_trace_is_the_same_in_one_piece_and_over_processes(
    tmp_path: Path, tiny_blocks: None
) -> None:
    _many_requests(tmp_path / "a.jsonl")
    lines = (tmp_path / "a.jsonl").read_bytes().splitlines(keepends=True)
    for n in range(3):  # several compressed files: decompressed on both cores
        write(tmp_path / "gz" / f"part{n}.jsonl.gz", gzip.compress(b"".join(lines[n::3])))
    plain = expand_paths([str(tmp_path / "a.jsonl")], default_dir="x")
    packed = expand_paths([str(tmp_path / "gz")], default_dir="x")
    for cid in (CIDS[0], CIDS[150], CIDS[298]):
        one = scan.find_trace_records(plain, cid, Damage())
        many = scan.find_trace_records(packed, cid, Damage())
        assert len(one) == 3
        assert all(r.correlation_id == cid for r in one)
        assert sorted(r.raw for r in many) == sorted(r.raw for r in one)


def test_ranges_cut_at_line_starts_cover_the_file_once(tmp_path: Path, tiny_blocks: None) -> None:
    _many_requests(tmp_path / "a.jsonl")
    (log,) = expand_paths([str(tmp_path)], default_dir="x")
    tasks = scan.plan_tasks([log], workers=2)
    data = (tmp_path / "a.jsonl").read_bytes()
    starts = [t.start for t in tasks]
    assert starts[0] == 0
    assert all(data[s - 1 : s] == b"\n" for s in starts[1:])
    assert [t.end for t in tasks[:-1]] == starts[1:] and tasks[-1].end is None


def test_backwards_reading_matches_forward_reading(tmp_path: Path, tiny_blocks: None) -> None:
    path = tmp_path / "a.jsonl"
    big = b'{"ts":"2026-11-26T02:11:52.000000Z","message":"' + b"y" * 10_000 + b'"}\n'
    write(path, *(line(n, message=f"r{n}") for n in range(200)), big, line(300.0), line(301.0)[:9])
    (log,) = expand_paths([str(path)], default_dir="x")
    damage = Damage()
    records = scan.last_records([log], 1000, RecordFilter(), damage)
    assert [r.message for r in records][:200] == [f"r{n}" for n in range(200)]
    assert len(records) == 201
    assert damage.summary() == (
        "skipped 1 oversized line in a.jsonl, 1 incomplete final line in a.jsonl"
    )


GOOD = [
    line(1.0, "ERROR", CIDS[0], "boom", internal_code=7),
    access(1.1, CIDS[0], "GET", "/x", "/x", 500, 1.0),
    line(1.2, "INFO", CIDS[1], "fine"),
]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.one_of(st.sampled_from(GOOD), st.binary(max_size=120)), max_size=40))
# Found by hypothesis: a compression magic at the start of a text file hid all its lines.
@example(pieces=[b"PK\x05\x06\n", GOOD[0]])
@example(pieces=[b"PK\x03\x04junk\n", GOOD[0], GOOD[1]])
@example(pieces=[b"\x1f\x8b", GOOD[0], GOOD[1]])
@example(pieces=[b"BZh\n", GOOD[0]])
@example(pieces=[b"\xfd7zXZ\x00\n", GOOD[0]])
def test_byte_soup_files_never_break_a_scan(tmp_path: Path, pieces: list[bytes]) -> None:
    path = tmp_path / "soup.jsonl"
    path.write_bytes(b"".join(pieces))
    logs = expand_paths([str(path)], default_dir="x")
    damage = Damage()
    errors = scan.collect_errors(logs, by="internal_code", since=None, until=None, damage=damage)
    report = errors.report(now=0.0)
    records = scan.find_trace_records(logs, CIDS[0], damage)
    tail = scan.last_records(logs, 1000, RecordFilter(), damage)
    data = b"".join(pieces)
    complete = data.split(b"\n")[:-1]  # the part after the last newline is never counted
    intact = sum(1 for raw in complete if raw == GOOD[0].rstrip(b"\n"))
    candidates = sum(1 for raw in complete if b'"level":"ERROR"' in raw)
    assert intact <= report.total <= candidates
    assert len(records) <= sum(1 for raw in complete if CIDS[0].encode() in raw)
    assert len(tail) <= len(complete)


def _pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[scan.Task]:
    """Six byte ranges of one file, to run on two processes whatever the machine's cores."""
    _many_requests(tmp_path / "a.jsonl")
    monkeypatch.setattr(scan, "MIN_PIECE_BYTES", 16 << 10)
    monkeypatch.setattr(scan, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(scan, "_workers", lambda: 2)
    tasks = scan.plan_tasks(expand_paths([str(tmp_path / "a.jsonl")], default_dir="x"))
    assert len(tasks) > 3
    return tasks


def test_every_task_is_answered_once_by_this_process_and_a_forked_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = _pieces(tmp_path, monkeypatch)
    done: list[int] = []
    answers = list(scan._run(tasks, lambda t: (t.index, os.getpid()), done.append))
    assert sorted(index for index, _ in answers) == [t.index for t in tasks]
    assert len({pid for _, pid in answers}) == 2
    assert sorted(done) == sorted(t.size for t in tasks)  # progress: each task once


def test_an_error_in_a_forked_task_is_raised_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = _pieces(tmp_path, monkeypatch)
    theirs = {t.index for t in scan._shares(tasks, 2)[1]}

    def work(task: scan.Task) -> int:
        if task.index in theirs:
            raise ValueError(f"task {task.index}")
        return task.index

    with pytest.raises(ValueError, match="task"):
        list(scan._run(tasks, work, None))


@pytest.mark.timeout(60)
def test_a_caller_that_stops_early_leaves_no_child_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The children still working are killed and reaped, even one that ignores SIGTERM (a child
    inherits the parent's handlers: obsctl serve's event loop would take a SIGTERM for its own)."""
    tasks = _pieces(tmp_path, monkeypatch)
    theirs = {t.index for t in scan._shares(tasks, 2)[1]}
    parent = os.getpid()

    ready = tmp_path / "child-ignores-sigterm"

    def work(task: scan.Task) -> int:
        if task.index in theirs:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            ready.touch()
            time.sleep(120)
        return os.getpid()

    children_file = Path(f"/proc/{parent}/task/{parent}/children")
    before = set(children_file.read_text().split())
    answers = scan._run(tasks, work, None)
    assert next(answers) == parent
    ours = set(children_file.read_text().split()) - before
    assert ours  # the forked share is still at work
    for _ in range(200):  # at most 10 s for the child to reach its sleep
        if ready.exists():
            break
        time.sleep(0.05)
    assert ready.exists()
    answers.close()
    for pid in ours:
        with pytest.raises(ChildProcessError):  # killed and reaped
            os.waitpid(int(pid), os.WNOHANG)
