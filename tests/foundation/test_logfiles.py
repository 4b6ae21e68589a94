"""Rotation, archives and retention (``foundation.logfiles``): the archive format, crash safety
with really killed processes, and retention over every file of a service."""

from __future__ import annotations

import fcntl
import gzip
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from foundation.logfiles import (
    MEMBER_BYTES,
    Retention,
    Rotation,
    compress_rotated,
    housekeep,
    name_pattern,
    parse_compression,
    parse_name,
    stamp_of,
)
from tests.foundation.servers import child_env, stop

HAVE_GZIP = shutil.which("gzip") is not None


# -- helpers -----------------------------------------------------------------------------------


def members(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(size from FX, min ts, max ts, inflated data) of each member, hopping by the FX size."""
    found = []
    offset = 0
    while offset < len(data):
        assert data[offset : offset + 3] == b"\x1f\x8b\x08"
        assert data[offset + 3] & 0x04, "FEXTRA set"
        (xlen,) = struct.unpack_from("<H", data, offset + 10)
        extra = data[offset + 12 : offset + 12 + xlen]
        assert extra[:2] == b"FX"
        length, size, low, high = struct.unpack_from("<HQqq", extra, 2)
        assert length == 24
        decoder = zlib.decompressobj(wbits=31)
        inflated = decoder.decompress(data[offset : offset + size])
        assert decoder.eof and decoder.unused_data == b"", "FX size is the member's size"
        found.append((size, low, high, inflated))
        offset += size
    return found


def micros(ts: str) -> int:
    import datetime as dt

    moment = dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def gzip_t(path: Path) -> int:
    return subprocess.run(["gzip", "-t", str(path)], capture_output=True, check=False).returncode


def visible_lines(log_dir: Path, prefix: str = "") -> list[bytes]:
    """Every line of the directory as a reader must see it (ARCHIVE-FORMAT point 5): hidden
    files skipped, an archive skipped while its plain file still exists."""
    lines: list[bytes] = []
    names = {p.name for p in log_dir.iterdir()}
    for name in sorted(names):
        if name.startswith(".") or not name.startswith(prefix):
            continue
        path = log_dir / name
        if name.endswith(".gz"):
            if name[:-3] in names:
                continue
            data = gzip.decompress(path.read_bytes())
        else:
            data = path.read_bytes()
        lines.extend(line for line in data.split(b"\n") if line)
    return lines


def child(log_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.foundation.logchild", str(log_dir), *args],
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def reap(process: subprocess.Popen[bytes]) -> None:
    """Stopped (SIGTERM, then SIGKILL), its pipes closed."""
    stop(process)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def finish(process: subprocess.Popen[bytes], timeout: float = 120.0) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err.decode()
    return out.decode()


def foundation_line(ts_micros: int, i: int, pad: int = 60) -> bytes:
    import datetime as dt

    moment = dt.datetime.fromtimestamp(ts_micros / 1e6, dt.UTC)
    ts = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_micros % 1_000_000:06d}Z"
    return orjson.dumps({"ts": ts, "level": "INFO", "message": "m", "i": i, "p": "x" * pad}) + b"\n"


@contextmanager
def held(path: Path) -> Iterator[None]:
    """Hold ``path``'s lock as a compressing (or writing) process would."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=30)
    return process.pid


T = "2026-11-26T04-31-59-123456Z"
LEGACY = "2025-03-01_14-05-09_123456"  # Loguru's own rotated names

# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("shop.jsonl", ("shop", None, None, False, False)),
        ("shop-123.jsonl", ("shop-123", 123, None, False, False)),
        (f"shop.{T}.jsonl", ("shop", None, T, False, False)),
        (f"shop-7.{T}.2.jsonl.gz", ("shop-7", 7, T, True, False)),
        (f".shop.{T}.jsonl.gz.tmp", ("shop", None, T, True, True)),
        (f"shop.{LEGACY}.jsonl.gz", ("shop", None, LEGACY, True, False)),
        ("shop-admin-12.jsonl", None),
        (f"shop-admin.{T}.jsonl.gz", None),
        ("shopping.jsonl", None),
        ("payments-3.jsonl", None),
        ("shop.jsonl.gz", None),
        ("shop.log", None),
        (".shop.jsonl.gz.tmp", None),
    ],
)  # fmt: skip
def test_a_service_owns_only_its_own_names(
    name: str, expected: tuple[str, int | None, str | None, bool, bool] | None
) -> None:
    parsed = parse_name(name_pattern("shop"), name)
    if expected is None:
        assert parsed is None
    else:
        assert parsed is not None
        assert (parsed.stem, parsed.pid, parsed.stamp, parsed.archive, parsed.temporary) == expected


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("rotation", "sometimes", "cannot parse rotation 'sometimes'"),
        ("retention", "forever", "cannot parse retention 'forever'"),
        ("compression", "rar", "unsupported log compression 'rar'"),
    ],
)
def test_bad_options_are_refused_with_the_forms_that_work(
    kind: str, value: str, message: str
) -> None:
    parse = {
        "rotation": Rotation.parse,
        "retention": Retention.parse,
        "compression": parse_compression,
    }[kind]
    with pytest.raises(ValueError, match=message):
        parse(value)  # type: ignore[operator]


