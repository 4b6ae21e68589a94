"""examples/observability's alerting: Prometheus rules, Loki ruler rules, Alertmanager routing.

``promtool check rules`` validates every rule file; ``promtool test rules`` runs the unit tests
in tests/examples/rules (each alert fires at its documented rates and durations, stays silent
below, with its labels and annotations). The alert names are those of contract 3, each with a
severity, a summary, a runbook naming an obsctl command, and a link to a dashboard panel that
exists. ``amtool`` checks the Alertmanager example and pins its routing tree.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml

from obsctl.cli.app import main as obsctl_main
from tests.examples.conftest import Stack
from tests.examples.test_observability import _exercise
from tests.obsctl.fake_loki import NS, BinaryQuery, FakeLoki, MetricQuery, parse_logql
from tests.prometheus_server import promtool_binary
from tests.support import missing_backend

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "examples" / "observability"
RULES = OBS / "rules"
UNIT_TESTS = Path(__file__).resolve().parent / "rules"
DASHBOARD = OBS / "grafana" / "dashboards" / "foundation-shop.json"
ALERTMANAGER = OBS / "alertmanager.yml"
LOKI_RULES = OBS / "loki-rules.yml"

# Contract 3: the names runbooks and routing trees refer to, with the labels each must carry.
CONTRACT_ALERTS = {
    "HttpErrorBudgetBurn": {"route", "severity"},
    "HttpLatencyHigh": {"route"},
    "AppErrorCodeSpike": {"internal_code"},
    "DatabaseUnavailable": set(),
    "LogWriteErrors": set(),
    "JobFailures": {"job"},
}

pytestmark = pytest.mark.proc


def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, cwd=cwd)


def _amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        missing_backend("amtool is not installed (Debian package prometheus-alertmanager)")
    return path


def _alert_rules(path: Path) -> list[dict[str, Any]]:
    groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _panels() -> dict[int, dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return {panel["id"]: panel for panel in dashboard["panels"]}


@pytest.mark.parametrize("name", sorted(p.name for p in RULES.glob("*.yml")))
def test_rule_file_passes_promtool_check(name: str) -> None:
    result = _run([promtool_binary(), "check", "rules", str(RULES / name)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"SUCCESS: [1-9]\d* rules found", result.stdout), result.stdout


@pytest.mark.parametrize("name", sorted(p.name for p in UNIT_TESTS.glob("*.test.yml")))
def test_promtool_unit_tests_pass(name: str) -> None:
    result = _run([promtool_binary(), "test", "rules", name], cwd=UNIT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_broken_expectation_fails_the_unit_tests(tmp_path: Path) -> None:
    """The unit tests can fail: one changed label in an expectation is reported."""
    source = (UNIT_TESTS / "app.test.yml").read_text(encoding="utf-8")
    broken = source.replace("severity: page", "severity: ticket", 1)
    assert broken != source
    for path in UNIT_TESTS.glob("*.yml"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "app.test.yml").write_text(
        broken.replace("../../../examples", str(ROOT / "examples")), encoding="utf-8"
    )
    result = _run([promtool_binary(), "test", "rules", "app.test.yml"], cwd=tmp_path)
    assert result.returncode == 1
    assert "FAILED" in result.stderr
    assert "alertname: DatabaseUnavailable" in result.stderr


def test_the_contract_alerts_are_defined_with_severity_summary_runbook_and_panel() -> None:
    rules = _alert_rules(RULES / "foundation-alerts.yml")
    assert {rule["alert"] for rule in rules} == set(CONTRACT_ALERTS)
    panels = _panels()
    for rule in rules:
        name = rule["alert"]
        labels = set(rule.get("labels", {})) | _grouping_labels(rule["expr"])
        assert CONTRACT_ALERTS[name] <= labels, name
        assert rule["labels"]["severity"] in ("page", "ticket"), name
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), name
        assert annotations["runbook"].startswith("obsctl "), name
        link = urlsplit(annotations["dashboard"])
        assert link.path == "/d/foundation-shop/foundation-shop", name
        panel = int(parse_qs(link.query)["viewPanel"][0])
        assert panel in panels, (name, panel)
        # The linked panel says which alert it explains.
        assert name in panels[panel]["title"], (name, panels[panel]["title"])
    severities = {r["labels"]["severity"] for r in rules if r["alert"] == "HttpErrorBudgetBurn"}
    assert severities == {"page", "ticket"}


def _grouping_labels(expr: str) -> set[str]:
    """Labels an expression's result keeps: its `by (...)` and `on (...)` lists."""
    found: set[str] = set()
    for group in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", expr):
        found |= {name.strip() for name in group.split(",") if name.strip()}
    return found


