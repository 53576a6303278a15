"""Process S3 events for the drop folder: `inbox/<name>` -> `outbox/<name>` or `failed/<name>`.

Order of writes keeps every file safe: results (or the failed copy and its report) are written
BEFORE the inbox object is deleted, so a crash at any point leaves the input in place and a
retry finishes the job. A repeated event whose inbox object is gone and whose result exists is
reported as already done. Faults that are not the file's (S3 down, a model error) are raised,
so Lambda retries; the file stays in the inbox.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event
from botocore.exceptions import ClientError

from twolane.contract import JobTarget, Prediction
from twolane.dropfolder.formats import (
    CONTENT_TYPES,
    Family,
    FileItems,
    FormatError,
    family_of,
    read_file,
    target_of,
    write_px,
    write_results,
)
from twolane.intake import Intake, IntakeRefused, Loaded, Origin, Refusal, Route
from twolane.jobs.service import JobRejected, JobService
from twolane.jobs.store import Delivery, JobRecord
from twolane.layout import (
    AUTO_SUBFOLDER,
    BATCH_SUBFOLDER,
    ERROR_REPORT_SUFFIX,
    FAILED,
    INBOX,
    OUTBOX,
    fit_key,
    is_not_found,
)
from twolane.predictors import Predictor
from twolane.settings import Settings, get_settings

log = logging.getLogger("twolane.dropfolder")

Status = Literal["done", "submitted", "failed", "already_done", "missing", "ignored"]
BATCH_INBOX = INBOX + BATCH_SUBFOLDER  # inbox/batch/X: the batch lane (transformer ensemble)
AUTO_INBOX = INBOX + AUTO_SUBFOLDER  # inbox/auto/X: the cascade (instant lane, unsure ones to batch)
NO_CASCADE = ("the cascade (inbox/auto/) is not available on this service: its batch bundle has no "
              "cascade rule; put the file in inbox/ or inbox/batch/")
NO_BATCH_LANE = ("the batch lane is not available on this service: put the file in inbox/ "
                 "(not inbox/batch/) for the instant lane")
REFUSALS: dict[Refusal, str] = {"no_cascade": NO_CASCADE, "no_batch_lane": NO_BATCH_LANE}  # in folder words


@dataclass
class Outcome:
    key: str
    status: Status
    detail: str = ""
    result_key: str | None = None
    comments: int = 0
    job_id: str | None = None  # inbox/batch/ files: the batch job that will write the result
    deferred: bool = False  # that job waits for the batch model (local stack still building it)
    drift: dict[str, float] | None = None  # the file's drift metrics (twolane.drift), published


def s3_objects(event: S3Event) -> list[tuple[str, str]]:
    """(bucket, key) of every object-created record of an S3 event notification (powertools'
    typed `S3Event`); keys arrive URL-encoded from S3 and are decoded here. A record that is not
    an object creation, or lacks its bucket or key, is skipped."""
    if not isinstance(event.raw_event.get("Records"), list):
        return []
    out = []
    for rec in event.records:
        try:
            if not str(rec.get("eventName", "ObjectCreated")).startswith("ObjectCreated"):
                continue
            bucket, key = rec.s3.bucket.name, rec.s3.get_object.key
        except (KeyError, TypeError, AttributeError):
            continue
        if bucket and key:
            out.append((bucket, unquote_plus(key)))
    return out


def result_key(key: str) -> str:
    """inbox/a/b.csv -> outbox/a/b.csv (same stem, same format family); a name too long for
    S3 once moved is shortened with a hash (`twolane.layout.fit_key`)."""
    return fit_key(OUTBOX, key[len(INBOX):])


def failed_keys(key: str) -> tuple[str, str]:
    """failed/<name> and failed/<name>.error.json (shortened like `result_key` when needed)."""
    report = fit_key(FAILED, key[len(INBOX):], ERROR_REPORT_SUFFIX)
    return report[: -len(ERROR_REPORT_SUFFIX)], report


@dataclass(frozen=True)
class InboxObject:
    """One object under inbox/ being processed: the S3 client, where it is, its size (None
    until read)."""

    s3: Any
    bucket: str
    key: str
    size: int | None = None


@dataclass(frozen=True)
class InboxFile:
    """An inbox object read as comments: its format `family`, its comments (`got`), the
    target its name asks for and the lane its folder asks for (inbox/auto/: the cascade,
    inbox/batch/: the batch lane, else the instant lane)."""

    obj: InboxObject
    family: Family
    got: FileItems
    target: JobTarget
    route: Route

    @property
    def key(self) -> str:
        return self.obj.key


def route_of(key: str) -> Route:
    """The lane an inbox key's folder asks for."""
    if key.startswith(AUTO_INBOX):
        return "auto"
    return "batch" if key.startswith(BATCH_INBOX) else "instant"


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if is_not_found(exc):
            return False
        raise


