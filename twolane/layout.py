"""The bucket layout: every S3 prefix and object key twolane reads or writes, named once.

    inbox/  outbox/  failed/                      drop folder: input, results, rejected files + reports
    inbox/batch/  outbox/batch/  failed/batch/    the same for files labelled on the batch lane
    inbox/auto/  outbox/auto/  failed/auto/       the same for the cascade ("lane": "auto")
    jobs/<id>.json                                batch job records (counts and locations, no text)
    batch/input/<id>.json                         async endpoint input (deleted once predicted)
    batch/input/<id>/<n>.json                     the same for shard n of a job split in shards
    batch/output/<id>.out  batch/failures/<id>-error.out   async endpoint results and errors
    models/batch/<version>/model.tar.gz           batch model data for the endpoint

The runtime, the local stack and `infra/` (IAM grants, lifecycle rules, notifications) all
import these names, so they cannot drift apart.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

INBOX, OUTBOX, FAILED = "inbox/", "outbox/", "failed/"
BATCH_SUBFOLDER = "batch/"  # inbox/batch/<file>: labelled on the batch lane -> outbox/batch/<file>
AUTO_SUBFOLDER = "auto/"  # inbox/auto/<file>: the cascade (instant, unsure ones batch) -> outbox/auto/<file>
ERROR_REPORT_SUFFIX = ".error.json"  # failed/<name> + this: why the file was rejected
JOBS = "jobs/"
BATCH_INPUT, BATCH_OUTPUT, BATCH_FAILURES = "batch/input/", "batch/output/", "batch/failures/"
MODELS = "models/"


MAX_KEY_BYTES = 1024  # S3 refuses longer keys (UTF-8 bytes)


def fit_key(prefix: str, rel: str, suffix: str = "") -> str:
    """prefix + rel + suffix, or, when that is over S3's 1,024 bytes, the same with the middle
    of `rel` cut and a hash of the whole `rel` in its place (the extension is kept), so each
    name still maps to one key that S3 accepts."""
    key = prefix + rel + suffix
    if len(key.encode("utf-8")) <= MAX_KEY_BYTES:
        return key
    ext = PurePosixPath(rel).suffix
    ext = ext if len(ext) <= 16 else ""
    tag = "~" + hashlib.sha256(rel.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    room = MAX_KEY_BYTES - len((prefix + tag + ext + suffix).encode("utf-8"))
    head = rel.encode("utf-8", "surrogatepass")[:max(room, 0)].decode("utf-8", "ignore")
    return prefix + head + tag + ext + suffix


def job_record_key(job_id: str) -> str:
    return f"{JOBS}{job_id}.json"


def batch_input_key(job_id: str) -> str:
    return f"{BATCH_INPUT}{job_id}.json"


def batch_shard_input_key(job_id: str, shard: int) -> str:
    """Input of shard `shard` (0-based) of a job split into shards."""
    return f"{BATCH_INPUT}{job_id}/{shard}.json"


def shard_inference_id(job_id: str, shard: int) -> str:
    """The InferenceId of one shard: `<job_id>-<n>` (a job of one shard uses its job id)."""
    return f"{job_id}-{shard}"


def batch_output_key(inference_id: str) -> str:
    return f"{BATCH_OUTPUT}{inference_id}.out"


def batch_failure_key(inference_id: str) -> str:
    return f"{BATCH_FAILURES}{inference_id}-error.out"


def batch_model_key(version: str) -> str:
    return f"{MODELS}batch/{version}/model.tar.gz"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of an s3://bucket/key URI; ValueError for anything else."""
    u = urlparse(uri)
    if u.scheme != "s3" or not u.netloc or not u.path.strip("/"):
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    return u.netloc, u.path.lstrip("/")


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


# S3 error codes that mean "no such object" (GetObject says NoSuchKey, HeadObject a bare 404).
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})


def is_not_found(exc: BaseException) -> bool:
    """True when a botocore ClientError says the object (or its bucket) does not exist."""
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in _NOT_FOUND_CODES or status == 404
