"""Lambda entry point of the S3 drop folder (S3 ObjectCreated under inbox/ -> outbox/ or failed/).

The bundle is loaded here, at import (the cold start), never per call.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from twolane.aws import client
from twolane.dropfolder.process import process_event
from twolane.predictors.instant import get_predictor

logger = Logger(service="twolane-dropfolder")
metrics = Metrics(namespace="twolane", service="dropfolder")

PREDICTOR = get_predictor()
S3 = client("s3")
logger.info("model loaded", extra={"model_version": PREDICTOR.version})


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    summary = process_event(event, PREDICTOR, s3=S3)
    for o in summary["outcomes"]:
        logger.info("drop folder", extra=o)
        if o["status"] == "done":
            metrics.add_metric(name="FilesLabelled", unit=MetricUnit.Count, value=1)
            metrics.add_metric(name="CommentsLabelled", unit=MetricUnit.Count, value=o["comments"])
        elif o["status"] == "failed":
            metrics.add_metric(name="FilesFailed", unit=MetricUnit.Count, value=1)
    return summary