def _move_to_failed(obj: InboxObject, reason: str) -> Outcome:
    s3, bucket, key = obj.s3, obj.bucket, obj.key
    failed_key, report_key = failed_keys(key)
    s3.copy_object(Bucket=bucket, Key=failed_key, CopySource={"Bucket": bucket, "Key": key})
    report = {
        "source_key": key,
        "failed_key": failed_key,
        "error": reason,
        "size_bytes": obj.size,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "help": "Fix the file and put it in inbox/ again. Expected: CSV with comment_id and "
                "comment_text columns (question_type optional), a JSON list of such objects, "
                "or JSONL.",
    }
    s3.put_object(Bucket=bucket, Key=report_key, Body=json.dumps(report, indent=1).encode(),
                  ContentType="application/json")
    s3.delete_object(Bucket=bucket, Key=key)
    log.warning("moved %s to %s: %s", key, failed_key, reason)
    return Outcome(key, "failed", reason, failed_key)


def process_object(s3: Any, bucket: str, key: str, predictor: Predictor,
                   settings: Settings | None = None, jobs: JobService | None = None) -> Outcome:
    """Label one inbox object and move it on. Idempotent: safe to call twice for the same key.

    The file's comments go through the intake (twolane.intake) on the lane its folder asks for
    (`route_of`): `inbox/batch/X` to the batch lane through `jobs` (its results reach
    `outbox/batch/X` when the job finishes, see twolane.dropfolder.delivery), `inbox/auto/X`
    to the cascade, any other `inbox/X` labelled here on the instant lane."""
    settings = settings or get_settings()
    f = _read(InboxObject(s3, bucket, key), settings)
    if isinstance(f, Outcome):
        return f
    origin = Origin.dropfolder(_delivery(f), f.got.blank_rows)
    intake = Intake(settings, Loaded(predictor), lambda: jobs)
    try:
        taken = intake.take(f.got.items, f.route, f.target, origin)
    except IntakeRefused as exc:
        return _move_to_failed(f.obj, REFUSALS.get(exc.why, exc.reason))
    except JobRejected as exc:  # the endpoint refused: leave the file, Lambda retries
        raise RuntimeError(f"the batch lane did not take {key}: {exc.reason}") from exc
    if taken.record is not None:
        outcome = _submitted(f, taken.record, taken.sent)
    else:
        assert taken.predictions is not None and taken.model_version is not None
        outcome = _write_outbox(f, taken.model_version, taken.predictions)
    outcome.drift = taken.drift
    return outcome


