"""examples/observability: what can be checked without Docker.

The Prometheus config passes ``promtool check config``; every PromQL expression of the
dashboard parses (``promtool check rules``) and names only series the shop really exports
(read from a live ``/metrics``); every LogQL expression reads only fields foundation really
writes (read from the live shop's log lines); the shipper labels streams by service and level
only, and skips rotated files whose lines it already shipped."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from loguru import logger
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from foundation import configure_logging
from foundation.jobs import JobMetrics
from tests.examples.conftest import Stack
from tests.support import missing_backend

OBS = Path(__file__).resolve().parents[2] / "examples" / "observability"
DASHBOARD = OBS / "grafana" / "dashboards" / "foundation-shop.json"
ALLOY = OBS / "config.alloy"
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden.jsonl"

pytestmark = pytest.mark.proc

# Grafana's variables, replaced by plausible values before parsing.
GRAFANA_VARS = {
    "$__rate_interval": "1m",
    "$__interval": "1m",
    "$__range": "1h",
    "$service": "shop",
    "$correlation_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and"}
PROMQL_WORDS |= {"or", "unless", "offset", "inf", "nan"}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        missing_backend("promtool is not installed (Debian package prometheus)")
    return path


def _targets() -> list[tuple[str, str]]:
    """(datasource type, expression) of every query in the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            kind = (target.get("datasource") or panel["datasource"])["type"]
            found.append((kind, target["expr"]))
    return found


def _expand(expr: str) -> str:
    for name in sorted(GRAFANA_VARS, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARS[name])
    return expr


