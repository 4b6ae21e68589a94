"""A foundation service with a database, for client-disconnect tests (uvicorn factory).

``uvicorn --factory tests.foundation.db_app:create_app`` with ``TESTAPP_DB`` naming a SQLite
file: ``POST /notes?name=…`` writes a row through ``Depends(db.session)`` and then waits
``wait`` seconds before answering, so a client can go away while the transaction is open;
``POST /upload`` reads its body (a client can go away halfway through it).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from loguru import logger
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

import foundation
from foundation import Database


def create_app() -> FastAPI:
    db = Database(f"sqlite+aiosqlite:///{os.environ['TESTAPP_DB']}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await db.start()
        async with db.engine.begin() as connection:
            await connection.execute(text("CREATE TABLE IF NOT EXISTS notes (name TEXT)"))
        yield
        await db.dispose()

    app = FastAPI(lifespan=lifespan)
    foundation.setup(app, service="notes", database=db)

    @app.post("/notes")
    async def add_note(
        name: str,
        wait: float = 0.0,
        # A default, not Annotated[...]: annotations are strings here, resolved in module
        # globals, where the local ``db`` does not exist.
        session: AsyncSession = Depends(db.session),  # noqa: B008
    ) -> dict[str, Any]:
        await session.execute(text("INSERT INTO notes (name) VALUES (:name)"), {"name": name})
        logger.info("note written, waiting", name=name)
        await asyncio.sleep(wait)
        return {"name": name}

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        body = await request.body()
        return {"size": len(body)}

    return app