def _read(obj: InboxObject, settings: Settings) -> InboxFile | Outcome:
    """The inbox object read as comments, or its outcome when it cannot be (not a file under
    inbox/, gone, too big, not comments: moved to failed/ with a report)."""
    limits = settings.dropfolder
    s3, bucket, key = obj.s3, obj.bucket, obj.key
    if not key.startswith(INBOX) or key.endswith("/") or key == INBOX:
        return Outcome(key, "ignored", "not a file under inbox/")
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if not is_not_found(exc):
            raise
        out_key = result_key(key)
        for done_key in (out_key, failed_keys(key)[1]):
            if _exists(s3, bucket, done_key):
                return Outcome(key, "already_done", "event repeated; result exists", done_key)
        return Outcome(key, "missing", "the inbox object is gone and no result exists")
    size = int(head.get("ContentLength", 0))
    obj = InboxObject(s3, bucket, key, size)
    try:
        family = family_of(key)
    except FormatError as exc:
        return _move_to_failed(obj, str(exc))
    if size > limits.max_bytes:
        return _move_to_failed(
            obj, f"file is {size} bytes; the limit is {limits.max_bytes} bytes. "
            "Split it into smaller files.")
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    try:
        got = read_file(data, family, limits.max_text_chars)
    except FormatError as exc:
        return _move_to_failed(obj, str(exc))
    except Exception as exc:  # whatever is inside a file, it gets a report, never a retry loop
        log.error("could not read %s: %s (moved to failed/)", key, type(exc).__name__)
        return _move_to_failed(obj, "the file could not be read as comments "
                               f"({type(exc).__name__}); check its format")
    return InboxFile(obj, family, got, target_of(key), route_of(key))


def _delivery(f: InboxFile) -> Delivery:
    """Where the file's batch job (if it becomes one) writes its result or report."""
    return Delivery(bucket=f.obj.bucket, source_key=f.key, result_key=result_key(f.key),
                    report_key=failed_keys(f.key)[1], family=f.family, pxtextmining=f.got.pxtextmining)


def _write_outbox(f: InboxFile, version: str, preds: list[Prediction]) -> Outcome:
    """Write the instant lane's results to the outbox, then delete the inbox object."""
    body = (write_px(preds, f.target, f.got.blank_rows) if f.got.pxtextmining
            else write_results(preds, f.family))
    out_key = result_key(f.key)
    f.obj.s3.put_object(
        Bucket=f.obj.bucket, Key=out_key, Body=body,
        ContentType=CONTENT_TYPES[f.family],
        Metadata={"model-version": str(version), "comments": str(len(preds))},
    )
    f.obj.s3.delete_object(Bucket=f.obj.bucket, Key=f.key)  # only after the result is safely written
    log.info("labelled %d comments: %s -> %s", len(preds), f.key, out_key)
    noun = "comment" if len(preds) == 1 else "comments"
    return Outcome(f.key, "done", f"{len(preds)} {noun} labelled", out_key, len(preds))


def _submitted(f: InboxFile, record: JobRecord, sent: int) -> Outcome:
    """The file is a batch job now (`sent` of its comments went to the batch lane; the job's
    input holds them until predictions exist): delete it from the inbox."""
    f.obj.s3.delete_object(Bucket=f.obj.bucket, Key=f.key)
    n = len(f.got.items)
    log.info("sent %d of %d comments to the batch lane: %s (job %s)", sent, n, f.key, record.job_id)
    return Outcome(f.key, "submitted", f"{sent} of {n} comments sent to the batch lane",
                   result_key(f.key), n, record.job_id, record.deferred)


def process_event(event: dict[str, Any] | S3Event, predictor: Predictor, *, s3: Any,
                  settings: Settings | None = None, jobs: JobService | None = None) -> dict[str, Any]:
    """Handle an S3 event (any number of records; a dict as Lambda passes it, or typed).
    Returns {"outcomes": [Outcome as a dict, per record]}. `s3`: a boto3 S3 client;
    `jobs`: the batch lane, for files under inbox/batch/ (None: they go to failed/)."""
    typed = event if isinstance(event, S3Event) else S3Event(event)
    outcomes = [process_object(s3, b, k, predictor, settings, jobs) for b, k in s3_objects(typed)]
    return {"outcomes": [asdict(o) for o in outcomes]}
