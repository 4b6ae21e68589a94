"""``obsctl serve``: a warm page for an ID against ``obsctl trace ID --json`` on the same logs.

The generated schema-v1 log (``loggen``, ``OBS_BENCH_SERVE_MB`` MiB, default 256; an ID without
a time, so both sides scan the whole file) is read by:

- the CLI, a whole process as a user runs it: ``obsctl trace ID FILE --json`` (output to a pipe);
- a running ``obsctl serve`` on 127.0.0.1: ``GET /trace/ID`` (the HTML page) and
  ``GET /api/trace/ID`` (the JSON records) with the bearer token, over one kept-alive connection.

The server is warmed up with one request first; the sides then alternate, their order reversed
every other round (``OBS_BENCH_ROUNDS``, default 7), and medians are compared. Issue budget: the
warm page within 1.2x of the CLI's time.
"""

from __future__ import annotations

import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.bench.loggen import generate
from tests.support import stop_process

ROOT = Path(__file__).resolve().parents[2]


def _log(mb: int) -> tuple[Path, str]:
    directory = Path(os.environ.get("OBS_BENCH_DIR") or ROOT / "var" / "bench")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"serve-{mb}mb.jsonl"
    marker = path.with_suffix(".id")
    if not (path.exists() and marker.exists()):
        print(f"generating {path} ({mb} MiB)…", flush=True)
        marker.write_text(generate(str(path), mb << 20).middle_error_id)
    return path, marker.read_text().strip()


def _obsctl() -> list[str]:
    script = Path(sys.executable).with_name("obsctl")
    return [str(script)] if script.exists() else [sys.executable, "-m", "obsctl.cli.entry"]


def _timed(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    mb = int(os.environ.get("OBS_BENCH_SERVE_MB", "256"))
    rounds = int(os.environ.get("OBS_BENCH_ROUNDS", "7"))
    path, cid = _log(mb)
    token = secrets.token_hex(24)
    server = subprocess.Popen(
        [*_obsctl(), "serve", str(path), "--listen", "127.0.0.1:0"],
        env={**os.environ, "OBSCTL_SERVE_TOKEN": token},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        found = re.search(r"http://\S+/", server.stderr.readline())
        assert found, "obsctl serve printed no URL"
        url = found.group(0)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:

            def page() -> None:
                response = client.get(f"/trace/{cid}")
                assert response.status_code == 200 and "sentence" in response.text

            def api() -> None:
                response = client.get(f"/api/trace/{cid}")
                assert response.status_code == 200 and response.json()

            def cli() -> None:
                subprocess.run(
                    [*_obsctl(), "trace", cid, str(path), "--json"],
                    check=True,
                    stdout=subprocess.PIPE,
                )

            sides: dict[str, Callable[[], None]] = {
                "obsctl trace ID --json": cli,
                "serve GET /trace/ID (page)": page,
                "serve GET /api/trace/ID": api,
            }
            for run in sides.values():  # warm-up: page cache, imports, templates
                run()
            times: dict[str, list[float]] = {name: [] for name in sides}
            for index in range(rounds):
                order = list(sides) if index % 2 == 0 else list(reversed(sides))
                for name in order:
                    times[name].append(_timed(sides[name]))
    finally:
        stop_process(server)
        if server.stderr is not None:
            server.stderr.close()
    base = statistics.median(times["obsctl trace ID --json"])
    print(f"{mb} MiB log, ID without a time (whole file scanned), {rounds} alternated rounds")
    print(f"{'side':<30} {'median s':>9} {'x CLI':>7}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<30} {median:>9.3f} {median / base:>7.2f}")
    print("budget: the warm page within 1.20x of obsctl trace ID --json")
