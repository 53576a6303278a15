"""The job store: SageMaker async has no status API, so each job has a record of its own.

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

import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from twolane.contract import FileFamily, JobStatus
from twolane.layout import (
    batch_input_key,
    batch_output_key,
    batch_shard_input_key,
    is_not_found,
    job_record_key,
    parse_s3_uri,
    s3_uri,
)

JobKind = Literal["classify", "summary"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "collected"})
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_REASON_CHARS = 500


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Delivery(BaseModel):
    """Where a drop-folder job's results go once the batch lane has them: `result_key` in the
    input's format (`family`; pxtextmining's data_out when `pxtextmining`), or a report at
    `report_key` when the job fails. Keys only, never text."""

    bucket: str
    source_key: str
    result_key: str
    report_key: str
    family: FileFamily
    pxtextmining: bool = False


ShardStatus = Literal["pending", "succeeded", "failed"]


class Shard(BaseModel):
    """One async invocation of a job split into shards: items `start` to `end` (0-based,
    end exclusive) of the job's input, and where SageMaker reads and writes them."""

    index: int
    start: int
    end: int
    inference_id: str
    input_location: str
    output_location: str | None = None
    failure_location: str | None = None
    status: ShardStatus = "pending"
    error: str | None = None
    # What the part is in the job's own terms, when not a range of items (a summary job's
    # part: one theme's LLM request, e.g. "theme 'Staff' (summary)"); no comment text.
    unit: str | None = None

    def describe(self) -> str:
        """The part in the job's own unit: `unit` when set, else e.g. "shard 3 (items
        10000-14999)" (1-based item numbers, inclusive)."""
        return self.unit or f"shard {self.index} (items {self.start + 1}-{self.end})"


class CascadePart(BaseModel):
    """A `"lane": "auto"` job (the cascade): the instant lane's results for the comments it kept,
    stored at `kept_location` when the job was made ({"model_version", "results"}, no text), and
    the positions (0-based, in input order) of the comments sent to the batch lane, whose results
    the job's inference gives in that order. Collection merges both in input order, each result
    with its `lane`."""

    kept_location: str
    escalated: list[int] = Field(default_factory=list)
    instant_version: str


class JobRecord(BaseModel):
    """What the store knows of one job. Holds counts and locations, never comment text."""

    job_id: str
    kind: JobKind = "classify"
    target: str  # "m", "s", "ms" for classify; "summary" for summaries
    status: JobStatus = "pending"
    items: int
    input_location: str
    output_location: str | None = None
    failure_location: str | None = None
    error: str | None = None
    endpoint: str | None = None
    owner: str | None = None  # who made it (a key hash or client name, never a key); see collect
    created_at: str
    updated_at: str
    # Accepted while the batch model was unavailable (local stack, model still building): the
    # inference starts when the lane can take it (see JobService.start_deferred).
    deferred: bool = False
    # Positions of blank texts (missing, null, NaN, whitespace), kept for pxtextmining's shapes
    # (sentiment "Labelling not possible" exactly there). Positions only, never text.
    blank_rows: list[int] = Field(default_factory=list)
    delivery: Delivery | None = None  # drop-folder jobs: results go to the outbox, not to a GET
    # A job split into shards (more items than the shard size): one entry per invocation, in
    # input order. Empty for a job of one shard (the locations above are then its own).
    shards: list[Shard] = Field(default_factory=list)
    cascade: CascadePart | None = None  # "lane": "auto" jobs: what the instant lane kept

    def shard_done(self) -> float:
        """Fraction of the job's shards that have predictions (0.0 to 1.0)."""
        if self.status in ("succeeded", "collected"):
            return 1.0
        if not self.shards:
            return 0.0
        return sum(s.status == "succeeded" for s in self.shards) / len(self.shards)

    def input_locations(self) -> list[str]:
        """Every object of this job that holds comment text: its input (a summary job's plan)
        and each shard's input."""
        return [self.input_location, *(sh.input_location for sh in self.shards)]

    def object_locations(self) -> list[str]:
        """Every object this job may own (input, output, failure; each shard's too)."""
        uris = [self.input_location, self.output_location, self.failure_location]
        if self.cascade is not None:
            uris.append(self.cascade.kept_location)
        for sh in self.shards:
            uris += [sh.input_location, sh.output_location, sh.failure_location]
        return [u for u in uris if u]


