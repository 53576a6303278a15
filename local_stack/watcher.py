"""The local drop folder: poll S3 `inbox/` (moto) and feed the Lambda's own processing code
S3-shaped events; mirror a local folder so a person can drop files with a file manager:

    ./dropbox/inbox/<file>  -> uploaded to s3://<bucket>/inbox/<file>, then removed locally
    s3://<bucket>/outbox/*  -> downloaded to ./dropbox/outbox/
    s3://<bucket>/failed/*  -> downloaded to ./dropbox/failed/ (with the .error.json report)

Files under inbox/batch/ go to the batch lane (`jobs`); a job accepted while the batch model
is still building is started here as soon as the model is there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from local_stack.s3events import object_created
from twolane.dropfolder.process import FAILED, INBOX, OUTBOX, process_event
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
        self._sizes: dict[Path, int] = {}  # local file -> size at the last look

    def stop(self, timeout: float = 5.0) -> None:
        self._halt.set()
        self.join(timeout)

    def run(self) -> None:
        if self.local_dir is not None:
            for sub in ("inbox", "outbox", "failed"):
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
        for f in sorted((self.local_dir / "inbox").rglob("*")):
            if not f.is_file() or f.name.startswith((".", "~$")) or f.name.endswith(_TEMPORARY):
                continue
            size = f.stat().st_size
            if self._sizes.get(f) != size:  # still being written? look again next tick
                self._sizes[f] = size
                continue
            rel = f.relative_to(self.local_dir / "inbox").as_posix()
            self.s3.upload_file(str(f), self.bucket, INBOX + rel)
            f.unlink()
            self._sizes.pop(f, None)
            log.info("uploaded %s to s3://%s/%s%s", f, self.bucket, INBOX, rel)

    def _pull(self, prefix: str, dest: Path) -> None:
        for key, (etag, _) in _keys(self.s3, self.bucket, prefix).items():
            if key.endswith("/") or self._pulled.get(key) == etag:
                continue
            target = dest / key[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(self.bucket, key, str(target))
            self._pulled[key] = etag
