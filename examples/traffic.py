"""A few hundred realistic requests against the shop, most succeeding, some failing on purpose.

Three phases, each run with bounded concurrency (the later ones need IDs the earlier ones
created): customers sign up (a few twice, a few with invalid bodies); customers browse and
order (some cards are declined, the card issuer is down for some, a limited poster sells out,
some orders name a user that does not exist, a scanner probes unknown paths); then orders,
users and receipts are looked up. One customer lives in Switzerland, and her receipt hits the
shop's one real bug: a 500.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
ISSUER_DOWN_CARD = "4000000000000119"
SKUS = ("tea", "kettle", "mug", "teapot")
COUNTRIES = ("FR", "DE", "IT", "ES", "NL", "BE", "PT", "IE")
NAMES = (
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret",
    "Niklaus", "Radia", "Tim", "Hedy", "John", "Sophie", "Guido",
)  # fmt: skip
SWISS_CUSTOMER = {"email": "heidi@example.ch", "name": "Heidi", "country": "CH"}


@dataclass(frozen=True, slots=True)
class Call:
    """One request of the plan; ``label`` names what it is meant to show."""

    method: str
    path: str
    label: str
    json: dict[str, Any] | None = None
    content: bytes | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    call: Call
    status: int
    correlation_id: str
    body: Any


@dataclass(slots=True)
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def statuses(self) -> Counter[int]:
        return Counter(outcome.status for outcome in self.outcomes)

    def first(self, label: str) -> Outcome | None:
        return next((o for o in self.outcomes if o.call.label == label), None)

    def with_status(self, status: int) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]


async def _send(client: httpx.AsyncClient, call: Call) -> Outcome:
    headers = {"content-type": "application/json"} if call.content is not None else None
    response = await client.request(
        call.method, call.path, json=call.json, content=call.content, headers=headers
    )
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return Outcome(call, response.status_code, response.headers.get("x-request-id", ""), body)


async def _run(client: httpx.AsyncClient, calls: list[Call], concurrency: int) -> list[Outcome]:
    """Every call, at most ``concurrency`` in flight, results in plan order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(call: Call) -> Outcome:
        async with gate:
            return await _send(client, call)

    return list(await asyncio.gather(*(one(call) for call in calls)))


def _signups(rng: random.Random) -> list[Call]:
    calls = [
        Call(
            "POST",
            "/users",
            "signup",
            json={
                "email": f"{name.lower()}.{n}@example.org",
                "name": name,
                "country": rng.choice(COUNTRIES),
            },
        )
        for n, name in enumerate(rng.choices(NAMES, k=36))
    ]
    calls.append(Call("POST", "/users", "signup-swiss", json=SWISS_CUSTOMER))
    calls += [
        Call("POST", "/users", "signup-invalid", json=body)
        for body in (
            {"email": "not-an-email", "name": "Bob", "country": "FR"},
            {"email": "bob@example.org", "name": "Bob"},
            {"email": "bob@example.org", "name": "", "country": "fr"},
        )
    ]
    calls.append(Call("POST", "/users", "signup-invalid", content=b'{"email": "bob@'))
    return calls


def _shopping(
    rng: random.Random, users: list[int], swiss: int, again: list[dict[str, Any]]
) -> list[Call]:
    def order(label: str, user: int, sku: str, qty: int, card: str) -> Call:
        body = {"user_id": user, "sku": sku, "qty": qty, "card": card}
        return Call("POST", "/orders", label, json=body)

    calls = [Call("GET", "/products", "browse") for _ in range(40)]
    calls += [Call("GET", f"/products/{rng.choice(SKUS)}", "product") for _ in range(50)]
    calls += [
        Call("GET", f"/products/{sku}", "product-unknown")
        for sku in ("green-tea", "kettel", "mugs", "tea-pot", "gift-card")
    ]
    calls += [
        order("order", rng.choice(users), rng.choice(SKUS), rng.randint(1, 3), GOOD_CARD)
        for _ in range(100)
    ]
    calls.append(order("order-swiss", swiss, "tea", 2, GOOD_CARD))
    calls += [order("order-limited", rng.choice(users), "limited-print", 2, GOOD_CARD)] * 5
    calls += [order("order-declined", rng.choice(users), "mug", 1, DECLINED_CARD)] * 8
    calls += [order("order-issuer-down", rng.choice(users), "tea", 1, ISSUER_DOWN_CARD)] * 4
    calls += [order("order-unknown-user", 99_999, "tea", 1, GOOD_CARD)] * 3
    calls += [order("order-invalid", rng.choice(users), "tea", 0, GOOD_CARD)] * 2
    calls += [order("order-invalid", rng.choice(users), "tea", 1, "1234-oops")] * 2
    calls += [Call("POST", "/users", "signup-duplicate", json=body) for body in again]
    calls += [
        Call("GET", path, "scanner") for path in ("/admin", "/wp-login.php", "/api/v2/orders")
    ]
    rng.shuffle(calls)
    return calls


def _lookups(rng: random.Random, report: Report, users: list[int]) -> list[Call]:
    orders = [o for o in report.outcomes if o.call.label == "order" and o.status == 201]
    ids = [o.body["id"] for o in orders]
    calls = [Call("GET", f"/orders/{rng.choice(ids)}", "order-status") for _ in range(30)]
    calls += [Call("GET", f"/orders/{n}", "order-unknown") for n in (0, 4040, 123456)]
    calls += [Call("GET", f"/users/{rng.choice(users)}", "user") for _ in range(20)]
    calls += [Call("GET", f"/orders/{n}/receipt", "receipt") for n in rng.sample(ids, 20)]
    swiss = report.first("order-swiss")
    if swiss is not None and swiss.status == 201:
        calls.append(Call("GET", f"/orders/{swiss.body['id']}/receipt", "receipt-swiss"))
    rng.shuffle(calls)
    return calls


async def drive(base_url: str, *, seed: int = 7, concurrency: int = 8) -> Report:
    """Run the whole plan against the shop at ``base_url``."""
    rng = random.Random(seed)
    report = Report()
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0, limits=limits) as client:
        report.outcomes += await _run(client, _signups(rng), concurrency)
        created = [o for o in report.outcomes if o.status == 201]
        users = [o.body["id"] for o in created if o.call.label == "signup"]
        swiss = next((o.body["id"] for o in created if o.call.label == "signup-swiss"), 0)
        again = [o.call.json or {} for o in rng.sample(created, 5)]
        shopping = _shopping(rng, users, swiss, again)
        report.outcomes += await _run(client, shopping, concurrency)
        report.outcomes += await _run(client, _lookups(rng, report, users), concurrency)
    report.seconds = time.perf_counter() - started
    return report
