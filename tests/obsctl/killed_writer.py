"""A process logging through foundation until it is killed:
``python -m tests.obsctl.killed_writer DIR CORRELATION_ID COUNT PADDING``.

It configures foundation's file sink in DIR (service ``killed``, no rotation or compression) and
writes COUNT ERROR records under CORRELATION_ID, each with ``i`` = 0, 1, … and PADDING bytes of
padding, as fast as it can. Large records make a SIGKILL likely to land inside one write.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    log_dir, cid, count, padding = argv[0], argv[1], int(argv[2]), int(argv[3])
    from asgi_correlation_id import correlation_id
    from loguru import logger

    from foundation import configure_logging

    configure_logging(
        service="killed",
        log_dir=log_dir,
        log_stdout=False,
        rotation=None,
        retention=None,
        compression=None,
        per_process=False,
        max_field_chars=padding + 100,
        intercept_stdlib=False,
        env={},
    )
    correlation_id.set(cid)
    filler = "k" * padding
    for i in range(count):
        logger.bind(internal_code=30101, http_code=409, i=i, padding=filler).error("order failed")
    logger.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
