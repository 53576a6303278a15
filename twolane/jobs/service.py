"""The jobs service: what happens between an HTTP request and the job store and invoker.

Submitting a job writes its record and input, starts an async inference and records where
the output and failure will appear; collecting hands the results out exactly once (see
`twolane.jobs.store`). Routers only translate HTTP to these calls and back.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from twolane.jobs.invoker import Invoker, endpoint_for
from twolane.jobs.store import Collected, JobKind, JobRecord, JobStore, now_iso
from twolane.settings import BatchSettings

log = logging.getLogger(__name__)


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

    def submit(self, kind: JobKind, target: str, items: int, body: dict[str, Any],
               owner: str | None = None) -> JobRecord:
        """Store the request body and start the inference; returns the pending record.
        `owner` (a key hash or client name) is the only caller `collect` hands it to.

        Raises JobRejected when the lane cannot take it (no model yet, endpoint refused).
        """
        reason = self.invoker.unavailable_reason(kind)
        if reason:
            raise JobRejected(reason)
        job_id = uuid.uuid4().hex
        now = now_iso()
        record = JobRecord(job_id=job_id, kind=kind, target=target, items=items,
                           input_location=self.store.input_location(job_id),
                           endpoint=endpoint_for(self.batch, kind), owner=owner,
                           created_at=now, updated_at=now)
        self.store.create(record, json.dumps(body).encode("utf-8"))
        try:
            inv = self.invoker.invoke(input_location=record.input_location, inference_id=job_id,
                                      kind=kind)
        except Exception as exc:  # the endpoint refused: the job fails, the client retries
            log.error("job %s: could not start the inference (%s)", job_id, type(exc).__name__)
            self.store.mark_failed(job_id, "the batch lane could not start the job")
            raise JobRejected("the batch lane could not take the job now; try again later") from exc

        def locations(r: JobRecord) -> JobRecord | None:
            update = {k: v for k, v in (("output_location", inv.output_location),
                                        ("failure_location", inv.failure_location))
                      if v and getattr(r, k) is None}
            return r.model_copy(update=update) if update else None

        return self.store.update(job_id, locations)

    def collect(self, job_id: str, owner: str | None = None) -> Collected:
        """The job's results (once), its failure (once), or its pending state.

        Raises JobNotFound for an unknown id or another owner's job, JobGone once handed out.
        """
        return self.store.collect(job_id, owner)
