"""The local stand-ins for the batch host's invoke call: `LocalInvoker` (SageMaker's
`invoke_endpoint_async`: a message on the local runner's queue) and `LocalLambdaInvoker`
(Lambda's asynchronous invoke of the batch worker: its real handler on a bounded thread pool).
`local_job_service` picks the one TWOLANE_BATCH_INVOKER names."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from twolane.batchhost.notification import iso_now
from twolane.jobs.invoker import (
    CONTENT_TYPE,
    NO_SUMMARIES,
    Invocation,
    Invoker,
    endpoint_for,
    invocation_of,
    worker_event,
)
from twolane.jobs.kinds import KINDS
from twolane.jobs.record import JobKind
from twolane.jobs.service import JobService
from twolane.layout import batch_failure_key, batch_output_key, s3_uri
from twolane.settings import Settings
from twolane.wiring import job_service

log = logging.getLogger("twolane.local")


class LocalInvoker:
    """Puts the invocation on an SQS queue (moto) that `local_stack.runner` drains, with the
    output/failure locations SageMaker would choose from the endpoint's async config."""

    def __init__(self, settings: Settings, sqs: Any | None = None):
        self.settings = settings
        if sqs is None:
            from twolane.aws import client

            sqs = client("sqs")
        self.sqs = sqs
        self._queue_urls: dict[str, str] = {}

    def unavailable_reason(self, kind: JobKind) -> str | None:
        from local_stack.batch_lane import unavailable_reason

        return unavailable_reason(self.settings, kind)

    def queue_url(self, kind: JobKind = "classify") -> str:
        """The queue of the endpoint that serves `kind` (summaries: the LLM endpoint's)."""
        name = self.settings.llm_queue if KINDS[kind].uses_llm else self.settings.batch_queue
        if name not in self._queue_urls:
            self._queue_urls[name] = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        return self._queue_urls[name]

    def invoke(self, *, input_location: str, inference_id: str, kind: JobKind) -> Invocation:
        b = self.settings.bucket
        inv = Invocation(
            inference_id=inference_id,
            output_location=s3_uri(b, batch_output_key(inference_id)),
            failure_location=s3_uri(b, batch_failure_key(inference_id)),
            endpoint=endpoint_for(self.settings.batch, kind),
        )
        self.sqs.send_message(QueueUrl=self.queue_url(kind), MessageBody=json.dumps({
            "EndpointName": inv.endpoint,
            "InputLocation": input_location,
            "ContentType": CONTENT_TYPE,
            "InferenceId": inference_id,
            "OutputLocation": inv.output_location,
            "FailureLocation": inv.failure_location,
        }))
        return inv


class LocalLambdaInvoker:
    """Lambda's asynchronous invoke of the batch worker, on this machine: each invocation is
    the worker's event (the same JSON `LambdaInvoker` sends) handed to the real handler
    (functions/batch_worker/handler.py) on a pool of `TWOLANE_BATCH_WORKERS` threads, so the
    shards of a job run several at once, like Lambda's concurrency; more wait their turn.

    The handler reads its environment as on AWS (`local_stack.batch_lane.LambdaHost` sets it).
    When it raises, Lambda's invocation record goes to the error topic, as the function's
    on-failure destination does on AWS (no retries)."""

    def __init__(self, settings: Settings, *, sns: Any | None = None,
                 handler: Callable[[dict[str, Any], Any], Any] | None = None,
                 workers: int | None = None):
        self.settings = settings
        self._sns = sns
        self._handler = handler
        self.pool = ThreadPoolExecutor(workers or settings.batch_workers,
                                       thread_name_prefix="batch-worker")

    def unavailable_reason(self, kind: JobKind) -> str | None:
        from local_stack.batch_lane import unavailable_reason

        return NO_SUMMARIES if KINDS[kind].uses_llm else unavailable_reason(self.settings, kind)

    def invoke(self, *, input_location: str, inference_id: str, kind: JobKind) -> Invocation:
        event = worker_event(self.settings.batch, input_location=input_location,
                             inference_id=inference_id, kind=kind)
        self.pool.submit(self._run, json.loads(event.model_dump_json()))  # as Lambda passes it
        return invocation_of(event)

    def close(self) -> None:
        """Wait for the invocations already queued, then stop the threads."""
        self.pool.shutdown(wait=True)

    def _run(self, event: dict[str, Any]) -> None:
        from local_stack.batch_lane import lambda_context

        if self._handler is None:
            from functions.batch_worker.handler import handler as worker_handler

            self._handler = worker_handler
        handler = self._handler
        ctx = lambda_context(self.settings.batch_function)
        try:
            handler(event, ctx)
        except Exception as exc:  # the function failed: its on-failure destination hears of it
            log.exception("batch worker failed on %s", event.get("inference_id"))
            self._on_failure(event, ctx, exc)

    def _on_failure(self, event: dict[str, Any], ctx: Any, exc: Exception) -> None:
        from twolane.settings import get_settings

        topic = get_settings().batch_error_topic_arn
        if not topic:
            log.error("no TWOLANE_BATCH_ERROR_TOPIC_ARN: the failure of %s is not reported",
                      event.get("inference_id"))
            return
        if self._sns is None:
            from twolane.aws import client

            self._sns = client("sns")
        self._sns.publish(TopicArn=topic, Message=json.dumps(
            destination_record(event, ctx, type(exc).__name__)))


def destination_record(event: dict[str, Any], ctx: Any, error_type: str,
                       condition: str = "RetriesExhausted") -> dict[str, Any]:
    """Lambda's on-failure invocation record for an asynchronous invoke (its documented shape)."""
    return {
        "version": "1.0",
        "timestamp": iso_now(),
        "requestContext": {"requestId": getattr(ctx, "aws_request_id", str(uuid.uuid4())),
                           "functionArn": getattr(ctx, "invoked_function_arn", ""),
                           "condition": condition, "approximateInvokeCount": 1},
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                            "functionError": "Unhandled"},
        "responsePayload": {"errorType": error_type, "errorMessage": "(not kept)"},
    }


def local_invoker(settings: Settings) -> Invoker:
    """The stand-in for the host TWOLANE_BATCH_INVOKER names: Lambda for "lambda", else the
    SageMaker async endpoint."""
    if settings.batch_invoker == "lambda":
        return LocalLambdaInvoker(settings)
    return LocalInvoker(settings)


def local_job_service(settings: Settings) -> JobService:
    """The jobs service of the local stack: the S3 job store in moto + the local invoker."""
    service = job_service(settings, local_invoker(settings))
    assert service is not None  # an invoker was given
    return service
