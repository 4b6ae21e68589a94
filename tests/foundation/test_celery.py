"""foundation.setup_celery with real Celery workers (prefork of 2, solo, threads) and real Redis.

One prefork worker serves most tests (module scope); each test tags its tasks and waits, with a
bounded loop, for the lines it expects in the worker's JSON files.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from celery import signals
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

import foundation
from examples.broker import (
    BrokerUnavailable,
    Redis,
    Worker,
    redis_binary,
    start_redis,
    start_worker,
)
from foundation.jobs import CORRELATION_HEADER
from tests.foundation import celery_tasks
from tests.foundation.servers import read_records
from tests.support import free_port, missing_backend

pytestmark = pytest.mark.proc
WAIT = 30.0
HEX32 = re.compile(r"[0-9a-f]{32}")


def wait_for(
    log_dir: Path, found: Callable[[list[dict[str, Any]]], Any], timeout: float = WAIT
) -> Any:
    """Poll the worker's files until ``found(records)`` is truthy; fail with the records if not."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_records(log_dir)
        result = found(records)
        if result:
            return result
        if time.monotonic() > deadline:
            tail = "\n".join(str(r) for r in records[-15:])
            pytest.fail(f"not found in the worker's logs after {timeout} s; last lines:\n{tail}")
        time.sleep(0.1)


def finished(records: list[dict[str, Any]], job_id: str) -> list[dict[str, Any]]:
    """The ``job finished`` lines of one task, in time order (pool processes write apart)."""
    lines = [r for r in records if r.get("message") == "job finished" and r.get("job_id") == job_id]
    return sorted(lines, key=lambda r: str(r["ts"]))


def is_ready(log_dir: Path) -> Callable[[], bool]:
    return lambda: any(str(r.get("message", "")).endswith(" ready.") for r in read_records(log_dir))


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    if redis_binary() is None:
        missing_backend("redis-server is not installed (apt-get install redis-server)")
    try:
        with start_redis(tmp_path_factory.mktemp("redis")) as server:
            celery_tasks.app.conf.broker_url = server.url(0)
            celery_tasks.app.conf.result_backend = server.url(1)
            yield server
    except BrokerUnavailable as exc:
        missing_backend(str(exc))


def worker_env(redis: Redis, log_dir: Path, queue: str, **extra: str) -> dict[str, str]:
    return {
        "TEST_BROKER_URL": redis.url(0),
        "TEST_QUEUE": queue,
        "FOUNDATION_LOG_DIR": str(log_dir),
        "FOUNDATION_LOG_STDOUT": "0",
        "FOUNDATION_LOG_COMPRESSION": "none",
        **extra,
    }


@pytest.fixture(scope="module")
def prefork(
    redis: Redis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Worker, Path, int]]:
    """A prefork worker with two processes, serving its job metrics on a free port."""
    base = tmp_path_factory.mktemp("prefork")
    log_dir, port = base / "log", free_port()
    env = worker_env(
        redis,
        log_dir,
        "prefork",
        PROMETHEUS_MULTIPROC_DIR=str(base / "metrics"),
        FOUNDATION_WORKER_METRICS_PORT=str(port),
    )
    (base / "metrics").mkdir()
    with start_worker(
        "tests.foundation.celery_tasks",
        env=env,
        output=base / "worker.txt",
        ready=is_ready(log_dir),
        queues=["prefork"],
    ) as worker:
        yield worker, log_dir, port


def enqueue_app() -> FastAPI:
    """A web app whose routes enqueue tasks (its own logs are not under test here)."""
    app = FastAPI()
    foundation.setup(app, service="web", log_dir=None, log_stdout=False, metrics=False)

    @app.post("/enqueue/{name}")
    async def enqueue(name: str, tag: str, queue: str) -> dict[str, str]:
        task = celery_tasks.app.tasks[name]
        args = () if name == "t.fail_bug" else (tag,)
        result = task.apply_async(args=args, queue=queue)
        return {"task_id": result.id}

    return app


