"""Lambda entry point for SageMaker async notifications (SNS success and error topics).

Thin: parse the SNS event, let `twolane.jobs.notifications` move the job records forward.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from twolane.jobs.notifications import handle_sns_event
from twolane.jobs.store import S3JobStore, store_from_settings
from twolane.settings import get_settings

logger = Logger(service="twolane-notifications")
_stores: dict[tuple[str | None, str], S3JobStore] = {}


def _get_store() -> S3JobStore:
    """One store (boto3 client) per process and endpoint, made on first use."""
    s = get_settings()
    key = (s.aws_endpoint_url, s.bucket)
    if key not in _stores:
        _stores[key] = store_from_settings()
    return _stores[key]


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    result = handle_sns_event(event, _get_store())
    logger.info("notifications applied", extra=result)
    return result
