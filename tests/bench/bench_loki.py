"""obsctl trace over Loki against plain httpx paging of the same pages (same run, alternated).

The loopback fake Loki holds one request with 50,000 log lines (ten pages of 5000) spread
over two streams, plus unrelated noise. Measured, alternating sides each round:

* ``plain httpx``: ten ``query_range`` calls with ``httpx.Client`` and ``response.json()``,
  moving ``start`` past the last timestamp (the data has no shared nanosecond at a boundary,
  so this naive loop is exact here) — the floor for fetching these pages in Python;
* ``obsctl paging only``: ``LokiClient.entries`` (exact paging, entries as objects);
* ``obsctl paging + parse``: the same, each line parsed by ``obsctl.readers.parse``;
* ``obsctl trace --json``: the whole command in-process (paging, parsing every line with
  obsctl.readers.parse, ID resolution, timeline ordering, JSON lines to /dev/null);
* ``obsctl trace`` (text): the same with the rendered summary and timeline (its first and
  last 200 rows; ``--json`` has all 50,000).

The issue's target: ``trace`` in under 2x the plain httpx time, for both outputs.

Memory: tracemalloc peak while paging through 1 page and through 10 pages without keeping
the entries (flat paging means the two peaks are about the same).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator

import httpx
import orjson

from obsctl.cli.app import main as obsctl_main
from obsctl.readers.parse import parse_line
from obsctl.sources.http import BackendHttp
from obsctl.sources.loki import LokiClient, loki_error_text
from tests.obsctl.fake_loki import FakeLoki

CID = "5e1f0c2a9b8d4e7f8a6b5c4d3e2f1a0b"
ENTRIES = 50_000
PAGE = 5000
ROUNDS = 5
T0 = 1_795_659_263_000_000_000


def _line(i: int, ts_ns: int) -> str:
    whole, frac = divmod(ts_ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{frac // 1000:06d}Z"
    return orjson.dumps(
        {
            "ts": stamp,
            "level": "ERROR" if i % 97 == 0 else "INFO",
            "correlation_id": CID,
            "message": f"step {i} of the batch import",
            "service": "bench",
            "logger": "bench.worker",
            "function": "run",
            "line": 42,
            "row": i,
        }
    ).decode()


def _fake() -> FakeLoki:
    fake = FakeLoki()
    for stream in range(2):
        values = []
        for i in range(stream, ENTRIES, 2):
            ts = T0 + i * 1000
            values.append((ts, _line(i, ts)))
        fake.push({"service": "bench", "pod": f"p{stream}"}, values)
    noise = [(T0 + i * 1000 + 1, f'{{"message":"other {i}"}}') for i in range(0, ENTRIES, 10)]
    fake.push({"service": "bench", "pod": "noise"}, noise)
    return fake


QUERY = f'{{service=~".+"}} |= "{CID}"'


def plain_httpx(url: str, start: int, end: int) -> int:
    count = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        while True:
            response = client.get(
                "/loki/api/v1/query_range",
                params={
                    "query": QUERY,
                    "start": str(start),
                    "end": str(end),
                    "limit": PAGE,
                    "direction": "forward",
                },
            )
            response.raise_for_status()
            streams = response.json()["data"]["result"]
            stamps = [int(v[0]) for s in streams for v in s["values"]]
            count += len(stamps)
            if len(stamps) < PAGE:
                return count
            start = max(stamps) + 1


@contextlib.contextmanager
def _stdout_to_devnull() -> Iterator[None]:
    saved = os.dup(1)
    with open(os.devnull, "wb") as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def obsctl_trace(url: str, *extra: str) -> int:
    with _stdout_to_devnull():
        code = obsctl_main(["trace", CID, "--loki-url", url, "--loki-since", "3650d", *extra])
    if code != 0:
        raise SystemExit(f"obsctl trace exited {code}")
    return ENTRIES


def _client(url: str) -> BackendHttp:
    return BackendHttp(
        httpx.Client(base_url=url, timeout=30), name="Loki", error_text=loki_error_text
    )


def obsctl_paging(url: str, *, parse: bool) -> int:
    """obsctl's paging layer alone (and with each line parsed by obsctl.readers.parse)."""
    with _client(url) as http:
        entries = LokiClient(http).entries(QUERY, start_ns=T0, end_ns=T0 + 10**12, limit=None)
        if not parse:
            return sum(1 for _ in entries)
        return sum(1 for e in entries if parse_line(e.line.encode()) is not None)


def _peak(url: str, pages: int) -> tuple[int, int]:
    tracemalloc.start()
    seen = 0
    try:
        with _client(url) as http:
            for _ in LokiClient(http).entries(
                QUERY, start_ns=T0, end_ns=T0 + 10**12, limit=pages * PAGE - 1
            ):
                seen += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return seen, peak


def main() -> None:
    fake = _fake().start()
    try:
        url = fake.url
        sides: dict[str, Callable[[], int]] = {
            "plain httpx (10 pages)": lambda: plain_httpx(url, T0, T0 + 10**12),
            "obsctl paging only": lambda: obsctl_paging(url, parse=False),
            "obsctl paging + parse": lambda: obsctl_paging(url, parse=True),
            "obsctl trace --json": lambda: obsctl_trace(url, "--json"),
            "obsctl trace (text)": lambda: obsctl_trace(url),
        }
        times: dict[str, list[float]] = {name: [] for name in sides}
        for side in sides.values():  # warm-up: imports, connection, caches
            side()
        for _ in range(ROUNDS):
            for name, side in sides.items():
                started = time.perf_counter()
                got = side()
                times[name].append(time.perf_counter() - started)
                assert got == ENTRIES, (name, got)
        base = statistics.median(times["plain httpx (10 pages)"])
        print(f"{ENTRIES} matching entries, pages of {PAGE}, {ROUNDS} alternated rounds (s)")
        print(f"{'side':<32}{'median':>9}{'min':>9}{'max':>9}{'vs httpx':>10}")
        for name, values in times.items():
            median = statistics.median(values)
            print(
                f"{name:<32}{median:>9.3f}{min(values):>9.3f}{max(values):>9.3f}"
                f"{median / base:>9.2f}x"
            )
        one = _peak(url, 1)
        ten = _peak(url, 10)
        print("\ntracemalloc peak while paging without keeping entries")
        print(f"{'pages':<8}{'entries':>9}{'peak MiB':>10}")
        for pages, (seen, peak) in ((1, one), (10, ten)):
            print(f"{pages:<8}{seen:>9}{peak / 2**20:>10.1f}")
        print(f"ratio 10 pages / 1 page: {ten[1] / one[1]:.2f}x")
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
