"""The jobs service: what happens between an HTTP request and the job store and invoker.

Submitting a job writes its record and input, starts an async inference and records where
the output and failure will appear (a job of more than `batch.shard_size` items is split into
shards, one input object and one inference each, so the endpoint can scale out over them);
collecting hands the results out exactly once (see
`twolane.jobs.store`). Routers only translate HTTP to these calls and back.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from twolane.jobs.invoker import Invoker, endpoint_for
from twolane.jobs.kinds import CLASSIFY, KINDS, Payload
from twolane.jobs.machine import Collected, JobStore
from twolane.jobs.record import (
    CascadePart,
    Delivery,
    JobKind,
    JobNotFound,
    JobRecord,
    JSONObject,
    Shard,
    now_iso,
)
from twolane.layout import shard_inference_id
from twolane.settings import BatchSettings

log = logging.getLogger(__name__)
# At most this many shards per job (a tiny shard size would otherwise make thousands of
# invocations and a record that lists them all): shards grow instead.
MAX_SHARDS = 100


@dataclass
class Kept:
    """The instant lane's part of a cascade job: its results (JSON objects, no text) for the
    comments it kept, in input order; the positions (0-based) of the escalated comments; the
    instant bundle's version."""

    results: list[JSONObject]
    escalated: list[int]
    instant_version: str