async def enqueue(
    name: str, tag: str, queue: str, request_id: str, traceparent: str | None = None
) -> str:
    transport = httpx.ASGITransport(app=enqueue_app())
    headers = {"X-Request-ID": request_id}
    if traceparent is not None:
        headers["traceparent"] = traceparent
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        response = await client.post(
            f"/enqueue/{name}", params={"tag": tag, "queue": queue}, headers=headers
        )
    assert response.status_code == 200, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def test_request_id_reaches_the_prefork_worker(prefork: tuple[Worker, Path, int]) -> None:
    worker, log_dir, _ = prefork
    rid, trace = uuid.uuid4().hex, uuid.uuid4().hex
    task_id = await enqueue("t.echo", "hello", "prefork", rid, f"00-{trace}-00f067aa0ba902b7-01")
    done = wait_for(log_dir, lambda records: finished(records, task_id))
    records = read_records(log_dir)
    ran = [r for r in records if r.get("message") == "task ran" and r.get("tag") == "hello"]
    assert [r["correlation_id"] for r in ran] == [rid]
    assert ran[0]["job"] == "t.echo" and ran[0]["job_id"] == task_id
    # The W3C trace continues in the worker: same trace-id, a span of its own.
    assert ran[0]["trace_id"] == trace and len(ran[0]["span_id"]) == 16
    [line] = done
    assert line["correlation_id"] == rid
    assert (line["job"], line["state"], line["retries"]) == ("t.echo", "success", 0)
    assert line["service"] == "worker" and line["duration_ms"] >= 0
    # Celery's own "Task t.echo[...] succeeded" line is replaced by the job finished line.
    assert not any("succeeded in" in str(r.get("message")) for r in records)
    # One file per process: the main process and each pool child write their own.
    names = sorted(p.name for p in log_dir.iterdir())
    assert all(re.fullmatch(r"worker-\d+\.jsonl", n) for n in names), names
    assert f"worker-{worker.process.pid}.jsonl" in names


def test_a_task_published_outside_a_request_gets_its_own_id(
    prefork: tuple[Worker, Path, int],
) -> None:
    _, log_dir, _ = prefork
    ids = [celery_tasks.echo.apply_async(args=[f"own-{i}"], queue="prefork").id for i in range(2)]
    lines = [wait_for(log_dir, lambda r, t=t: finished(r, t))[0] for t in ids]
    cids = [line["correlation_id"] for line in lines]
    assert all(HEX32.fullmatch(c) for c in cids) and cids[0] != cids[1]


async def test_an_app_exception_is_logged_once_with_its_code(
    prefork: tuple[Worker, Path, int],
) -> None:
    _, log_dir, _ = prefork
    rid = uuid.uuid4().hex
    task_id = await enqueue("t.fail_app", "7", "prefork", rid)
    [line] = wait_for(log_dir, lambda records: finished(records, task_id))
    assert (line["state"], line["correlation_id"]) == ("failure", rid)
    errors = [
        r for r in read_records(log_dir) if r["level"] == "ERROR" and r.get("correlation_id") == rid
    ]
    assert len(errors) == 1, errors
    [error] = errors
    assert error["internal_code"] == 40901 and error["job"] == "t.fail_app"
    assert error["message"] == "order 7: 550 mailbox unavailable"
    assert error["exception"]["type"] == "ReceiptUndeliverable"


async def test_an_unhandled_error_is_logged_once_with_its_traceback(
    prefork: tuple[Worker, Path, int],
) -> None:
    _, log_dir, _ = prefork
    rid = uuid.uuid4().hex
    task_id = await enqueue("t.fail_bug", "", "prefork", rid)
    [line] = wait_for(log_dir, lambda records: finished(records, task_id))
    assert line["state"] == "failure"
    mine = [r for r in read_records(log_dir) if r.get("correlation_id") == rid]
    errors = [r for r in mine if r["level"] in ("ERROR", "CRITICAL")]
    assert [(e["message"], e["internal_code"]) for e in errors] == [("Unhandled KeyError", 10500)]
    assert 'rates["CH"]' in errors[0]["exception"]["traceback"]
    assert sum("Traceback" in str(r) for r in mine) == 1


