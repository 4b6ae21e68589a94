"""A log disk that fails is visible on /metrics while requests keep succeeding."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI
from loguru import logger
from prometheus_client.parser import text_string_to_metric_families

import foundation


async def test_dropped_records_are_counted_in_log_write_errors_total(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the log directory should be")
    app = FastAPI()
    foundation.setup(app, service="disk", log_dir=str(blocker / "log"), log_stdout=False, env={})

    @app.get("/work")
    async def work() -> dict[str, bool]:
        logger.info("working")
        return {"ok": True}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for _ in range(3):
            assert (await client.get("/work")).status_code == 200
        scrape = (await client.get("/metrics")).text
    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
    }
    # Three requests, each with the handler's line and the access line.
    assert values["log_write_errors_total"] >= 6
