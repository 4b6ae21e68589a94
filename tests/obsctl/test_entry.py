"""obsctl.cli.entry: the fast lane reads the same flags as the typer commands, or steps aside."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from obsctl.cli import app as cli
from obsctl.cli import commands_files
from obsctl.cli.entry import fast_command, main
from obsctl.settings import resolve

CID = "773fa6885c2e4d7f9a6b1c0d2e3f4a5b"

SAME = [
    ["trace", CID],
    ["trace", CID, "a.jsonl", "logs/", "--json"],
    ["trace", "--json", CID, "-f", "x.gz"],
    ["trace", CID, "--follow", "--", "-odd-name.jsonl"],
    ["errors", "top"],
    ["errors", "top", "p", "--by", "route", "--since", "1h", "--until=5m", "--limit", "3"],
    ["errors", "top", "--json", "--by=status", "a", "b"],
    ["tail"],
    ["tail", "-f", "-n", "5", "--level", "ERROR", "--code", "30101", "--id", CID[:8]],
    ["tail", "--grep", "out of stock", "--since", "5m", "--json", "p1", "p2", "--lines=0"],
]


def _recorder(calls: list[tuple[str, dict[str, Any]]], name: str) -> Callable[..., None]:
    real = getattr(commands_files, name)

    def record(*args: Any, **kwargs: Any) -> None:
        arguments = dict(inspect.signature(real).bind(*args, **kwargs).arguments)
        # typer resolves the settings itself (for its Loki flags); without those flags they are
        # what the command would resolve on its own
        assert arguments.pop("settings", resolve()) == resolve()
        arguments["paths"] = list(arguments["paths"])
        calls.append((name, arguments))

    return record


@pytest.mark.parametrize("argv", SAME, ids=[" ".join(a) for a in SAME])
def test_fast_lane_calls_the_command_exactly_as_typer_does(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    for name in ("trace", "errors_top", "tail"):
        monkeypatch.setattr(commands_files, name, _recorder(calls, name))
    command = fast_command(argv)
    assert command is not None
    command()
    assert cli.main(list(argv)) == 0
    assert len(calls) == 2
    assert calls[0] == calls[1]


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["trace", "--help"],
        ["trace"],
        ["errors", "top", "--by", "colour"],
        ["errors", "top", "--limit", "0"],
        ["errors"],
        ["tail", "-n", "many"],
        ["tail", "--colour"],
        ["tail", "--json", "--json"],
        ["prom", "query", "up"],
    ],
)
def test_anything_unusual_goes_to_typer(argv: list[str]) -> None:
    assert fast_command(argv) is None


def test_bad_values_get_typer_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["errors", "top", "--by", "colour"]) == 2
    assert "colour" in capsys.readouterr().err
    assert main(["tail", "-n", "-1"]) == 2


def test_help_lists_the_commands_and_version_matches(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("trace", "errors", "tail"):
        assert command in out
    assert main(["--version"]) == 0
    fast = capsys.readouterr().out
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == fast
    assert fast.startswith("obsctl ")


def test_with_a_loki_url_in_the_environment_typer_decides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    monkeypatch.setenv("OBSCTL_LOKI_URL", "http://127.0.0.1:9")
    monkeypatch.setattr(cli, "main", lambda argv: calls.append("typer") or 0)
    assert main(["trace", CID]) == 0
    assert calls == ["typer"]
