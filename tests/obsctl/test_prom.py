"""obsctl prom against the real ``prometheus`` binary, fed by ``promtool tsdb
create-blocks-from openmetrics``; answers are checked against ``promtool query instant``."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from obsctl.cli.app import main
from tests.support import free_port, missing_backend, stop_process

pytestmark = [pytest.mark.prometheus, pytest.mark.proc, pytest.mark.timeout(90)]

STEP = 15
SAMPLES = 41  # ten minutes at 15 s


class Prom:
    def __init__(self, url: str, end: int) -> None:
        self.url = url
        self.end = end  # Unix seconds of the last sample: queries are evaluated there


ORDERS = 'method="GET",route="/orders/{order_id}"'
HEALTH = 'method="GET",route="/health"'


def _openmetrics(end: int) -> str:
    """Deterministic data in foundation's metric names (contract 3) plus special values."""
    times = [end - (SAMPLES - 1 - i) * STEP for i in range(SAMPLES)]
    out = ["# HELP obs_value Values for the table tests.", "# TYPE obs_value gauge"]
    for i, t in enumerate(times):
        for kind, value in (
            ("nan", "NaN"),
            ("pinf", "+Inf"),
            ("ninf", "-Inf"),
            ("ramp", str(i * 1.5)),
            ("precise", "1769.5470000000003"),
        ):
            out.append(f'obs_value{{kind="{kind}"}} {value} {t}')
    out += ["# HELP http_requests Requests.", "# TYPE http_requests counter"]
    for i, t in enumerate(times):
        # /orders/{order_id}: 2 req/s of which 0.2/s are 503; /health: 1 req/s, never fails.
        out.append(f'http_requests_total{{{ORDERS},status="200"}} {i * 27} {t}')
        out.append(f'http_requests_total{{{ORDERS},status="503"}} {i * 3} {t}')
        out.append(f'http_requests_total{{{HEALTH},status="200"}} {i * 15} {t}')
    name = "http_request_duration_seconds"
    out += [f"# HELP {name} Latency.", f"# TYPE {name} histogram"]
    for i, t in enumerate(times):
        # /orders: every request in the (0.1, 0.25] bucket; /health: all under 0.005.
        for le, orders, health in (("0.005", 0, 15), ("0.1", 0, 15), ("0.25", 30, 15)):
            out.append(f'{name}_bucket{{{ORDERS},le="{le}"}} {i * orders} {t}')
            out.append(f'{name}_bucket{{{HEALTH},le="{le}"}} {i * health} {t}')
        out.append(f'{name}_bucket{{{ORDERS},le="+Inf"}} {i * 30} {t}')
        out.append(f'{name}_bucket{{{HEALTH},le="+Inf"}} {i * 15} {t}')
        out.append(f"{name}_count{{{ORDERS}}} {i * 30} {t}")
        out.append(f"{name}_sum{{{ORDERS}}} {i * 5.1:.1f} {t}")
        out.append(f"{name}_count{{{HEALTH}}} {i * 15} {t}")
        out.append(f"{name}_sum{{{HEALTH}}} {i * 0.03:.2f} {t}")
    out += ["# HELP app_exceptions Exceptions.", "# TYPE app_exceptions counter"]
    for i, t in enumerate(times):
        for code, exc, http, per in (
            ("21101", "RecordNotFound", "404", 4),
            ("10001", "ServiceUnavailable", "503", 3),
        ):
            labels = f'internal_code="{code}",exception="{exc}",http_code="{http}"'
            out.append(f"app_exceptions_total{{{labels}}} {i * per} {t}")
    out.append("# EOF")
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prom]:
    binary, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if not binary or not promtool:
        missing_backend("the prometheus/promtool binaries are not installed")
    root = tmp_path_factory.mktemp("prometheus")
    end = int(time.time()) // 60 * 60 - 60
    (root / "om.txt").write_text(_openmetrics(end))
    data = root / "data"
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(root / "om.txt"), str(data)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    (root / "prometheus.yml").write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (root / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=30d",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                tail = (root / "prometheus.log").read_text()[-2000:]
                pytest.fail(f"prometheus did not become ready: {tail}")
            time.sleep(0.1)
        yield Prom(url, end)
    finally:
        stop_process(process)
        log.close()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def promtool_json(prom: Prom, expr: str) -> list[dict[str, object]]:
    promtool = shutil.which("promtool")
    assert promtool
    done = subprocess.run(
        [promtool, "query", "instant", "-o", "json", f"--time={prom.end}", prom.url, expr],
        check=True,
        capture_output=True,
        timeout=30,
    )
    items: list[dict[str, object]] = orjson.loads(done.stdout)
    return items


def _key(item: dict[str, object]) -> bytes:
    return orjson.dumps(item, option=orjson.OPT_SORT_KEYS)


@pytest.mark.parametrize(
    "expr",
    [
        "obs_value",
        "sum by (route) (rate(http_requests_total[5m]))",
        "histogram_quantile(0.95, sum by (route, le) (rate(http_request_duration_seconds_bucket[5m])))",  # noqa: E501
    ],
)
def test_prom_query_json_agrees_with_promtool(
    prom: Prom, capsys: pytest.CaptureFixture[str], expr: str
) -> None:
    code, out, err = run(
        capsys, "prom", "query", expr, "--prom-url", prom.url, "--time", str(prom.end), "--json"
    )
    assert code == 0, err
    ours = [orjson.loads(line) for line in out.splitlines()]
    theirs = promtool_json(prom, expr)
    assert ours, "the query found nothing"
    assert sorted(map(_key, ours)) == sorted(map(_key, theirs))


def test_prom_query_table_shows_values_as_promtool_does(
    prom: Prom, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "prom", "query", "obs_value", "--prom-url", prom.url, "--time", str(prom.end)
    )
    assert code == 0, err
    rows = {line.split()[0]: line.split()[-1] for line in out.splitlines()[1:] if line.strip()}
    assert rows == {
        'obs_value{kind="nan"}': "NaN",
        'obs_value{kind="ninf"}': "-Inf",
        'obs_value{kind="pinf"}': "+Inf",
        'obs_value{kind="precise"}': "1769.5470000000003",
        'obs_value{kind="ramp"}': "60",
    }
    assert err == ""


@pytest.mark.parametrize(
    ("expr", "shown"), [("1/0", "+Inf"), ("-1/0", "-Inf"), ("0/0", "NaN"), ('"hello"', "hello")]
)
def test_scalar_and_string_results(
    prom: Prom, capsys: pytest.CaptureFixture[str], expr: str, shown: str
) -> None:
    # `--` ends the options, so that an expression may start with "-".
    code, out, err = run(capsys, "prom", "query", "--prom-url", prom.url, "--", expr)
    assert code == 0, err
    assert out.split()[-1] == shown
    code, out, _ = run(capsys, "prom", "query", "--prom-url", prom.url, "--json", "--", expr)
    item = orjson.loads(out)
    assert item[1] == shown


def test_prom_query_with_a_parse_error_exits_4_with_prometheus_message(
    prom: Prom, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "prom", "query", "sum(up", "--prom-url", prom.url)
    assert code == 4
    assert out == ""
    assert "bad_data" in err
    assert "unclosed left parenthesis" in err
    assert err.count("\n") == 1


def test_prom_query_that_matches_nothing_exits_1(
    prom: Prom, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "prom", "query", "no_such_metric", "--prom-url", prom.url)
    assert code == 1
    assert out == ""
    assert "no series matched" in err


def test_prom_range_draws_each_series_with_min_max_last(
    prom: Prom, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "prom", "range", 'obs_value{kind="ramp"}', "--prom-url", prom.url,
        "--since", "10m", "--step", "15s", "--end", str(prom.end),
    )  # fmt: skip
    assert code == 0, err
    row = next(line for line in out.splitlines() if 'kind="ramp"' in line)
    assert "▁" in row and "█" in row
    assert row.split()[-3:] == ["0", "60", "60"]  # min, max, last
    code, out, _ = run(
        capsys, "prom", "range", 'obs_value{kind="ramp"}', "--prom-url", prom.url,
        "--since", "10m", "--step", "15s", "--end", str(prom.end), "--json",
    )  # fmt: skip
    item = orjson.loads(out)
    assert item["metric"]["kind"] == "ramp"
    assert item["values"][-1] == [prom.end, "60"]
    assert len(item["values"]) == SAMPLES


def test_prom_routes_answers_rate_error_ratio_p95_and_exceptions(
    prom: Prom, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys,
        "prom",
        "routes",
        "--since",
        "5m",
        "--time",
        str(prom.end),
        "--prom-url",
        prom.url,
        "--json",
    )
    assert code == 0, err
    rows = [orjson.loads(line) for line in out.splitlines()]
    routes = {r["route"]: r for r in rows if r["kind"] == "route"}
    assert set(routes) == {"/orders/{order_id}", "/health"}
    orders, health = routes["/orders/{order_id}"], routes["/health"]
    assert orders["rate"] == pytest.approx(2.0)
    assert orders["error_ratio"] == pytest.approx(0.1)
    assert 0.1 < orders["p95_seconds"] <= 0.25
    assert health["rate"] == pytest.approx(1.0)
    assert health["error_ratio"] == 0
    assert health["p95_seconds"] <= 0.005
    exceptions = [(r["internal_code"], r["exception"]) for r in rows if r["kind"] == "exception"]
    assert exceptions == [("21101", "RecordNotFound"), ("10001", "ServiceUnavailable")]
    code, out, err = run(
        capsys, "prom", "routes", "--since", "5m", "--time", str(prom.end), "--prom-url", prom.url
    )
    assert code == 0, err
    orders_line = next(line for line in out.splitlines() if "/orders/{order_id}" in line)
    assert "2.000" in orders_line
    assert "10.00%" in orders_line
    assert "RecordNotFound" in out
