"""Multiprocess mode (PROMETHEUS_MULTIPROC_DIR): numbers add up across workers, leftovers of a
previous run are wiped, and metrics that the mode silently breaks are refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Enum, Gauge, Info, values
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from foundation.metrics import (
    AppMetrics,
    MultiprocessConfigError,
    create_metrics,
    install_metrics,
    prepare_multiprocess_dir,
)
from tests.support import free_port

LABELS = {"method": "GET", "route": "/pid", "status": "200"}


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def _seed_stale_counter(directory: Path, pid: int, value: float) -> Path:
    """What a previous run leaves behind: a counter file of a process that is gone."""
    path = directory / f"counter_{pid}.db"
    stale = MmapedDict(str(path))
    key = mmap_key(
        "http_requests_total",
        "http_requests_total",
        tuple(LABELS),
        tuple(LABELS.values()),
        "HTTP requests answered, by method, matched route template and status code.",
    )
    stale.write_value(key, value, 0.0)
    stale.close()
    return path


def _sample(text: str, name: str, labels: dict[str, str]) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def _total(text: str) -> float | None:
    return _sample(text, "http_requests_total", LABELS)


def request(metrics: AppMetrics, seconds: float) -> None:
    metrics.http.started("GET")
    metrics.http.finished("GET", "/pid", 200, seconds, time.perf_counter())


class FakePid:
    """prometheus_client's own multiprocess tests swap the pid function like this."""

    def __init__(self) -> None:
        self.value = 1

    def __call__(self) -> int:
        return self.value


@pytest.fixture
def multiproc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, FakePid]]:
    directory = tmp_path / "prom-mp"
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    pid = FakePid()
    value_class = values.MultiProcessValue(pid)
    monkeypatch.setattr(values, "ValueClass", value_class)
    yield directory, pid
    value_class.close_all_files()  # type: ignore[attr-defined]


def test_counters_and_histograms_add_up_across_processes(
    multiproc: tuple[Path, FakePid],
) -> None:
    _, pid = multiproc
    metrics = create_metrics()
    for _ in range(3):
        request(metrics, 0.01)
    pid.value = 2
    for _ in range(4):
        request(metrics, 0.3)
    text, _content_type = metrics.render()
    assert _total(text.decode()) == 7
    assert (
        metrics.registry.get_sample_value(
            "http_request_duration_seconds_bucket", {"method": "GET", "route": "/pid", "le": "0.25"}
        )
        == 3
    )
    assert metrics.http.exemplars is False


def test_in_progress_gauge_drops_dead_workers(multiproc: tuple[Path, FakePid]) -> None:
    directory, pid = multiproc
    metrics = create_metrics()
    metrics.http.started("GET")
    pid.value = 2
    metrics.http.started("GET")
    assert metrics.registry.get_sample_value("http_requests_in_progress", {"method": "GET"}) == 2
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(1, str(directory))
    assert metrics.registry.get_sample_value("http_requests_in_progress", {"method": "GET"}) == 1


def test_stale_directory_is_wiped_at_start(multiproc: tuple[Path, FakePid]) -> None:
    directory, _ = multiproc
    stale = _seed_stale_counter(directory, _dead_pid(), 1000)
    metrics = create_metrics()
    assert not stale.exists()
    request(metrics, 0.01)
    assert _total(metrics.render()[0].decode()) == 1


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r: Info("build", "Build info.", registry=r), "'build' is an Info"),
        (
            lambda r: Enum("state", "State.", states=["a", "b"], registry=r),
            "'state' is an Enum",
        ),
        (
            lambda r: Gauge("queue", "Queue.", registry=r).set_function(lambda: 3.0),
            "'queue' uses set_function",
        ),
    ],
)
def test_metrics_multiprocess_breaks_are_refused(
    multiproc: tuple[Path, FakePid], make: object, message: str
) -> None:
    registry = CollectorRegistry()
    make(registry)  # type: ignore[operator]
    with pytest.raises(MultiprocessConfigError, match=message):
        create_metrics(registry=registry)


async def test_metric_added_after_start_makes_scrape_fail_loudly(
    multiproc: tuple[Path, FakePid],
) -> None:
    registry = CollectorRegistry()
    app = FastAPI()
    install_metrics(app, registry=registry)
    Info("build", "Build info.", registry=registry).info({"version": "1"})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/metrics")
    assert response.status_code == 500
    assert "'build' is an Info" in response.text
    assert "PROMETHEUS_MULTIPROC_DIR" in response.text


def test_env_set_after_import_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(MultiprocessConfigError, match="set after prometheus_client was imported"):
        create_metrics()


def test_prepare_command_empties_the_directory(tmp_path: Path) -> None:
    directory = tmp_path / "mp"
    directory.mkdir()
    _seed_stale_counter(directory, 999, 5)
    (directory / "histogram_999.db").write_bytes(b"\0" * 16)
    result = subprocess.run(
        [sys.executable, "-m", "foundation.metrics", "prepare", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "removed 2 leftover file(s)" in result.stderr
    assert list(directory.glob("*.db")) == []
    assert prepare_multiprocess_dir(tmp_path / "new" / "dir") == 0
    assert (tmp_path / "new" / "dir").is_dir()


APP_SOURCE = """
import os
from fastapi import FastAPI
import foundation

app = FastAPI()

@app.get("/pid")
async def pid() -> dict[str, int]:
    return {"pid": os.getpid()}

foundation.setup(app, service="mp", log_dir=None, log_stdout=False)
"""


@pytest.mark.proc
def test_uvicorn_workers_add_up_and_ignore_leftovers(tmp_path: Path) -> None:
    """Two real uvicorn workers: every scrape, whichever worker answers, shows the total."""
    (tmp_path / "mpapp.py").write_text(APP_SOURCE, encoding="utf-8")
    directory = tmp_path / "prom-mp"
    directory.mkdir()
    _seed_stale_counter(directory, _dead_pid(), 1000)
    port = free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    with open(tmp_path / "uvicorn.log", "wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "mpapp:app",
                "--app-dir",
                str(tmp_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "2",
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "uvicorn.log").read_text()
            assert time.monotonic() < deadline, "uvicorn workers did not start in 60 s"
            try:
                if httpx.get(f"{url}/metrics", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        pids: set[int] = set()
        sent = 0
        # A new connection per request lets the kernel hand requests to both workers.
        while (len(pids) < 2 or sent < 40) and sent < 400:
            response = httpx.get(f"{url}/pid", timeout=5, headers={"Connection": "close"})
            assert response.status_code == 200
            pids.add(json.loads(response.text)["pid"])
            sent += 1
        assert len(pids) == 2, f"all {sent} requests went to one worker"
        for _ in range(6):
            text = httpx.get(f"{url}/metrics", timeout=5, headers={"Connection": "close"}).text
            assert _total(text) == sent
            assert _sample(text, "http_requests_in_progress", {"method": "GET"}) == 0
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
