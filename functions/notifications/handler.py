"""Lambda entry point for the batch lane's notifications (SNS success and error topics: the
async endpoint's or the Lambda batch worker's messages, and Lambda's on-failure records).

Thin, and the wiring point of the batch lane's two consumers: the typed SNS event goes to
`twolane.jobs.notifications`, which moves the job records forward; a job that came from the
drop folder (`inbox/batch/`) is then handed to `twolane.dropfolder.delivery.deliver`, which
writes its outbox file or failure report. The local stack calls this same handler.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import SNSEvent, event_source

from twolane.dropfolder.delivery import deliver
from twolane.jobs.notifications import handle_sns_event
from twolane.jobs.store import S3JobStore
from twolane.settings import get_settings
from twolane.wiring import job_store

logger = Logger(service="twolane-notifications")
_stores: dict[tuple[str | None, str], S3JobStore] = {}


def _get_store() -> S3JobStore:
    """One store (boto3 client) per process and endpoint, made on first use."""
    s = get_settings()
    key = (s.aws_endpoint_url, s.bucket)
    if key not in _stores:
        _stores[key] = job_store(s)
    return _stores[key]


@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=SNSEvent)
def handler(event: SNSEvent, context: Any) -> dict[str, int]:
    result = handle_sns_event(event, _get_store(), deliver)
    logger.info("notifications applied", extra=result)
    return result
