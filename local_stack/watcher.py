"""The local drop folder: poll S3 `inbox/` (moto) and feed the Lambda's own processing code
S3-shaped events; mirror a local folder so a person can drop files with a file manager:

    ./dropbox/inbox/<file>  -> uploaded to s3://<bucket>/inbox/<file>, then removed locally
    s3://<bucket>/outbox/*  -> downloaded to ./dropbox/outbox/
    s3://<bucket>/failed/*  -> downloaded to ./dropbox/failed/ (with the .error.json report)

Files under inbox/batch/ go to the batch lane (`jobs`); a job accepted while the batch model
is still building is started here as soon as the model is there.

A local file is uploaded only when it is complete: its size and modification time unchanged for
`drop_settle_seconds` (TWOLANE_DROP_SETTLE_SECONDS, default 5 s), so a writer that pauses for a
second or two is not caught half-way. Names a copy is written under (.part, .tmp, .crdownload,
~, dot-files) are never uploaded: writing to such a name and renaming it when done is the
surest way. The file is uploaded from a snapshot of its bytes; if it changed while being read,
it is left for the next look instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from local_stack.s3events import object_created
from twolane.dropfolder.process import BATCH_INBOX, FAILED, INBOX, OUTBOX, process_event
from twolane.jobs.service import JobService
from twolane.settings import Settings

log = logging.getLogger("twolane.local")

# Files a desktop or editor writes while copying; never uploaded.
_TEMPORARY = (".tmp", ".part", ".crdownload", ".swp", "~")


def _keys(s3: Any, bucket: str, prefix: str) -> dict[str, tuple[str, int]]:
    """key -> (etag, size) of every object under prefix."""
    out: dict[str, tuple[str, int]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"]] = (o["ETag"], int(o["Size"]))
    return out


class DropFolderWatcher(threading.Thread):
    def __init__(self, s3: Any, bucket: str, predictor: Any, settings: Settings,
                 local_dir: Path | None = None,
                 on_outcome: Callable[[dict[str, Any]], None] | None = None,
                 jobs: JobService | None = None):
        super().__init__(name="dropfolder-watcher", daemon=True)
        self.s3, self.bucket, self.predictor, self.settings = s3, bucket, predictor, settings
        self.local_dir = local_dir
        self.on_outcome = on_outcome
        self.jobs = jobs
        self._deferred: set[str] = set()  # batch jobs of dropped files waiting for the model
        self._halt = threading.Event()
        self._errored: dict[str, str] = {}  # key -> etag that raised; retried when it changes
        self._pulled: dict[str, str] = {}  # outbox/failed key -> etag downloaded
        self._seen: dict[Path, tuple[int, int, float]] = {}  # file -> (size, mtime_ns, since)

    def stop(self, timeout: float = 5.0) -> None:
        self._halt.set()
        self.join(timeout)

    def run(self) -> None:
        if self.local_dir is not None:
            for sub in (INBOX, BATCH_INBOX, OUTBOX, FAILED):  # inbox/batch/: the batch lane
                (self.local_dir / sub).mkdir(parents=True, exist_ok=True)
        while not self._halt.is_set():
            try:
                self.tick()
            except Exception:  # keep watching; the next tick retries
                log.exception("drop-folder watcher")
            self._halt.wait(self.settings.poll_seconds)

    def tick(self) -> None:
        if self.local_dir is not None:
            self._push_local()
        for key, (etag, size) in _keys(self.s3, self.bucket, INBOX).items():
            if key.endswith("/") or self._errored.get(key) == etag:
                continue
            event = object_created(self.bucket, key, size, etag, self.settings.aws_region)
            try:
                summary = process_event(event, self.predictor, s3=self.s3, settings=self.settings,
                                        jobs=self.jobs)
            except Exception:
                self._errored[key] = etag
                log.exception("could not process %s (left in inbox/)", key)
                continue
            for o in summary["outcomes"]:
                if o.get("deferred") and o.get("job_id"):
                    self._deferred.add(o["job_id"])
                if self.on_outcome:
                    self.on_outcome(o)
        self._start_deferred()
        if self.local_dir is not None:
            self._pull(OUTBOX, self.local_dir / "outbox")
            self._pull(FAILED, self.local_dir / "failed")

    def _start_deferred(self) -> None:
        if self.jobs is None:
            return
        for job_id in list(self._deferred):
            record = self.jobs.start_deferred(job_id)
            if record is None or not record.deferred:
                self._deferred.discard(job_id)

    def _push_local(self) -> None:
        assert self.local_dir is not None
        now = time.monotonic()
        for f in sorted((self.local_dir / "inbox").rglob("*")):
            if not f.is_file() or f.name.startswith((".", "~$")) or f.name.endswith(_TEMPORARY):
                continue
            st = f.stat()
            shape = (st.st_size, st.st_mtime_ns)
            seen = self._seen.get(f)
            if seen is None or seen[:2] != shape:  # new or still being written: watch it
                self._seen[f] = (*shape, now)
                continue
            if now - seen[2] < self.settings.drop_settle_seconds:
                continue
            data = f.read_bytes()
            after = f.stat()
            if len(data) != st.st_size or (after.st_size, after.st_mtime_ns) != shape:
                self._seen.pop(f, None)  # changed while read: look again later
                continue
            rel = f.relative_to(self.local_dir / "inbox").as_posix()
            self.s3.put_object(Bucket=self.bucket, Key=INBOX + rel, Body=data)
            f.unlink()
            self._seen.pop(f, None)
            log.info("uploaded %s (%d bytes) to inbox/", rel, len(data))

    def _pull(self, prefix: str, dest: Path) -> None:
        for key, (etag, _) in _keys(self.s3, self.bucket, prefix).items():
            if key.endswith("/") or self._pulled.get(key) == etag:
                continue
            target = dest / key[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(self.bucket, key, str(target))
            self._pulled[key] = etag
