"""The Lambda batch worker: one shard of a batch job (or a whole small job) done the way the
SageMaker async endpoint does it, so nothing downstream can tell the two hosts apart.

    LambdaInvoker --(async invoke, WorkerEvent)--> worker:
        read the input object (batch/input/...)
        -> twolane.batchhost.inference: input_fn, predict_fn, output_fn (the container's own code)
        -> write the answer to output_location (batch/output/...), or the error body the
           container would have answered to failure_location (batch/failures/...)
        -> publish SageMaker's notification to the success or error topic
    -> the notifications Lambda completes the job (twolane.jobs.notifications).

The event is `twolane.batchhost.event.WorkerEvent`; the worker is built from the settings by
`twolane.wiring.batch_worker`.

A bad body (not JSON, invalid items) is a failure object {"error": reason} and a "Failed"
notification whose failureReason reads as SageMaker's for a container 4xx; an unexpected fault
the same with the container's 500 answer (never the exception's text). A malformed event is
logged (field names only) and answered without raising: there is nowhere to report it. Only a
fault while writing the outcome or publishing raises; Lambda then sends its invocation record
to the error topic (the function's on-failure destination), which fails the shard.

Permissions used: s3:GetObject on batch/input/* (and s3:ListBucket for batch/input/, so a
missing input answers 404 rather than 403), s3:PutObject on batch/output/* and
batch/failures/*, sns:Publish on the two topics. No job-record access.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from twolane.batchhost.event import CONTENT_TYPE, WorkerEvent
from twolane.batchhost.inference import (
    SERVER_ERROR,
    BadRequest,
    Model,
    error_body,
    input_fn,
    output_fn,
    predict_fn,
)
from twolane.batchhost.notification import iso_now, sagemaker_notification
from twolane.layout import is_not_found, parse_s3_uri

__all__ = ["CONTENT_TYPE", "BatchWorker", "Outcome", "WorkerEvent", "client_error"]

log = logging.getLogger("twolane.worker")

INPUT_NOT_FOUND = "the input object of this invocation was not found"
MODEL_NOT_LOADED = "the batch worker could not load its model"


@dataclass(frozen=True)
class Outcome:
    """What one invocation produced: the answer (ok) or the failure body, and for a failure
    the notification's failureReason."""

    ok: bool
    body: bytes
    reason: str | None = None


def client_error(status: int) -> str:
    """SageMaker's failureReason for a container that answered `status`."""
    kind = "client" if 400 <= status < 500 else "server"
    return f"ClientError: Received {kind} error ({status}) from model"


class BatchWorker:
    """Runs WorkerEvents: `s3` and `sns` are boto3 clients, `model` loads (or returns the
    already loaded) batch model; the topics are ARNs."""

    def __init__(self, *, s3: Any, sns: Any, model: Callable[[], Model],
                 success_topic_arn: str, error_topic_arn: str, region: str):
        self.s3 = s3
        self.sns = sns
        self.model = model
        self.success_topic_arn = success_topic_arn
        self.error_topic_arn = error_topic_arn
        self.region = region

    def handle(self, event: Any) -> dict[str, str]:
        """Run one event; returns {"inference_id", "status": "Completed" | "Failed"}, or
        {"status": "ignored"} for a malformed event. Raises only when the outcome cannot be
        written or published."""
        try:
            ev = WorkerEvent.model_validate(event)
        except ValidationError as exc:
            fields = sorted({str(e["loc"][0]) if e["loc"] else "event" for e in exc.errors()})
            log.error("malformed batch-worker event ignored: %d error(s) in %s",
                      exc.error_count(), ", ".join(fields)[:200])
            return {"status": "ignored", "reason": "malformed event"}
        received = iso_now()
        outcome = self.infer(ev)
        where = ev.output_location if outcome.ok else ev.failure_location
        bucket, key = parse_s3_uri(where)
        self.s3.put_object(Bucket=bucket, Key=key, Body=outcome.body, ContentType=CONTENT_TYPE)
        message = sagemaker_notification(ev.sagemaker_request(), outcome.ok, received,
                                         outcome.reason, self.region)
        self.sns.publish(TopicArn=self.success_topic_arn if outcome.ok else self.error_topic_arn,
                         Message=json.dumps(message))
        status = "Completed" if outcome.ok else "Failed"
        log.info("inference %s: %s", ev.inference_id, status)
        return {"inference_id": ev.inference_id, "status": status}

    def infer(self, ev: WorkerEvent) -> Outcome:
        """The container's answer to the input object, as an Outcome; never raises."""
        try:
            bucket, key = parse_s3_uri(ev.input_location)
            try:
                body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except Exception as exc:
                if is_not_found(exc):
                    return Outcome(False, error_body(INPUT_NOT_FOUND), INPUT_NOT_FOUND)
                raise
            req = input_fn(body, CONTENT_TYPE)  # a bad body needs no model
            try:
                model = self.model()
            except Exception as exc:
                _log_fault(ev.inference_id, "model load", exc)
                return Outcome(False, error_body(MODEL_NOT_LOADED), client_error(500))
            return Outcome(True, output_fn(predict_fn(req, model), CONTENT_TYPE))
        except BadRequest as exc:
            return Outcome(False, error_body(exc.reason), client_error(exc.status))
        except Exception as exc:  # a real fault; its message may hold comment text
            _log_fault(ev.inference_id, "invocation", exc)
            return Outcome(False, error_body(SERVER_ERROR), client_error(500))


def _log_fault(inference_id: str, what: str, exc: BaseException) -> None:
    log.error("inference %s: %s failed: %s\n%s", inference_id, what, type(exc).__name__,
              "".join(traceback.format_tb(exc.__traceback__)))