async def test_retries_keep_the_id_and_count(prefork: tuple[Worker, Path, int]) -> None:
    _, log_dir, _ = prefork
    rid = uuid.uuid4().hex
    task_id = await enqueue("t.flaky", "r", "prefork", rid)
    lines = wait_for(log_dir, lambda r: len(finished(r, task_id)) == 3 and finished(r, task_id))
    assert [(x["state"], x["retries"]) for x in lines] == [
        ("retry", 0),
        ("retry", 1),
        ("success", 2),
    ]
    assert {x["correlation_id"] for x in lines} == {rid}
    assert lines[0]["retry_reason"] == "Retry"


async def test_chains_groups_and_chords_carry_the_id(prefork: tuple[Worker, Path, int]) -> None:
    _, log_dir, _ = prefork
    rid = uuid.uuid4().hex
    await enqueue("t.spawn", "wf", "prefork", rid)
    expected = {"wf-c1", "wf-c2", "wf-c3", "wf-g0", "wf-g1", "wf-h0", "wf-h1", "wf-body"}

    def tags(records: list[dict[str, Any]]) -> set[str]:
        return {r["tag"] for r in records if str(r.get("tag", "")).startswith("wf-")}

    wait_for(log_dir, lambda r: tags(r) == expected)
    lines = [r for r in read_records(log_dir) if str(r.get("tag", "")).startswith("wf-")]
    assert {r["correlation_id"] for r in lines} == {rid}


@pytest.mark.parametrize(
    "hostile",
    ["\x1b[2Jhostile" + "a" * 40, "hostile-" + "-" * 1_000_000, "0" * 31 + "g", "hostile\nline"],
    ids=["escape", "one-megabyte", "non-hex", "newline"],
)
def test_hostile_headers_from_a_foreign_producer_are_replaced_never_logged(
    prefork: tuple[Worker, Path, int], hostile: str
) -> None:
    worker, log_dir, _ = prefork
    # A foreign producer: foundation's publish hook is not there to clean the header.
    signals.before_task_publish.disconnect(dispatch_uid="foundation._stamp")
    try:
        task_id = celery_tasks.echo.apply_async(
            args=["hostile"], queue="prefork", headers={CORRELATION_HEADER: hostile}
        ).id
    finally:
        signals.before_task_publish.connect(
            foundation.celery_jobs._stamp, weak=False, dispatch_uid="foundation._stamp"
        )
    [line] = wait_for(log_dir, lambda records: finished(records, task_id))
    assert line["correlation_id"] == uuid.UUID(task_id).hex  # the task's own ID
    mine = [r for r in read_records(log_dir) if r.get("job_id") == task_id]
    [warning] = [r for r in mine if r["message"] == "job correlation ID rejected"]
    assert warning["received_length"] == len(hostile)
    marker = hostile[:8].encode()
    for path in [*log_dir.iterdir(), worker.output]:
        assert marker not in path.read_bytes(), path.name


def test_job_metrics_sum_the_pool_processes(prefork: tuple[Worker, Path, int]) -> None:
    _, log_dir, port = prefork
    ids = [celery_tasks.echo.apply_async(args=[f"m{i}"], queue="prefork").id for i in range(6)]
    for task_id in ids:
        wait_for(log_dir, lambda r, t=task_id: finished(r, t))
    lines = [r for r in read_records(log_dir) if r.get("message") == "job finished"]
    expected: dict[tuple[str, str], int] = {}
    for line in lines:
        key = (line["job"], line["state"])
        expected[key] = expected.get(key, 0) + 1
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    counted: dict[tuple[str, str], float] = {}
    durations: dict[str, float] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "jobs_total":
                counted[(sample.labels["job"], sample.labels["state"])] = sample.value
            if sample.name == "job_duration_seconds_count":
                durations[sample.labels["job"]] = sample.value
    assert counted == expected
    assert durations["t.echo"] == expected[("t.echo", "success")]


