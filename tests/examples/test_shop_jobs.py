"""The shop's receipt job: inline without a broker, and a broker that is down."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from examples.servers import Servers, pick_port
from tests.examples.conftest import Stack

pytestmark = pytest.mark.proc
GOOD = "4242424242424242"


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _order(client: httpx.Client, cid: str) -> httpx.Response:
    email = f"{uuid.uuid4().hex[:12]}@example.org"
    user = client.post("/users", json={"email": email, "name": "Ada", "country": "FR"})
    assert user.status_code == 201, user.text
    body = {"user_id": user.json()["id"], "sku": "tea", "qty": 1, "card": GOOD}
    return client.post("/orders", json=body, headers={"X-Request-ID": cid})


def test_without_a_broker_the_receipt_runs_inline_under_the_order_id(stack: Stack) -> None:
    cid = uuid.uuid4().hex
    with httpx.Client(base_url=stack.shop.url, timeout=10) as client:
        order = _order(client, cid)
    assert order.status_code == 201, order.text
    mine = [r for r in _records(stack.log_dir / "shop.jsonl") if r.get("correlation_id") == cid]
    [done] = [r for r in mine if r["message"] == "job finished"]
    assert done["job"] == "shop.send_receipt"
    assert done["state"] == "success"  # 8.50: under the stand-in spam filter's limit


def test_a_broker_that_is_down_is_a_typed_503_and_never_a_hang(
    stack: Stack, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOUNDATION_")}
    env.update(FOUNDATION_LOG_DIR=str(tmp_path / "log"), FOUNDATION_LOG_STDOUT="0")
    servers = Servers(env=env, output_dir=tmp_path)
    cid = uuid.uuid4().hex
    try:
        shop = servers.start(
            "shop",
            "examples.shop.app:app",
            pick_port(None),
            env={
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}",
                "PAYMENTS_URL": stack.payments.url,
                "CELERY_BROKER_URL": f"redis://127.0.0.1:{pick_port(None)}/0",  # nobody listens
            },
        )
        servers.wait_ready(shop, 30)
        # The client's timeout is the bound: a publish that hung would fail the test.
        with httpx.Client(base_url=shop.url, timeout=20) as client:
            order = _order(client, cid)
            again = client.post(f"/orders/{order.json()['id']}/receipt/email")
    finally:
        servers.stop_all()
    # The order is paid: it still answers 201, and says in the log that no receipt was queued.
    assert order.status_code == 201 and order.json()["status"] == "paid"
    records = _records(tmp_path / "log" / "shop.jsonl")
    [warning] = [r for r in records if r["message"].startswith("receipt not queued")]
    assert warning["correlation_id"] == cid and warning["level"] == "WARNING"
    assert "could not publish shop.send_receipt: OperationalError" in warning["message"]
    # Asking for the receipt again is the request that needs the broker: a typed 503.
    assert again.status_code == 503, again.text
    body = again.json()
    assert (body["code"], body["correlation_id"]) == (25001, again.headers["x-request-id"])
    assert body["message"] == "The service is temporarily unavailable, please retry."
    assert "redis" not in again.text
