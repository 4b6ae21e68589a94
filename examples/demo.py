"""``make demo``: a small app using foundation, driven in-process; prints the JSON lines it wrote.

Runs on a fresh machine with no server and no question asked, and exits by itself.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import httpx
from fastapi import FastAPI
from loguru import logger
from pydantic import BaseModel

import foundation
from foundation import ApiException

LOG_DIR = Path("var/demo/log")


class OutOfStock(ApiException):
    """The product exists but none is left to sell."""

    http_code = 409
    external_message = "This product is out of stock."
    internal_code = 30101
    internal_message = "Stock check failed."


class NewUser(BaseModel):
    email: str
    password: str


def build_app() -> FastAPI:
    app = FastAPI()
    foundation.setup(app, service="demo", log_dir=str(LOG_DIR), log_stdout=False, metrics=False)

    @app.get("/products/{sku}")
    async def product(sku: str) -> dict[str, str | int]:
        logger.info("looking up product", sku=sku)
        if sku == "sold-out":
            raise OutOfStock(internal_message=f"sku={sku} stock=0", sku=sku)
        return {"sku": sku, "stock": 3}

    @app.post("/users")
    async def create_user(user: NewUser) -> dict[str, str]:
        logger.info("creating user", email=user.email, password=user.password)  # redacted
        return {"email": user.email}

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("the bug: division by zero in pricing")

    return app


async def drive(app: FastAPI) -> list[tuple[str, int, str]]:
    seen = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        calls: list[tuple[str, str, dict[str, object]]] = [
            ("GET", "/products/tea", {}),
            ("GET", "/products/sold-out", {}),
            ("POST", "/users", {"json": {"email": "ada@example.org", "password": "s3cret"}}),
            ("POST", "/users", {"json": {"password": "s3cret"}}),
            ("GET", "/crash", {}),
            ("GET", "/nowhere", {}),
        ]
        for method, path, kwargs in calls:
            response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
            seen.append((f"{method} {path}", response.status_code, response.text))
    return seen


def main() -> int:
    shutil.rmtree(LOG_DIR, ignore_errors=True)
    app = build_app()
    results = asyncio.run(drive(app))
    print("Responses (every error body carries the correlation ID):\n")
    for request, status, body in results:
        print(f"  {request:<22} {status}  {body}")
    log_file = LOG_DIR / "demo.jsonl"
    print(f"\nJSON lines written to {log_file}:\n")
    sys.stdout.write(log_file.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
