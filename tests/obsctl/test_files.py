"""obsctl.sources.files: finding log files, reading them whatever their compression, reporting
damage."""

from __future__ import annotations

import bz2
import gzip
import lzma
import resource
import zipfile
from pathlib import Path

import pytest

from obsctl.errors import UsageError
from obsctl.sources import files
from obsctl.sources.files import Damage, LogFile, expand_paths, iter_lines
from tests.obsctl.logdata import line, write


@pytest.fixture(autouse=True, params=["read", "mmap"])
def reading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs on both ways of reading plain files: read() for files being written,
    mmap windows for quiet ones."""
    quiet = -1.0 if request.param == "mmap" else 1e12
    monkeypatch.setattr(files, "MMAP_QUIET_SECONDS", quiet)
    return str(request.param)


LINES = b"".join(line(i, message=f"m{i}") for i in range(1000))


def _read(path: Path) -> tuple[list[bytes], str | None]:
    damage = Damage()
    (log,) = expand_paths([str(path)], default_dir="unused")
    lines = [raw for _, raw in iter_lines(log, damage)]
    return lines, damage.summary()


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("app.jsonl", LINES, "plain"),
        ("app.jsonl.gz", gzip.compress(LINES), "gzip"),
        ("app.jsonl.bz2", bz2.compress(LINES), "bzip2"),
        ("app.jsonl.xz", lzma.compress(LINES), "xz"),
        ("mislabelled.gz", LINES, "plain"),  # plain JSON named .gz
        ("mislabelled.log", gzip.compress(LINES), "gzip"),  # gzip named .log
    ],
)
def test_every_line_is_read_whatever_the_compression_or_name(
    tmp_path: Path, name: str, data: bytes, kind: str
) -> None:
    path = write(tmp_path / name, data)
    (log,) = expand_paths([str(path)], default_dir="unused")
    assert log.kind == kind
    lines, summary = _read(path)
    assert lines == LINES.splitlines()
    assert summary is None


def test_zip_archive_members_are_all_read(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "logs.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.jsonl", LINES[:5000].rsplit(b"\n", 1)[0] + b"\n")
        archive.writestr("b.jsonl", line(5000, message="from b"))
    lines, summary = _read(tmp_path / "logs.zip")
    assert lines[-1] == line(5000, message="from b").rstrip(b"\n")
    assert len(lines) == LINES[:5000].count(b"\n") + 1
    assert summary is None


def test_multi_member_gzip_is_read_to_the_end(tmp_path: Path) -> None:
    half = len(LINES.splitlines()) // 2
    first = b"\n".join(LINES.splitlines()[:half]) + b"\n"
    second = b"\n".join(LINES.splitlines()[half:]) + b"\n"
    lines, _ = _read(write(tmp_path / "a.gz", gzip.compress(first) + gzip.compress(second)))
    assert lines == LINES.splitlines()


def test_truncated_gzip_keeps_its_readable_prefix_and_says_so(tmp_path: Path) -> None:
    data = gzip.compress(LINES)
    lines, summary = _read(write(tmp_path / "app.jsonl.gz", data[: len(data) // 2]))
    assert 100 < len(lines) < 1000
    assert lines == LINES.splitlines()[: len(lines)]
    assert summary is not None
    assert "app.jsonl.gz (truncated compressed file, readable part used)" in summary


def test_corrupted_gzip_keeps_its_readable_prefix_and_says_so(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(LINES * 5))
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64
    lines, summary = _read(write(tmp_path / "app.jsonl.gz", bytes(data)))
    good = (LINES * 5).splitlines()
    assert len(lines) > 100
    assert lines[:100] == good[:100]
    assert summary is not None and "corrupted compressed file" in summary


def test_non_utf8_and_garbage_lines_do_not_stop_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "a.jsonl", line(1), b'{"m":"caf\xe9"}\n', b"\x00" * 100 + b"\n", line(2)
    )
    lines, summary = _read(path)
    assert len(lines) == 4
    assert summary is None  # reading never judges content; parsing counts it (see test_cli_*)


def test_incomplete_final_line_is_reported_and_not_returned(tmp_path: Path) -> None:
    lines, summary = _read(write(tmp_path / "a.jsonl", line(1), line(2)[:20]))
    assert lines == [line(1).rstrip(b"\n")]
    assert summary == "skipped 1 incomplete final line in a.jsonl"


def test_a_50_mb_line_is_skipped_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as out:
        out.write(line(1))
        out.write(b'{"ts":"2026-11-26T02:11:52.000000Z","message":"')
        chunk = b"x" * (1 << 20)
        for _ in range(50):
            out.write(chunk)
        out.write(b'"}\n')
        out.write(line(2))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    lines, summary = _read(path)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert lines == [line(1).rstrip(b"\n"), line(2).rstrip(b"\n")]
    assert summary == "skipped 1 oversized line in huge.jsonl"
    assert grown_mb < 40


def test_directories_and_globs_expand_to_each_file_once(tmp_path: Path) -> None:
    for name in ("shop.jsonl", "shop.2026-11-25_00-00-00_000000.jsonl", "shop.old.jsonl.gz"):
        write(tmp_path / "logs" / name, line(1))
    write(tmp_path / "logs" / ".hidden", line(1))
    found = expand_paths(
        [str(tmp_path / "logs"), str(tmp_path / "logs" / "*.jsonl")], default_dir="unused"
    )
    names = sorted(Path(log.path).name for log in found)
    assert names == ["shop.2026-11-25_00-00-00_000000.jsonl", "shop.jsonl", "shop.old.jsonl.gz"]


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (["missing.jsonl"], "no such file or directory: 'missing.jsonl'"),
        (["*.nothing"], "no file matches '*.nothing'"),
        ([], "no log directory 'var/log' here"),
    ],
)
def test_missing_inputs_are_usage_errors_naming_them(paths: list[str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        expand_paths(paths, default_dir="var/log")
    assert str(caught.value) == message


def test_a_file_that_is_not_json_lines_is_skipped_and_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.txt", b"hello\nworld\n")
    damage = Damage()
    log = LogFile(str(path), "plain", path.stat().st_size)
    assert list(iter_lines(log, damage)) == []
    assert damage.summary() == "skipped notes.txt (not a JSON log file)"


# -- foundation's rotation, caught in every intermediate state ----------------------------------

ROTATED = "shop.2026-11-26T04-31-59-123456Z.jsonl"


def _lines_of(paths: list[str]) -> list[bytes]:
    damage = Damage()
    lines = [raw for log in expand_paths(paths, default_dir="unused")
             for _, raw in iter_lines(log, damage)]  # fmt: skip
    assert damage.summary() is None
    return lines


def _archived(directory: Path, *, keep_source: bool) -> Path:
    """A rotated file compressed by foundation's own writer; its source kept or not."""
    from foundation.logfiles import compress_rotated

    rotated = directory / ROTATED
    rotated.write_bytes(LINES)
    kept = rotated.read_bytes()
    assert compress_rotated(str(rotated)) == "compressed"
    if keep_source:  # the moment between the archive's rename and the source's unlink
        rotated.write_bytes(kept)
    return rotated


