"""Async SQLAlchemy transactions that commit or roll back and fail with typed errors.

db = Database("sqlite+aiosqlite:///var/data/shop.db")   # no I/O until first use
async with DbManager(database=db) as session: ...         # commit, or rollback + typed error
await db.run(place_order, retries=3)                      # re-run on deadlock/serialization
session: AsyncSession = Depends(db.session)               # commits before the response
"""

from __future__ import annotations

from foundation.db._core import Database, DbManager, TransactionObserver
from foundation.db._translate import Translation, translate

__all__ = ["Database", "DbManager", "TransactionObserver", "Translation", "translate"]
