"""The any-queue example: foundation.job_headers/job_context through a real saq worker process
on a real redis-server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgi_correlation_id import correlation_id
from saq import Queue

from examples.broker import BrokerUnavailable, Redis, redis_binary, start_redis
from examples.saq_worker import enqueue_export
from examples.servers import REPO_ROOT
from tests.foundation.servers import read_records
from tests.support import missing_backend, stop_process

pytestmark = pytest.mark.proc


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    if redis_binary() is None:
        missing_backend("redis-server is not installed (apt-get install redis-server)")
    try:
        with start_redis(tmp_path_factory.mktemp("redis")) as server:
            yield server
    except BrokerUnavailable as exc:
        missing_backend(str(exc))


def wait_for(log_dir: Path, found: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        records = read_records(log_dir)
        if found(records):
            return records
        assert time.monotonic() < deadline, records[-10:]
        time.sleep(0.1)


async def test_jobs_run_under_the_request_id_and_end_with_one_line(
    redis: Redis, tmp_path: Path
) -> None:
    log_dir = tmp_path / "log"
    env = {
        **os.environ,
        "SAQ_REDIS_URL": redis.url(2),
        "FOUNDATION_LOG_DIR": str(log_dir),
        "FOUNDATION_LOG_STDOUT": "0",
        "PYTHONPATH": str(REPO_ROOT),
    }
    with (tmp_path / "worker.txt").open("wb") as output:
        worker = subprocess.Popen(
            [sys.executable, "-m", "saq", "examples.saq_worker.settings", "--quiet"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=output,
        )
    queue = Queue.from_url(redis.url(2))
    try:
        wait_for(log_dir, lambda rs: any(r["message"] == "exporter started" for r in rs))
        rid = uuid.uuid4().hex
        token = correlation_id.set(rid)  # as inside a request
        try:
            good = await enqueue_export("sales", on=queue)
            bad = await enqueue_export("broken", on=queue)
        finally:
            correlation_id.reset(token)

        def ends(records: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
            return [r for r in records if r["message"] == "job finished" and r["job_id"] == key]

        records = wait_for(log_dir, lambda rs: ends(rs, good) and len(ends(rs, bad)) == 2)
    finally:
        await queue.disconnect()
        stop_process(worker)
    # saq was seen running an already finished job a second time (once in a full CI run, with
    # concurrency 1): every run of the good job must end the same way, under the request's ID.
    done = ends(records, good)
    assert done
    assert {(d["state"], d["correlation_id"], d["job"]) for d in done} == {
        ("success", rid, "export_report")
    }
    assert [(r["state"], r["retries"]) for r in ends(records, bad)] == [
        ("retry", 0),
        ("failure", 1),
    ]
    errors = [r for r in records if r["level"] == "ERROR"]
    assert [(e["internal_code"], e["correlation_id"]) for e in errors] == [(30401, rid)]
    assert "Traceback" in errors[0]["exception"]["traceback"]
    exporting = [r for r in records if r["message"] == "exporting"]
    assert {r["correlation_id"] for r in exporting} == {rid} and len(exporting) == len(done) + 2
