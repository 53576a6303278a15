"""The job store's persistence in S3: SageMaker async has no status API, so each job has a
record of its own (`twolane.jobs.record`), moved by the state machine (`twolane.jobs.machine`,
which `S3JobStore` completes with the reads, writes and compare-and-swap below).

Layout in the bucket (the S3-backed store; moto locally)::

    jobs/<job_id>.json             the record (status, locations, counts; never comment text)
    batch/input/<job_id>.json      the request body, deleted as soon as predictions exist
    batch/input/<job_id>/<n>.json  the same per shard, for a job split into shards (see below)
    <output location>              the container's answer (SageMaker names it; locally
                                   batch/output/<job_id>.out), deleted once handed out
    <failure location>             the error body, deleted once reported

Every change to a record is a compare-and-swap: the record is read with its ETag and written
back with `If-Match: <etag>` (a new record with `If-None-Match: *`), retrying on 412. Two
GETs racing for the results both read the record, both try to swap `succeeded -> collected`;
S3 lets exactly one write win, and only the winner returns the results (the loser answers
410). The record is the one source of truth; output/failure objects and the notifications
only ever move it forward (pending -> succeeded|failed -> collected), so repeats are harmless.

A big job is split into shards (`JobRecord.shards`, one async invocation each, InferenceId
`<job_id>-<n>`), so the endpoint's backlog scaling can spread it over several instances. Each
shard moves forward on its own (its input deleted as soon as its predictions exist); the job
succeeds when every shard has, fails as soon as one has failed (its reason names the shard's
item range), and is collected once with the shards' results concatenated in input order. A job
of one shard has no `shards` and keeps the one-object layout above.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twolane.jobs.kinds import merge_cascade
from twolane.jobs.machine import Collected, JobStore
from twolane.jobs.record import (
    JOB_ID,
    TERMINAL,
    CascadePart,
    Conflict,
    Delivery,
    JobGone,
    JobKind,
    JobNotFound,
    JobRecord,
    Shard,
    now_iso,
    reason_from_failure_body,
)
from twolane.layout import (
    batch_input_key,
    batch_output_key,
    batch_shard_input_key,
    is_not_found,
    job_record_key,
    parse_s3_uri,
    s3_uri,
)

# The names the store's callers imported from here before the record, the state machine and
# the kinds had modules of their own.
__all__ = ["JOB_ID", "TERMINAL", "CascadePart", "Collected", "Conflict", "Delivery", "JobGone",
           "JobKind", "JobNotFound", "JobRecord", "JobStore", "S3JobStore", "Shard",
           "merge_cascade", "now_iso", "reason_from_failure_body"]


class S3JobStore(JobStore):
    def __init__(self, s3: Any, bucket: str):
        self.s3 = s3
        self.bucket = bucket

    def _key(self, job_id: str) -> str:
        if not JOB_ID.match(job_id):
            raise JobNotFound(job_id)
        return job_record_key(job_id)

    def input_location(self, job_id: str) -> str:
        return s3_uri(self.bucket, batch_input_key(job_id))

    def shard_input_location(self, job_id: str, shard: int) -> str:
        return s3_uri(self.bucket, batch_shard_input_key(job_id, shard))

    def _put(self, record: JobRecord, **cond: str) -> None:
        from botocore.exceptions import ClientError  # here: the API's cold start needs no botocore

        try:
            self.s3.put_object(Bucket=self.bucket, Key=self._key(record.job_id),
                               Body=record.model_dump_json().encode(),
                               ContentType="application/json", **cond)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                raise Conflict(str(exc)) from exc
            raise

    def create(self, record: JobRecord, input_body: bytes) -> JobRecord:
        bucket, key = parse_s3_uri(record.input_location)
        self.s3.put_object(Bucket=bucket, Key=key, Body=input_body, ContentType="application/json")
        self._put(record, IfNoneMatch="*")
        return record

    def create_sharded(self, record: JobRecord, shard_bodies: list[bytes]) -> JobRecord:
        for sh, body in zip(record.shards, shard_bodies, strict=True):
            bucket, key = parse_s3_uri(sh.input_location)
            self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
        self._put(record, IfNoneMatch="*")
        return record

    def output_location(self, job_id: str) -> str:
        return s3_uri(self.bucket, batch_output_key(job_id))

    def kept_location(self, job_id: str) -> str:
        return s3_uri(self.bucket, batch_output_key(f"{job_id}-kept"))

    def create_done(self, record: JobRecord, output_body: bytes) -> JobRecord:
        bucket, key = parse_s3_uri(record.output_location or "")
        self.s3.put_object(Bucket=bucket, Key=key, Body=output_body, ContentType="application/json")
        self._put(record, IfNoneMatch="*")
        return record

    def _get_tagged(self, job_id: str) -> tuple[JobRecord, str] | None:
        from botocore.exceptions import ClientError  # lazy, as above

        try:
            obj = self.s3.get_object(Bucket=self.bucket, Key=self._key(job_id))
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise
        return JobRecord.model_validate_json(obj["Body"].read()), obj["ETag"]

    def get(self, job_id: str) -> JobRecord | None:
        tagged = self._get_tagged(job_id)
        return tagged[0] if tagged else None

    def _swap(self, record: JobRecord, etag: str) -> None:
        self._put(record, IfMatch=etag)

    def update(self, job_id: str, change: Callable[[JobRecord], JobRecord | None]) -> JobRecord:
        for attempt in range(20):
            tagged = self._get_tagged(job_id)
            if tagged is None:
                raise JobNotFound(job_id)
            record, etag = tagged
            new = change(record)
            if new is None:
                return record
            try:
                self._swap(new, etag)
                return new
            except Conflict:
                time.sleep(0.01 * (attempt + 1))
        raise Conflict(f"job {job_id}: too many concurrent changes")

    def exists(self, uri: str) -> bool:
        bucket, key = parse_s3_uri(uri)
        from botocore.exceptions import ClientError  # lazy, as above

        try:
            self.s3.head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if is_not_found(exc):
                return False
            raise

    def write(self, uri: str, body: bytes, content_type: str) -> None:
        bucket, key = parse_s3_uri(uri)
        self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)

    def read(self, uri: str) -> bytes | None:
        bucket, key = parse_s3_uri(uri)
        from botocore.exceptions import ClientError  # lazy, as above

        try:
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if is_not_found(exc):
                return None
            raise

    def delete(self, uri: str) -> None:
        bucket, key = parse_s3_uri(uri)
        self.s3.delete_object(Bucket=bucket, Key=key)  # idempotent: no error if absent
