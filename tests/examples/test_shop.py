"""The shop over real HTTP (uvicorn), with its payment service: what a client and the logs show."""

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


def _client(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.shop.url, timeout=10)


def _user(client: httpx.Client, country: str = "FR") -> int:
    email = f"{uuid.uuid4().hex[:12]}@example.org"
    response = client.post("/users", json={"email": email, "name": "Ada", "country": country})
    assert response.status_code == 201, response.text
    user_id: int = response.json()["id"]
    return user_id


def _lines(log_dir: Path, name: str, cid: str) -> list[dict[str, Any]]:
    path = log_dir / name
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [r for r in records if r.get("correlation_id") == cid]


def _envelope(response: httpx.Response, status: int, code: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert body["correlation_id"] == response.headers["x-request-id"]


def test_a_second_signup_with_the_same_email_is_a_409(stack: Stack) -> None:
    with _client(stack) as client:
        body = {"email": f"{uuid.uuid4().hex}@example.org", "name": "Ada", "country": "FR"}
        assert client.post("/users", json=body).status_code == 201
        again = client.post("/users", json=body)
    _envelope(again, 409, 21102)
    assert again.json()["message"] == "A record with these values already exists."
    assert body["email"] not in again.text


def test_an_order_is_paid_and_the_payment_service_logs_under_the_same_id(stack: Stack) -> None:
    cid = uuid.uuid4().hex
    with _client(stack) as client:
        user = _user(client)
        before = client.get("/products/mug").json()["stock"]
        order = client.post(
            "/orders",
            json={"user_id": user, "sku": "mug", "qty": 2, "card": GOOD},
            headers={"X-Request-ID": cid},
        )
        assert order.status_code == 201, order.text
        assert order.json()["status"] == "paid"
        assert order.json()["charge_id"].startswith("ch_")
        assert client.get("/products/mug").json()["stock"] == before - 2
    messages = [r["message"] for r in _lines(stack.log_dir, "payments.jsonl", cid)]
    assert "charging card" in messages
    assert "charge captured" in messages
    shop = _lines(stack.log_dir, "shop.jsonl", cid)
    assert "order paid" in [r["message"] for r in shop]


@pytest.mark.parametrize(
    ("card", "status", "code"),
    [("4000000000000002", 402, 30102), ("4000000000000119", 503, 30103)],
)
def test_a_failed_payment_gives_the_stock_back(
    stack: Stack, card: str, status: int, code: int
) -> None:
    with _client(stack) as client:
        user = _user(client)
        before = client.get("/products/tea").json()["stock"]
        response = client.post(
            "/orders", json={"user_id": user, "sku": "tea", "qty": 3, "card": card}
        )
        _envelope(response, status, code)
        assert client.get("/products/tea").json()["stock"] == before
    # The card number is never logged, only its last four digits.
    for name in ("shop.jsonl", "payments.jsonl"):
        assert card not in (stack.log_dir / name).read_text(encoding="utf-8")


def test_ordering_more_than_the_stock_is_out_of_stock(stack: Stack) -> None:
    with _client(stack) as client:
        user = _user(client)
        response = client.post(
            "/orders", json={"user_id": user, "sku": "limited-print", "qty": 50, "card": GOOD}
        )
    _envelope(response, 409, 30101)
    records = _lines(stack.log_dir, "shop.jsonl", response.headers["x-request-id"])
    assert [r["internal_code"] for r in records if r["level"] == "ERROR"] == [30101]


def test_unknown_product_user_and_order(stack: Stack) -> None:
    with _client(stack) as client:
        _envelope(client.get("/products/nope"), 404, 21101)
        _envelope(client.get("/orders/987654"), 404, 21101)
        response = client.post(
            "/orders", json={"user_id": 987654, "sku": "tea", "qty": 1, "card": GOOD}
        )
    _envelope(response, 409, 21103)


def test_the_receipt_bug_is_a_generic_500_with_the_traceback_in_the_log(stack: Stack) -> None:
    with _client(stack) as client:
        swiss = _user(client, country="CH")
        order = client.post(
            "/orders", json={"user_id": swiss, "sku": "tea", "qty": 1, "card": GOOD}
        )
        french = client.post(
            "/orders", json={"user_id": _user(client), "sku": "tea", "qty": 1, "card": GOOD}
        )
        ok = client.get(f"/orders/{french.json()['id']}/receipt")
        crash = client.get(f"/orders/{order.json()['id']}/receipt")
    assert ok.status_code == 200
    assert ok.json()["vat_percent"] == 20
    _envelope(crash, 500, 10500)
    assert "KeyError" not in crash.text
    assert "CH" not in crash.text
    errors = [
        r
        for r in _lines(stack.log_dir, "shop.jsonl", crash.headers["x-request-id"])
        if r["level"] == "ERROR"
    ]
    assert errors[0]["exception"]["type"] == "KeyError"
    assert "VAT_RATES[user.country]" in errors[0]["exception"]["traceback"]


def test_payment_service_down_is_a_503_not_a_500(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOUNDATION_")}
    env.update(FOUNDATION_LOG_DIR=str(tmp_path / "log"), FOUNDATION_LOG_STDOUT="0")
    servers = Servers(env=env, output_dir=tmp_path)
    try:
        shop = servers.start(
            "shop",
            "examples.shop.app:app",
            pick_port(None),
            env={
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'shop.db'}",
                "PAYMENTS_URL": f"http://127.0.0.1:{pick_port(None)}",  # nobody listens
            },
        )
        servers.wait_ready(shop, 30)
        with httpx.Client(base_url=shop.url, timeout=10) as client:
            user = _user(client, country="DE")
            response = client.post(
                "/orders", json={"user_id": user, "sku": "tea", "qty": 1, "card": GOOD}
            )
            stock = client.get("/products/tea").json()["stock"]
    finally:
        codes = servers.stop_all()
    _envelope(response, 503, 30103)
    assert stock == 1000
    assert codes["shop"] in (0, -15)  # uvicorn re-raises the SIGTERM after a clean shutdown
    log = (tmp_path / "log" / "shop.jsonl").read_text(encoding="utf-8")
    assert "payment service unreachable: ConnectError" in log
    assert '"message":"shop stopped"' in log
