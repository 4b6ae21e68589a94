"""``obsctl trace`` and ``errors top`` of a request that enqueued background jobs: the worker's
lines carry the request's ID plus ``job``/``job_id`` (what foundation.setup_celery writes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.obsctl.logdata import CID_A, CID_B, access, line, run, write

pytestmark = pytest.mark.timeout(60)
JOB_ID = "ae67cf5d-89f4-457d-8f75-aa8edae03315"
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/shop/examples/shop/tasks.py", line 54, in send_receipt\n'
    "    raise ReceiptUndeliverable(\n"
    "examples.shop.errors.ReceiptUndeliverable: order 13: 550 mailbox unavailable\n"
)


def job_line(
    at: float, cid: str, message: str, job: str = "shop.send_receipt", **extra: Any
) -> bytes:
    return line(
        at,
        extra.pop("level", "INFO"),
        cid,
        message,
        service="worker",
        job=job,
        job_id=JOB_ID,
        **extra,
    )


def finished(at: float, cid: str, state: str, ms: float, retries: int, **extra: Any) -> bytes:
    return job_line(
        at,
        cid,
        "job finished",
        logger="foundation.jobs",
        duration_ms=ms,
        state=state,
        retries=retries,
        **extra,
    )


SHOP = [
    line(0.000, "INFO", CID_A, "order paid", logger="examples.shop.app", order_id=13),
    access(0.012, CID_A, "POST", "/orders", "/orders", 201, 12.0),
]
WORKER = [
    # Picked up 5.2 s after the answer: the mail server is busy, retried, then refuses.
    finished(5.232, CID_A, "retry", 20.0, 0, retry_reason="MailServerBusy"),
    job_line(
        5.781,
        CID_A,
        "order 13: 550 mailbox unavailable",
        level="ERROR",
        logger="foundation.jobs",
        internal_code=30301,
        http_code=502,
        external_message="The receipt could not be e-mailed.",
        exception={"type": "ReceiptUndeliverable", "value": "order 13", "traceback": TRACEBACK},
    ),
    finished(5.782, CID_A, "failure", 31.0, 1),
]


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")


def test_the_summary_names_the_job_and_how_it_ended(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "shop.jsonl", *SHOP)
    write(tmp_path / "worker-4242.jsonl", *WORKER)
    code, out, err = run(capsys, "trace", CID_A, str(tmp_path))
    assert code == 0, err
    assert (
        "Request POST /orders answered 201 Created after 12.0 ms; then job shop.send_receipt "
        "ran 5.2 s later in worker (2 times) and failed: The receipt could not be e-mailed. "
        "(code 30301)."
    ) in out
    # The job's failure is not the request's: no error row for a 201.
    panel = out[: out.index("timeline")]
    assert "│ error" not in panel
    assert "jobs" in panel
    # The job's traceback is shown like a request's.
    assert "550 mailbox unavailable" in out[out.index("traceback") :]


def test_a_job_that_succeeded_and_one_that_never_finished(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "shop.jsonl", *SHOP)
    write(
        tmp_path / "worker.jsonl",
        finished(0.050, CID_A, "success", 20.0, 0),
        line(
            0.060, "INFO", CID_A, "export started", service="worker", job="shop.export", job_id="x"
        ),
    )
    code, out, _ = run(capsys, "trace", CID_A, str(tmp_path))
    assert code == 0
    assert "then job shop.send_receipt ran 18.0 ms later in worker and succeeded" in out
    assert (
        "then job shop.export ran 48.0 ms later in worker and has no finished line "
        "(still running, or its worker stopped)."
    ) in out


def test_a_job_enqueued_outside_any_request_is_told_on_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "worker.jsonl", finished(1.0, CID_B, "success", 4.0, 0, job="nightly.report"))
    code, out, _ = run(capsys, "trace", CID_B, str(tmp_path))
    assert code == 0
    assert "Job nightly.report ran right after the request in worker and succeeded." not in out
    assert "Job nightly.report ran in worker and succeeded." in out


def test_errors_top_shows_the_job_where_a_route_would_be(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "shop.jsonl", *SHOP)
    write(tmp_path / "worker-4242.jsonl", *WORKER)
    code, out, _ = run(capsys, "errors", "top", str(tmp_path), "--json")
    assert code == 0
    [row] = [orjson.loads(text) for text in out.splitlines()]
    assert (row["internal_code"], row["count"]) == (30301, 1)
    assert row["routes"] == {"job:shop.send_receipt": 1}
    code, out, _ = run(capsys, "errors", "top", "--by", "route", str(tmp_path), "--json")
    assert [orjson.loads(text)["route"] for text in out.splitlines()] == ["job:shop.send_receipt"]
