"""``foundation.setup``: options and ``FOUNDATION_*`` variables, the public surface, and the
middleware order that makes every response carry the ID and every request one access line."""

from __future__ import annotations
import __future__

import types
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

import foundation
from foundation.handlers import INTERNAL_ERROR_MESSAGE
from foundation.setup import FoundationSettings, SettingError, resolve_settings
from tests.foundation import apps
from tests.foundation.conftest import client_for
from tests.foundation.servers import read_records

# -- the public surface --------------------------------------------------------------------------


def test_all_imports_are_exported() -> None:
    """Like httpx's test: every public name of the package is in ``__all__``, sorted."""
    public = [
        name
        for name, value in vars(foundation).items()
        if (not name.startswith("_") or name == "__version__")
        and not isinstance(value, types.ModuleType)
        and value is not __future__.annotations
    ]
    assert foundation.__all__ == sorted(public)


def test_contract_names_are_importable_from_the_package() -> None:
    """DESIGN.md contract 5: these names stay importable from ``foundation`` itself."""
    for name in (
        "setup",
        "configure_logging",
        "add_exception_handlers",
        "get_correlation_id",
        "AppException",
        "ApiException",
        "DbException",
        "RecordNotFound",
        "Database",
        "DbManager",
    ):
        assert name in foundation.__all__, name
        assert getattr(foundation, name) is not None


# -- settings ------------------------------------------------------------------------------------


def test_defaults() -> None:
    settings = resolve_settings("shop", {}, env={})
    assert settings == FoundationSettings(service="shop")
    assert (settings.log_dir, settings.log_level, settings.log_stdout, settings.metrics) == (
        "var/log",
        "INFO",
        True,
        True,
    )


def test_environment_variables_fill_every_option_and_explicit_options_win() -> None:
    env = {
        "FOUNDATION_LOG_DIR": "/srv/logs",
        "FOUNDATION_LOG_LEVEL": "WARNING",
        "FOUNDATION_LOG_STDOUT": "off",
        "FOUNDATION_METRICS": "0",
        "FOUNDATION_LOG_ROTATION": "none",
        "FOUNDATION_LOG_REDACT": "ssn, pin ,",
        "FOUNDATION_LOG_MAX_FIELD_CHARS": "2048",
        "FOUNDATION_LOG_PER_PROCESS": "yes",
        "FOUNDATION_PROBLEM_JSON": "true",
        "FOUNDATION_REQUEST_ID_HEADER": "X-Correlation-ID",
        "FOUNDATION_SERVICE": "ignored: the service is an argument",
    }
    settings = resolve_settings("shop", {"log_level": "DEBUG"}, env=env)
    assert settings.service == "shop"
    assert settings.log_level == "DEBUG"  # explicit beats the environment
    assert settings.log_dir == "/srv/logs"
    assert settings.log_stdout is False and settings.metrics is False
    assert settings.log_rotation is None
    assert settings.log_redact == ("ssn", "pin")
    assert settings.log_max_field_chars == 2048
    assert settings.log_per_process is True
    assert settings.problem_json is True
    assert settings.request_id_header == "X-Correlation-ID"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("FOUNDATION_LOG_STDOUT", "maybe", "FOUNDATION_LOG_STDOUT='maybe': expected true or false"),
        ("FOUNDATION_METRICS", "2", "FOUNDATION_METRICS='2': expected true or false"),
        (
            "FOUNDATION_LOG_MAX_FIELD_CHARS",
            "lots",
            "FOUNDATION_LOG_MAX_FIELD_CHARS='lots': expected an integer",
        ),
    ],
)
def test_unusable_variable_is_refused_with_its_name(
    variable: str, value: str, expected: str
) -> None:
    with pytest.raises(SettingError) as raised:
        resolve_settings("shop", {}, env={variable: value})
    assert str(raised.value) == expected


def test_unknown_option_is_refused() -> None:
    with pytest.raises(TypeError, match=r"unknown option\(s\): log_dri"):
        foundation.setup(FastAPI(), service="shop", env={}, log_dri="typo")