@pytest.mark.parametrize("state", ["rotated", "being compressed", "both names", "archived"])
def test_each_state_of_a_rotation_is_read_exactly_once(tmp_path: Path, state: str) -> None:
    write(tmp_path / "shop.jsonl", line(5000, message="live"))
    rotated = tmp_path / ROTATED
    if state == "rotated":
        rotated.write_bytes(LINES)
    elif state == "being compressed":  # the hidden temporary archive, half written
        rotated.write_bytes(LINES)
        (tmp_path / f".{ROTATED}.gz.tmp").write_bytes(gzip.compress(LINES)[:200])
    else:
        _archived(tmp_path, keep_source=state == "both names")
    for paths in ([str(tmp_path)], [str(tmp_path / "*")]):
        assert sorted(_lines_of(paths)) == sorted(
            [*LINES.splitlines(), line(5000, message="live").rstrip(b"\n")]
        )


def test_a_file_compressed_after_listing_is_read_from_its_archive(tmp_path: Path) -> None:
    from foundation.logfiles import compress_rotated

    rotated = tmp_path / ROTATED
    rotated.write_bytes(LINES)
    (log,) = expand_paths([str(tmp_path)], default_dir="unused")
    assert compress_rotated(str(rotated)) == "compressed"  # and the source is gone
    damage = Damage()
    assert [raw for _, raw in iter_lines(log, damage)] == LINES.splitlines()
    assert damage.summary() is None
    # A range of the plain file (parallel scans cut big files) maps onto the same bytes.
    middle = LINES.index(b"\n", 10_000) + 1
    first = b"".join(
        bytes(buf[lo:hi]) for buf, lo, hi, _ in files.iter_blocks(log, damage, end=middle)
    )
    rest = b"".join(
        bytes(buf[lo:hi]) for buf, lo, hi, _ in files.iter_blocks(log, damage, start=middle)
    )
    assert first + rest == LINES and damage.summary() is None
