"""Rewrite ``tests/data/golden.jsonl``: ``python -m tests.data.make_golden``."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.data.golden_app import GOLDEN, generate


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.write_bytes(generate(Path(tmp)))
    print(f"wrote {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