def test_rotation_and_retention_forms() -> None:
    assert Rotation.parse("50 MB") == Rotation(size=50_000_000)
    assert Rotation.parse(1024) == Rotation(size=1024)
    daily = Rotation.parse("00:00")
    assert daily is not None
    deadline = daily.deadline(time.time())
    assert deadline is not None and 0 < deadline - time.time() <= 86_400
    assert Retention.parse("3 seconds") == Retention(age=3.0)
    assert Retention.parse(5) == Retention(count=5)


# -- the archive -------------------------------------------------------------------------------


@pytest.mark.skipif(not HAVE_GZIP, reason="gzip is not installed")
def test_archive_is_plain_multi_member_gzip_with_time_ranges(tmp_path: Path) -> None:
    start = 1_790_000_000_000_000
    lines = [foundation_line(start + i * 1000, i) for i in range(110_000)]
    lines[5] = foundation_line(start - 5_000_000, 5)  # out of order: the minimum is not first
    lines[7] = b'{"message":"a line without ts"}\n'
    data = b"".join(lines) + b'{"ts":"2026-01-01T00:00:00.000000Z","cut'  # crash mid-line
    source = tmp_path / f"shop.{stamp_of(time.time())}.jsonl"
    source.write_bytes(data)
    assert compress_rotated(str(source)) == "compressed"
    archive = Path(f"{source}.gz")
    assert not source.exists() and sorted(p.name for p in tmp_path.iterdir()) == [archive.name]
    assert gzip_t(archive) == 0
    zcat = subprocess.run(["zcat", str(archive)], capture_output=True, check=True).stdout
    assert zcat == data == gzip.decompress(archive.read_bytes())
    found = members(archive.read_bytes())
    assert len(found) >= 3
    assert sum(size for size, *_ in found) == archive.stat().st_size
    for index, (_, low, high, inflated) in enumerate(found):
        assert MEMBER_BYTES - 200 < len(inflated) <= MEMBER_BYTES or index == len(found) - 1
        assert inflated.endswith(b"\n") or index == len(found) - 1
        stamps = [micros(orjson.loads(line)["ts"]) for line in inflated.split(b"\n")[:-1]
                  if line.startswith(b'{"ts"')]  # fmt: skip
        assert (low, high) == (min(stamps), max(stamps))
    assert found[0][1] == start - 5_000_000


def test_a_member_without_any_time_says_minus_one(tmp_path: Path) -> None:
    source = tmp_path / f"shop.{stamp_of(time.time())}.jsonl"
    source.write_bytes(b'{"level":"INFO","message":"no time here"}\n' * 10)
    compress_rotated(str(source))
    ((_, low, high, _),) = members(Path(f"{source}.gz").read_bytes())
    assert (low, high) == (-1, -1)


