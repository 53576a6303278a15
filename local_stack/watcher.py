"""The local drop folder: poll S3 `inbox/` (moto) and feed the Lambda's own processing code
S3-shaped events; mirror a local folder so a person can drop files with a file manager:

    ./dropbox/inbox/<file>  -> uploaded to s3://<bucket>/inbox/<file>
    s3://<bucket>/outbox/*  -> downloaded to ./dropbox/outbox/
    s3://<bucket>/failed/*  -> downloaded to ./dropbox/failed/ (with the .error.json report)

Files under inbox/batch/ go to the batch lane (`jobs`); a job accepted while the batch model
is still building is started here as soon as the model is there.

Nothing taken is lost: a local file stays in ./dropbox/inbox/ until its result is in
./dropbox/outbox/ or its failure report in ./dropbox/failed/ (a file of the batch lane until
its job is delivered); only then is it removed. A stop at any moment (SIGTERM, SIGKILL, power
loss) leaves it in inbox/, and the next start takes it again. Its results are then deleted
from the local S3, so memory stays bounded however many files pass.

Each local entry is handled on its own (an error with one never stops the others):
* a regular file is uploaded only when it is complete: its size and modification time
  unchanged for `drop_settle_seconds` (TWOLANE_DROP_SETTLE_SECONDS, default 5 s). Names a
  copy is written under (`_TEMPORARY`, dot-files, `~$` lock files) are never taken: writing to
  such a name and renaming it when done is the surest way. The file is uploaded from a
  snapshot of its bytes; if it changed while being read, it is left for the next look;
* a folder is walked (its files keep their folder in the key); a dot-folder is ignored;
* a name S3 cannot take (a control character such as a newline, bytes that are not UTF-8, a
  key over 1,024 bytes) is moved to failed/ under a safe name, with a report;
* a symbolic link is never followed: it is removed (its target untouched) and a report says
  so; a FIFO, socket or device likewise, never opened;
* a file that vanishes before it is taken is forgotten.
Log lines name files relative to inbox/ (escaped) and exceptions by type, never a local path
or an exception's text.

Nothing is announced before it is true: `on_outcome` hears of a labelled (or failed) file only
once its result (or failed copy) is in the local folder. A local outbox/ or failed/ that cannot
be written is named once in the log with the reason, and tried again with back-off (doubling up
to BLOCKED_MAX_S); the files waiting on it stay in inbox/, each named once, and the other
folder goes on (a malformed file still reaches failed/ while outbox/ is blocked).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from local_stack.files import write_atomic
from local_stack.s3events import object_created
from twolane.dropfolder.process import (
    AUTO_INBOX,
    BATCH_INBOX,
    FAILED,
    INBOX,
    OUTBOX,
    failed_keys,
    process_event,
    result_key,
)
from twolane.jobs.service import JobService
from twolane.layout import ERROR_REPORT_SUFFIX
from twolane.settings import Settings

log = logging.getLogger("twolane.local")

# Files a desktop or editor writes while copying; never uploaded.
_TEMPORARY = (".tmp", ".part", ".crdownload", ".swp", "~")
MAX_KEY_BYTES = 1024
REPORT_HELP = ("Rename the file (letters, digits, spaces and . _ - are safe) or copy the file "
               "itself (not a link) into inbox/ again.")


def ignored(name: str) -> bool:
    """True for names never taken from the local inbox: dot-files, Office lock files (`~$`),
    and the names copies are written under (.tmp, .part, .crdownload, .swp, ~)."""
    return name.startswith((".", "~$")) or name.endswith(_TEMPORARY)


def unfit_name(rel: str) -> str | None:
    """Why S3 cannot take `inbox/<rel>` as a key (None when it can): bytes that are not UTF-8
    (Python keeps them as surrogates), control characters (newline, tab, DEL), too long."""
    try:
        encoded = (INBOX + rel).encode("utf-8")
    except UnicodeEncodeError:
        return "the file name is not UTF-8 text"
    if any(ord(c) < 32 or ord(c) == 127 for c in rel):
        return "the file name holds a control character (a newline, a tab, ...)"
    if len(encoded) > MAX_KEY_BYTES:
        return f"the file name is longer than S3's {MAX_KEY_BYTES} bytes"
    return None


def safe_name(rel: str) -> str:
    """`rel` with every part made printable UTF-8 (other characters become "_") and a short hash
    of the original name before the extension, so two unfit names never collide."""
    tag = hashlib.sha256(rel.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    parts = []
    for part in rel.split("/"):
        clean = "".join(c if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF else "_"
                        for c in part)[:100]
        parts.append(clean.lstrip(".") or "_")
    leaf = PurePosixPath(parts[-1])
    parts[-1] = f"{leaf.stem}-{tag}{leaf.suffix}"
    return "/".join(parts)


def shown(rel: str) -> str:
    """A name for a log line: escaped, so a newline or a stray byte cannot forge a line."""
    return ascii(rel)


def _keys(s3: Any, bucket: str, prefix: str) -> dict[str, tuple[str, int]]:
    """key -> (etag, size) of every object under prefix."""
    out: dict[str, tuple[str, int]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"]] = (o["ETag"], int(o["Size"]))
    return out


def _entries(folder: Path, rel: str = "") -> Iterator[tuple[os.DirEntry[str], str]]:
    """Every entry under `folder` but ignored names, folders walked (symlinks never followed);
    yields (entry, path relative to the top as a/b/c). A folder that vanishes is skipped."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    for e in entries:
        if ignored(e.name):
            continue
        sub = f"{rel}{e.name}"
        if e.is_dir(follow_symlinks=False):
            yield from _entries(Path(e.path), sub + "/")
        else:
            yield e, sub




