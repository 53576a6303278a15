"""Lambda entry point of the batch worker: one shard of a batch job per asynchronous invoke
(`twolane.jobs.invoker.LambdaInvoker`), run as the SageMaker container would run it.

Thin: event -> `twolane.batchhost.event.WorkerEvent` (the contract) ->
`twolane.batchhost.inference` (the predictor the container serves). The model loads once per
process, on the first event (TWOLANE_BATCH_BUNDLE); later events in the same execution
environment reuse it.

Environment: TWOLANE_BUCKET, TWOLANE_BATCH_SUCCESS_TOPIC_ARN, TWOLANE_BATCH_ERROR_TOPIC_ARN,
TWOLANE_BATCH_BUNDLE (see twolane.wiring.batch_worker).
"""

from __future__ import annotations

import threading
from typing import Any

from aws_lambda_powertools import Logger

from twolane.batchhost.worker import BatchWorker
from twolane.settings import get_settings
from twolane.wiring import batch_worker

logger = Logger(service="twolane-batch-worker")
_workers: dict[tuple[Any, ...], BatchWorker] = {}
_lock = threading.Lock()  # the local stack runs this handler on several threads at once


def _get_worker() -> BatchWorker:
    """One worker (boto3 clients, model loader) per process and settings, made on first use."""
    s = get_settings()
    key = (s.aws_endpoint_url, s.bucket, s.batch_success_topic_arn, s.batch_error_topic_arn,
           s.batch_bundle or s.bundles)
    with _lock:
        if key not in _workers:
            _workers[key] = batch_worker(s)
        return _workers[key]


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, str]:
    result = _get_worker().handle(event)
    logger.info("batch worker", extra=result)
    return result
