"""``obsctl trace`` of a UUIDv7 ID (contract 6) against ``zcat | grep -F`` and ``grep -F``.

Three log sets, generated once and cached (``tests/bench/loggen.py``, UUIDv7 IDs as foundation
issues them, one request in fifty with a client's v4 ID), all in the past:

1. ``daily``: 14 daily archives of plain gzip (level 6, one member, Loguru's names, mtime at the
   rotation), as another tool writes them; the ID is from the middle of the fifth day.
   Peer: ``zcat *.gz | grep -F ID``.
2. ``rotated``: logs written line by line through foundation's own rotating file
   (``foundation.logfiles.RotatingFile``, 16 MB rotation, its background compression into
   seekable multi-member archives) over half a day; the ID is from the middle.
   Peer: ``zcat *.gz | grep -F ID`` (plus ``grep -F`` of the live file).
3. ``plain``: one plain file covering a day; the ID is from the middle. Peer: ``grep -F``.
   On the same file, a client's v4 ID (no time: the whole file is searched, as before) against
   ``grep -F``.

Whole processes are timed with hyperfine (start-up included, page cache warm, output through a
pipe), one run per command per round, rounds alternating the order; medians.

Environment: ``OBS_BENCH_DAY_MB`` (size of one daily archive before compression, default 50),
``OBS_BENCH_ROTATED_MB`` (default 500), ``OBS_BENCH_PLAIN_MB`` (default 1024),
``OBS_BENCH_ROUNDS`` (default 5), ``OBS_BENCH_DIR`` (cache, default ``var/bench``),
``OBS_BENCH_BEFORE`` (a checkout of an earlier obsctl: its v4 lookup is timed against today's).
"""

from __future__ import annotations

import gzip
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.bench.loggen import BASE_EPOCH, generate

ROOT = Path(__file__).resolve().parents[2]
OBSCTL = str(Path(sys.executable).with_name("obsctl"))
DAY_US = 86_400 * 1_000_000
#: Average bytes a generated request writes (its lines and its access line).
_REQUEST_BYTES = 920


def _gap(megabytes: int, span_us: int) -> tuple[int, int]:
    """Request spacing so that ``megabytes`` of lines cover ``span_us``."""
    requests = (megabytes << 20) / _REQUEST_BYTES
    mean = max(int(span_us / requests), 2)
    return 1, 2 * mean


def _cache() -> Path:
    directory = Path(os.environ.get("OBS_BENCH_DIR") or ROOT / "var" / "bench")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _meta(directory: Path) -> dict[str, str] | None:
    meta = directory / "meta.json"
    return json.loads(meta.read_text()) if meta.exists() else None


def daily(day_mb: int) -> tuple[Path, str]:
    """14 daily gzip archives, 2026-11-14 to 2026-11-27; an ID from the middle of the fifth."""
    directory = _cache() / f"lookup-daily-{day_mb}mb"
    meta = _meta(directory)
    if meta is None:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        print(f"generating 14 daily archives of {day_mb} MiB in {directory}…", flush=True)
        cid = ""
        for day in range(14):
            start_us = (day - 6) * DAY_US
            raw = directory / "day.jsonl"
            info = generate(
                str(raw),
                day_mb << 20,
                seed=100 + day,
                start_us=start_us,
                gap_us=_gap(day_mb, DAY_US),
                v7_ids=True,
            )
            if day == 4:
                cid = info.middle_error_id
            moment = datetime.fromtimestamp(BASE_EPOCH + start_us / 1e6, tz=UTC)
            target = directory / f"shop.{moment:%Y-%m-%d_%H-%M-%S_%f}.log.gz"
            with raw.open("rb") as src, gzip.open(target, "wb", compresslevel=6) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            rotated = BASE_EPOCH + (start_us + DAY_US) / 1e6
            os.utime(target, (rotated, rotated))
            raw.unlink()
        meta = {"id": cid}
        (directory / "meta.json").write_text(json.dumps(meta))
    return directory, meta["id"]


