"""Cost of issuing a correlation ID: foundation's UUIDv7 against upstream's ``uuid4().hex``.

Alternated rounds of ``timeit`` (each side measured right after the other, the order flipped every
round); the table shows the median and best microseconds per ID and the ratio to ``uuid4().hex``.
``OBS_BENCH_ROUNDS`` (default 7) and ``OBS_BENCH_IDS`` (IDs per round, default 200,000).
"""

from __future__ import annotations

import os
import statistics
import timeit
import uuid
from collections.abc import Callable

from foundation.correlation import new_correlation_id


def _uuid4_hex() -> str:
    return uuid.uuid4().hex


SIDES: dict[str, Callable[[], str]] = {
    "uuid4().hex (before)": _uuid4_hex,
    "foundation v7": new_correlation_id,
}


def main() -> None:
    rounds = int(os.environ.get("OBS_BENCH_ROUNDS", "7"))
    count = int(os.environ.get("OBS_BENCH_IDS", "200000"))
    print(f"{count:,} IDs per round, {rounds} alternated rounds, µs per ID")
    times: dict[str, list[float]] = {name: [] for name in SIDES}
    names = list(SIDES)
    for number in range(rounds):
        for name in names if number % 2 == 0 else reversed(names):
            times[name].append(timeit.timeit(SIDES[name], number=count) / count * 1e6)
    base = statistics.median(times[names[0]])
    print(f"{'generator':<24}{'median':>9}{'best':>9}{'ratio':>8}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<24}{median:>9.3f}{min(values):>9.3f}{median / base:>7.2f}x")
    spread = max(max(v) / min(v) for v in times.values())
    print(f"noise: slowest round / fastest round of one side up to {spread:.2f}x")


if __name__ == "__main__":
    main()