BLOCKED_MAX_S = 60.0  # longest wait between tries of a local folder that cannot be written


@dataclass
class Blocked:
    """A local folder that could not be written: when to try it again, the wait after that,
    and the inbox files already named as waiting for it."""

    next_try: float = 0.0
    delay: float = 1.0
    named: set[str] = field(default_factory=set)


@dataclass
class Taken:
    """A local file uploaded to the S3 inbox and still in the local inbox (its result not back)."""

    path: Path
    shape: tuple[int, int]  # (size, mtime_ns) when uploaded
    done: tuple[str, str]  # its result key, its failure report key


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
        self._taken: dict[str, Taken] = {}  # inbox key -> the local file it came from
        self._warned: set[str] = set()  # local names already logged as not takeable
        self._announce: dict[str, dict[str, Any]] = {}  # outbox/failed key -> its outcome, told once local
        self._blocked: dict[str, Blocked] = {}  # local folder (outbox, failed) -> its back-off

    def defer(self, job_ids: list[str]) -> None:
        """Start these deferred jobs as soon as the batch lane can take them (see `tick`)."""
        self._deferred.update(job_ids)

    def stop(self, timeout: float = 5.0) -> None:
        self._halt.set()
        self.join(timeout)

    def run(self) -> None:
        if self.local_dir is not None:
            for sub in (INBOX, BATCH_INBOX, AUTO_INBOX, OUTBOX, FAILED):  # batch/: batch lane; auto/: cascade
                (self.local_dir / sub).mkdir(parents=True, exist_ok=True)
        while not self._halt.is_set():
            try:
                self.tick()
            except Exception as exc:  # keep watching; the next tick retries
                log.error("drop-folder watcher: %s; trying again", type(exc).__name__)
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
            except Exception as exc:
                self._errored[key] = etag
                log.error("could not process %s (%s); left in inbox/", shown(key),
                          type(exc).__name__)
                continue
            for o in summary["outcomes"]:
                if o.get("deferred") and o.get("job_id"):
                    self._deferred.add(o["job_id"])
                if self.local_dir is not None and o.get("status") in ("done", "failed") and o.get("result_key"):
                    self._announce[o["result_key"]] = o  # told once the file is in the local folder
                elif self.on_outcome:
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

    # -- the local inbox -------------------------------------------------------------------

    def _push_local(self) -> None:
        assert self.local_dir is not None
        inbox = self.local_dir / "inbox"
        present: set[Path] = set()
        for entry, rel in _entries(inbox):
            present.add(Path(entry.path))
            try:
                self._take(entry, rel)
            except FileNotFoundError:
                self._seen.pop(Path(entry.path), None)  # vanished: nothing to take
            except Exception as exc:  # this one file; the others go on
                if rel not in self._warned:
                    self._warned.add(rel)
                    log.warning("could not take %s from inbox/ (%s); trying again", shown(rel),
                                type(exc).__name__)
        for gone in set(self._seen) - present:
            self._seen.pop(gone, None)
        for key, t in list(self._taken.items()):
            if t.path not in present:  # removed by hand while labelled: nothing to keep
                del self._taken[key]

    def _take(self, entry: os.DirEntry[str], rel: str) -> None:
        path = Path(entry.path)
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            self._reject(path, rel, "a symbolic link: links are never followed. The link was "
                         "removed (its target is untouched); copy the file itself into inbox/",
                         keep=False)
            return
        if not stat.S_ISREG(st.st_mode):
            self._reject(path, rel, "not a regular file (a FIFO, socket or device); it was "
                         "removed without being read", keep=False)
            return
        reason = unfit_name(rel)
        if reason is not None:
            self._reject(path, rel, reason + "; S3 cannot take it", keep=True)
            return
        key = INBOX + rel
        shape = (st.st_size, st.st_mtime_ns)
        taken = self._taken.get(key)
        if taken is not None:
            if taken.shape == shape:
                return  # uploaded; waiting for its result
            del self._taken[key]  # replaced by a new version: take that one
        now = time.monotonic()
        seen = self._seen.get(path)
        if seen is None or seen[:2] != shape:  # new or still being written: watch it
            self._seen[path] = (*shape, now)
            return
        if now - seen[2] < self.settings.drop_settle_seconds:
            return
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            data = f.read()
            after = os.fstat(f.fileno())
        if len(data) != st.st_size or (after.st_size, after.st_mtime_ns) != shape:
            self._seen.pop(path, None)  # changed while read: look again later
            return
        done = (result_key(key), failed_keys(key)[1])
        for stale in (*done, failed_keys(key)[0]):  # an earlier file's results, same name
            self.s3.delete_object(Bucket=self.bucket, Key=stale)
            self._pulled.pop(stale, None)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
        self._taken[key] = Taken(path, shape, done)
        self._seen.pop(path, None)
        log.info("uploaded %s (%d bytes) to inbox/", shown(rel), len(data))

    def _reject(self, path: Path, rel: str, reason: str, *, keep: bool) -> None:
        """Report `rel` in the local failed/ under a safe name; move the file there (`keep`) or
        remove the entry (never reading it). The report is written first, so a stop in between
        leaves the entry in inbox/ and the next look repeats both."""
        assert self.local_dir is not None
        name = safe_name(rel)
        failed = self.local_dir / "failed"
        report = {"source_name": name, "failed_name": name if keep else None, "error": reason,
                  "at": datetime.now(UTC).isoformat(timespec="seconds"), "help": REPORT_HELP}
        write_atomic(failed / (name + ERROR_REPORT_SUFFIX),
                      json.dumps(report, indent=1).encode("utf-8"))
        if keep:
            (failed / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, failed / name)  # a rename: the same file, never read
        else:
            os.unlink(path)
        self._seen.pop(path, None)
        log.warning("moved %s to failed/%s: %s", shown(rel), shown(name), reason)

    # -- results back to the local folder ----------------------------------------------------

    def _pull(self, prefix: str, dest: Path) -> None:
        """Download what is new under `prefix` into `dest`. A local folder that cannot be
        written is named once in the log with the reason and tried again with back-off
        (Blocked); the other folder goes on, and the files wait (in the local S3, their
        inputs in inbox/)."""
        folder = prefix.rstrip("/")
        blocked = self._blocked.get(folder)
        if blocked is not None and time.monotonic() < blocked.next_try:
            return
        waiting = {k: key for key, t in self._taken.items() for k in t.done}
        listed = _keys(self.s3, self.bucket, prefix)
        for key, (etag, _) in listed.items():
            if key.endswith("/") or self._pulled.get(key) == etag:
                continue
            target = _inside(dest, key[len(prefix):])
            if target is None:
                self._pulled[key] = etag
                log.warning("not written to the local folder: %s is not a plain name", shown(key))
                continue
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                self.s3.download_file(self.bucket, key, str(tmp))
                os.replace(tmp, target)
            except OSError as exc:  # the local folder: S3 errors are not OSError
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
                self._block(folder, exc, self._waiting_on(listed))
                return
            if folder in self._blocked:
                del self._blocked[folder]
                log.warning("the local %s/ can be written again", folder)
            self._pulled[key] = etag
            told = self._announce.pop(key, None)
            if told is not None and self.on_outcome:
                self.on_outcome(told)
            if key in waiting:
                self._finish(waiting[key], key)

    def _waiting_on(self, keys: dict[str, Any]) -> list[str]:
        """The inbox keys of local files whose result, report or failed copy is among `keys`."""
        return [key for key, t in self._taken.items()
                if any(k in keys for k in (*t.done, failed_keys(key)[0]))]

    def _block(self, folder: str, exc: OSError, sources: list[str]) -> None:
        """`folder` could not be written: log it once (the reason: the error's type and its
        errno text, never a path), name each local file left waiting in inbox/ once, and back
        off (doubling, at most BLOCKED_MAX_S)."""
        blocked = self._blocked.get(folder)
        if blocked is None:
            reason = type(exc).__name__ + (f": {os.strerror(exc.errno)}" if exc.errno else "")
            log.error("cannot write to the local %s/ (%s); its files wait and are tried again",
                      folder, reason)
            blocked = self._blocked[folder] = Blocked()
        else:
            blocked.delay = min(blocked.delay * 2, BLOCKED_MAX_S)
        blocked.next_try = time.monotonic() + blocked.delay
        for source in sources:
            if source not in blocked.named:
                blocked.named.add(source)
                log.error("%s stays in inbox/ until %s/ can be written", shown(source[len(INBOX):]),
                          folder)

    def _finish(self, key: str, done_key: str) -> None:
        """`key`'s result (or failure report) is now in the local folder: the local input leaves
        inbox/ (a failed one to failed/ beside its report), and the S3 copies are deleted."""
        assert self.local_dir is not None
        t = self._taken.pop(key)
        failed_copy = failed_keys(key)[0]
        try:
            st = os.lstat(t.path)
            if (st.st_size, st.st_mtime_ns) == t.shape:
                if done_key == t.done[0]:
                    os.unlink(t.path)
                else:
                    target = _inside(self.local_dir / "failed", failed_copy[len(FAILED):])
                    if target is not None:
                        os.replace(t.path, target)
        except FileNotFoundError:
            pass
        for k in (done_key, failed_copy):  # results live in the local folder now
            self.s3.delete_object(Bucket=self.bucket, Key=k)


def _inside(dest: Path, rel: str) -> Path | None:
    """dest/rel, or None when `rel` is not a plain relative name (an empty, '.' or '..' part,
    a NUL, a backslash): no key ever writes outside `dest`."""
    parts = rel.split("/")
    if not rel or any(p in ("", ".", "..") or "\x00" in p or "\\" in p for p in parts):
        return None
    target = dest.joinpath(*parts)
    if not target.resolve().is_relative_to(dest.resolve()):
        return None
    return target
