"""Complete jobs from the batch host's notifications (SNS success and error topics): SageMaker
async's messages, which the Lambda batch worker publishes too, and Lambda's on-failure records.

A SageMaker async notification (the SNS `Message`, a JSON string) looks like::

    {"awsRegion": "eu-west-2", "eventTime": "...", "receivedTime": "...",
     "invocationStatus": "Completed" | "Failed",
     "failureReason": "ClientError: Received client error (400) from model ...",   # Failed only
     "requestParameters": {"contentType": "application/json", "endpointName": "...",
                           "inputLocation": "s3://bucket/batch/input/<job_id>.json"},
                           # a shard of a sharded job: batch/input/<job_id>/<n>.json
     "responseParameters": {"contentType": "application/json",
                            "outputLocation": "s3://..." | "failureLocation": "s3://..."},
     "inferenceId": "<job_id>" (a shard: "<job_id>-<n>"), "eventVersion": "1.0", "eventSource": "aws:sagemaker",
     "eventName": "InferenceResult"}

The Lambda batch worker (`twolane.batchhost.worker`) publishes the same messages
(`twolane.batchhost.notification` builds them). A worker that
stops before it publishes (timeout, out of memory) is reported by Lambda itself: its async
invocation's on-failure destination is the error topic, and Lambda's invocation record is not
SageMaker-shaped::

    {"version": "1.0", "timestamp": "...",
     "requestContext": {"requestId": "...", "functionArn": "...",
                        "condition": "RetriesExhausted" | "EventAgeExceeded",
                        "approximateInvokeCount": 1},
     "requestPayload": {"inference_id": "...", "input_location": "s3://...", ...},  # our event
     "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                         "functionError": "Unhandled"},
     "responsePayload": {"errorMessage": "...", "errorType": "..."}}

`apply_notification` takes both: such a record fails the shard (or job) its requestPayload
names, with a short reason (never the record's error message), unless the worker did write
its output or failure object first.

The same code serves the Lambda on AWS and the local stack (which reads the SNS envelopes
from an SQS queue subscribed to both topics and passes them here as Lambda SNS events).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import PurePosixPath

from aws_lambda_powertools.utilities.data_classes import SNSEvent

from twolane.jobs.machine import JobStore
from twolane.jobs.record import JOB_ID, JobNotFound, JobRecord, JSONObject, reason_from_failure_body
from twolane.layout import parse_s3_uri

log = logging.getLogger("twolane.jobs")
SHARD_ID = re.compile(r"^([0-9a-f]{32})-([0-9]{1,6})$")

# Reasons a job gets when Lambda reports that its batch worker did not finish.
WORKER_STOPPED = "the batch worker stopped before it finished (timeout or out of memory)"
WORKER_EXPIRED = "the batch worker did not start in time (the invocation expired)"


def is_destination_record(message: JSONObject) -> bool:
    """True for a Lambda async-invocation record (see the module docstring)."""
    return isinstance(message.get("requestContext"), dict) and "requestPayload" in message


def target_of(message: JSONObject) -> tuple[str, int | None] | None:
    """(job id, shard index or None) a notification is about: from its inferenceId, else from
    the input object's name (batch/input/<job>.json, or batch/input/<job>/<n>.json)."""
    jid = message.get("inferenceId")
    if isinstance(jid, str):
        if JOB_ID.match(jid):
            return jid, None
        m = SHARD_ID.match(jid)
        if m:
            return m.group(1), int(m.group(2))
    loc = (message.get("requestParameters") or {}).get("inputLocation")
    if isinstance(loc, str):
        try:
            path = PurePosixPath(parse_s3_uri(loc)[1])
        except ValueError:
            return None
        if JOB_ID.match(path.stem):
            return path.stem, None
        if JOB_ID.match(path.parent.name) and path.stem.isdigit():
            return path.parent.name, int(path.stem)
    return None


def job_id_of(message: JSONObject) -> str | None:
    """The job a notification is about (see `target_of`)."""
    target = target_of(message)
    return target[0] if target else None


# What happens to a drop-folder job (one with a `delivery`) once a notification moved it: the
# notifications handler passes the drop folder's `deliver` (outbox file or failure report).
Deliver = Callable[[JobStore, JobRecord], object]


