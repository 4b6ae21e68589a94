"""The shop: products, users and orders on foundation (``uvicorn examples.shop.app:app``).

Configuration comes from the environment, read once here:

- ``DATABASE_URL``: SQLAlchemy async URL (default ``sqlite+aiosqlite:///var/data/shop.db``;
  ``postgresql+asyncpg://...`` or ``mysql+aiomysql://...`` work unchanged);
- ``PAYMENTS_URL``: base URL of ``examples.payments`` (default ``http://127.0.0.1:8001``);
- ``FOUNDATION_*``: foundation's own options (``FOUNDATION_LOG_DIR``, ...).

What it shows: domain errors (``errors.py``), a unique constraint turned into a 409 by
``Depends(db.session)``, a multi-step order in explicit ``DbManager`` transactions around an
outgoing httpx call that carries the correlation ID to the payment service, and one real bug
(``GET /orders/{id}/receipt`` for a customer whose country is missing from the VAT table).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, cast

import httpx
from fastapi import Depends, FastAPI, Request
from loguru import logger
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

import foundation
from examples.shop.errors import OutOfStock, PaymentDeclined, PaymentUnavailable
from examples.shop.models import Base, Order, Product, User
from examples.shop.tasks import send_receipt
from foundation import (
    Database,
    DbManager,
    DuplicateRecord,
    JobQueueUnavailable,
    RecordNotFound,
    ReferenceViolation,
)

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///var/data/shop.db")
PAYMENTS_URL = os.environ.get("PAYMENTS_URL", "http://127.0.0.1:8001")

CATALOGUE: tuple[dict[str, str | int], ...] = (
    {"sku": "tea", "name": "Sencha green tea, 100 g", "price_cents": 850, "stock": 1000},
    {"sku": "kettle", "name": "Gooseneck kettle", "price_cents": 5900, "stock": 200},
    {"sku": "mug", "name": "Stoneware mug", "price_cents": 1400, "stock": 500},
    {"sku": "teapot", "name": "Cast-iron teapot", "price_cents": 7500, "stock": 120},
    {"sku": "limited-print", "name": "Signed poster (limited)", "price_cents": 12000, "stock": 3},
)
# VAT in percent by customer country.
VAT_RATES = {"FR": 20, "DE": 19, "IT": 22, "ES": 21, "NL": 21, "BE": 21, "PT": 23, "IE": 23}

db = Database(DATABASE_URL)  # no I/O here: the engine is created in the lifespan


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await db.start()
    async with db.engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    # Several workers may seed at once: the loser's DuplicateRecord is logged and ignored.
    async with DbManager(database=db, suppress_exc=True) as session:
        if not await session.scalar(select(func.count()).select_from(Product)):
            session.add_all(Product(**item) for item in CATALOGUE)
    async with httpx.AsyncClient(
        base_url=PAYMENTS_URL,
        timeout=httpx.Timeout(2.0, connect=1.0),
        # Sends the current request's X-Request-ID: the payment service logs under the same ID.
        event_hooks={"request": [foundation.astamp_correlation_id]},
    ) as client:
        app.state.payments = client
        logger.info("shop started", payments_url=PAYMENTS_URL, dialect=db.dialect)
        yield
    await db.dispose()
    logger.info("shop stopped")


app = FastAPI(title="shop", lifespan=lifespan)
foundation.setup(app, service="shop", database=db)

Session = Annotated[AsyncSession, Depends(db.session)]


def _payments(request: Request) -> httpx.AsyncClient:
    client: httpx.AsyncClient = request.app.state.payments
    return client


Payments = Annotated[httpx.AsyncClient, Depends(_payments)]


class ProductOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sku: str
    name: str
    price_cents: int
    stock: int


class UserIn(BaseModel):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)
    name: str = Field(min_length=1, max_length=100)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166 alpha-2")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    country: str


class OrderIn(BaseModel):
    user_id: int = Field(gt=0)
    sku: str = Field(min_length=1, max_length=64)
    qty: int = Field(ge=1, le=50)
    card: str = Field(pattern=r"^\d{12,19}$")


class OrderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int
    sku: str
    qty: int
    total_cents: int
    status: str
    charge_id: str | None


class Receipt(BaseModel):
    order_id: int
    net_cents: int
    vat_percent: int
    vat_cents: int
    total_cents: int


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/products")
async def list_products(session: Session) -> list[ProductOut]:
    products = await session.scalars(select(Product).order_by(Product.sku))
    return [ProductOut.model_validate(p) for p in products]


@app.get("/products/{sku}", responses=foundation.error_responses(RecordNotFound))
async def get_product(sku: str, session: Session) -> ProductOut:
    # scalar_one() on no row becomes foundation's RecordNotFound: 404, code 21101.
    product = (await session.execute(select(Product).where(Product.sku == sku))).scalar_one()
    return ProductOut.model_validate(product)


@app.post("/users", status_code=201, responses=foundation.error_responses(DuplicateRecord))
async def create_user(body: UserIn, session: Session) -> UserOut:
    user = User(email=body.email, name=body.name, country=body.country)
    session.add(user)
    await session.flush()  # a taken email fails here: DuplicateRecord, 409, code 21102
    logger.info("user created", user_id=user.id, country=user.country)
    return UserOut.model_validate(user)


@app.get("/users/{user_id}", responses=foundation.error_responses(RecordNotFound))
async def get_user(user_id: int, session: Session) -> UserOut:
    user = (await session.execute(select(User).where(User.id == user_id))).scalar_one()
    return UserOut.model_validate(user)


@app.post(
    "/orders",
    status_code=201,
    responses=foundation.error_responses(
        RecordNotFound, OutOfStock, ReferenceViolation, PaymentDeclined, PaymentUnavailable
    ),
)
async def place_order(body: OrderIn, payments: Payments) -> OrderOut:
    # Three short transactions rather than one held open across the payment call: reserve the
    # stock, charge the card, then confirm (or give the stock back).
    async with DbManager(database=db) as session:
        product = (
            await session.execute(select(Product).where(Product.sku == body.sku))
        ).scalar_one()
        # One conditional UPDATE: two concurrent orders can never both take the last item.
        reserved = cast(
            CursorResult[Any],  # what execute() returns for an UPDATE
            await session.execute(
                update(Product)
                .where(Product.sku == body.sku, Product.stock >= body.qty)
                .values(stock=Product.stock - body.qty)
            ),
        )
        if reserved.rowcount != 1:
            raise OutOfStock(
                internal_message=f"sku={body.sku} stock={product.stock} wanted={body.qty}",
                sku=body.sku,
            )
        order = Order(
            user_id=body.user_id,
            sku=body.sku,
            qty=body.qty,
            total_cents=product.price_cents * body.qty,
            status="pending",
        )
        session.add(order)
        await session.flush()  # an unknown user fails here: ReferenceViolation, 409, code 21103
    logger.info("stock reserved", order_id=order.id, sku=order.sku, qty=order.qty)
    try:
        order.charge_id = await _charge(payments, order, body.card)
    except (PaymentDeclined, PaymentUnavailable):
        async with DbManager(database=db) as session:
            await session.execute(
                update(Product)
                .where(Product.sku == order.sku)
                .values(stock=Product.stock + order.qty)
            )
            await session.execute(update(Order).where(Order.id == order.id).values(status="failed"))
        logger.info("stock released", order_id=order.id)
        raise
    async with DbManager(database=db) as session:
        await session.execute(
            update(Order)
            .where(Order.id == order.id)
            .values(status="paid", charge_id=order.charge_id)
        )
    order.status = "paid"
    logger.info("order paid", order_id=order.id, total_cents=order.total_cents)
    try:
        # The worker's lines for this receipt carry this request's correlation ID.
        send_receipt.delay(order.id, order.total_cents)
    except JobQueueUnavailable as exc:
        # The order is paid: answering 503 would invite a second payment. The receipt can be
        # sent again with POST /orders/{id}/receipt/email.
        logger.warning("receipt not queued: {}", exc.internal_message, order_id=order.id)
    return OrderOut.model_validate(order)


async def _charge(payments: httpx.AsyncClient, order: Order, card: str) -> str:
    """The charge ID from the payment service, or a typed error for the client."""
    try:
        response = await payments.post(
            "/charges",
            json={"order_id": order.id, "amount_cents": order.total_cents, "card": card},
        )
    except httpx.HTTPError as exc:
        raise PaymentUnavailable(
            internal_message=f"payment service unreachable: {type(exc).__name__}",
            order_id=order.id,
        ) from exc
    if response.status_code == 201:
        charge_id: str = response.json()["charge_id"]
        return charge_id
    if response.status_code == 402:
        raise PaymentDeclined(
            internal_message=f"order {order.id}: payment service answered 402",
            order_id=order.id,
        )
    raise PaymentUnavailable(
        internal_message=f"order {order.id}: payment service answered {response.status_code}",
        order_id=order.id,
    )


@app.get("/orders/{order_id}", responses=foundation.error_responses(RecordNotFound))
async def get_order(order_id: int, session: Session) -> OrderOut:
    order = (await session.execute(select(Order).where(Order.id == order_id))).scalar_one()
    return OrderOut.model_validate(order)


@app.get("/orders/{order_id}/receipt", responses=foundation.error_responses(RecordNotFound))
async def get_receipt(order_id: int, session: Session) -> Receipt:
    row = (
        await session.execute(
            select(Order, User).join(User, Order.user_id == User.id).where(Order.id == order_id)
        )
    ).one()
    order, user = row.tuple()
    # The bug this demo is about: a customer from a country missing in VAT_RATES (say "CH")
    # raises KeyError, which foundation answers with a generic 500 and logs with its traceback.
    vat_percent = VAT_RATES[user.country]
    vat_cents = round(order.total_cents * vat_percent / (100 + vat_percent))
    return Receipt(
        order_id=order.id,
        net_cents=order.total_cents - vat_cents,
        vat_percent=vat_percent,
        vat_cents=vat_cents,
        total_cents=order.total_cents,
    )


@app.post(
    "/orders/{order_id}/receipt/email",
    status_code=202,
    responses=foundation.error_responses(RecordNotFound, JobQueueUnavailable),
)
async def email_receipt(order_id: int, session: Session) -> dict[str, str]:
    """Send the receipt again; a broker that cannot be reached answers 503 (code 25001)."""
    order = (await session.execute(select(Order).where(Order.id == order_id))).scalar_one()
    job = send_receipt.delay(order.id, order.total_cents)
    return {"job_id": job.id}
