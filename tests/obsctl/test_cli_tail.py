"""``obsctl tail``: readable, filterable, and following like ``tail -F``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from obsctl.cli import commands_files
from obsctl.query.scan import Follower
from obsctl.settings import Settings
from tests.obsctl.logdata import CID_A, CID_B, access, ago, app_error, line, run, write


def _two_files(directory: Path) -> None:
    write(
        directory / "shop.2026-11-26_02-00-00_000000.jsonl",
        line(1.0, message="old one"),
        line(2.0, "WARNING", CID_B, "old warning"),
    )
    write(
        directory / "shop.jsonl",
        line(3.0, cid=CID_A, message="new one"),
        app_error(4.0, CID_A, 30101, 409, "sku=A stock=0", "Out of stock.", "OutOfStock"),
        access(5.0, CID_A, "POST", "/orders", "/orders", 409, 12.3),
    )


def test_last_records_merged_across_files_in_time_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _two_files(Path("var/log"))
    code, out, err = run(capsys, "tail", "-n", "4", "--json")
    assert code == 0 and err == ""
    assert [orjson.loads(raw)["message"] for raw in out.splitlines()] == [
        "old warning",
        "new one",
        "sku=A stock=0",
        "request finished",
    ]


def test_readable_lines_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    _two_files(Path("var/log"))
    code, out, _ = run(capsys, "tail")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 5
    assert lines[3].startswith("2026-11-26 02:11:56.123 ERROR    773fa688 foundation.handlers: ")
    assert "sku=A stock=0" in lines[3] and "internal_code=30101" in lines[3]
    assert "OutOfStock: Out of stock." in lines[3]


@pytest.mark.parametrize(
    ("args", "messages"),
    [
        (["--level", "warning"], ["old warning", "sku=A stock=0"]),
        (["--code", "30101"], ["sku=A stock=0"]),
        (["--id", CID_A[:8]], ["new one", "sku=A stock=0", "request finished"]),
        (["--grep", "^(old|new) one$"], ["old one", "new one"]),
        (["--grep", "OutOfStock"], ["sku=A stock=0"]),
    ],
)
def test_filters(capsys: pytest.CaptureFixture[str], args: list[str], messages: list[str]) -> None:
    _two_files(Path("var/log"))
    code, out, _ = run(capsys, "tail", *args, "--json")
    assert code == 0
    assert [orjson.loads(raw)["message"] for raw in out.splitlines()] == messages


def test_since_shows_everything_recent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path / "a.jsonl", *(line(ago(600 - n), message=f"r{n}") for n in range(30)))
    write(tmp_path / "b.jsonl", line(ago(3), message="recent"))
    code, out, _ = run(capsys, "tail", str(tmp_path), "--since", "9m54.5s", "--json")
    assert code == 0
    messages = [orjson.loads(raw)["message"] for raw in out.splitlines()]
    assert messages == [f"r{n}" for n in range(6, 30)] + ["recent"]


def test_no_match_exits_1_and_bad_level_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    _two_files(Path("var/log"))
    code, out, _ = run(capsys, "tail", "--code", "1")
    assert (code, out) == (1, "")
    code, _, err = run(capsys, "tail", "--level", "LOUD")
    assert code == 2 and "unknown level 'LOUD'" in err


def test_incomplete_last_line_is_not_shown_and_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "a.jsonl", line(1.0, message="done"), line(2.0, message="half")[:25])
    code, out, err = run(capsys, "tail", str(tmp_path), "--json")
    assert code == 0
    assert [orjson.loads(raw)["message"] for raw in out.splitlines()] == ["done"]
    assert err == "obsctl: skipped 1 incomplete final line in a.jsonl\n"


def _follow(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    paths: list[str],
    steps: list[Callable[[], None]],
) -> list[str]:
    """Run ``tail -f --json`` in this process, doing one step between polls; the messages."""
    monkeypatch.setattr(commands_files, "POLL_SECONDS", 0.01)
    pending = list(steps)

    def stop() -> bool:
        if not pending:
            return True
        pending.pop(0)()
        return False

    commands_files.tail(
        paths,
        follow=True,
        lines=0,
        level=None,
        code=None,
        correlation_id=None,
        grep=None,
        since=None,
        json_out=True,
        settings=Settings(),
        stop=stop,
    )
    out = capsys.readouterr().out
    return [orjson.loads(raw)["message"] for raw in out.splitlines()]


def _append(path: Path, data: bytes) -> Callable[[], None]:
    def step() -> None:
        with path.open("ab") as out:
            out.write(data)

    return step


def test_follow_through_rotation_truncation_and_new_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    live = write(tmp_path / "shop.jsonl", line(1.0, message="before"))
    half = line(3.0, message="partial")

    def rotate() -> None:
        with live.open("ab") as out:
            out.write(line(2.5, message="last before rotation"))
        live.rename(tmp_path / "shop.2026-11-26_02-12-00_000000.jsonl")
        write(live, line(2.6, message="first after rotation"))

    def truncate() -> None:
        live.write_bytes(line(4.0, message="after truncation"))

    messages = _follow(
        capsys,
        monkeypatch,
        [str(tmp_path)],
        [
            _append(live, line(2.0, message="appended")),
            rotate,
            _append(live, half[:10]),
            lambda: None,
            _append(live, half[10:]),
            truncate,
            lambda: write(tmp_path / "other.jsonl", line(5.0, message="new file")),
            lambda: None,
        ],
    )
    assert messages == [
        "appended",
        "last before rotation",
        "first after rotation",
        "partial",
        "after truncation",
        "new file",
    ]


def test_follow_of_one_named_file_drains_it_after_rename(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    live = write(tmp_path / "shop.jsonl", line(1.0, message="before"))

    def rotate() -> None:
        with live.open("ab") as out:
            out.write(line(2.0, message="written just before the rename"))
        live.rename(tmp_path / "shop.1.jsonl")

    messages = _follow(
        capsys,
        monkeypatch,
        [str(live)],
        [rotate, lambda: write(live, line(3.0, message="new")), lambda: None],
    )
    assert messages == ["written just before the rename", "new"]


WRITER = """
import sys
from loguru import logger
logger.remove()
logger.add(sys.argv[1] + "/app.jsonl", serialize=True, rotation="200 KB")
for n in range(int(sys.argv[2])):
    logger.bind(n=n).info("record {}", n)
"""


@pytest.mark.proc
def test_follow_while_a_real_writer_rotates_every_200_kb(tmp_path: Path) -> None:
    """Loguru rotating every 200 KB while the follower polls: every record arrives once."""
    total = 6000
    follower = Follower([str(tmp_path)], default_dir="unused", from_start=True)
    seen: list[int] = []
    try:
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(total)], env=dict(os.environ)
        )
        deadline = time.monotonic() + 60
        while writer.poll() is None and time.monotonic() < deadline:
            seen.extend(r.data["n"] for r in follower.poll())
            time.sleep(0.005)
        if writer.poll() is None:
            writer.kill()
            writer.wait(timeout=10)
            pytest.fail("the writer did not finish in 60 s")
        seen.extend(r.data["n"] for r in follower.poll())
    finally:
        follower.close()
    assert writer.returncode == 0
    assert len(list(tmp_path.iterdir())) > 3, "the writer rotated"
    assert sorted(seen) == list(range(total))
    assert follower.damage.summary() is None
