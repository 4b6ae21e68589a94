"""A child process that logs like production: ``python -m tests.foundation.logchild DIR [options]``.

It configures foundation's logging for ``--service`` in DIR, writes ``--count`` records
(``i`` = 0, 1, ...; ``pid``; padding), prints ``logged <n> <longest call in µs>`` and then, with
``--hold``, prints ``holding`` and waits until its stdin closes (a live process keeping its live
file). ``--block-compression FILE`` makes every archive member wait until FILE exists, so a
test can show that the log calls finished while every compression was still blocked.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("log_dir")
    parser.add_argument("--service", default="svc")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rotation", default="200 KB")
    parser.add_argument("--retention", default=None)
    parser.add_argument("--compression", default="gz")
    parser.add_argument("--per-process", action="store_true")
    parser.add_argument("--padding", type=int, default=100)
    parser.add_argument("--hold", action="store_true")
    parser.add_argument("--block-compression", default=None)
    args = parser.parse_args(argv)

    from loguru import logger

    import foundation.logfiles
    from foundation import configure_logging

    if args.block_compression:
        release = args.block_compression
        real_member = foundation.logfiles.member

        def blocked_member(data: bytes, *, level: int = foundation.logfiles.ARCHIVE_LEVEL) -> bytes:
            while not os.path.exists(release):
                time.sleep(0.01)
            return real_member(data, level=level)

        foundation.logfiles.member = blocked_member  # type: ignore[assignment]

    retention: str | int | None = args.retention
    if isinstance(retention, str) and retention.isdigit():
        retention = int(retention)
    configure_logging(
        service=args.service,
        log_dir=args.log_dir,
        log_stdout=False,
        intercept_stdlib=False,
        rotation=args.rotation,
        retention=retention,
        compression=args.compression or None,
        per_process=args.per_process,
        env={},
    )
    pid = os.getpid()
    padding = "p" * args.padding
    longest = 0
    for i in range(args.count):
        started = time.perf_counter_ns()
        logger.info("child record", i=i, pid=pid, padding=padding)
        longest = max(longest, time.perf_counter_ns() - started)
    print(f"logged {args.count} {longest // 1000}", flush=True)
    if args.hold:
        print("holding", flush=True)
        sys.stdin.read()
    logger.remove()  # what the interpreter's exit does too: stop the sink, drain the housekeeper
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