def test_every_contract_alert_fires_in_a_unit_test() -> None:
    fired: set[str] = set()
    for path in UNIT_TESTS.glob("*.test.yml"):
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                if case.get("exp_alerts"):
                    fired.add(case["alertname"])
    assert fired >= set(CONTRACT_ALERTS)


def test_alertmanager_example_passes_amtool() -> None:
    result = _run([_amtool(), "check-config", str(ALERTMANAGER)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "2 receivers" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=HttpErrorBudgetBurn", "severity=page", "route=/orders"], "pager"),
        (["alertname=HttpErrorBudgetBurn", "severity=ticket", "route=/orders"], "tickets"),
        (["alertname=DatabaseUnavailable", "severity=page", "service=shop"], "pager"),
        (["alertname=UnhandledError", "severity=ticket", "service=shop"], "tickets"),
        (["alertname=SomethingElse"], "tickets"),
    ],
)
def test_alertmanager_routes_pages_and_tickets(labels: list[str], receiver: str) -> None:
    args = [_amtool(), "config", "routes", "test", f"--config.file={ALERTMANAGER}"]
    result = _run([*args, f"--verify.receivers={receiver}", *labels])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver
    other = "pager" if receiver == "tickets" else "tickets"
    assert _run([*args, f"--verify.receivers={other}", *labels]).returncode == 1


def test_prometheus_config_loads_every_rule_file() -> None:
    config = yaml.safe_load((OBS / "prometheus.yml").read_text(encoding="utf-8"))
    assert sorted(config["rule_files"]) == sorted(f"rules/{p.name}" for p in RULES.glob("*.yml"))
    compose = yaml.safe_load((OBS / "compose.yaml").read_text(encoding="utf-8"))
    volumes = compose["services"]["prometheus"]["volumes"]
    assert "./rules:/etc/prometheus/rules:ro" in volumes
    assert (
        "./loki-rules.yml:/loki/rules/fake/foundation.yml:ro"
        in (compose["services"]["loki"]["volumes"])
    )
    assert (
        "./alertmanager.yml:/etc/alertmanager/alertmanager.yml:ro"
        in (compose["services"]["alertmanager"]["volumes"])
    )


# ---------------------------------------------------------------- Loki ruler rules


def _loki_rules() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in _alert_rules(LOKI_RULES)}


def test_loki_rules_parse_with_the_fake_lokis_grammar() -> None:
    rules = _loki_rules()
    assert set(rules) == {"UnhandledError", "ErrorCodeNeverSeen"}
    for name, rule in rules.items():
        query = parse_logql(rule["expr"])
        assert isinstance(query, MetricQuery | BinaryQuery), name
        assert rule["annotations"]["runbook"].startswith("obsctl "), name
        assert rule["labels"]["severity"] in ("page", "ticket"), name


def test_loki_rule_annotations_are_valid_templates(tmp_path: Path) -> None:
    """promtool cannot parse LogQL; with the expressions swapped for PromQL it checks the rest
    (names, durations, label and annotation templates) as Loki's ruler would."""
    document = yaml.safe_load(LOKI_RULES.read_text(encoding="utf-8"))
    for group in document["groups"]:
        for rule in group["rules"]:
            rule["expr"] = "vector(1)"
    path = tmp_path / "loki-rules.yml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    result = _run([promtool_binary(), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def shop_error_lines(stack: Stack) -> list[dict[str, Any]]:
    """The shop's own log records after a commit, domain errors and an unhandled 500."""
    _exercise(stack)
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        records = [
            json.loads(line)
            for path in sorted(stack.log_dir.glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines()
        ]
        if any(r.get("internal_code") == 10500 for r in records):
            break
        time.sleep(0.05)
    return records


def _push(loki: FakeLoki, records: list[dict[str, Any]], at_ns: int) -> None:
    """Ship records as config.alloy does: streams labelled by service and level only."""
    for n, record in enumerate(records):
        labels = {"service": record["service"], "level": record["level"]}
        loki.push(labels, [(at_ns + n, json.dumps(record, separators=(",", ":")))])


def _evaluate(loki: FakeLoki, expr: str, at_ns: int) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{loki.url}/loki/api/v1/query", params={"query": expr, "time": str(at_ns)}, timeout=10
    )
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def test_unhandled_error_rule_fires_for_the_unhandled_500_only(
    shop_error_lines: list[dict[str, Any]],
) -> None:
    now = time.time_ns()
    with FakeLoki() as loki:
        _push(loki, shop_error_lines, now - 60 * NS)
        result = _evaluate(loki, _loki_rules()["UnhandledError"]["expr"], now)
        # A handled error (the 422 of an invalid order) is in the logs too: only the KeyError.
        assert {10422, 10500} <= {r.get("internal_code") for r in shop_error_lines}
        assert [(r["metric"], r["value"][1]) for r in result] == [
            ({"service": "shop", "exception_type": "KeyError"}, "1")
        ]
        # Five minutes later the window has passed: resolved.
        assert _evaluate(loki, _loki_rules()["UnhandledError"]["expr"], now + 300 * NS) == []


