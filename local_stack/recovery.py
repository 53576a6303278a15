"""What a stop (Ctrl-C, SIGKILL, power loss) left in the local state, put right when `twolane up`
starts, before the API and the drop-folder watcher do; and the expiry of old job records.

The local S3 keeps every object across a stop, its queues do not (local_stack.s3local). So at
start every job record is looked at once (`recover`):

* **pending**, brought up to date from its output/failure objects first (a result written
  just before the stop counts):
  - a drop-folder job (`inbox/batch/`, `inbox/auto/`) whose file is still in the local
    `inbox/`: the watcher takes that file again as a new job, so this one is *closed* (its
    objects deleted, the record ended; never delivered);
  - its input gone (a part's, or a summary's plan): *failed* with a one-line reason (a
    drop-folder job's report goes to `failed/`);
  - else *resumed*: marked deferred and started again by the watcher, only its parts not
    done yet (`JobService._invoke`); the parts done are kept.
* **succeeded / failed**: their input text is deleted (a stop between the result and the
  delete left it); a drop-folder job is delivered (a stop before its delivery).
* **collected**: every object it owned is deleted; the record itself once older than
  `job_record_days` (TWOLANE_JOB_RECORD_DAYS, default 7).
* objects under `batch/input|output|failures/` of no live job (a stop between an input and
  its record, or after a collection) are deleted.

So once a job is collected, failed or closed, no comment text of it is left in the local
state. On AWS the same bound holds through the bucket's lifecycle rules (infra/storage.py:
`batch/input/` after `job_input_expiry_days`, results after `job_result_expiry_days`, records
after `job_record_expiry_days`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from twolane.dropfolder.delivery import deliver
from twolane.jobs.kinds import kind_of
from twolane.jobs.machine import JobStore
from twolane.jobs.record import JOB_ID, JobRecord
from twolane.jobs.service import JobService
from twolane.layout import BATCH_FAILURES, BATCH_INPUT, BATCH_OUTPUT, JOBS, job_record_key, s3_uri

log = logging.getLogger("twolane.local")

LOST_INPUT = ("its input was lost in a stop of the local stack before it was labelled; "
              "submit it again")
RETAKEN = "closed: its file was taken again from the drop folder after a restart"
_JOB_PREFIX = re.compile(r"^([0-9a-f]{32})")


@dataclass
class Recovered:
    """What `recover` did: job ids resumed (deferred: the watcher starts them), counts of jobs
    failed, closed and expired, and of objects deleted."""

    resumed: list[str] = field(default_factory=list)
    failed: int = 0
    closed: int = 0
    expired: int = 0
    swept: int = 0


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    out: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out


def _records(s3: Any, bucket: str, store: JobStore) -> list[JobRecord]:
    records = []
    for key in _keys(s3, bucket, JOBS):
        job_id = key[len(JOBS):].removesuffix(".json")
        record = store.get(job_id) if JOB_ID.match(job_id) else None
        if record is not None:
            records.append(record)
    return records


def _expired(record: JobRecord, days: float, now: datetime) -> bool:
    try:
        at = datetime.fromisoformat(record.updated_at)
    except ValueError:
        return True  # unreadable: as old as can be
    return now - at >= timedelta(days=days)


def recover(s3: Any, bucket: str, jobs: JobService, *, dropbox: Path | None,
            record_days: float, now: datetime | None = None) -> Recovered:
    """Put right what a stop left (see the module docstring); returns what was done. Call it
    before anything else uses the bucket's jobs (it deletes objects of no live job)."""
    store = jobs.store
    now = now or datetime.now(UTC)
    done = Recovered()
    live: set[str] = set()
    for record in _records(s3, bucket, store):
        if record.status == "pending":
            settled = _settle_pending(store, record, dropbox, done)
            if settled is None:
                continue  # closed
            record = settled
            if record.status == "pending":
                live.add(record.job_id)
                continue
        if record.status in ("succeeded", "failed"):
            if not _settle_finished(store, record):
                live.add(record.job_id)
            continue
        for uri in record.object_locations():  # collected
            store.delete(uri)
        if _expired(record, record_days, now):
            store.delete(s3_uri(bucket, job_record_key(record.job_id)))
            done.expired += 1
    done.swept = _sweep_orphans(s3, bucket, live)
    if done.resumed or done.failed or done.closed:
        log.warning("jobs left unfinished by the last run: %d start again, %d failed (input lost), "
                    "%d closed (their files are taken again)",
                    len(done.resumed), done.failed, done.closed)
    return done


def _settle_pending(store: JobStore, record: JobRecord, dropbox: Path | None,
                    done: Recovered) -> JobRecord | None:
    """A pending job after a stop: closed (None), failed, or resumed (deferred); counted in `done`."""
    job_id = record.job_id
    record = store.refresh(record)  # a result written just before the stop counts
    if record.status != "pending":
        return record
    d = record.delivery
    if d is not None and dropbox is not None and (dropbox / d.source_key).is_file():
        store.close(job_id, RETAKEN)
        done.closed += 1
        return None
    if not all(store.exists(u) for u in kind_of(record).needed_inputs(record)):
        done.failed += 1
        log.warning("job %s: %s", job_id, LOST_INPUT)
        return store.mark_failed(job_id, LOST_INPUT)
    if not record.deferred:
        record = store.update(job_id, lambda r: r.model_copy(update={"deferred": True}))
    done.resumed.append(job_id)
    return record


def _settle_finished(store: JobStore, record: JobRecord) -> bool:
    """A succeeded or failed job: its input text deleted (a succeeded summary keeps its plan,
    read at collection); a drop-folder job delivered. True when it is collected now."""
    plan_kept = kind_of(record).keeps_input and record.status == "succeeded"
    for uri in record.input_locations():
        if not (plan_kept and uri == record.input_location):
            store.delete(uri)
    return record.delivery is not None and deliver(store, record)


def _sweep_orphans(s3: Any, bucket: str, live: set[str]) -> int:
    """Delete the objects under batch/input|output|failures/ of no live job; how many."""
    n = 0
    for prefix in (BATCH_INPUT, BATCH_OUTPUT, BATCH_FAILURES):
        for key in _keys(s3, bucket, prefix):
            m = _JOB_PREFIX.match(key[len(prefix):])
            if m is None or m.group(1) not in live:
                s3.delete_object(Bucket=bucket, Key=key)
                n += 1
    return n


def expire_records(s3: Any, bucket: str, store: JobStore, record_days: float,
                   now: datetime | None = None) -> int:
    """Delete collected job records older than `record_days` (and whatever they still own);
    the number deleted. Safe while the stack runs (it touches collected jobs only)."""
    now = now or datetime.now(UTC)
    n = 0
    for record in _records(s3, bucket, store):
        if record.status == "collected" and _expired(record, record_days, now):
            for uri in record.object_locations():
                store.delete(uri)
            store.delete(s3_uri(bucket, job_record_key(record.job_id)))
            n += 1
    return n