class JobNotFound(KeyError):
    """No job has this id."""


class JobGone(Exception):
    """The job's results were handed out already and deleted."""


class Conflict(Exception):
    """A conditional write lost a race (HTTP 412/409); re-read and try again."""


@dataclass
class Collected:
    """What a GET gets: the record, and the results payload when this caller won them."""

    record: JobRecord
    payload: dict[str, Any] | None = None


def reason_from_failure_body(body: bytes) -> str:
    """The error a container wrote to the failure location, as one short line."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            text = str(data.get("error") or data.get("detail") or data.get("message") or text)
    except ValueError:
        pass
    return (text or "the model failed without a message")[:MAX_REASON_CHARS]


class JobStore(ABC):
    """Job records plus the objects a job owns. `S3JobStore` is the implementation."""

    @abstractmethod
    def input_location(self, job_id: str) -> str:
        """Where a new job's input goes (an s3:// URI)."""

    @abstractmethod
    def shard_input_location(self, job_id: str, shard: int) -> str:
        """Where shard `shard` of a new job's input goes (an s3:// URI)."""

    @abstractmethod
    def create_sharded(self, record: JobRecord, shard_bodies: list[bytes]) -> JobRecord:
        """Write each shard's input object (to `record.shards[i].input_location`) and a new
        record (fails if the id exists)."""

    @abstractmethod
    def create(self, record: JobRecord, input_body: bytes) -> JobRecord:
        """Write the input object and a new record (fails if the id exists)."""

    @abstractmethod
    def create_done(self, record: JobRecord, output_body: bytes) -> JobRecord:
        """Write a finished job's output object and its (succeeded) record, which must name it
        as `output_location` (fails if the id exists)."""

    @abstractmethod
    def output_location(self, job_id: str) -> str:
        """Where a job finished outside the async endpoint keeps its output (an s3:// URI)."""

    @abstractmethod
    def kept_location(self, job_id: str) -> str:
        """Where a cascade job keeps the instant lane's results of the comments it kept."""

    @abstractmethod
    def get(self, job_id: str) -> JobRecord | None: ...

    @abstractmethod
    def update(self, job_id: str, change: Callable[[JobRecord], JobRecord | None]) -> JobRecord:
        """Apply `change` to the record with compare-and-swap, retrying on conflict.
        `change` returns the new record, or None for no change."""

    @abstractmethod
    def exists(self, uri: str) -> bool: ...

    @abstractmethod
    def write(self, uri: str, body: bytes, content_type: str) -> None: ...

    @abstractmethod
    def read(self, uri: str) -> bytes | None: ...

    @abstractmethod
    def delete(self, uri: str) -> None: ...

    @abstractmethod
    def _swap(self, record: JobRecord, etag: str) -> None:
        """Write `record` only if the stored one still has `etag` (raise Conflict if not)."""

    @abstractmethod
    def _get_tagged(self, job_id: str) -> tuple[JobRecord, str] | None: ...

    # Transitions: each is idempotent and only moves a job forward.

    def mark_succeeded(self, job_id: str, output_location: str | None = None) -> JobRecord:
        """Predictions exist: delete the input text first, then say so, so that no record ever
        reads "succeeded" while the comments are still stored."""
        record = self.get(job_id)
        if record is None:
            raise JobNotFound(job_id)
        if record.status not in TERMINAL:
            self.delete(record.input_location)

        def change(r: JobRecord) -> JobRecord | None:
            if r.status in TERMINAL:
                return None
            return r.model_copy(update={
                "status": "succeeded",
                "output_location": output_location or r.output_location,
                "updated_at": now_iso(),
            })

        return self.update(job_id, change)

    def mark_failed(self, job_id: str, reason: str, failure_location: str | None = None) -> JobRecord:
        """The job failed: its input text is deleted first (a failed job keeps no text either;
        for a sharded job, every shard's input)."""
        record = self.get(job_id)
        if record is None:
            raise JobNotFound(job_id)
        if record.status not in TERMINAL:
            for uri in record.input_locations():
                self.delete(uri)

        def change(r: JobRecord) -> JobRecord | None:
            if r.status in TERMINAL:
                return None
            return r.model_copy(update={
                "status": "failed",
                "error": reason[:MAX_REASON_CHARS],
                "failure_location": failure_location or r.failure_location,
                "updated_at": now_iso(),
            })

        return self.update(job_id, change)

    def close(self, job_id: str, reason: str) -> JobRecord:
        """End a job nobody will hand out (a drop-folder job whose file is taken again after
        a restart: a new job labels it): every object it owns is deleted (its text first),
        and the record is marked collected with `reason` as its error, so it is never started,
        delivered or left pending. Idempotent; raises JobNotFound for an unknown id."""
        record = self.get(job_id)
        if record is None:
            raise JobNotFound(job_id)
        for uri in [*record.input_locations(), *record.object_locations()]:
            self.delete(uri)

        def change(r: JobRecord) -> JobRecord | None:
            if r.status == "collected":
                return None
            return r.model_copy(update={"status": "collected", "deferred": False,
                                        "error": reason[:MAX_REASON_CHARS],
                                        "updated_at": now_iso()})

        return self.update(job_id, change)

    def mark_shard(self, job_id: str, index: int, *, ok: bool, location: str | None = None,
                   reason: str | None = None) -> JobRecord:
        """Shard `index` of a sharded job has predictions (`ok`, at `location` when given) or
        failed (`reason`, failure body at `location`). Its input is deleted first. The job
        succeeds with its last shard and fails with its first failed one, the reason naming
        that shard's item range. Idempotent; raises JobNotFound for an unknown job or shard."""
        record = self.get(job_id)
        if record is None or not 0 <= index < len(record.shards):
            raise JobNotFound(job_id)
        if record.status in TERMINAL or record.shards[index].status != "pending":
            return record  # a repeated or late notification for a shard already done
        # A summary job's failed shard is one theme's summary withheld (twolane.summaries.plan
        # .assemble), not a failed job: the job ends when no shard is pending.
        partial = record.kind == "summary"
        # Failed: the job fails, so all its text goes (every shard's input, a summary's plan);
        # succeeded, or one theme of a summary withheld: this shard's text goes.
        for uri in (record.input_locations() if not ok and not partial else [record.shards[index].input_location]):
            self.delete(uri)
        error = f"{record.shards[index].describe()} failed: {reason or 'inference failed'}"

        def change(r: JobRecord) -> JobRecord | None:
            if r.status in TERMINAL or r.shards[index].status != "pending":
                return None
            shards = list(r.shards)
            if not ok:
                shards[index] = shards[index].model_copy(update={
                    "status": "failed", "error": (reason or "")[:MAX_REASON_CHARS] or None,
                    "failure_location": location or shards[index].failure_location})
                if not partial:
                    return r.model_copy(update={"shards": shards, "status": "failed",
                                                "error": error[:MAX_REASON_CHARS],
                                                "updated_at": now_iso()})
            else:
                shards[index] = shards[index].model_copy(update={
                    "status": "succeeded",
                    "output_location": location or shards[index].output_location})
            done = all(sh.status != "pending" for sh in shards) if partial else all(
                sh.status == "succeeded" for sh in shards)
            return r.model_copy(update={"shards": shards, "updated_at": now_iso(),
                                        "status": "succeeded" if done else r.status})

        new = self.update(job_id, change)
        if new.status == "succeeded" and new.kind != "summary":  # a summary's plan is read at collect
            self.delete(new.input_location)
        return new

    def _refresh_shards(self, record: JobRecord) -> JobRecord:
        for sh in record.shards:
            if sh.status != "pending":
                continue
            if sh.output_location and self.exists(sh.output_location):
                record = self.mark_shard(record.job_id, sh.index, ok=True)
            elif sh.failure_location:
                body = self.read(sh.failure_location)
                if body is not None:
                    record = self.mark_shard(record.job_id, sh.index, ok=False,
                                             reason=reason_from_failure_body(body))
            if record.status in TERMINAL:
                break
        return record

    def results_payload(self, record: JobRecord) -> dict[str, Any] | None:
        """A succeeded job's results payload ({model_version, target, results, ...}); for a
        sharded job the shards' `results` concatenated in input order; for a summary job
        {"plan", "completions"} (twolane.summaries.plan.assemble makes the answer); for a
        cascade job (`record.cascade`) the kept and escalated results merged in input order,
        each with its `lane`. None when an output object is missing."""
        payload = self._inference_payload(record)
        if payload is None or record.cascade is None:
            return payload
        kept_body = self.read(record.cascade.kept_location)
        if kept_body is None:
            return None
        try:
            return merge_cascade(record.cascade, json.loads(kept_body), payload)
        except ValueError:
            return None  # collect reports it as results not found, once

    def _inference_payload(self, record: JobRecord) -> dict[str, Any] | None:
        if not record.shards:
            body = self.read(record.output_location or "")
            return None if body is None else json.loads(body)
        if record.kind == "summary":  # the plan (the job's input), each theme's completion
            plan = self.read(record.input_location)  # (None: failed, `errors` says why)
            parts = [self.read(sh.output_location or "") if sh.status == "succeeded" else None
                     for sh in record.shards]
            if plan is None or any(p is None for p, sh in zip(parts, record.shards, strict=True)
                                   if sh.status == "succeeded"):
                return None
            return {"plan": json.loads(plan), "completions": [_json_or_none(p) for p in parts],
                    "errors": [sh.error or ("inference failed" if sh.status == "failed" else None)
                               for sh in record.shards]}
        payload: dict[str, Any] | None = None
        for sh in record.shards:
            body = self.read(sh.output_location or "")
            if body is None:
                return None
            part = json.loads(body)
            if payload is None:
                payload = {**part, "results": list(part.get("results", []))}
            else:
                payload["results"].extend(part.get("results", []))
        return payload

    def refresh(self, record: JobRecord) -> JobRecord:
        """Bring a pending record up to date from the output/failure objects, in case a
        notification is late or lost."""
        if record.status in TERMINAL:
            return record
        if record.shards:
            return self._refresh_shards(record)
        if record.output_location and self.exists(record.output_location):
            return self.mark_succeeded(record.job_id)
        if record.failure_location:
            body = self.read(record.failure_location)
            if body is not None:
                return self.mark_failed(record.job_id, reason_from_failure_body(body))
        return record

    def collect(self, job_id: str, owner: str | None = None) -> Collected:
        """Hand out a finished job's results (or its failure) exactly once, then delete them.

        Raises JobNotFound (also when `owner` is not the job's: another key's job is not
        there for this caller), or JobGone once collected. A job still pending comes back as a
        Collected with no payload."""
        for _ in range(20):
            tagged = self._get_tagged(job_id)
            if tagged is None or tagged[0].owner != owner:
                raise JobNotFound(job_id)
            record, etag = tagged
            if record.status not in TERMINAL:
                fresh = self.refresh(record)
                if fresh.status not in TERMINAL:
                    return Collected(fresh)
                continue  # re-read with the new etag
            if record.status == "collected":
                raise JobGone(job_id)
            payload: dict[str, Any] | None = None
            if record.status == "succeeded":
                payload = self.results_payload(record)
                if payload is None:  # results vanished (deleted by hand?): say so, once
                    record = record.model_copy(update={
                        "status": "failed", "error": "results were not found in the store"})
            done = record.model_copy(update={"status": "collected", "updated_at": now_iso()})
            try:
                self._swap(done, etag)
            except Conflict:
                continue  # someone else moved it: re-read (most likely now collected -> 410)
            for uri in record.object_locations():
                self.delete(uri)
            return Collected(record, payload)
        raise Conflict(f"job {job_id}: too many concurrent changes")


def _json_or_none(body: bytes | None) -> Any:
    """A stored completion, or None when there is none or it is not JSON (nonsense)."""
    if body is None:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def merge_cascade(part: CascadePart, kept: dict[str, Any], batch: dict[str, Any]) -> dict[str, Any]:
    """One payload from a cascade job's kept results ({"results": [...]} in input order, the
    escalated positions left out) and its batch inference's ({"model_version", "target",
    "results"}, one per escalated position, in order): every result in input order with
    `"lane": "instant"` or `"batch"`. Raises ValueError when the counts do not add up."""
    kept_rows, batch_rows = list(kept.get("results", [])), list(batch.get("results", []))
    if len(batch_rows) != len(part.escalated):
        raise ValueError(f"{len(batch_rows)} batch results for {len(part.escalated)} escalated comments")
    n = len(kept_rows) + len(batch_rows)
    escalated = set(part.escalated)
    out: list[dict[str, Any]] = []
    k = b = 0
    for i in range(n):
        if i in escalated:
            out.append({**batch_rows[b], "lane": "batch"})
            b += 1
        else:
            out.append({**kept_rows[k], "lane": "instant"})
            k += 1
    return {**batch, "results": out, "instant_version": part.instant_version}


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
