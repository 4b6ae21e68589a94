"""foundation: correlation IDs, JSON logs, typed errors, transactions and metrics for FastAPI.

    import foundation
    foundation.setup(app, service="shop")

This module re-exports the names applications use; it holds no logic.
"""

from __future__ import annotations

from foundation.celery_jobs import setup_celery
from foundation.correlation import (
    astamp_correlation_id,
    get_correlation_id,
    stamp_correlation_id,
    with_correlation,
)
from foundation.db import Database, DbManager
from foundation.exceptions import (
    ApiException,
    AppException,
    ConstraintViolation,
    DbBusy,
    DbException,
    DbUnavailable,
    DuplicateRecord,
    InvalidRequest,
    JobQueueUnavailable,
    MethodNotAllowed,
    RecordNotFound,
    ReferenceViolation,
    RouteNotFound,
)
from foundation.handlers import add_exception_handlers
from foundation.jobs import job_context, job_headers
from foundation.logging import configure_logging
from foundation.metrics import MetricsMiddleware, install_metrics
from foundation.openapi import error_responses
from foundation.setup import setup

__version__ = "0.1.0"

__all__ = [
    "ApiException",
    "AppException",
    "ConstraintViolation",
    "Database",
    "DbBusy",
    "DbException",
    "DbManager",
    "DbUnavailable",
    "DuplicateRecord",
    "InvalidRequest",
    "JobQueueUnavailable",
    "MethodNotAllowed",
    "MetricsMiddleware",
    "RecordNotFound",
    "ReferenceViolation",
    "RouteNotFound",
    "__version__",
    "add_exception_handlers",
    "astamp_correlation_id",
    "configure_logging",
    "error_responses",
    "get_correlation_id",
    "install_metrics",
    "job_context",
    "job_headers",
    "setup",
    "setup_celery",
    "stamp_correlation_id",
    "with_correlation",
]
