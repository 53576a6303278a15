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

from twolane import drift
from twolane.contract import CommentIn, JobRequest, JobTarget, Prediction
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
from twolane.jobs.service import JobRejected, JobService, Kept
from twolane.jobs.store import Delivery
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
from twolane.predictors.cascade import split_lanes
from twolane.predictors.instant import InstantPredictor
from twolane.settings import Settings, get_settings
from twolane.wiring import batch_taxonomy, cascade_rule

log = logging.getLogger("twolane.dropfolder")

CHUNK = 1000  # comments per predictor call

Status = Literal["done", "submitted", "failed", "already_done", "missing", "ignored"]
BATCH_INBOX = INBOX + BATCH_SUBFOLDER  # inbox/batch/X: the batch lane (transformer ensemble)
AUTO_INBOX = INBOX + AUTO_SUBFOLDER  # inbox/auto/X: the cascade (instant lane, unsure ones to batch)
NO_CASCADE = ("the cascade (inbox/auto/) is not available on this service: its batch bundle has no "
              "cascade rule; put the file in inbox/ or inbox/batch/")
NO_BATCH_LANE = ("the batch lane is not available on this service: put the file in inbox/ "
                 "(not inbox/batch/) for the instant lane")


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


def label(predictor: Predictor, items: list[CommentIn], target: JobTarget = "ms") -> list[Prediction]:
    """Predictions for a file's comments, CHUNK at a time (bounded memory), in file order."""
    preds: list[Prediction] = []
    for i in range(0, len(items), CHUNK):
        preds.extend(predictor.predict(items[i : i + CHUNK], target=target))
    return preds


def _exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if is_not_found(exc):
            return False
        raise