def test_compression_leaves_a_file_someone_holds_and_finishes_a_renamed_archive(
    tmp_path: Path,
) -> None:
    source = tmp_path / f"shop.{stamp_of(time.time())}.jsonl"
    source.write_bytes(foundation_line(1_790_000_000_000_000, 1))
    with held(source):
        assert compress_rotated(str(source)) == "busy"
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]
    # Killed between the archive's rename and the source's unlink: both exist, complete.
    Path(f"{source}.gz").write_bytes(gzip.compress(source.read_bytes()))
    assert compress_rotated(str(source)) == "finished"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{source.name}.gz"]


def test_a_truncated_loguru_archive_next_to_its_source_is_written_again(tmp_path: Path) -> None:
    """Loguru killed mid-compression leaves the complete original and a truncated .gz."""
    source = tmp_path / "shop.2025-03-01_14-05-09_123456.jsonl"
    data = b"".join(foundation_line(1_790_000_000_000_000 + i, i) for i in range(20_000))
    source.write_bytes(data)
    whole = gzip.compress(data, 9)
    Path(f"{source}.gz").write_bytes(whole[: len(whole) // 2])
    result = housekeep(str(tmp_path), "shop", compress=True, retention=Retention(age=86_400 * 9999))
    assert result.compressed == (str(source),)
    assert gzip.decompress(Path(f"{source}.gz").read_bytes()) == data
    assert not source.exists()


# -- retention over the directory --------------------------------------------------------------


def test_retention_covers_every_process_and_never_another_service(tmp_path: Path) -> None:
    now = time.time()
    old, recent = stamp_of(now - 3600), stamp_of(now - 10)
    line = foundation_line(int(now * 1e6), 1)
    files = {
        f"shop.{old}.jsonl.gz": gzip.compress(line),  # expired archive
        f"shop-11.{old}.jsonl": line,  # expired, not compressed yet: deleted with its temp
        f".shop-11.{old}.jsonl.gz.tmp": b"\x1f\x8b partial",
        f"shop-12.{old}.jsonl": line,  # expired but someone is compressing it: left alone
        f"shop-13.{recent}.jsonl": line,  # recent leftover: compressed
        f".shop-13.{recent}.jsonl.gz.tmp": b"\x1f\x8b partial",  # a killed compression's
        f"shop-admin-11.{old}.jsonl.gz": gzip.compress(line),  # other services: untouched
        f"shop-admin-{dead_pid()}.jsonl": line,
        f"payments.{old}.jsonl": line,
        "notes.txt": b"not a log\n",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    dead = dead_pid()
    orphan = tmp_path / f"shop-{dead}.jsonl"  # a dead process's last live file
    orphan.write_bytes(line)
    mine = tmp_path / f"shop-{os.getpid()}.jsonl"  # a live process's file, old or not
    mine.write_bytes(line)
    os.utime(mine, (now - 7200, now - 7200))
    with held(tmp_path / f"shop-12.{old}.jsonl"):
        result = housekeep(str(tmp_path), "shop", compress=True, retention=Retention(age=600))
    names = sorted(p.name for p in tmp_path.iterdir())
    adopted = [n for n in names if n.startswith(f"shop-{dead}.") and n.endswith(".jsonl.gz")]
    assert len(adopted) == 1 and gzip.decompress((tmp_path / adopted[0]).read_bytes()) == line
    assert names == sorted(
        [
            f"shop-12.{old}.jsonl",
            f"shop-13.{recent}.jsonl.gz",
            f"shop-admin-11.{old}.jsonl.gz",
            next(n for n in files if n.startswith("shop-admin-") and n.endswith(".jsonl")),
            f"payments.{old}.jsonl",
            "notes.txt",
            mine.name,
            adopted[0],
        ]
    )
    assert gzip.decompress((tmp_path / f"shop-13.{recent}.jsonl.gz").read_bytes()) == line
    assert sorted(Path(p).name for p in result.deleted) == sorted(
        [f"shop.{old}.jsonl.gz", f"shop-11.{old}.jsonl", f".shop-11.{old}.jsonl.gz.tmp"]
    )
    # Once nobody holds it, the next pass deletes the expired file.
    housekeep(str(tmp_path), "shop", compress=True, retention=Retention(age=600))
    assert not (tmp_path / f"shop-12.{old}.jsonl").exists()
    assert mine.read_bytes() == line


def test_count_retention_keeps_the_newest_rotations_of_all_processes(tmp_path: Path) -> None:
    now = time.time()
    line = foundation_line(int(now * 1e6), 1)
    names = []
    for age in range(6):
        name = f"shop-{100 + age % 2}.{stamp_of(now - 60 * age)}.jsonl.gz"
        (tmp_path / name).write_bytes(gzip.compress(line))
        names.append(name)
    housekeep(str(tmp_path), "shop", compress=True, retention=Retention(count=3))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[:3])


# -- real processes ----------------------------------------------------------------------------


def _obsctl_json(log_dir: Path) -> list[bytes]:
    """Every line ``obsctl tail --json`` shows for the directory; it reports no damage."""
    obsctl = subprocess.run(
        [str(Path(sys.executable).with_name("obsctl")), "tail", "-n", "10000000", "--json",
         str(log_dir)],
        capture_output=True, env=child_env(), timeout=120, check=False,
    )  # fmt: skip
    assert obsctl.returncode == 0, obsctl.stderr.decode()
    assert obsctl.stderr == b""
    return obsctl.stdout.splitlines()


def _records(log_dir: Path, prefix: str = "") -> Counter[tuple[int, int]]:
    return Counter(
        (record["pid"], record["i"]) for record in map(orjson.loads, visible_lines(log_dir, prefix))
    )


@pytest.mark.proc
@pytest.mark.skipif(not HAVE_GZIP, reason="gzip is not installed")
def test_log_calls_never_wait_for_compression(tmp_path: Path) -> None:
    """Every archive member blocks until the logging is over: the log calls finish anyway
    (rotation is a rename), then the archives are completed and every line is there once."""
    log_dir = tmp_path / "logs"
    release = tmp_path / "release"
    count = 30_000
    process = child(
        log_dir, "--count", str(count), "--rotation", "500 KB", "--hold",
        "--block-compression", str(release),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        logged = process.stdout.readline().decode()  # bounded by the test timeout
        assert logged.startswith(f"logged {count} ")
        names = [p.name for p in log_dir.iterdir()]
        assert sum(n.endswith(".jsonl") and "T" in n for n in names) >= 8, names
        assert not any(n.endswith(".jsonl.gz") for n in names), "all compression blocked"
        release.touch()
        assert process.stdout.readline() == b"holding\n"
        finish(process)
    finally:
        reap(process)
    names = [p.name for p in log_dir.iterdir()]
    assert not any(n.startswith(".") for n in names)
    archives = [log_dir / n for n in names if n.endswith(".gz")]
    assert len(archives) >= 8 and all(gzip_t(a) == 0 for a in archives)
    seen = _records(log_dir)
    assert sorted(i for _, i in seen) == list(range(count)) and set(seen.values()) == {1}


@pytest.mark.proc
@pytest.mark.skipif(not HAVE_GZIP, reason="gzip is not installed")
def test_sigkill_during_compression_then_restart_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    log_dir = tmp_path / "logs"
    process = child(log_dir, "--count", "2000000", "--rotation", "8 MB", "--padding", "200")
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            if log_dir.exists() and any(p.name.endswith(".tmp") for p in log_dir.iterdir()):
                break
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)  # the archive is half written
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        reap(process)
    names = [p.name for p in log_dir.iterdir()]
    assert any(n.endswith(".gz.tmp") for n in names), names
    before = _records(log_dir)
    assert set(before.values()) == {1}
    assert sorted(i for _, i in before) == list(range(len(before)))
    # Meanwhile obsctl reads it all, once, and finds nothing damaged (the partial archive is
    # hidden); zcat accepts every visible archive.
    assert Counter(_obsctl_json(log_dir)) == Counter(visible_lines(log_dir))
    for archive in log_dir.glob("*.gz"):
        assert gzip_t(archive) == 0
    # A new process of the service (another pid) finishes the job at start.
    finish(child(log_dir, "--count", "10", "--rotation", "8 MB"))
    names = [p.name for p in log_dir.iterdir()]
    assert not any(n.startswith(".") for n in names), names
    assert not [n for n in names if "T" in n and n.endswith(".jsonl")], "all rotations archived"
    archives = [log_dir / n for n in names if n.endswith(".gz")]
    assert archives and all(gzip_t(a) == 0 for a in archives)
    after = _records(log_dir)
    assert set(after.values()) == {1}
    assert set(before) <= set(after) and len(after) == len(before) + 10


@pytest.mark.proc
def test_two_processes_with_per_process_files_rotate_side_by_side(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    count = 20_000
    processes = [
        child(log_dir, "--count", str(count), "--rotation", "300 KB", "--per-process")
        for _ in range(2)
    ]
    try:
        for process in processes:
            finish(process)
    finally:
        for process in processes:
            reap(process)
    names = [p.name for p in log_dir.iterdir()]
    assert not any(n.startswith(".") for n in names)
    for process in processes:
        mine = [n for n in names if n.startswith(f"svc-{process.pid}.")]
        # (the first to end may see its last live file adopted by the other's pass)
        assert sum(n.endswith(".gz") for n in mine) >= 5
    seen = _records(log_dir)
    assert set(seen.values()) == {1}
    assert seen.keys() == {(p.pid, i) for p in processes for i in range(count)}


@pytest.mark.proc
def test_processes_in_turn_leave_nothing_older_than_the_retention(tmp_path: Path) -> None:
    """Issue 18's scenario: four processes in turn with per-process files, one SIGKILLed, a
    live process, and two other services in the same directory."""
    log_dir = tmp_path / "logs"
    common = ("--per-process", "--rotation", "100 KB", "--retention", "2 seconds")
    # The live process keeps files a day: its own passes must not race the checks below.
    live = child(log_dir, "--count", "50", *common[:-1], "1 day", "--hold")
    others = [
        child(log_dir, "--service", "svc-admin", "--count", "3000", *common),
        child(log_dir, "--service", "payments", "--count", "3000", *common),
    ]
    try:
        assert live.stdout is not None and live.stdout.readline().startswith(b"logged 50 ")
        for process in others:
            finish(process)
        other_files = {p.name: p.read_bytes() for p in log_dir.iterdir() if "svc-admin" in p.name
                       or "payments" in p.name}  # fmt: skip
        live_file = log_dir / f"svc-{live.pid}.jsonl"
        live_bytes = live_file.read_bytes()
        for _ in range(3):
            finish(child(log_dir, "--count", "3000", *common))
        killed = child(log_dir, "--count", "1000000", *common)
        while not (log_dir / f"svc-{killed.pid}.jsonl").exists():
            time.sleep(0.01)
        time.sleep(0.3)
        killed.send_signal(signal.SIGKILL)
        reap(killed)
        time.sleep(2.5)  # everything so far is now older than the retention
        last = child(log_dir, "--count", "3000", *common)
        finish(last)
        names = sorted(p.name for p in log_dir.iterdir())
        mine = [n for n in names if parse_name(name_pattern("svc"), n) is not None]
        pids = {parse_name(name_pattern("svc"), n).pid for n in mine}  # type: ignore[union-attr]
        assert pids == {live.pid, last.pid}, names
        assert live_file.read_bytes() == live_bytes, "a live process's file is never touched"
        assert {p.name: p.read_bytes() for p in log_dir.iterdir()
                if "svc-admin" in p.name or "payments" in p.name} == other_files  # fmt: skip
        assert not any(n.startswith(".") for n in names)
        assert Counter(_obsctl_json(log_dir)) == Counter(visible_lines(log_dir))
    finally:
        reap(live)


@pytest.mark.proc
@pytest.mark.skipif(not HAVE_GZIP, reason="gzip is not installed")
def test_retention_with_compressions_pending_keeps_every_archive_whole(tmp_path: Path) -> None:
    """One process's compressions are all pending (blocked) while another applies a count
    retention: the rotation being compressed is left alone, retired rotations go whole, and
    what remains is complete archives only."""
    log_dir = tmp_path / "logs"
    release = tmp_path / "release"
    common = ("--per-process", "--rotation", "100 KB")
    pending = child(log_dir, "--count", "6000", *common, "--hold", "--block-compression",
                    str(release))  # fmt: skip
    try:
        assert pending.stdout is not None and pending.stdout.readline().startswith(b"logged")
        waiting = [p.name for p in log_dir.iterdir() if p.name.endswith(".jsonl") and "T" in p.name]
        assert len(waiting) >= 5, "rotations waiting for compression"
        finish(child(log_dir, "--count", "3000", *common, "--retention", "3"))
        release.touch()
        pending.stdin.close()  # type: ignore[union-attr]
        assert pending.wait(timeout=60) == 0
    finally:
        reap(pending)
    names = sorted(p.name for p in log_dir.iterdir())
    assert not any(n.startswith(".") for n in names), names
    closed = [n for n in names if "T" in n]
    assert all(n.endswith(".jsonl.gz") for n in closed), names
    assert all(gzip_t(log_dir / n) == 0 for n in closed)
    # The count kept 3 rotations, plus the one that was being compressed (locked) meanwhile,
    # plus the second process's last live file, adopted by the first one's last pass.
    assert 3 <= len(closed) <= 5, names
    assert [n for n in names if "T" not in n] == [f"svc-{pending.pid}.jsonl"]


def test_a_second_single_file_process_takes_a_file_of_its_own(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    first = child(log_dir, "--count", "10", "--hold")
    try:
        assert first.stdout is not None and first.stdout.readline().startswith(b"logged")
        second = child(log_dir, "--count", "10")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 0
        assert f"writing {log_dir / f'svc-{second.pid}.jsonl'}" in err.decode()
    finally:
        reap(first)
    assert sorted(p.name for p in log_dir.iterdir()) == sorted(
        ["svc.jsonl", f"svc-{second.pid}.jsonl"]
    )
    assert len((log_dir / "svc.jsonl").read_bytes().splitlines()) == 10


def test_time_based_rotation_renames_at_the_deadline(tmp_path: Path) -> None:
    from loguru import logger

    from foundation import configure_logging

    configure_logging(
        service="svc", log_dir=tmp_path, log_stdout=False, rotation="0.3 s", compression=None
    )
    logger.info("before the deadline")
    time.sleep(0.4)
    logger.info("after the deadline")
    logger.remove()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and "svc.jsonl" in names
    rotated = next(n for n in names if n != "svc.jsonl")
    assert b"before the deadline" in (tmp_path / rotated).read_bytes()
    assert b"after the deadline" in (tmp_path / "svc.jsonl").read_bytes()


@pytest.mark.proc
def test_a_forked_child_reconfigures_without_waiting_for_the_parents_thread(
    tmp_path: Path,
) -> None:
    """Celery's prefork pool forks after logging is configured; the child reconfigures. The
    parent's housekeeping thread may hold its lock at that moment: the child must not wait."""
    from loguru import logger

    from foundation import configure_logging
    from foundation.logging import current_logging

    configure_logging(service="svc", log_dir=tmp_path, log_stdout=False, per_process=True)
    config = current_logging()
    assert config is not None
    housekeeper = config.sinks[0]._target.housekeeper  # type: ignore[attr-defined]
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # another thread holds the lock, as the housekeeper does at times
        with housekeeper._condition:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        pid = os.fork()
        if pid == 0:  # the child: reconfigure, log, leave
            try:
                logger.remove()
                configure_logging(
                    service="svc", log_dir=tmp_path, log_stdout=False, per_process=True
                )
                logger.info("from the child")
                logger.remove()
            finally:
                os._exit(0)
    finally:
        release.set()
        holder.join(30)
    deadline = time.monotonic() + 30
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on its parent's lock")
        time.sleep(0.01)
    logger.remove()
    assert b"from the child" in (tmp_path / f"svc-{pid}.jsonl").read_bytes()
