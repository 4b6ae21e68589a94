"""The example services under uvicorn, once per module: payments, and the shop calling it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from examples.servers import Server, Servers, pick_port


@dataclass(frozen=True, slots=True)
class Stack:
    shop: Server
    payments: Server
    log_dir: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    log_dir = root / "log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FOUNDATION_")}
    env.update(
        FOUNDATION_LOG_DIR=str(log_dir), FOUNDATION_LOG_STDOUT="0", FOUNDATION_LOG_PER_PROCESS="0"
    )
    servers = Servers(env=env, output_dir=root)
    try:
        payments = servers.start("payments", "examples.payments.app:app", pick_port(None))
        shop = servers.start(
            "shop",
            "examples.shop.app:app",
            pick_port(None, avoid=frozenset({payments.port})),
            env={
                "DATABASE_URL": f"sqlite+aiosqlite:///{root / 'shop.db'}",
                "PAYMENTS_URL": payments.url,
            },
        )
        servers.wait_ready(payments, 30)
        servers.wait_ready(shop, 30)
        yield Stack(shop=shop, payments=payments, log_dir=log_dir)
    finally:
        servers.stop_all()