def apply_notification(store: JobStore, message: JSONObject,
                       deliver: Deliver | None = None) -> JobRecord | None:
    """Move the job forward per one notification (SageMaker's message, or a Lambda invocation
    record); None if it names no known job.
    A drop-folder job (one with a `delivery`) is then handed to `deliver`, when given."""
    if is_destination_record(message):
        record = _apply_destination_record(store, message)
    else:
        record = _apply(store, message)
    if record is not None and record.delivery is not None and deliver is not None:
        deliver(store, record)
    return record


def _apply(store: JobStore, message: JSONObject) -> JobRecord | None:
    target = target_of(message)
    if target is None:
        log.warning("notification names no job (inferenceId %r)",
                    str(message.get("inferenceId"))[:80])
        return None
    job_id, shard = target
    response = message.get("responseParameters") or {}
    status = message.get("invocationStatus")
    try:
        if status == "Completed":
            if shard is not None:
                return store.mark_shard(job_id, shard, ok=True,
                                        location=response.get("outputLocation"))
            return store.mark_succeeded(job_id, response.get("outputLocation"))
        if status == "Failed":
            where = response.get("failureLocation") or message.get("failureLocation")
            body = store.read(where) if where else None
            reason = (reason_from_failure_body(body) if body is not None
                      else str(message.get("failureReason") or "inference failed"))
            if shard is not None:
                return store.mark_shard(job_id, shard, ok=False, location=where, reason=reason)
            return store.mark_failed(job_id, reason, where)
    except JobNotFound:
        log.warning("notification for unknown job %s", job_id)
        return None
    log.warning("notification with unknown invocationStatus %r for job %s", status, job_id)
    return None


def _apply_destination_record(store: JobStore, message: JSONObject) -> JobRecord | None:
    """A Lambda invocation record: the batch worker did not finish. Its shard (or job) fails
    with a short reason, unless the worker wrote its output or failure object before it
    stopped (then that object decides, as a lost notification would be recovered)."""
    condition = str(message["requestContext"].get("condition") or "")
    if condition == "Success":  # an on-success record: the worker published its own message
        return None
    payload = message.get("requestPayload")
    inference_id = payload.get("inference_id") if isinstance(payload, dict) else None
    target = target_of({"inferenceId": inference_id})
    if target is None:
        log.warning("Lambda invocation record names no job (condition %r)", condition[:40])
        return None
    job_id, shard = target
    record = store.get(job_id)
    if record is None:
        log.warning("Lambda invocation record for unknown job %s", job_id)
        return None
    record = store.refresh(record)
    if shard is not None and not 0 <= shard < len(record.shards):
        log.warning("Lambda invocation record for unknown shard %d of job %s", shard, job_id)
        return None
    pending = record.status == "pending" and (shard is None or
                                              record.shards[shard].status == "pending")
    if not pending:
        return record
    reason = WORKER_EXPIRED if condition == "EventAgeExceeded" else WORKER_STOPPED
    log.warning("batch worker did not finish %s (condition %r)", inference_id, condition[:40])
    if shard is not None:
        return store.mark_shard(job_id, shard, ok=False, reason=reason)
    return store.mark_failed(job_id, reason)


def handle_sns_event(event: SNSEvent, store: JobStore,
                     deliver: Deliver | None = None) -> dict[str, int]:
    """A Lambda SNS event (powertools' typed `SNSEvent`; each record's `Sns.Message` a JSON
    string): apply each message (see `apply_notification`); never raise on one bad record, so
    SNS does not redeliver the good ones. Returns {"processed": n, "skipped": n}."""
    done = skipped = 0
    records = event.raw_event.get("Records")
    for rec in event.records if isinstance(records, list) else ():
        try:
            message = json.loads(rec.sns.message)
        except (KeyError, TypeError, ValueError):
            log.warning("SNS record without a JSON Message; skipped")
            skipped += 1
            continue
        if isinstance(message, dict) and apply_notification(store, message, deliver) is not None:
            done += 1
        else:
            skipped += 1
    return {"processed": done, "skipped": skipped}