def _move_to_failed(s3: Any, bucket: str, key: str, reason: str, size: int | None) -> Outcome:
    failed_key, report_key = failed_keys(key)
    s3.copy_object(Bucket=bucket, Key=failed_key, CopySource={"Bucket": bucket, "Key": key})
    report = {
        "source_key": key,
        "failed_key": failed_key,
        "error": reason,
        "size_bytes": size,
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

    `inbox/batch/X` goes to the batch lane through `jobs` (its results reach `outbox/batch/X`
    when the job finishes, see twolane.dropfolder.delivery); any other `inbox/X` is labelled
    here on the instant lane."""
    settings = settings or get_settings()
    limits = settings.dropfolder
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
    try:
        family = family_of(key)
    except FormatError as exc:
        return _move_to_failed(s3, bucket, key, str(exc), size)
    if size > limits.max_bytes:
        return _move_to_failed(
            s3, bucket, key,
            f"file is {size} bytes; the limit is {limits.max_bytes} bytes. "
            "Split it into smaller files.", size)
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    try:
        got = read_file(data, family, limits.max_text_chars)
    except FormatError as exc:
        return _move_to_failed(s3, bucket, key, str(exc), size)
    except Exception as exc:  # whatever is inside a file, it gets a report, never a retry loop
        log.error("could not read %s: %s (moved to failed/)", key, type(exc).__name__)
        return _move_to_failed(s3, bucket, key, "the file could not be read as comments "
                               f"({type(exc).__name__}); check its format", size)
    target = target_of(key)
    refused = _batch_lane_refuses(predictor, key, settings)
    if refused:
        return _move_to_failed(s3, bucket, key, refused, size)
    if key.startswith(AUTO_INBOX):
        return _auto(s3, bucket, key, family, got, target, predictor, settings, jobs, size)
    if key.startswith(BATCH_INBOX):
        if jobs is None:
            return _move_to_failed(s3, bucket, key, NO_BATCH_LANE, size)
        return _with_drift(_submit(s3, bucket, key, family, got, target, jobs), predictor, got,
                       emit=settings.lambda_function_name is not None)
    preds = label(predictor, got.items, target)
    return _with_drift(_write_outbox(s3, bucket, key, family, got, target, predictor, preds),
                       predictor, got, emit=settings.lambda_function_name is not None)


def _auto(s3: Any, bucket: str, key: str, family: Family, got: FileItems,  # noqa: PLR0913
          target: JobTarget, predictor: Predictor, settings: Settings, jobs: JobService | None,
          size: int | None) -> Outcome:
    """An inbox/auto/ file: the cascade (the instant lane keeps what it is sure of; the rest
    becomes a batch job, or the file is written at once when nothing is escalated)."""
    rule = cascade_rule(settings) if jobs is not None else None
    if rule is None or not isinstance(predictor, InstantPredictor):
        return _move_to_failed(s3, bucket, key, NO_CASCADE if jobs else NO_BATCH_LANE, size)
    preds, esc = split_lanes(predictor, rule, got.items, target)
    if esc.any():
        assert jobs is not None
        return _with_drift(_submit(s3, bucket, key, family, got, target, jobs,
                                   (preds, esc, predictor.version)),
                           predictor, got, emit=settings.lambda_function_name is not None)
    return _with_drift(_write_outbox(s3, bucket, key, family, got, target, predictor, preds),
                       predictor, got, emit=settings.lambda_function_name is not None)


def _batch_lane_refuses(predictor: Predictor, key: str, settings: Settings) -> str | None:
    """Why a file of inbox/batch/ or inbox/auto/ cannot go to the batch lane with this model
    (`Manifest.batch_lane_refuses` against `wiring.batch_taxonomy`), or None."""
    manifest = getattr(predictor, "manifest", None)
    if manifest is None or not key.startswith((AUTO_INBOX, BATCH_INBOX)):
        return None
    return manifest.batch_lane_refuses(batch_taxonomy(settings))


def _write_outbox(s3: Any, bucket: str, key: str, family: Family, got: FileItems, target: JobTarget,
                  predictor: Predictor, preds: list[Prediction]) -> Outcome:
    """Write the instant lane's results to the outbox, then delete the inbox object."""
    body = (write_px(preds, target, got.blank_rows) if got.pxtextmining
            else write_results(preds, family))
    out_key = result_key(key)
    s3.put_object(
        Bucket=bucket, Key=out_key, Body=body,
        ContentType=CONTENT_TYPES[family],
        Metadata={"model-version": str(predictor.version), "comments": str(len(preds))},
    )
    s3.delete_object(Bucket=bucket, Key=key)  # only after the result is safely written
    log.info("labelled %d comments: %s -> %s", len(preds), key, out_key)
    noun = "comment" if len(preds) == 1 else "comments"
    return Outcome(key, "done", f"{len(preds)} {noun} labelled", out_key, len(preds))


def _with_drift(outcome: Outcome, predictor: Predictor, got: FileItems, *, emit: bool) -> Outcome:
    """Compare the file's comments with the bundle's training data and publish the signals
    as CloudWatch metrics (twolane.drift; nothing when the bundle has no drift reference).
    Advisory: a failing check is logged (its type only) and never fails the file."""
    try:
        outcome.drift = drift.publish(drift.report_for(predictor, got.items), emit=emit)
    except Exception as exc:  # the file is labelled already: drift must not undo that
        log.error("drift check failed for %s (%s)", outcome.key, type(exc).__name__)
    return outcome


def _submit(s3: Any, bucket: str, key: str, family: Family, got: FileItems, target: JobTarget,
            jobs: JobService, cascade: tuple[list[Prediction], Any, str] | None = None) -> Outcome:
    """Hand a batch-inbox file to the batch lane as a job, then delete it from the inbox (the
    job's input holds the comments until predictions exist). `cascade`: an inbox/auto/ file's
    instant answers, its escalation mask (bool n) and the instant bundle's version: only the
    escalated comments go."""
    report_key = failed_keys(key)[1]
    delivery = Delivery(bucket=bucket, source_key=key, result_key=result_key(key),
                        report_key=report_key, family=family, pxtextmining=got.pxtextmining)
    body = JobRequest(items=got.items, target=target).model_dump(exclude={"lane"})
    sent = len(got.items)
    try:
        if cascade is None:
            record = jobs.submit("classify", target, len(got.items), body, defer=True,
                                 blank_rows=got.blank_rows, delivery=delivery)
        else:
            preds, esc, version = cascade
            escalated = [i for i, e in enumerate(esc.tolist()) if e]
            kept = Kept(results=[p.model_dump(mode="json") for p, e in zip(preds, esc.tolist(), strict=True)
                                 if not e], escalated=escalated, instant_version=version)
            body["items"] = [body["items"][i] for i in escalated]
            sent = len(escalated)
            record = jobs.submit_auto(target, len(got.items), body, kept, defer=True,
                                      blank_rows=got.blank_rows, delivery=delivery)
    except JobRejected as exc:  # the endpoint refused: leave the file, Lambda retries
        raise RuntimeError(f"the batch lane did not take {key}: {exc.reason}") from exc
    s3.delete_object(Bucket=bucket, Key=key)
    log.info("sent %d of %d comments to the batch lane: %s (job %s)", sent, len(got.items), key, record.job_id)
    return Outcome(key, "submitted", f"{sent} of {len(got.items)} comments sent to the batch lane",
                   delivery.result_key, len(got.items), record.job_id, record.deferred)


def process_event(event: dict[str, Any] | S3Event, predictor: Predictor, *, s3: Any,
                  settings: Settings | None = None, jobs: JobService | None = None) -> dict[str, Any]:
    """Handle an S3 event (any number of records; a dict as Lambda passes it, or typed).
    Returns {"outcomes": [Outcome as a dict, per record]}. `s3`: a boto3 S3 client;
    `jobs`: the batch lane, for files under inbox/batch/ (None: they go to failed/)."""
    typed = event if isinstance(event, S3Event) else S3Event(event)
    outcomes = [process_object(s3, b, k, predictor, settings, jobs) for b, k in s3_objects(typed)]
    return {"outcomes": [asdict(o) for o in outcomes]}
