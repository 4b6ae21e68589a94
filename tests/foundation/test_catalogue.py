"""The error catalogue command: codes with their cause and what to do, in Markdown and JSON.

The golden files are the shop's catalogue; after changing an error's text on purpose, rewrite
them with ``python -m foundation.catalogue --import examples.shop.errors
--markdown tests/data/catalogue_shop.md --json tests/data/catalogue_shop.json``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from foundation import ApiException
from foundation.exceptions import explain
from tests.foundation.servers import REPO_ROOT, child_env

DATA = REPO_ROOT / "tests" / "data"


def _catalogue(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # A fresh process: the registry then holds foundation's and the shop's classes only.
    return subprocess.run(
        [sys.executable, "-m", "foundation.catalogue", *args],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_shops_catalogue_matches_the_golden_markdown_and_json(tmp_path: Path) -> None:
    md, js = tmp_path / "errors.md", tmp_path / "errors.json"
    result = _catalogue(
        "--import", "examples.shop.errors", "--markdown", str(md), "--json", str(js), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no runpy warning, no noise
    assert md.read_text(encoding="utf-8") == (DATA / "catalogue_shop.md").read_text("utf-8")
    assert js.read_bytes() == (DATA / "catalogue_shop.json").read_bytes()


def test_each_shop_code_has_a_cause_and_what_to_do() -> None:
    entries = json.loads((DATA / "catalogue_shop.json").read_text(encoding="utf-8"))
    by_code = {entry["internal_code"]: entry for entry in entries}
    assert sorted(by_code) == [
        *(10400, 10404, 10405, 10422, 10500, 20000),
        *(21101, 21102, 21103, 21104, 21201, 21202, 25001),
        *(30101, 30102, 30103, 30301),
    ]
    for entry in entries:
        assert entry["cause"], entry["internal_code"]
        assert entry["what_to_do"], entry["internal_code"]
    out_of_stock = by_code[30101]
    assert out_of_stock["cause"] == (
        "The product exists but fewer items are left than the order asks for."
    )
    assert out_of_stock["what_to_do"].startswith("Order fewer items")
    markdown = (DATA / "catalogue_shop.md").read_text(encoding="utf-8")
    assert "## 30101 OutOfStock (HTTP 409)" in markdown
    assert f"- **What to do**: {out_of_stock['what_to_do']}" in markdown


def test_json_on_stdout(tmp_path: Path) -> None:
    result = _catalogue("--import", "examples.shop.errors", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.encode() == (DATA / "catalogue_shop.json").read_bytes()


def test_a_module_that_cannot_be_imported_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _catalogue("--import", "no_such_module_here", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "catalogue: cannot import no_such_module_here: "
        "ModuleNotFoundError: No module named 'no_such_module_here'"
    ]


def test_cause_is_the_classs_own_docstring_and_what_to_do_is_inherited() -> None:
    class Documented(ApiException):
        """The thing ran out.

        Developer notes that are not for the catalogue.
        """

        what_to_do = "Wait   for more\n   things."

    class Bare(Documented):
        pass

    assert explain(Documented) == ("The thing ran out.", "Wait for more things.")
    assert explain(Bare) == ("", "Wait for more things.")
