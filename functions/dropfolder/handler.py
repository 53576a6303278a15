"""Lambda entry point of the S3 drop folder (S3 ObjectCreated under inbox/ -> outbox/ or failed/).

The bundle is loaded here, at import (the cold start), never per call. Files under
inbox/batch/ become batch-lane jobs (on the batch host: SageMaker async or the Lambda batch
worker) when the stack has the batch lane.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import S3Event, event_source

from twolane.dropfolder.process import process_event
from twolane.settings import get_settings
from twolane.wiring import client, get_predictor, job_service

logger = Logger(service="twolane-dropfolder")
metrics = Metrics(namespace="twolane", service="dropfolder")

SETTINGS = get_settings()
PREDICTOR = get_predictor()
S3 = client("s3", SETTINGS)
JOBS = job_service(SETTINGS, s3=S3)  # None without a batch host: inbox/batch/ files -> failed/
logger.info("model loaded", extra={"model_version": PREDICTOR.version})


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
@event_source(data_class=S3Event)
def handler(event: S3Event, context: Any) -> dict[str, Any]:
    summary = process_event(event, PREDICTOR, s3=S3, settings=SETTINGS, jobs=JOBS)
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
