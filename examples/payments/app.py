"""A stand-in card processor (``uvicorn examples.payments.app:app``), called by the shop.

It runs as its own service with its own log file (``payments.jsonl``); the shop's httpx client
sends ``X-Request-ID``, so every line here carries the shop request's correlation ID and
``obsctl trace ID`` shows both services in one timeline. Test cards decide the outcome:
``4000000000000002`` is declined, ``4000000000000119`` finds the card issuer down.
"""

from __future__ import annotations

import uuid

from fastapi import FastAPI
from loguru import logger
from pydantic import BaseModel, Field

import foundation
from foundation import ApiException

DECLINED_CARD = "4000000000000002"
ISSUER_DOWN_CARD = "4000000000000119"


class CardDeclined(ApiException):
    """The issuer refused the charge."""

    http_code = 402
    external_message = "The card was declined."
    internal_code = 30201
    internal_message = "Issuer declined the charge."


class IssuerUnavailable(ApiException):
    """The card issuer did not answer."""

    http_code = 503
    external_message = "The card issuer is unavailable, please retry."
    internal_code = 30202
    internal_message = "Card issuer timed out."


class ChargeIn(BaseModel):
    order_id: int
    amount_cents: int = Field(gt=0)
    card: str = Field(pattern=r"^\d{12,19}$")


class ChargeOut(BaseModel):
    charge_id: str
    amount_cents: int


app = FastAPI(title="payments")
foundation.setup(app, service="payments")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/charges", status_code=201)
async def charge(body: ChargeIn) -> ChargeOut:
    card_last4 = body.card[-4:]  # never log the card number itself
    logger.info(
        "charging card", order_id=body.order_id, amount_cents=body.amount_cents, card=card_last4
    )
    if body.card == DECLINED_CARD:
        raise CardDeclined(internal_message=f"card ending {card_last4}: insufficient funds")
    if body.card == ISSUER_DOWN_CARD:
        raise IssuerUnavailable(internal_message=f"card ending {card_last4}: issuer timeout")
    charge_id = f"ch_{uuid.uuid4().hex[:16]}"
    logger.info("charge captured", order_id=body.order_id, charge_id=charge_id)
    return ChargeOut(charge_id=charge_id, amount_cents=body.amount_cents)