def test_never_seen_code_rule_ignores_codes_logged_in_the_previous_7_days(
    shop_error_lines: list[dict[str, Any]],
) -> None:
    errors = [r for r in shop_error_lines if "internal_code" in r]
    codes = sorted({str(r["internal_code"]) for r in errors})
    assert len(codes) >= 2, codes
    seen, forgotten = codes[0], codes[1]
    now = time.time_ns()
    day = 86400 * NS
    with FakeLoki() as loki:
        _push(loki, errors, now - 60 * NS)
        # One code was logged 2 days ago (seen), another only 8 days ago (outside the 7 days).
        _push(loki, [r for r in errors if str(r["internal_code"]) == seen], now - 2 * day)
        _push(loki, [r for r in errors if str(r["internal_code"]) == forgotten], now - 8 * day)
        result = _evaluate(loki, _loki_rules()["ErrorCodeNeverSeen"]["expr"], now)
        new = sorted(r["metric"]["internal_code"] for r in result)
        assert new == [code for code in codes if code != seen]
        assert {r["metric"]["service"] for r in result} == {"shop"}
        # After 10 minutes the codes of this run are part of the history.
        assert (
            _evaluate(loki, _loki_rules()["ErrorCodeNeverSeen"]["expr"], now + 11 * 60 * NS) == []
        )


# ---------------------------------------------------------------- runbooks


def _restamped_golden(log_dir: Path) -> None:
    """The golden log (tests/data) as if written in the last minute."""
    lines = (ROOT / "tests" / "data" / "golden.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    first = datetime.fromisoformat(records[0]["ts"])
    shift = datetime.now(tz=UTC) - timedelta(minutes=1) - first
    log_dir.mkdir(parents=True)
    with open(log_dir / "golden.jsonl", "w", encoding="utf-8") as out:
        for record in records:
            when = datetime.fromisoformat(record["ts"]) + shift
            record["ts"] = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            out.write(json.dumps(record, separators=(",", ":")) + "\n")


@pytest.mark.parametrize(
    ("source", "name", "severity"),
    [
        (path.name, rule["alert"], rule["labels"]["severity"])
        for path in (RULES / "foundation-alerts.yml", LOKI_RULES)
        for rule in _alert_rules(path)
    ],
)
def test_every_runbook_runs_as_an_obsctl_command(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    source: str,
    name: str,
    severity: str,
) -> None:
    """Each runbook, with its labels filled in, runs over a recent log and answers (exit 0)."""
    path = LOKI_RULES if source == LOKI_RULES.name else RULES / source
    rule = next(
        r for r in _alert_rules(path) if r["alert"] == name and r["labels"]["severity"] == severity
    )
    labels = {"route": "/orders", "service": "golden", "internal_code": "10500", "job": "x"}
    runbook = re.sub(
        r"\{\{\s*\$labels\.(\w+)\s*\}\}",
        lambda m: labels[m.group(1)],
        rule["annotations"]["runbook"],
    )
    assert "{{" not in runbook
    args = shlex.split(runbook)
    assert args[0] == "obsctl"
    _restamped_golden(tmp_path / "var" / "log")
    monkeypatch.chdir(tmp_path)
    for variable in ("OBSCTL_LOKI_URL", "OBSCTL_PROMETHEUS_URL", "OBSCTL_MAP"):
        monkeypatch.delenv(variable, raising=False)
    code = obsctl_main(args[1:])
    captured = capsys.readouterr()
    assert code == 0, (runbook, captured.err)
    assert captured.out.strip()