def _metric_names(expr: str) -> set[str]:
    """Series names in a PromQL expression: what is left once strings, label matchers,
    grouping clauses, ranges, function calls and numbers are taken out."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\s*\(", "(", text)
    names = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", text))
    return {n for n in names if n.lower() not in PROMQL_WORDS}


def test_prometheus_config_passes_promtool() -> None:
    result = subprocess.run(
        [_promtool(), "check", "config", str(OBS / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_dashboard_has_the_panels_the_issue_asks_for() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = " ".join(expr for _, expr in _targets())
    for series in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "app_exceptions_total",
        "db_transaction_duration_seconds_bucket",
    ):
        assert series in exprs
    assert 'status=~"5.."' in exprs  # error ratio
    assert "histogram_quantile(0.95, sum by (le, route)" in exprs  # p95 per route
    assert "by (internal_code" in exprs
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["correlation_id"]["type"] == "textbox"
    logs = [p for p in dashboard["panels"] if p["type"] == "logs"]
    assert any('correlation_id = "$correlation_id"' in p["targets"][0]["expr"] for p in logs)
    assert any(t.get("exemplar") for p in dashboard["panels"] for t in p["targets"])
    # Exemplars and log lines link to that request's logs on this dashboard.
    sources = yaml.safe_load(
        (OBS / "grafana/provisioning/datasources/datasources.yaml").read_text(encoding="utf-8")
    )["datasources"]
    by_uid = {source["uid"]: source for source in sources}
    links = [
        *by_uid["prometheus"]["jsonData"]["exemplarTraceIdDestinations"],
        *by_uid["loki"]["jsonData"]["derivedFields"],
    ]
    assert sorted(link["name"] for link in links) == [
        "correlation_id",
        "correlation_id",
        "trace_id",
        "trace_id",
    ]
    for link in links:
        if link["name"] == "correlation_id":
            # $$ because Grafana expands ${...} from its environment in provisioning files.
            assert link["url"].startswith(f"/d/{dashboard['uid']}/")
            assert "var-correlation_id=$${__value.raw}" in link["url"]
        else:
            # The exemplar label and the log field foundation writes open the trace in Tempo.
            assert by_uid[link["datasourceUid"]]["type"] == "tempo"
    line = _a_line()
    for field in by_uid["loki"]["jsonData"]["derivedFields"]:
        match = re.search(field["matcherRegex"], line)
        assert match is not None and match.group(1) == json.loads(line)[field["name"]]
    # And from a span back to its lines, through the trace_id every line carries.
    traces_to_logs = by_uid["tempo"]["jsonData"]["tracesToLogsV2"]
    assert traces_to_logs["datasourceUid"] == "loki"
    assert '|= "$${__trace.traceId}"' in traces_to_logs["query"]


def _a_line() -> str:
    """A request line of the golden file (written by foundation's real logger)."""
    for line in GOLDEN.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("trace_id") and record["trace_id"] != record["correlation_id"]:
            return line
    raise AssertionError("the golden file has no line whose trace_id differs")


def test_every_promql_expression_parses(tmp_path: Path) -> None:
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expr_{n}", "expr": _expand(expr)}
                    for n, (kind, expr) in enumerate(_targets())
                    if kind == "prometheus"
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    result = subprocess.run(
        [_promtool(), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _exercise(stack: Stack) -> None:
    """Requests that make every series and log field appear: a commit, a domain error, a 500."""
    with httpx.Client(base_url=stack.shop.url, timeout=10) as client:
        client.get("/products")
        user = client.post(
            "/users",
            json={"email": f"{uuid.uuid4().hex}@example.org", "name": "O", "country": "CH"},
        )
        order = client.post(
            "/orders",
            json={"user_id": user.json()["id"], "sku": "tea", "qty": 1, "card": "4242424242424242"},
        )
        assert order.status_code == 201
        client.post("/orders", json={"user_id": 1, "sku": "tea", "qty": 50, "card": "42424242424"})
        client.post(
            "/orders", json={"user_id": 1, "sku": "limited-print", "qty": 9, "card": "4242424242"}
        )
        assert client.get(f"/orders/{order.json()['id']}/receipt").status_code == 500


def _exported(stack: Stack) -> set[str]:
    _exercise(stack)
    text = httpx.get(f"{stack.shop.url}/metrics", timeout=10).text
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def _rules() -> list[dict[str, Any]]:
    rules = []
    for path in sorted((OBS / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules.extend(group["rules"])
    return rules


def test_every_promql_series_is_exported_by_the_shop_or_recorded_by_the_rules(
    stack: Stack,
) -> None:
    exported = _exported(stack)
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    used: set[str] = set()
    for kind, expr in _targets():
        if kind == "prometheus":
            names = _metric_names(_expand(expr))
            assert names, expr
            used |= names
    assert used - exported - recorded == set()
    assert "db_transaction_duration_seconds_bucket" in used
    assert "route:http_error_budget:burn_rate1h" in used


def _worker_series() -> set[str]:
    """What a background worker serves (contract 3): foundation's job metrics after a job."""
    registry = CollectorRegistry()
    metrics = JobMetrics(registry)
    for state in ("success", "failure", "retry"):
        metrics.observe("shop.send_receipt", state, 0.25)
    text = generate_latest(registry).decode()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_series_the_rules_read_is_exported_or_recorded(stack: Stack) -> None:
    """The rule files read foundation's real series (and the worker's job series of contract
    3), or what another rule records; the per-route ``..._override`` inputs are the operator's."""
    exported = _exported(stack) | _worker_series()
    rules = _rules()
    recorded = {rule["record"] for rule in rules if "record" in rule}
    read: set[str] = set()
    for rule in rules:
        names = _metric_names(rule["expr"])
        read |= names
    overrides = {name for name in read if name.endswith("_override")}
    assert overrides == {
        "route:http_availability:objective_override",
        "route:http_latency_p95:threshold_seconds_override",
    }
    assert "route:http_latency_p95:threshold_seconds_override" in recorded  # slo-objectives.yml
    assert read - exported - recorded - overrides == set()
    for series in ("http_requests_total", "app_exceptions_total", "log_write_errors_total"):
        assert series in read
    assert {"jobs_total", "job_duration_seconds_bucket"} <= read


def _json_fields(record: dict[str, Any], prefix: str = "") -> set[str]:
    """Field names as LogQL's ``| json`` extracts them (nested keys joined with ``_``)."""
    fields: set[str] = set()
    for key, value in record.items():
        if isinstance(value, dict):
            fields |= _json_fields(value, f"{prefix}{key}_")
        else:
            fields.add(prefix + key)
    return fields


def _logql_fields(expr: str) -> set[str]:
    """Fields an expression reads after ``| json``: label filters, unwrap, grouping."""
    after = expr.split("| json", 1)[1]
    after = re.sub(r'"(?:\\.|[^"\\])*"', '""', after)
    fields = set(re.findall(r"\|\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|>=|<=|==|=|>|<)", after))
    fields |= set(re.findall(r"\bunwrap\s+([a-zA-Z_][a-zA-Z0-9_]*)", after))
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        fields |= {name.strip() for name in group.split(",")}
    return fields


def test_every_logql_expression_reads_fields_foundation_writes(stack: Stack) -> None:
    _exercise(stack)
    written: set[str] = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "exception_type" not in written:
        for path in stack.log_dir.glob("*.jsonl"):
            for line in path.read_text(encoding="utf-8").splitlines():
                written |= _json_fields(json.loads(line))
        time.sleep(0.05)
    logql = [expr for kind, expr in _targets() if kind == "loki"]
    assert len(logql) >= 3
    for expr in logql:
        assert "| json" in expr, expr
        fields = _logql_fields(expr)
        assert fields, expr
        assert fields - written == set(), expr
    # The labels the shipper sets are the only stream selectors used.
    for expr in logql:
        selector = re.search(r"\{([^}]*)\}", expr)
        assert selector is not None
        assert set(re.findall(r"([a-z_]+)\s*=~?", selector.group(1))) <= {"service", "level"}


def _alloy_block(name: str) -> str:
    text = ALLOY.read_text(encoding="utf-8")
    match = re.search(name + r"\s*\{(?P<body>(?:[^{}]|\{[^{}]*\})*)\}", text)
    assert match is not None, name
    return match.group("body")


def test_alloy_labels_streams_by_service_and_level_only() -> None:
    labels = re.search(r"values\s*=\s*\{([^}]*)\}", _alloy_block(r"stage\.labels"))
    assert labels is not None
    assert set(re.findall(r"([a-z_]+)\s*=", labels.group(1))) == {"service", "level"}
    assert '"filename"' in _alloy_block(r"stage\.label_drop")
    text = ALLOY.read_text(encoding="utf-8")
    assert "stage.static_labels" not in text
    # Only Alloy's internal __path__ keys in the file targets: no extra label per file.
    targets = _alloy_block(r'local\.file_match "foundation"')
    assert set(re.findall(r'"([a-z_]+)"\s*=', targets)) == {"__path__", "__path_exclude__"}


def test_alloy_ships_live_files_and_skips_rotated_ones(tmp_path: Path) -> None:
    targets = _alloy_block(r'local\.file_match "foundation"')
    include = re.search(r'"__path__"\s*=\s*"/logs/([^"]+)"', targets)
    exclude = re.search(r'"__path_exclude__"\s*=\s*"/logs/([^"]+)"', targets)
    assert include is not None
    assert exclude is not None
    # Real rotation by foundation's file sink: a tiny size limit, a few hundred records.
    configure_logging(
        service="rot", log_dir=tmp_path, log_stdout=False, rotation="2 KB", compression=None
    )
    try:
        for n in range(60):
            logger.info("record {}", n, padding="x" * 100)
    finally:
        logger.remove()
    names = sorted(p.name for p in tmp_path.iterdir())
    rotated = [n for n in names if n != "rot.jsonl"]
    assert "rot.jsonl" in names
    assert rotated
    shipped = [
        n for n in names if fnmatch.fnmatch(n, include[1]) and not fnmatch.fnmatch(n, exclude[1])
    ]
    assert shipped == ["rot.jsonl"]
    for name in ("rot.jsonl", "shop-12345.jsonl"):
        assert not fnmatch.fnmatch(name, exclude[1])
    assert fnmatch.fnmatch(rotated[0] + ".gz", exclude[1])
    # Files rotated by Loguru itself (foundation before it rotated its own files) too.
    assert fnmatch.fnmatch("rot.2025-03-01_14-05-09_123456.jsonl.gz", exclude[1])


def test_compose_runs_tempo_with_its_config_and_grafana_knows_it() -> None:
    compose = yaml.safe_load((OBS / "compose.yaml").read_text(encoding="utf-8"))
    tempo = compose["services"]["tempo"]
    mounted = {volume.split(":")[0] for volume in tempo["volumes"]}
    assert "./tempo.yaml" in mounted
    config = yaml.safe_load((OBS / "tempo.yaml").read_text(encoding="utf-8"))
    assert set(config["distributor"]["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
    published = {port.rsplit(":", 1)[-1] for port in tempo["ports"]}
    assert {"3200", "4317", "4318"} <= published
    assert all(port.startswith("127.0.0.1:") for port in tempo["ports"])
    assert "tempo" in compose["services"]["grafana"]["depends_on"]
    sources = yaml.safe_load(
        (OBS / "grafana/provisioning/datasources/datasources.yaml").read_text(encoding="utf-8")
    )["datasources"]
    (source,) = [s for s in sources if s["type"] == "tempo"]
    assert source["url"] == f"http://tempo:{config['server']['http_listen_port']}"