async def test_process_environment_configures_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an operator does: export variables, start the app, find the lines where told."""
    log_dir = tmp_path / "from-env"
    monkeypatch.setenv("FOUNDATION_LOG_DIR", str(log_dir))
    monkeypatch.setenv("FOUNDATION_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("FOUNDATION_LOG_STDOUT", "false")
    monkeypatch.setenv("FOUNDATION_METRICS", "off")
    monkeypatch.setenv("FOUNDATION_LOG_COMPRESSION", "none")
    app = apps.build_app()
    async with client_for(app) as http:
        assert (await http.get("/ok")).status_code == 200
        assert (await http.get("/metrics")).status_code == 404
        assert (await http.get("/items/404")).status_code == 404
    records = read_records(log_dir)
    assert records and all(r["level"] in ("WARNING", "ERROR") for r in records)
    assert [r["internal_code"] for r in records if r["level"] == "ERROR"] == [21101]


async def test_default_log_file_is_under_var_log_of_the_working_directory(tmp_path: Path) -> None:
    app = apps.build_app(env={}, log_stdout=False, log_compression=None)
    async with client_for(app) as http:
        await http.get("/ok")
    assert (tmp_path / "var" / "log" / "testapp.jsonl").is_file()


# -- wiring --------------------------------------------------------------------------------------


def _middleware(app: FastAPI) -> list[str]:
    return [getattr(m.cls, "__name__", "") for m in app.user_middleware]


def test_middleware_order_outermost_first(log_dir: Path) -> None:
    """The correlation ID outside one layer for the access line, the metrics and the catch-all."""
    app = apps.build_app(env={}, log_dir=str(log_dir), log_stdout=False)
    assert _middleware(app) == ["StrictCorrelationIdMiddleware", "RequestObserver"]


@pytest.mark.parametrize(
    ("options", "lines", "metrics"),
    [
        ({}, True, True),
        ({"access_log": False}, False, True),
        ({"metrics": False}, True, False),
        ({"metrics": False, "access_log": False}, False, False),
    ],
)
async def test_access_line_and_metrics_follow_their_options(
    log_dir: Path, options: dict[str, Any], lines: bool, metrics: bool
) -> None:
    """Each part of the one layer is on or off by its own option; the catch-all always is."""
    app = apps.build_app(
        env={}, log_dir=str(log_dir), log_stdout=False, log_compression=None, **options
    )
    async with client_for(app) as http:
        assert (await http.get("/ok")).status_code == 200
        crashed = await http.get("/boom")
        exposition = await http.get("/metrics")
    assert crashed.status_code == 500 and crashed.json()["message"] == INTERNAL_ERROR_MESSAGE
    access = [
        (r["route"], r["status"])
        for r in read_records(log_dir)
        if r["message"] == "request finished"
    ]
    # /metrics never has an access line, whether served (metrics on) or a 404 (off).
    assert access == ([("/ok", 200), ("/boom", 500)] if lines else [])
    if metrics:
        assert 'http_requests_total{method="GET",route="/boom",status="500"} 1.0' in exposition.text
    else:
        assert exposition.status_code == 404


async def test_the_order_shows_in_what_the_user_sees(log_dir: Path) -> None:
    """The 500 of the catch-all reaches the access line, the metrics and the ID header."""
    app = apps.build_app(env={}, log_dir=str(log_dir), log_stdout=False, log_compression=None)
    cid = uuid.uuid4().hex
    async with client_for(app) as http:
        crashed = await http.get("/boom", headers={"X-Request-ID": cid})
        exposition = (await http.get("/metrics")).text
    assert crashed.status_code == 500 and crashed.headers["X-Request-ID"] == cid
    access = [r for r in read_records(log_dir) if r["message"] == "request finished"]
    assert [(a["route"], a["status"], a["correlation_id"]) for a in access] == [("/boom", 500, cid)]
    assert 'http_requests_total{method="GET",route="/boom",status="500"} 1.0' in exposition
    errors = [r for r in read_records(log_dir) if r["level"] == "ERROR"]
    assert len(errors) == 1 and errors[0]["correlation_id"] == cid


async def test_custom_request_id_header(log_dir: Path) -> None:
    app = apps.build_app(
        env={}, log_dir=str(log_dir), log_stdout=False, request_id_header="X-Correlation-ID"
    )
    cid = uuid.uuid4().hex
    async with client_for(app) as http:
        ok = await http.get("/ok", headers={"X-Correlation-ID": cid})
        crashed = await http.get("/boom", headers={"X-Correlation-ID": cid})
    assert ok.headers["X-Correlation-ID"] == cid and ok.json()["correlation_id"] == cid
    assert crashed.headers["X-Correlation-ID"] == cid
    assert crashed.json()["correlation_id"] == cid
    assert "X-Request-ID" not in ok.headers


def test_settings_are_kept_on_the_app(log_dir: Path) -> None:
    app = apps.build_app(env={}, log_dir=str(log_dir), log_stdout=False, log_level="DEBUG")
    settings = app.state.foundation_settings
    assert isinstance(settings, FoundationSettings)
    assert (settings.service, settings.log_level, settings.log_dir) == (
        "testapp",
        "DEBUG",
        str(log_dir),
    )