def test_threads_pool(redis: Redis, tmp_path: Path) -> None:
    pool = "threads"
    log_dir, queue = tmp_path / "log", f"q-{pool}"
    with start_worker(
        "tests.foundation.celery_tasks",
        env=worker_env(redis, log_dir, queue),
        output=tmp_path / "worker.txt",
        ready=is_ready(log_dir),
        pool=pool,
        concurrency=2,
        queues=[queue],
    ):
        rid = uuid.uuid4().hex
        signature = celery_tasks.echo.s(pool).set(queue=queue, headers={CORRELATION_HEADER: rid})
        task_id = signature.apply_async().id
        [line] = wait_for(log_dir, lambda records: finished(records, task_id))
    assert line["correlation_id"] == rid
    # One process: one file, under the service's own name.
    assert sorted(p.name for p in log_dir.iterdir()) == ["worker.jsonl"]


def test_a_task_redelivered_after_sigkill_keeps_its_id(redis: Redis, tmp_path: Path) -> None:
    """acks_late: the message stays unacknowledged in Redis, and comes back after the crash.

    Solo pool: the task runs in the worker's only process, which writes ``worker.jsonl``."""
    log_dir, queue, marker = tmp_path / "log", "q-kill", tmp_path / "started"
    env = worker_env(redis, log_dir, queue, TEST_VISIBILITY="2")
    celery_tasks.app.conf.broker_transport_options = {
        **celery_tasks.app.conf.broker_transport_options,
        "visibility_timeout": 2,
    }
    rid = uuid.uuid4().hex
    start = {"env": env, "ready": is_ready(log_dir), "queues": [queue], "pool": "solo"}
    with start_worker("tests.foundation.celery_tasks", output=tmp_path / "w1.txt", **start) as w1:
        signature = celery_tasks.slow.s(str(marker)).set(
            queue=queue, headers={CORRELATION_HEADER: rid}
        )
        task_id = signature.apply_async().id
        deadline = time.monotonic() + WAIT
        while not marker.exists():
            assert time.monotonic() < deadline, "the task never started"
            time.sleep(0.05)
        w1.kill()
    with start_worker("tests.foundation.celery_tasks", output=tmp_path / "w2.txt", **start):
        [line] = wait_for(log_dir, lambda records: finished(records, task_id))
    started = [r for r in read_records(log_dir) if r.get("message") == "slow started"]
    assert [r["redelivered"] for r in started] == [False, True]
    assert {r["correlation_id"] for r in started} == {rid}
    assert (line["correlation_id"], line["state"]) == (rid, "success")
    assert sorted(p.name for p in log_dir.iterdir()) == ["worker.jsonl"]


async def test_broker_down_answers_a_typed_503_in_bounded_time(tmp_path: Path) -> None:
    from celery import Celery

    down = Celery("down", broker=f"redis://127.0.0.1:{free_port()}/0")
    foundation.setup_celery(down, service="web-down", log_dir=None, log_stdout=False)

    @down.task(name="t.never")
    def never() -> None:
        raise AssertionError("unreachable")

    app = FastAPI()
    foundation.setup(app, service="web", log_dir=str(tmp_path / "log"), log_stdout=False)

    @app.post("/orders")
    async def order() -> dict[str, str]:
        return {"task_id": never.delay().id}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        with anyio.fail_after(20):  # the bound: no hang when the broker is gone
            response = await client.post("/orders", headers={"X-Request-ID": "a" * 32})
    assert response.status_code == 503
    assert response.json() == {
        "message": "The service is temporarily unavailable, please retry.",
        "code": 25001,
        "correlation_id": "a" * 32,
    }
    [error] = [r for r in read_records(tmp_path / "log") if r["level"] == "ERROR"]
    assert error["internal_code"] == 25001 and error["job"] == "t.never"
    assert "could not publish t.never: OperationalError" in error["message"]