def rotated(total_mb: int) -> tuple[Path, str]:
    """``total_mb`` written through foundation's rotating file at 16 MB, over 12 hours of
    2026-11-28; an ID from the middle."""
    from foundation.logfiles import RotatingFile, Rotation

    directory = _cache() / f"lookup-rotated-{total_mb}mb"
    meta = _meta(directory)
    if meta is None:
        shutil.rmtree(directory, ignore_errors=True)
        logs = directory / "logs"
        logs.mkdir(parents=True)
        print(f"writing {total_mb} MiB through foundation's rotation into {logs}…", flush=True)
        raw = directory / "all.jsonl"
        info = generate(
            str(raw),
            total_mb << 20,
            seed=7,
            start_us=8 * DAY_US,
            gap_us=_gap(total_mb, DAY_US // 2),
            v7_ids=True,
        )
        sink = RotatingFile(
            str(logs),
            "shop",
            per_process=False,
            rotation=Rotation.parse("16 MB"),
            retention=None,
            compress=True,
            drain_seconds=600.0,
        )
        with raw.open("rb") as src:
            for line in src:
                sink.write(line)
        if not sink.drain(timeout=1800.0):
            raise SystemExit("foundation's housekeeper did not finish compressing in 30 minutes")
        sink.stop()
        raw.unlink()
        meta = {"id": info.middle_error_id}
        (directory / "meta.json").write_text(json.dumps(meta))
    return directory / "logs", meta["id"]


def plain(mb: int) -> tuple[Path, str, str]:
    """One plain file covering 2026-11-30; a v7 ID and a client's v4 ID from its middle."""
    directory = _cache() / f"lookup-plain-{mb}mb"
    meta = _meta(directory)
    path = directory / "shop.jsonl"
    if meta is None:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        print(f"generating {path} ({mb} MiB over one day)…", flush=True)
        info = generate(
            str(path),
            mb << 20,
            seed=11,
            start_us=10 * DAY_US,
            gap_us=_gap(mb, DAY_US),
            v7_ids=True,
        )
        meta = {"id": info.middle_error_id, "v4": info.middle_v4_id}
        (directory / "meta.json").write_text(json.dumps(meta))
        # Older than a minute: obsctl reads it through mmap, as it does any quiet file.
        old = path.stat().st_mtime - 120
        os.utime(path, (old, old))
    return path, meta["id"], meta["v4"]


@dataclass
class Case:
    name: str
    command: str
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    lines: int = 0


#: Commands run as an installed obsctl runs: with its bytecode (a development shell may set
#: PYTHONDONTWRITEBYTECODE, which makes every start compile every module again).
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _hyperfine(command: str) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, children included) of one run."""
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        subprocess.run(
            [
                *("hyperfine", "--style", "none", "--output", "pipe", "-i", "-r", "1"),
                *("--export-json", report.name, command),
            ],
            check=True,
            capture_output=True,
            env=_ENV,
        )
        result = json.loads(Path(report.name).read_text())["results"][0]
        return float(result["times"][0]), float(result["user"]) + float(result["system"])


def _lines(command: str) -> int:
    done = subprocess.run(["bash", "-c", command], capture_output=True, check=False, env=_ENV)
    return len(done.stdout.splitlines())


def _q(path: Path | str) -> str:
    return shlex.quote(str(path))


def main() -> None:
    if shutil.which("hyperfine") is None:
        print("hyperfine is not installed (apt-get install hyperfine): skipped")
        return
    day_mb = int(os.environ.get("OBS_BENCH_DAY_MB", "50"))
    rotated_mb = int(os.environ.get("OBS_BENCH_ROTATED_MB", "500"))
    plain_mb = int(os.environ.get("OBS_BENCH_PLAIN_MB", "1024"))
    rounds = int(os.environ.get("OBS_BENCH_ROUNDS", "5"))
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "obsctl")],
        check=True,
        capture_output=True,
        env=_ENV,
    )
    days, day_id = daily(day_mb)
    logs, rot_id = rotated(rotated_mb)
    file, plain_id, v4_id = plain(plain_mb)
    ob = _q(OBSCTL)
    gz_days = " ".join(_q(p) for p in sorted(days.glob("*.gz")))
    gz_rot = " ".join(_q(p) for p in sorted(logs.glob("*.gz")))
    live = " ".join(_q(p) for p in sorted(logs.glob("*.jsonl")))
    groups: dict[str, list[Case]] = {
        f"14 daily gzip archives of {day_mb} MiB, a v7 ID of day 5": [
            Case("obsctl trace ID DIR", f"{ob} trace {day_id} {_q(days)} --json"),
            Case("zcat *.gz | grep -F ID", f"zcat {gz_days} | grep -F {day_id}"),
        ],
        f"{rotated_mb} MiB rotated by foundation at 16 MB, a v7 ID": [
            Case("obsctl trace ID DIR", f"{ob} trace {rot_id} {_q(logs)} --json"),
            Case(
                "zcat *.gz | grep -F ID",
                f"{{ zcat {gz_rot}; cat {live}; }} | grep -F {rot_id}",
            ),
        ],
        f"one plain file of {plain_mb} MiB over a day, a v7 ID": [
            Case("obsctl trace ID FILE", f"{ob} trace {plain_id} {_q(file)} --json"),
            Case("grep -F ID FILE", f"grep -F {plain_id} {_q(file)}"),
        ],
        "the same file, a client's v4 ID (whole file searched)": [
            Case("obsctl trace V4 FILE", f"{ob} trace {v4_id} {_q(file)} --json"),
            Case("grep -F V4 FILE", f"grep -F {v4_id} {_q(file)}"),
        ],
    }
    before = os.environ.get("OBS_BENCH_BEFORE")
    if before:
        # An earlier checkout's obsctl on the same v4 lookup, run by this interpreter.
        old = f"PYTHONPATH={_q(before)} {_q(sys.executable)} -m obsctl.cli.entry"
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(Path(before) / "obsctl")],
            check=True,
            capture_output=True,
            env=_ENV,
        )
        groups["the v4 ID, obsctl before this change (OBS_BENCH_BEFORE)"] = [
            Case("obsctl trace V4 FILE", f"{ob} trace {v4_id} {_q(file)} --json"),
            Case("before: trace V4 FILE", f"{old} trace {v4_id} {_q(file)} --json"),
        ]
    cases = [case for group in groups.values() for case in group]
    for case in cases:
        case.lines = _lines(case.command)
    warm = f"cat {gz_days} {gz_rot} {live} {_q(file)} > /dev/null"
    subprocess.run(["bash", "-c", warm], check=False)
    archives = len(list(logs.glob("*.gz")))
    print(
        f"{rounds} alternated rounds; cores {os.cpu_count()}; rotated set: {archives} archives "
        "+ the live file",
        flush=True,
    )
    for number in range(rounds):
        for case in cases if number % 2 == 0 else list(reversed(cases)):
            wall, cpu = _hyperfine(case.command)
            case.times.append(wall)
            case.cpu.append(cpu)
    budgets: dict[str, Callable[[float, float], str]] = {
        "daily": lambda o, p: f"budget ≥ 20× faster: {'ok' if p / o >= 20 else 'MISS'}",
        "rotated": lambda o, p: (
            f"budget ≥ 25× faster and < 0.1 s: {'ok' if p / o >= 25 and o < 0.1 else 'MISS'}"
        ),
        "plain v7": lambda o, p: f"budget ≥ 5× faster: {'ok' if p / o >= 5 else 'MISS'}",
        "v4": lambda o, p: "budget: no slower than before this change (next group)",
        "before": lambda o, p: f"budget no slower: {'ok' if o <= p * 1.05 else 'MISS'}",
    }
    load = os.getloadavg()[0]
    print(f"load average at the end: {load:.1f} on {os.cpu_count()} cores")
    for (title, (ours, peer)), check in zip(groups.items(), budgets.values(), strict=False):
        o, p = statistics.median(ours.times), statistics.median(peer.times)
        oc, pc = statistics.median(ours.cpu), statistics.median(peer.cpu)
        print(f"\n{title}")
        for case in (ours, peer):
            spread = max(case.times) / min(case.times)
            print(
                f"  {case.name:<26}{statistics.median(case.times):>9.3f} s wall "
                f"(min {min(case.times):.3f}, max/min {spread:.2f}), "
                f"{statistics.median(case.cpu):.3f} s CPU, {case.lines} lines"
            )
        print(f"  obsctl {p / o:.1f}× faster (wall), {pc / oc:.1f}× less CPU; {check(o, p)}")
    if any(c.lines == 0 for c in cases):
        print("\nMISS: a command printed no line (the ID was not found)")


if __name__ == "__main__":
    main()
