"""Start an inference on the batch lane, on the host the settings name (TWOLANE_BATCH_INVOKER;
`twolane.wiring.invoker` picks it):
SageMaker `invoke_endpoint_async` ("sagemaker"), or an asynchronous invoke of the Lambda batch
worker ("lambda", TWOLANE_BATCH_FUNCTION), once per shard. Locally the local stack passes in
its stand-ins (`local_stack.invoker`: a message on the local runner's queue, or the worker's
handler on a thread pool).

All answer what SageMaker answers: where the output and the failure will appear.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from twolane.batchhost.event import CONTENT_TYPE, WorkerEvent
from twolane.jobs.kinds import KINDS
from twolane.jobs.record import JobKind
from twolane.settings import BatchSettings

__all__ = ["CONTENT_TYPE", "Invocation", "Invoker", "LambdaInvoker", "SageMakerInvoker"]


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
    """The endpoint that serves jobs of `kind` (its kind says which)."""
    return KINDS[kind].endpoint(batch)


class SageMakerInvoker:
    """`sagemaker-runtime.invoke_endpoint_async`: SageMaker queues the request, reads the input
    from S3, writes output/failure to the endpoint's configured S3 paths and notifies SNS."""

    def __init__(self, batch: BatchSettings, runtime: Any):
        self.batch = batch
        self.runtime = runtime  # a boto3 sagemaker-runtime client (twolane.wiring builds it)

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


NO_SUMMARIES = ("summaries need the text-generation endpoint; this deployment runs the batch "
                "lane on Lambda")


def worker_event(batch: BatchSettings, *, input_location: str, inference_id: str,
                 kind: JobKind) -> WorkerEvent:
    """The batch worker's event for one inference (output and failure where SageMaker's async
    config would put them)."""
    return WorkerEvent.for_invocation(batch.bucket, input_location=input_location,
                                      inference_id=inference_id,
                                      endpoint=endpoint_for(batch, kind))


def invocation_of(event: WorkerEvent) -> Invocation:
    return Invocation(inference_id=event.inference_id, output_location=event.output_location,
                      failure_location=event.failure_location, endpoint=event.endpoint)


class LambdaInvoker:
    """`lambda.invoke(InvocationType="Event")` of the batch worker (TWOLANE_BATCH_FUNCTION):
    Lambda queues the event and runs the worker (several shards at once, up to the function's
    concurrency), which writes output/failure and notifies SNS as SageMaker would."""

    def __init__(self, batch: BatchSettings, lambda_client: Any, summaries: Invoker | None = None):
        self.batch = batch
        self.lambda_client = lambda_client  # a boto3 lambda client (twolane.wiring builds it)
        self.summaries = summaries  # the LLM endpoint's invoker, when one is deployed

    def unavailable_reason(self, kind: JobKind) -> str | None:
        if KINDS[kind].uses_llm:  # the worker has no LLM: the LLM endpoint, if there is one
            return NO_SUMMARIES if self.summaries is None else self.summaries.unavailable_reason(kind)
        return None

    def invoke(self, *, input_location: str, inference_id: str, kind: JobKind) -> Invocation:
        """Queue one worker run; raises when Lambda does not accept it (202). A summary goes
        to the LLM endpoint's invoker."""
        if KINDS[kind].uses_llm and self.summaries is not None:
            return self.summaries.invoke(input_location=input_location,
                                         inference_id=inference_id, kind=kind)
        event = worker_event(self.batch, input_location=input_location,
                             inference_id=inference_id, kind=kind)
        resp = self.lambda_client.invoke(FunctionName=self.batch.function, InvocationType="Event",
                                         Payload=event.model_dump_json().encode("utf-8"))
        status = resp.get("StatusCode")
        if status != 202:
            raise RuntimeError(f"Lambda did not accept the invocation (status {status})")
        return invocation_of(event)
