"""``obsctl tail`` reads plain files backwards, one block at a time: no line is lost at a block
boundary, whatever the line lengths (it used to drop one line per block read)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from obsctl.cli.app import main
from obsctl.query import scan
from obsctl.sources import files
from obsctl.sources.files import Damage, LogFile


def _write(path: Path, sizes: list[int], tail: bytes = b"") -> list[tuple[int, bytes]]:
    """Lines of the given lengths (``{"i": n, "p": "xx…"}``); returns (offset, line) pairs."""
    written: list[tuple[int, bytes]] = []
    offset = 0
    with open(path, "wb") as out:
        for i, size in enumerate(sizes):
            line = json.dumps({"i": i, "p": "x" * size}).encode()
            out.write(line + b"\n")
            written.append((offset, line))
            offset += len(line) + 1
        out.write(tail)
    return written


def _backwards(path: Path) -> tuple[list[tuple[int, bytes]], Damage]:
    damage = Damage()
    log = LogFile(str(path), "plain", path.stat().st_size)
    return list(scan._reverse_lines(log, damage)), damage


@pytest.mark.parametrize(
    "sizes",
    [
        [200] * 30_000,  # 6 MB of short lines: many block boundaries
        [700_000] * 12,  # lines shorter than a block, spanning boundaries
        [1_500_000] * 6,  # lines longer than a block
        [0, 1, 1_048_575, 1_048_576, 2, 1_048_577, 3],  # around the block size
    ],
)
def test_every_line_comes_back_once_with_its_offset(tmp_path: Path, sizes: list[int]) -> None:
    path = tmp_path / "app.jsonl"
    written = _write(path, sizes)
    lines, damage = _backwards(path)
    assert lines == written[::-1]
    assert not damage


def test_random_lengths_with_oversized_lines_and_an_unfinished_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "BLOCK_BYTES", 1_500_000)
    rng = random.Random(15)
    sizes = [rng.choice((10, 500, 90_000, 1_100_000, 1_600_000, 3_000_000)) for _ in range(60)]
    path = tmp_path / "app.jsonl"
    written = _write(path, sizes, tail=b'{"ts":"2026-12-01T00:00:00Z","me')
    lines, damage = _backwards(path)
    kept = [(offset, line) for offset, line in written if len(line) <= files.BLOCK_BYTES]
    assert lines == kept[::-1]
    assert damage.lines[("oversized", str(path))] == len(written) - len(kept)
    assert damage.lines[("incomplete final", str(path))] == 1


def test_tail_prints_every_record_of_a_large_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "svc.jsonl"
    count = 20_000
    with open(path, "w", encoding="utf-8") as out:
        for i in range(count):
            record = {"ts": f"2026-12-01T00:{i // 6000:02d}:{i // 100 % 60:02d}.{i:06d}Z"}
            record |= {"level": "INFO", "message": "child record", "i": i, "p": "x" * 150}
            out.write(json.dumps(record, separators=(",", ":")) + "\n")
    code = main(["tail", "-n", str(count), "--json", str(path)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert [json.loads(line)["i"] for line in captured.out.splitlines()] == list(range(count))
