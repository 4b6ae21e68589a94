"""obsctl's layers import one way, downwards (README, development notes): the console script
(cli) over the web shell over query over analysis/render over readers/sources over the shared
modules (errors, settings, timespec)."""

from __future__ import annotations

import ast
from pathlib import Path

import obsctl

RANK = {"cli": 6, "web": 5, "query": 4, "render": 3, "analysis": 2, "readers": 1, "sources": 1}
ROOT = Path(obsctl.__file__).parent


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("obsctl"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("obsctl"))
    return found


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        layer = parts[0] if len(parts) > 1 else None
        rank = RANK.get(layer or "", 0)
        for name in _imports(path):
            target = name.split(".")[1] if name.count(".") else ""
            if target in RANK and target != layer and RANK[target] >= rank:
                upward.append(f"{path.relative_to(ROOT)} imports {name}")
    assert upward == []


def test_every_layer_is_a_package_and_no_module_is_left_flat() -> None:
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages >= set(RANK)
    flat = {p.name for p in ROOT.glob("*.py")}
    assert flat == {"__init__.py", "errors.py", "settings.py", "timespec.py"}
