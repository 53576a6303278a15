"""Start an inference on the batch lane: SageMaker `invoke_endpoint_async` on AWS. Locally the
local stack passes in `local_stack.invoker.LocalInvoker` (a message on the local runner's queue
with the same fields).

Both answer what SageMaker answers: where the output and the failure will appear.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from twolane.jobs.store import JobKind
from twolane.settings import BatchSettings

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


def endpoint_for(batch: BatchSettings, kind: JobKind) -> str:
    return batch.summary_endpoint if kind == "summary" else batch.endpoint


class SageMakerInvoker:
    """`sagemaker-runtime.invoke_endpoint_async`: SageMaker queues the request, reads the input
    from S3, writes output/failure to the endpoint's configured S3 paths and notifies SNS."""

    def __init__(self, batch: BatchSettings, runtime: Any | None = None):
        self.batch = batch
        if runtime is None:
            from twolane.aws import client

            runtime = client("sagemaker-runtime")
        self.runtime = runtime

    def unavailable_reason(self, kind: JobKind) -> str | None:
        return None  # the endpoint scales from zero on its own; errors come back per call

    def invoke(self, *, input_location: str, inference_id: str, kind: JobKind) -> Invocation:
        endpoint = endpoint_for(self.batch, kind)
        resp = self.runtime.invoke_endpoint_async(
            EndpointName=endpoint,
            InputLocation=input_location,
            ContentType=CONTENT_TYPE,
            Accept=CONTENT_TYPE,
            InferenceId=inference_id,
            InvocationTimeoutSeconds=min(3600, int(self.batch.invocation_timeout_s)),
        )
        return Invocation(
            inference_id=resp.get("InferenceId", inference_id),
            output_location=resp.get("OutputLocation"),
            failure_location=resp.get("FailureLocation"),
            endpoint=endpoint,
        )


def invoker_from_settings(batch: BatchSettings) -> Invoker | None:
    """The AWS invoker when the settings name SageMaker; None otherwise (the local stack
    passes its own invoker in: the runtime never imports the local stack)."""
    if batch.invoker == "sagemaker":
        return SageMakerInvoker(batch)
    return None
