"""Sentry: the cases of ``sentry_cases.py`` in a process of their own, and no hard dependency.

``sentry_sdk.init`` patches Starlette's and FastAPI's classes for the rest of the process (its
frames then appear in every traceback foundation logs), and nothing undoes it; so the cases run
in a child pytest, whose output is shown when one fails.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.foundation.servers import REPO_ROOT, child_env

CASES = REPO_ROOT / "tests" / "foundation" / "sentry_cases.py"


@pytest.mark.proc
def test_sentry_cases_pass_in_their_own_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(CASES), "-q"],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert " passed" in output and "skipped" not in output, output


def test_foundation_never_imports_sentry() -> None:
    code = (
        "import sys, foundation\n"
        "from fastapi import FastAPI\n"
        "app = FastAPI()\n"
        "foundation.setup(app, service='x', log_dir=None, log_stdout=False)\n"
        "print('sentry_sdk' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
