"""Start an inference on the batch lane: SageMaker `invoke_endpoint_async` on AWS, or a message
on the local runner's queue (the same fields) when running locally.

Both answer what SageMaker answers: where the output and the failure will appear.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from twolane.jobs.store import JobKind
from twolane.settings import Settings

CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class Invocation:
    inference_id: str
    output_location: str | None
    failure_location: str | None
    endpoint: str


class Invoker(Protocol):
    def unavailable_reason(self, kind: JobKind) -> str | None:
        """Why a job of this kind cannot be taken now (answered as 503), or None."""

    def invoke(self, *, input_location: str, inference_id: str, kind: JobKind) -> Invocation: ...


def endpoint_for(settings: Settings, kind: JobKind) -> str:
    return settings.summary_endpoint if kind == "summary" else settings.batch_endpoint


class SageMakerInvoker:
    """`sagemaker-runtime.invoke_endpoint_async`: SageMaker queues the request, reads the input
    from S3, writes output/failure to the endpoint's configured S3 paths and notifies SNS."""

    def __init__(self, settings: Settings, runtime: Any | None = None):
        self.settings = settings
        if runtime is None:
            from twolane.aws import client

            runtime = client("sagemaker-runtime")
        self.runtime = runtime

    def unavailable_reason(self, kind: JobKind) -> str | None:
        return None  # the endpoint scales from zero on its own; errors come back per call

    def invoke(self, *, input_location: str, inference_id: str, kind: JobKind) -> Invocation:
        endpoint = endpoint_for(self.settings, kind)
        resp = self.runtime.invoke_endpoint_async(
            EndpointName=endpoint,
            InputLocation=input_location,
            ContentType=CONTENT_TYPE,
            Accept=CONTENT_TYPE,
            InferenceId=inference_id,
            InvocationTimeoutSeconds=min(3600, int(self.settings.batch_invocation_timeout_s)),
        )
        return Invocation(
            inference_id=resp.get("InferenceId", inference_id),
            output_location=resp.get("OutputLocation"),
            failure_location=resp.get("FailureLocation"),
            endpoint=endpoint,
        )


class LocalInvoker:
    """Puts the invocation on an SQS queue (moto) that `twolane.batch.runner` drains, with the
    output/failure locations SageMaker would choose from the endpoint's async config."""

    def __init__(self, settings: Settings, sqs: Any | None = None):
        self.settings = settings
        if sqs is None:
            from twolane.aws import client

            sqs = client("sqs")
        self.sqs = sqs
        self._queue_url: str | None = None

    def unavailable_reason(self, kind: JobKind) -> str | None:
        from twolane.local.batch import unavailable_reason

        return unavailable_reason(self.settings, kind)

    def queue_url(self) -> str:
        if self._queue_url is None:
            self._queue_url = self.sqs.create_queue(QueueName=self.settings.batch_queue)["QueueUrl"]
        return self._queue_url

    def invoke(self, *, input_location: str, inference_id: str, kind: JobKind) -> Invocation:
        b = self.settings.bucket
        inv = Invocation(
            inference_id=inference_id,
            output_location=f"s3://{b}/batch/output/{inference_id}.out",
            failure_location=f"s3://{b}/batch/failure/{inference_id}-error.out",
            endpoint=endpoint_for(self.settings, kind),
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


def invoker_from_settings(settings: Settings) -> Invoker:
    if settings.batch_invoker == "sagemaker":
        return SageMakerInvoker(settings)
    return LocalInvoker(settings)
