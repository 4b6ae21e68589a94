"""foundation.job_headers / job_context: the any-queue API, in one process (no broker)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from asgi_correlation_id import correlation_id
from loguru import logger

import foundation
from foundation import AppException, job_context, job_headers
from foundation.jobs import CORRELATION_HEADER, job_metrics
from foundation.logging import configure_logging
from foundation.tracecontext import start_trace, use_trace_context
from tests.foundation.servers import read_records


class ExportFailed(AppException):
    http_code = 502
    external_message = "The export could not be written."
    internal_code = 40902
    internal_message = "Export target refused the file."


class Again(Exception):
    """What a queue's own 'run me again' exception looks like (arq.Retry, saq's retries...)."""


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    configure_logging(
        service="worker", log_dir=tmp_path / "log", log_stdout=False, compression=None
    )
    return tmp_path / "log"


def counted(job: str, state: str) -> float:
    value = job_metrics().registry.get_sample_value("jobs_total", {"job": job, "state": state})
    return value or 0.0


def test_headers_carry_the_current_id_or_a_fresh_one() -> None:
    token = correlation_id.set("c" * 32)
    try:
        assert job_headers() == {CORRELATION_HEADER: "c" * 32}
    finally:
        correlation_id.reset(token)
    fresh = [job_headers()[CORRELATION_HEADER] for _ in range(2)]
    assert fresh[0] != fresh[1] and all(len(f) == 32 for f in fresh)


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def test_headers_carry_the_current_trace_as_a_child_span() -> None:
    with use_trace_context(start_trace("c" * 32)) as trace:
        headers = job_headers()
    assert trace is not None
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", "c" * 32, "01")
    assert span_id != trace.span_id and len(span_id) == 16


def test_a_job_continues_the_callers_trace(log_dir: Path) -> None:
    headers = {CORRELATION_HEADER: "a" * 32, "traceparent": PARENT, "tracestate": "shop=1"}
    with job_context(headers, job="export"):
        logger.info("exporting")
    inside, done = read_records(log_dir)
    assert inside["trace_id"] == done["trace_id"] == TRACE
    assert inside["span_id"] == done["span_id"] != "00f067aa0ba902b7"


@pytest.mark.parametrize(
    "traceparent", [None, "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "x" * 100_000, 7]
)
def test_without_a_valid_traceparent_the_trace_id_is_the_correlation_id(
    log_dir: Path, traceparent: object
) -> None:
    with job_context({CORRELATION_HEADER: "b" * 32, "traceparent": traceparent}, job="export"):
        logger.info("exporting")
    assert {r["trace_id"] for r in read_records(log_dir)} == {"b" * 32}


def test_a_job_runs_under_its_id_and_ends_with_one_line(log_dir: Path) -> None:
    before = counted("export", "success")
    with job_context({CORRELATION_HEADER: "A" * 32}, job="export", job_id="j-1") as job:
        logger.info("exporting", rows=3)
        assert foundation.get_correlation_id() == "a" * 32 == job.correlation_id
    assert foundation.get_correlation_id() is None
    inside, done = read_records(log_dir)
    assert (inside["correlation_id"], inside["job"], inside["job_id"]) == (
        "a" * 32,
        "export",
        "j-1",
    )
    assert done["message"] == "job finished" and done["correlation_id"] == "a" * 32
    assert (done["job"], done["job_id"], done["state"], done["retries"]) == (
        "export",
        "j-1",
        "success",
        0,
    )
    assert done["duration_ms"] >= 0
    assert counted("export", "success") == before + 1


async def test_an_async_job_failure_is_logged_like_a_request(log_dir: Path) -> None:
    before = counted("export", "failure")
    with pytest.raises(ExportFailed):
        async with job_context(job_headers(), job="export", job_id="j-2", retries=1):
            raise ExportFailed(internal_message="bucket refused: 403", bucket="reports")
    error, done = read_records(log_dir)
    assert error["level"] == "ERROR" and error["message"] == "bucket refused: 403"
    assert (error["internal_code"], error["http_code"], error["job"]) == (40902, 502, "export")
    assert error["bucket"] == "reports" and "Traceback" in error["exception"]["traceback"]
    assert (done["state"], done["retries"]) == ("failure", 1)
    assert error["correlation_id"] == done["correlation_id"]
    assert counted("export", "failure") == before + 1


def test_an_unhandled_error_is_code_10500_with_its_traceback(log_dir: Path) -> None:
    with pytest.raises(ZeroDivisionError), job_context(None, job="report"):
        _ = 1 / 0
    error, done = read_records(log_dir)
    assert (error["message"], error["internal_code"]) == ("Unhandled ZeroDivisionError", 10500)
    assert "1 / 0" in error["exception"]["traceback"]
    assert done["state"] == "failure"


def test_retry_on_marks_the_execution_as_retried(log_dir: Path) -> None:
    with pytest.raises(Again), job_context(None, job="sync", retry_on=(Again,)):
        raise Again("later")
    [done] = read_records(log_dir)
    assert (done["state"], done["retry_reason"]) == ("retry", "Again")


@pytest.mark.parametrize(
    "hostile", ["x" * 1_000_000, "\x1b[31mred\x1b[0m", "g" * 32, "not-an-id", 42, None]
)
def test_hostile_ids_are_replaced_and_never_logged(log_dir: Path, hostile: object) -> None:
    job_id = str(uuid.uuid4())
    with job_context({CORRELATION_HEADER: hostile}, job="import", job_id=job_id):
        logger.info("importing")
    records = read_records(log_dir)
    # Replaced by the job's own ID (a redelivery then keeps it).
    assert {r["correlation_id"] for r in records} == {uuid.UUID(job_id).hex}
    warnings = [r for r in records if r["message"] == "job correlation ID rejected"]
    assert len(warnings) == (hostile is not None)
    text = b"".join(p.read_bytes() for p in log_dir.iterdir())
    if isinstance(hostile, str):
        assert hostile[:6].encode() not in text.replace(b'"job correlation ID', b"")
