"""A real Prometheus server for tests, and a uvicorn server in a thread for it to scrape.

    with serve_app(app) as app_url, start_prometheus(tmp_path, {"app": [app_url]}) as prom:
        prom.wait_for('sum(http_requests_total{route="/items/{id}"})', lambda v: v >= 10)

``start_prometheus`` runs the ``prometheus`` binary (Debian package ``prometheus``) on a free
127.0.0.1 port with a temporary config and data directory, exemplar storage on and a 1 s scrape
interval. Every wait is bounded, and the process is always terminated (then killed) on exit.
When the binary is absent it calls ``missing_backend`` (skip locally, fail with
``OBS_REQUIRE_BACKENDS=1``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from tests.support import free_port, missing_backend, port_open, stop_process

READY_TIMEOUT = 20.0


class PrometheusError(RuntimeError):
    """The server answered with an error envelope, or did not become ready in time."""


@dataclass(frozen=True, slots=True)
class PrometheusServer:
    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_file: Path

    def _get(self, path: str, params: Mapping[str, str]) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=10.0)
        body = response.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {response.status_code} {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant vector query: ``[{"metric": {...}, "value": [ts, "v"]}, ...]``."""
        data = self._get("/api/v1/query", {"query": expr})
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The single value of a query that yields one series (None when it yields none)."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{expr} returned {len(result)} series, expected one")
        return float(result[0]["value"][1])

    def exemplars(self, expr: str, since: float) -> list[dict[str, Any]]:
        """``/api/v1/query_exemplars`` from ``since`` (unix seconds) to now."""
        params = {"query": expr, "start": f"{since:.3f}", "end": f"{time.time() + 1:.3f}"}
        result: list[dict[str, Any]] = self._get("/api/v1/query_exemplars", params)
        return result

    def targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = self._get("/api/v1/targets", {})["activeTargets"]
        return targets

    def wait_for(self, expr: str, accept: Callable[[float], bool], timeout: float = 20.0) -> float:
        """Poll ``expr`` (one series) until ``accept(value)``; raises after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        last: float | None = None
        while time.monotonic() < deadline:
            last = self.value(expr)
            if last is not None and accept(last):
                return last
            time.sleep(0.25)
        raise PrometheusError(f"{expr} never satisfied the condition in {timeout}s (last {last})")

    def wait_until(self, check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.25)
        raise PrometheusError(f"timed out after {timeout}s waiting for {what}")


def prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        missing_backend("the prometheus binary is not installed (Debian package prometheus)")
    return binary


def promtool_binary() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        missing_backend("promtool is not installed (Debian package prometheus)")
    return binary


def _config(
    targets: Mapping[str, Sequence[str]],
    scrape_interval: str,
    metrics_path: str,
    *,
    target_labels: Mapping[str, str],
    rule_files: Sequence[Path],
    evaluation_interval: str,
) -> str:
    jobs = []
    for job, urls in targets.items():
        hosts = [url.removeprefix("http://").rstrip("/") for url in urls]
        jobs.append(
            {
                "job_name": job,
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_interval,
                "metrics_path": metrics_path,
                "static_configs": [{"targets": hosts, "labels": dict(target_labels)}],
            }
        )
    config: dict[str, Any] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval},
        "scrape_configs": jobs,
    }
    if rule_files:
        config["rule_files"] = [str(path) for path in rule_files]
    # JSON is valid YAML: no YAML writer needed.
    return json.dumps(config)


@contextlib.contextmanager
def start_prometheus(
    workdir: Path,
    targets: Mapping[str, Sequence[str]],
    *,
    scrape_interval: str = "1s",
    metrics_path: str = "/metrics",
    target_labels: Mapping[str, str] | None = None,
    rule_files: Sequence[Path] = (),
    evaluation_interval: str = "1s",
) -> Iterator[PrometheusServer]:
    """Run Prometheus scraping ``targets`` (job name -> ``http://127.0.0.1:PORT`` URLs), with
    ``target_labels`` on every target, evaluating ``rule_files`` every ``evaluation_interval``."""
    binary = prometheus_binary()
    root = workdir / "prometheus"
    data_dir = root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    config = root / "prometheus.yml"
    text = _config(
        targets,
        scrape_interval,
        metrics_path,
        target_labels=target_labels or {},
        rule_files=rule_files,
        evaluation_interval=evaluation_interval,
    )
    config.write_text(text, encoding="utf-8")
    port = free_port()
    log_file = root / "prometheus.log"
    with open(log_file, "wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={data_dir}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--enable-feature=exemplar-storage",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = PrometheusServer(f"http://127.0.0.1:{port}", process, data_dir, log_file)
    try:
        _wait_ready(server)
        yield server
    finally:
        stop_process(process)


def _wait_ready(server: PrometheusServer) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            log = server.log_file.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise PrometheusError(f"prometheus exited with {server.process.returncode}: {log}")
        try:
            if httpx.get(f"{server.url}/-/ready", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise PrometheusError(f"prometheus at {server.url} not ready after {READY_TIMEOUT}s")


@contextlib.contextmanager
def serve_app(app: Any, *, timeout: float = 10.0) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread on 127.0.0.1; yields its base URL.

    uvicorn configures its stdlib loggers (levels, handlers) for the whole process: they are put
    back on exit, so that a later test sees them as a fresh process would."""
    saved = _uvicorn_loggers()
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
            time.sleep(0.02)
        if not port_open("127.0.0.1", port):
            raise RuntimeError(f"uvicorn reports started but 127.0.0.1:{port} is closed")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        for logger, (level, handlers, propagate, disabled) in saved.items():
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate = propagate
            logger.disabled = disabled


def _uvicorn_loggers() -> dict[logging.Logger, tuple[int, list[logging.Handler], bool, bool]]:
    loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access")]
    return {
        logger: (logger.level, list(logger.handlers), logger.propagate, logger.disabled)
        for logger in loggers
    }