class JobRejected(Exception):
    """The batch lane cannot take the job now; `reason` is safe to show to the client."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class JobService:
    """Submit and collect batch-lane jobs over one store and one invoker."""

    def __init__(self, store: JobStore, invoker: Invoker, batch: BatchSettings):
        self.store = store
        self.invoker = invoker
        self.batch = batch

    def submit(self, kind: JobKind, target: str | None, items: int, body: JSONObject, *,  # noqa: PLR0913 (optional parts)
               owner: str | None = None, defer: bool = False,
               blank_rows: list[int] | None = None, delivery: Delivery | None = None,
               kept: Kept | None = None) -> JobRecord:
        """Store the request body and start the inference; returns the pending record.
        `owner` (a key hash or client name) is the only caller `collect` hands it to.

        When the lane cannot take the job now (no model yet): with `defer`, the job is stored
        and starts once it can (`start_deferred`, called on every collect); without, raises
        JobRejected. Also raises JobRejected when the endpoint refuses the invocation.
        `blank_rows`: positions of blank texts, for pxtextmining's result shapes; `delivery`:
        where a drop-folder job's results go (see twolane.dropfolder.delivery); `kept`: a
        cascade job's instant-lane part (see `submit_auto`).

        A job whose kind splits it (`Kind.split`: a classify job of more than
        `batch.shard_size` items in `body["items"]`) is split into shards of that size (larger
        when that would make over MAX_SHARDS), each its own input object and inference; the job
        completes when all have (see twolane.jobs.machine). `target`: a classify job's "m", "s"
        or "ms"; None for a kind without one.
        """
        reason = self.invoker.unavailable_reason(kind)
        if reason and not defer:
            raise JobRejected(reason)
        job_id = uuid.uuid4().hex
        now = now_iso()
        record = JobRecord(job_id=job_id, kind=kind, target=target, items=items,
                           input_location=self.store.input_location(job_id),
                           endpoint=endpoint_for(self.batch, kind), owner=owner,
                           created_at=now, updated_at=now,
                           deferred=bool(reason), blank_rows=blank_rows or [],
                           delivery=delivery)
        if kept is not None:
            part = CascadePart(kept_location=self.store.kept_location(job_id), escalated=kept.escalated,
                               instant_version=kept.instant_version)
            self.store.write(part.kept_location, json.dumps({"model_version": kept.instant_version,
                                                             "results": kept.results}).encode("utf-8"),
                             "application/json")
            record = record.model_copy(update={"cascade": part})
        body_items = body.get("items")
        n_items = len(body_items) if isinstance(body_items, list) else 0
        parts = KINDS[kind].split(body, max(self.batch.shard_size, -(-n_items // MAX_SHARDS)))
        if parts is not None:
            shards = [Shard(index=n, start=a, end=b, inference_id=shard_inference_id(job_id, n),
                            input_location=self.store.shard_input_location(job_id, n))
                      for n, (a, b, _) in enumerate(parts)]
            record = record.model_copy(update={"shards": shards})
            self.store.create_sharded(record, [json.dumps(p).encode("utf-8") for _, _, p in parts])
        else:
            self.store.create(record, json.dumps(body).encode("utf-8"))
        if reason:
            log.info("job %s: deferred until the batch lane can take it", job_id)
            return record
        return self._invoke(record)

    def submit_auto(self, target: str, items: int, body: JSONObject, kept: Kept, *,
                    owner: str | None = None, defer: bool = False,
                    blank_rows: list[int] | None = None, delivery: Delivery | None = None) -> JobRecord:
        """A `"lane": "auto"` job (the cascade): the instant lane has labelled every comment;
        `kept` holds its results for the comments it is sure of and the positions of the others,
        whose items are `body["items"]` (in that order). With none escalated the job is done at
        once (`submit_done`: the batch host is never invoked); else the escalated comments are a
        batch job like any other (`submit`, same arguments) that carries the kept results, and
        collecting it merges both in input order, each result with its `lane`
        (twolane.jobs.kinds.merge_cascade). Raises JobRejected as `submit` does."""
        if not kept.escalated:
            payload = CLASSIFY.kept_only(kept.results, kept.instant_version, target)
            return self.submit_done("classify", target, payload, items, owner=owner, blank_rows=blank_rows)
        return self.submit("classify", target, items, body, owner=owner, defer=defer,
                           blank_rows=blank_rows, delivery=delivery, kept=kept)

    def submit_parts(self, kind: JobKind, target: str | None, items: int, body: JSONObject,
                     parts: list[JSONObject], *, owner: str | None = None,
                     units: list[str] | None = None) -> JobRecord:
        """A job of several given inferences (a summary job: one LLM request per theme):
        `body` is stored as the job's input and kept until the job is collected, each part is
        one shard's input object and inference. `units`: each part in the job's own terms
        (e.g. "theme 'Staff' (summary)"), what its error names (`Shard.unit`). Raises
        JobRejected as `submit` does (never deferred)."""
        reason = self.invoker.unavailable_reason(kind)
        if reason:
            raise JobRejected(reason)
        if not parts:
            raise ValueError("a job of parts needs at least one part")
        job_id = uuid.uuid4().hex
        now = now_iso()
        if units is not None and len(units) != len(parts):
            raise ValueError("one unit per part")
        shards = [Shard(index=n, start=0, end=items, inference_id=shard_inference_id(job_id, n),
                        input_location=self.store.shard_input_location(job_id, n),
                        unit=units[n] if units else None)
                  for n in range(len(parts))]
        record = JobRecord(job_id=job_id, kind=kind, target=target, items=items,
                           input_location=self.store.input_location(job_id),
                           endpoint=endpoint_for(self.batch, kind), owner=owner,
                           created_at=now, updated_at=now, shards=shards)
        bucket_body = json.dumps(body).encode("utf-8")
        self.store.write(record.input_location, bucket_body, "application/json")
        self.store.create_sharded(record, [json.dumps(p).encode("utf-8") for p in parts])
        return self._invoke(record)

    def _invoke(self, record: JobRecord) -> JobRecord:
        """Start the record's inference (each pending shard's, in order: a job resumed after
        a restart keeps the shards already done); the record after."""
        if record.shards:
            for sh in record.shards:
                if sh.status == "pending":
                    record = self._invoke_one(record, sh.input_location, sh.inference_id, sh.index)
            return record
        return self._invoke_one(record, record.input_location, record.job_id, None)

    def _invoke_one(self, record: JobRecord, input_location: str, inference_id: str,
                    shard: int | None) -> JobRecord:
        job_id = record.job_id
        try:
            inv = self.invoker.invoke(input_location=input_location, inference_id=inference_id,
                                      kind=record.kind)
        except Exception as exc:  # the endpoint refused: the job fails, the client retries
            log.error("job %s: could not start the inference (%s)", job_id, type(exc).__name__)
            self.store.mark_failed(job_id, "the batch lane could not start the job")
            raise JobRejected("the batch lane could not take the job now; try again later") from exc

        def locations(r: JobRecord) -> JobRecord | None:
            update: dict[str, Any] = {}
            if r.deferred:
                update["deferred"] = False
            if shard is None:
                update.update({k: v for k, v in (("output_location", inv.output_location),
                                                 ("failure_location", inv.failure_location))
                               if v and getattr(r, k) is None})
            else:
                sh = r.shards[shard]
                sh_update = {k: v for k, v in (("output_location", inv.output_location),
                                               ("failure_location", inv.failure_location))
                             if v and getattr(sh, k) is None}
                if sh_update:
                    shards = list(r.shards)
                    shards[shard] = sh.model_copy(update=sh_update)
                    update["shards"] = shards
            return r.model_copy(update=update) if update else None

        return self.store.update(job_id, locations)

    def start_deferred(self, job_id: str) -> JobRecord | None:
        """Start a deferred job's inference if the lane can take it now; the record after, or
        None for an unknown id. Safe to repeat: only a record still marked deferred is
        claimed (compare-and-swap), so two callers never invoke it twice."""
        record = self.store.get(job_id)
        if record is None or not record.deferred or record.status != "pending":
            return record
        if self.invoker.unavailable_reason(record.kind):
            return record

        def claim(r: JobRecord) -> JobRecord | None:
            if not r.deferred:
                raise _Claimed
            return r.model_copy(update={"deferred": False, "updated_at": now_iso()})

        try:
            claimed = self.store.update(job_id, claim)
        except _Claimed:
            return self.store.get(job_id)
        try:
            return self._invoke(claimed)
        except JobRejected:
            return self.store.get(job_id)

    def submit_done(self, kind: JobKind, target: str | None, payload: Payload, items: int, *,
                    owner: str | None = None, blank_rows: list[int] | None = None) -> JobRecord:
        """A job whose results exist already (labelled on the instant lane at submission): the
        same record and once-only collection as any other job, no inference to wait for."""
        job_id = uuid.uuid4().hex
        now = now_iso()
        record = JobRecord(job_id=job_id, kind=kind, target=target, items=items,
                           status="succeeded", input_location=self.store.input_location(job_id),
                           output_location=self.store.output_location(job_id),
                           endpoint="instant", owner=owner, created_at=now, updated_at=now,
                           blank_rows=blank_rows or [])
        return self.store.create_done(record, json.dumps(payload).encode("utf-8"))

    def collect(self, job_id: str, owner: str | None = None) -> Collected:
        """The job's results (once), its failure (once), or its pending state; a deferred job
        is started first when the lane can take it now.

        Raises JobNotFound for an unknown id or another owner's job, JobGone once handed out.
        """
        try:
            self.start_deferred(job_id)
        except JobNotFound:
            pass  # store.collect says so
        return self.store.collect(job_id, owner)


class _Claimed(Exception):
    """Another caller started the deferred job first."""
