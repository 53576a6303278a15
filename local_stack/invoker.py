"""The local stand-in for `invoke_endpoint_async`: a message on the local runner's queue."""

from __future__ import annotations

import json
from typing import Any

from twolane.jobs.invoker import CONTENT_TYPE, Invocation, endpoint_for
from twolane.jobs.service import JobService
from twolane.jobs.store import JobKind, S3JobStore
from twolane.layout import batch_failure_key, batch_output_key, s3_uri
from twolane.settings import Settings


class LocalInvoker:
    """Puts the invocation on an SQS queue (moto) that `local_stack.runner` drains, with the
    output/failure locations SageMaker would choose from the endpoint's async config."""

    def __init__(self, settings: Settings, sqs: Any | None = None):
        self.settings = settings
        if sqs is None:
            from twolane.aws import client

            sqs = client("sqs")
        self.sqs = sqs
        self._queue_url: str | None = None

    def unavailable_reason(self, kind: JobKind) -> str | None:
        from local_stack.batch_lane import unavailable_reason

        return unavailable_reason(self.settings, kind)

    def queue_url(self) -> str:
        if self._queue_url is None:
            self._queue_url = self.sqs.create_queue(QueueName=self.settings.batch_queue)["QueueUrl"]
        return self._queue_url

    def invoke(self, *, input_location: str, inference_id: str, kind: JobKind) -> Invocation:
        b = self.settings.bucket
        inv = Invocation(
            inference_id=inference_id,
            output_location=s3_uri(b, batch_output_key(inference_id)),
            failure_location=s3_uri(b, batch_failure_key(inference_id)),
            endpoint=endpoint_for(self.settings.batch, kind),
        )
        self.sqs.send_message(QueueUrl=self.queue_url(), MessageBody=json.dumps({
            "EndpointName": inv.endpoint,
            "InputLocation": input_location,
            "ContentType": CONTENT_TYPE,
            "InferenceId": inference_id,
            "OutputLocation": inv.output_location,
            "FailureLocation": inv.failure_location,
        }))
        return inv


def local_job_service(settings: Settings) -> JobService:
    """The jobs service of the local stack: the S3 job store in moto + the local invoker."""
    from twolane.aws import client

    return JobService(S3JobStore(client("s3"), settings.bucket), LocalInvoker(settings),
                      settings.batch)
