"""Lambda entry point of the S3 drop folder (S3 ObjectCreated under inbox/ -> outbox/ or failed/).

The bundle is loaded here, at import (the cold start), never per call. Files under
inbox/batch/ become batch-lane jobs (SageMaker async) when the stack has the batch lane.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from twolane.aws import client
from twolane.dropfolder.process import process_event
from twolane.jobs.invoker import invoker_from_settings
from twolane.jobs.service import JobService
from twolane.jobs.store import S3JobStore
from twolane.predictors.instant import get_predictor
from twolane.settings import get_settings

logger = Logger(service="twolane-dropfolder")
metrics = Metrics(namespace="twolane", service="dropfolder")

PREDICTOR = get_predictor()
S3 = client("s3")
_BATCH = get_settings().batch
_INVOKER = invoker_from_settings(_BATCH)
JOBS = JobService(S3JobStore(S3, _BATCH.bucket), _INVOKER, _BATCH) if _INVOKER else None
logger.info("model loaded", extra={"model_version": PREDICTOR.version})


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    summary = process_event(event, PREDICTOR, s3=S3, jobs=JOBS)
    for o in summary["outcomes"]:
        logger.info("drop folder", extra=o)
        if o["status"] == "done":
            metrics.add_metric(name="FilesLabelled", unit=MetricUnit.Count, value=1)
            metrics.add_metric(name="CommentsLabelled", unit=MetricUnit.Count, value=o["comments"])
        elif o["status"] == "submitted":
            metrics.add_metric(name="FilesSentToBatch", unit=MetricUnit.Count, value=1)
        elif o["status"] == "failed":
            metrics.add_metric(name="FilesFailed", unit=MetricUnit.Count, value=1)
    return summary
