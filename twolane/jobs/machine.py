"""The job state machine: how a job's record moves (pending -> succeeded | failed -> collected,
each transition idempotent and only forward) and what each move deletes, over abstract
persistence (records with compare-and-swap, and the objects a job owns). `twolane.jobs.store`
has the S3 persistence; what differs between kinds of job is asked of the job's kind
(`twolane.jobs.kinds`).

Every change to a record is a compare-and-swap, so two GETs racing for the results both read
the record and both try to swap `succeeded -> collected`; exactly one write wins, and only the
winner returns the results (the loser answers 410). The record is the one source of truth;
output/failure objects and the notifications only ever move it forward, so repeats are
harmless. A sharded job's shards move forward on their own; the job succeeds when every shard
has and fails as soon as one has (its reason names the part).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from twolane.jobs.kinds import Payload, kind_of
from twolane.jobs.record import (
    MAX_REASON_CHARS,
    TERMINAL,
    Conflict,
    JobGone,
    JobNotFound,
    JobRecord,
    now_iso,
    reason_from_failure_body,
)


@dataclass
class Collected:
    """What a GET gets: the record, and the results payload when this caller won them."""

    record: JobRecord
    payload: Payload | None = None


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
        # A kind whose parts fail alone (a summary: one theme's summary withheld, by
        # twolane.summaries.plan.assemble) does not fail the job: it ends when no part is pending.
        partial = kind_of(record).parts_fail_alone
        # Failed: the job fails, so all its text goes (every shard's input, a summary's plan);
        # succeeded, or one part failed alone: this shard's text goes.
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
        if new.status == "succeeded" and not kind_of(new).keeps_input:
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

    def results_payload(self, record: JobRecord) -> Payload | None:
        """A succeeded job's results payload, put together by its kind from the stored outputs
        (`twolane.jobs.kinds`); None when an output object is missing."""
        return kind_of(record).assemble(record, self.read)

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
            payload: Payload | None = None
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
