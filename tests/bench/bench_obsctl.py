"""obsctl over log files against grep, ripgrep, jq, lnav and a grep|jq|sort|uniq pipeline.

Whole processes are timed (start-up included) with hyperfine, page cache warm, output through a
pipe (GNU grep stops at the first match when its output is /dev/null), in rounds that
alternate the order of the commands; the table shows the median wall time of every run, the peak
RSS of the largest process (``/usr/bin/time``), and the ratios the issue sets as budgets.

Environment: ``OBS_BENCH_MB`` (file size, default 1024), ``OBS_BENCH_ROUNDS`` (default 3),
``OBS_BENCH_SLOW=0`` to skip jq and lnav (they take ~a minute per GB), ``OBS_BENCH_DIR``
(where the generated files are cached, default ``var/bench``).
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
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.loggen import generate

ROOT = Path(__file__).resolve().parents[2]
OBSCTL = str(Path(sys.executable).with_name("obsctl"))

LNAV_FORMAT = {
    "$schema": "https://lnav.org/schemas/format-v1.schema.json",
    "obs_v1_log": {
        "title": "foundation schema v1 JSON lines",
        "description": "One JSON object per line, as foundation writes them (contract 1).",
        "json": True,
        "file-pattern": r".*\.jsonl$",
        "timestamp-field": "ts",
        "level-field": "level",
        "body-field": "message",
        "opid-field": "correlation_id",
        "level": {
            "critical": "CRITICAL",
            "error": "ERROR",
            "warning": "WARNING",
            "info": "INFO",
            "debug": "DEBUG",
        },
        "value": {
            "correlation_id": {"kind": "string", "identifier": True},
            "internal_code": {"kind": "integer", "identifier": True},
            "http_code": {"kind": "integer"},
            "logger": {"kind": "string", "identifier": True},
            "route": {"kind": "string"},
            "status": {"kind": "integer"},
        },
    },
}


@dataclass
class Case:
    question: str
    tool: str
    command: str
    slow: bool = False
    times: list[float] = field(default_factory=list)
    rss_mb: float | None = None


def _prepare(mb: int) -> tuple[Path, Path, str]:
    """The generated file (cached), its .gz twin, and a failed request's ID from its middle."""
    directory = Path(os.environ.get("OBS_BENCH_DIR") or ROOT / "var" / "bench")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"obsctl-{mb}mb.jsonl"
    meta = directory / f"obsctl-{mb}mb.json"
    if not (path.exists() and meta.exists()):
        print(f"generating {path} ({mb} MiB)…", flush=True)
        info = generate(str(path), mb << 20)
        meta.write_text(json.dumps({"id": info.middle_error_id, "errors": info.error_lines}))
    gz = path.with_suffix(".jsonl.gz")
    if not gz.exists() or gz.stat().st_mtime < path.stat().st_mtime:
        print(f"compressing {gz}…", flush=True)
        with path.open("rb") as src, gzip.open(gz, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    cid = json.loads(meta.read_text())["id"]
    return path, gz, cid


def _cases(path: Path, gz: Path, cid: str, lnav_home: str | None, slow: bool) -> list[Case]:
    f, g = shlex.quote(str(path)), shlex.quote(str(gz))
    ob = shlex.quote(OBSCTL)
    error = shlex.quote('"level":"ERROR"')
    cases = [
        Case("trace", "obsctl", f"{ob} trace {cid} {f}"),
        Case("trace", "grep -F", f"grep -F {cid} {f}"),
        Case("trace", "ripgrep", f"rg -F {cid} {f}"),
        Case("errors", "obsctl", f"{ob} errors top {f}"),
        Case("errors", "grep -c", f"grep -c {error} {f}"),
        Case(
            "errors",
            "grep|jq|sort|uniq",
            f"grep -F {error} {f} | jq -r .internal_code | sort | uniq -c",
        ),
        Case("trace .gz", "obsctl", f"{ob} trace {cid} {g}"),
        Case("trace .gz", "zcat|grep", f"zcat {g} | grep -F {cid}"),
    ]
    if slow:
        jq_trace = shlex.quote(f'select(.correlation_id=="{cid}")')
        jq_errors = shlex.quote('select(.level=="ERROR" or .level=="CRITICAL") | .internal_code')
        cases += [
            Case("trace", "jq", f"jq -c {jq_trace} {f}", slow=True),
            Case("errors", "jq", f"jq -r {jq_errors} {f} | sort | uniq -c", slow=True),
        ]
        if lnav_home is not None:
            env = f"HOME={shlex.quote(lnav_home)}"
            trace_sql = shlex.quote(
                ";SELECT log_time, log_level, log_body FROM obs_v1_log "
                f"WHERE correlation_id = '{cid}'"
            )
            errors_sql = shlex.quote(
                ";SELECT internal_code, count(*) AS n FROM obs_v1_log "
                "WHERE log_level >= 'error' GROUP BY internal_code ORDER BY n DESC"
            )
            cases += [
                Case("trace", "lnav (SQL)", f"{env} lnav -n -c {trace_sql} {f}", slow=True),
                Case("errors", "lnav (SQL)", f"{env} lnav -n -c {errors_sql} {f}", slow=True),
            ]
    return cases


def _lnav_home() -> str | None:
    if shutil.which("lnav") is None:
        return None
    home = tempfile.mkdtemp(prefix="obsctl-bench-lnav-")
    fmt = Path(home) / "obs_v1_log.json"
    fmt.write_text(json.dumps(LNAV_FORMAT))
    subprocess.run(
        ["lnav", "-i", str(fmt)], env={**os.environ, "HOME": home}, capture_output=True, check=True
    )
    return home


def _hyperfine(command: str, runs: int, warmup: int) -> list[float]:
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        subprocess.run(
            [
                *("hyperfine", "--style", "none", "--output", "pipe", "-i"),
                *("-w", str(warmup), "-r", str(runs)),
                *("--export-json", report.name, command),
            ],
            check=True,
            capture_output=True,
        )
        data = json.loads(Path(report.name).read_text())
    return [float(t) for t in data["results"][0]["times"]]


def _peak_rss_mb(command: str) -> float | None:
    time_bin = Path("/usr/bin/time")
    if not time_bin.exists():
        return None
    done = subprocess.run(
        [str(time_bin), "-f", "%M", "bash", "-c", f"{command} | cat > /dev/null"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return int(done.stderr.strip().splitlines()[-1]) / 1024
    except (ValueError, IndexError):
        return None


def _startup(runs: int = 20) -> dict[str, float]:
    out = {}
    for args in ("--version", "--help"):
        with tempfile.NamedTemporaryFile(suffix=".json") as report:
            subprocess.run(
                [
                    *("hyperfine", "--style", "none", "-N", "-w", "3", "-r", str(runs)),
                    *("--export-json", report.name, f"{OBSCTL} {args}"),
                ],
                check=True,
                capture_output=True,
            )
            times = json.loads(Path(report.name).read_text())["results"][0]["times"]
        out[args] = statistics.median(times)
    return out


def _median(case: Case) -> float:
    return statistics.median(case.times) if case.times else float("nan")


def _find(cases: list[Case], question: str, tool: str) -> Case | None:
    return next((c for c in cases if c.question == question and c.tool == tool), None)


def main() -> None:
    mb = int(os.environ.get("OBS_BENCH_MB", "1024"))
    rounds = int(os.environ.get("OBS_BENCH_ROUNDS", "3"))
    slow = os.environ.get("OBS_BENCH_SLOW", "1") not in ("0", "")
    path, gz, cid = _prepare(mb)
    cases = _cases(path, gz, cid, _lnav_home() if slow else None, slow)
    subprocess.run(["cat", str(path), str(gz)], stdout=subprocess.DEVNULL, check=True)  # warm
    print(
        f"file {path.name}: {path.stat().st_size / 2**20:.0f} MiB, "
        f"gz {gz.stat().st_size / 2**20:.0f} MiB; "
        f"{rounds} rounds (jq/lnav: 1 run); cores {os.cpu_count()}",
        flush=True,
    )
    for round_no in range(rounds):
        order = cases if round_no % 2 == 0 else list(reversed(cases))
        for case in order:
            if case.slow and round_no > 0:
                continue
            case.times += _hyperfine(case.command, runs=1, warmup=1 if round_no == 0 else 0)
    for case in cases:
        case.rss_mb = _peak_rss_mb(case.command)
    startup = _startup()

    print()
    print(
        f"{'question':<10} {'tool':<20} {'median s':>9} {'min s':>8} "
        f"{'peak RSS MB':>12} {'× obsctl':>9}"
    )
    for case in cases:
        ours = _find(cases, case.question, "obsctl")
        ratio = _median(case) / _median(ours) if ours else float("nan")
        rss = f"{case.rss_mb:.0f}" if case.rss_mb is not None else "?"
        print(
            f"{case.question:<10} {case.tool:<20} {_median(case):>9.3f} {min(case.times):>8.3f} "
            f"{rss:>12} {ratio:>9.2f}"
        )
    print()
    print(
        f"startup: obsctl --version {startup['--version'] * 1000:.0f} ms, "
        f"--help {startup['--help'] * 1000:.0f} ms (budget 150 ms)"
    )
    budgets = [
        ("trace", "grep -F", "obsctl trace ≤ 1.5 × grep -F", lambda o, p: o / p <= 1.5),
        ("trace", "jq", "obsctl trace ≥ 20 × faster than jq", lambda o, p: p / o >= 20),
        ("errors", "grep -c", "obsctl errors top ≤ 3 × grep -c", lambda o, p: o / p <= 3),
        ("errors", "jq", "obsctl errors top ≥ 10 × faster than jq", lambda o, p: p / o >= 10),
        (
            "errors",
            "grep|jq|sort|uniq",
            "errors top no slower than grep|jq|sort|uniq",
            lambda o, p: o <= p,
        ),
        ("trace .gz", "zcat|grep", "trace .gz no slower than zcat|grep", lambda o, p: o <= p),
    ]
    for question, peer_tool, label, ok in budgets:
        ours, peer = _find(cases, question, "obsctl"), _find(cases, question, peer_tool)
        if ours is None or peer is None:
            continue
        o, p = _median(ours), _median(peer)
        print(f"  {'ok  ' if ok(o, p) else 'MISS'} {label}: {o:.3f} s vs {p:.3f} s ({p / o:.2f}×)")
    worst = max((c.rss_mb or 0.0) for c in cases if c.tool == "obsctl")
    print(
        f"  {'ok  ' if worst < 200 else 'MISS'} obsctl peak RSS {worst:.0f} MB "
        "(budget 200 MB, largest process)"
    )


if __name__ == "__main__":
    main()
