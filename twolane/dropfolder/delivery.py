"""Finish a drop-folder file that went to the batch lane (`inbox/batch/X`): when its job
succeeds, write `outbox/batch/X` in the input's format; when it fails, a report at
`failed/batch/X.error.json`. The notifications handler (functions/notifications/handler.py,
the wiring point) passes `deliver` to `twolane.jobs.notifications`, which calls it right after
it moves the job's record forward, so the same code runs on AWS and in the local stack.

Order keeps the results safe: the outbox object is written BEFORE the job is marked collected
(and its output deleted), so a crash in between only means a repeat delivery of the same file.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from twolane.dropfolder.formats import CONTENT_TYPES, write_px, write_results
from twolane.jobs.kinds import CLASSIFY
from twolane.jobs.machine import JobStore
from twolane.jobs.record import JobGone, JobNotFound, JobRecord
from twolane.layout import s3_uri
from twolane.pxtextmining import parse_target

log = logging.getLogger("twolane.dropfolder")

FAILED_REASON = "the batch lane could not label this file; put it in the inbox again"


def deliver(store: JobStore, record: JobRecord) -> bool:
    """Write a finished drop-folder job's outbox file (or failure report), then hand the job out
    (collected). Returns True when this call delivered; False when there is nothing to do
    (not a drop-folder job, not finished yet, delivered already)."""
    d = record.delivery
    if d is None or record.status not in ("succeeded", "failed"):
        return False
    if record.status == "succeeded":
        payload = store.results_payload(record)
        if payload is None:
            return False  # delivered (and deleted) by a repeat of this notification
        preds = CLASSIFY.predictions(payload)
        out = (write_px(preds, parse_target(record.target), record.blank_rows) if d.pxtextmining
               else write_results(preds, d.family))
        store.write(s3_uri(d.bucket, d.result_key), out, CONTENT_TYPES[d.family])
        log.info("batch lane labelled %d comments: %s -> %s", len(preds), d.source_key, d.result_key)
    else:
        report = {"source_key": d.source_key, "job_id": record.job_id, "error": FAILED_REASON,
                  "at": datetime.now(UTC).isoformat(timespec="seconds")}
        store.write(s3_uri(d.bucket, d.report_key), json.dumps(report, indent=1).encode(),
                    "application/json")
        log.warning("batch job %s for %s failed; report at %s", record.job_id, d.source_key,
                    d.report_key)
    try:
        store.collect(record.job_id)  # mark collected, delete its output / failure objects
    except (JobGone, JobNotFound):
        pass
    return True
