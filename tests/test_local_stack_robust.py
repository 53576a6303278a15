"""The local stack loses nothing and stays up (issue 22), each case on real files, a real moto
S3, a real `twolane up` stopped with SIGKILL and started again, and raw sockets.

1. every drop-folder entry is handled on its own (odd names, links, folders, FIFOs);
2. nothing taken is lost across a SIGKILL and a restart; jobs and results persist;
3. slow or idle clients cannot hold the API's POST slots;
4. the local S3 checks credentials, sends no CORS, writes no key outside the drop folder;
5. CSV is read strictly; 6. output is safe to open in a spreadsheet.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from batchlane_helpers import wait_for
from moto import mock_aws

from local_stack.watcher import DropFolderWatcher
from twolane.settings import Settings

BUCKET = "twolane-robust"
SECRET = "Mrs Quigley-Xanthe ward 7 secret"  # stands for patient text: must never come back
CSV = b"comment_id,comment_text\n1,The nurses were kind\n2,Parking was awful\n"


@pytest.fixture(scope="module")
def predictor(instant_bundle: Path) -> Any:
    from twolane.predictors.instant import InstantPredictor

    return InstantPredictor.from_bundle(instant_bundle)


@pytest.fixture()
def s3() -> Iterator[Any]:
    mp = pytest.MonkeyPatch()
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        mp.setenv(k, "testing")
    mp.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    mp.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        c = boto3.client("s3", region_name="eu-west-2")
        c.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        yield c
    mp.undo()


def watcher_on(s3: Any, predictor: Any, folder: Path) -> DropFolderWatcher:
    w = DropFolderWatcher(s3, BUCKET, predictor,
                          Settings(bucket=BUCKET, poll_seconds=0.05, drop_settle_seconds=0), folder)
    for sub in ("inbox", "inbox/batch", "outbox", "failed"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return w


def ticks_until(w: DropFolderWatcher, done: Any, what: str, timeout: float = 60) -> None:
    """Run the watcher's loop body (errors raise here, none is swallowed) until `done()`."""
    def step() -> bool:
        w.tick()
        return bool(done())
    wait_for(step, timeout, what)


def names(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir()}


# --- 1. every entry on its own -------------------------------------------------------------------

def test_every_inbox_entry_is_handled_on_its_own(s3: Any, predictor: Any, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A newline in a name, a byte that is not UTF-8, a symlink, a FIFO, a folder, a dot-file and
    a .part file, with good files sorted after them: the good files are labelled, the bad ones
    end in failed/ with a report under a safe name, the ignored ones stay, nothing is followed.
    (Before: the first unfit name made every tick raise, and nothing after it was labelled; the
    link's target was copied into failed/.)"""
    drop = tmp_path / "dropbox"
    w = watcher_on(s3, predictor, drop)
    inbox = drop / "inbox"
    outside = tmp_path / "private.csv"
    outside.write_text(f"comment_id,comment_text\n1,{SECRET}\n")
    (inbox / "a\nnewline.csv").write_bytes(CSV)
    os.makedirs(os.fsencode(inbox / "sub"))
    (Path(os.fsdecode(os.fsencode(inbox) + b"/b\xff-latin.csv"))).write_bytes(CSV)
    (inbox / "c-link.csv").symlink_to(outside)
    os.mkfifo(inbox / "d-pipe.csv")
    (inbox / ".hidden.csv").write_bytes(CSV)
    (inbox / "e.csv.part").write_bytes(CSV)
    (inbox / "sub" / "inner.csv").write_bytes(CSV)
    (inbox / "z-good.csv").write_bytes(CSV)

    ticks_until(w, lambda: {"z-good.csv", "sub/inner.csv"} <= names(drop / "outbox"), "results")
    ticks_until(w, lambda: names(inbox) == {".hidden.csv", "e.csv.part"}, "inbox emptied")
    failed = names(drop / "failed")
    reports = sorted(n for n in failed if n.endswith(".error.json"))
    assert len(reports) == 4, failed
    for r in reports:
        assert r.isascii() and r.isprintable()
        body = json.loads((drop / "failed" / r).read_text())
        assert body["error"] and SECRET not in json.dumps(body)
    moved = sorted(n for n in failed if not n.endswith(".error.json"))
    assert len(moved) == 2 and all(n.isascii() and n.isprintable() for n in moved)  # the two names
    assert all((drop / "failed" / n).read_bytes() == CSV for n in moved)
    assert outside.read_text().count(SECRET) == 1  # the link's target: untouched, never copied
    for f in (drop / "failed").rglob("*"):
        assert not f.is_symlink() and SECRET not in f.read_bytes().decode("utf-8", "replace")
    assert "\n" not in "".join(r.getMessage() for r in caplog.records)
    assert str(tmp_path) not in caplog.text


def test_a_file_that_vanishes_or_cannot_be_read_stops_nothing(s3: Any, predictor: Any,
                                                               tmp_path: Path) -> None:
    """One entry that fails for any reason (here: it vanishes between the listing and the read,
    and another whose read raises) is left for the next look; the others are labelled."""
    drop = tmp_path / "dropbox"
    w = watcher_on(s3, predictor, drop)
    (drop / "inbox" / "a-vanishes.csv").write_bytes(CSV)
    (drop / "inbox" / "b-raises.csv").write_bytes(CSV)
    (drop / "inbox" / "c-good.csv").write_bytes(CSV)
    real_take = w._take

    def flaky(entry: os.DirEntry[str], rel: str) -> None:
        if rel == "a-vanishes.csv" and Path(entry.path).exists():
            Path(entry.path).unlink()
        if rel == "b-raises.csv":
            raise PermissionError("stands for any fault of one file")
        real_take(entry, rel)

    w._take = flaky  # type: ignore[method-assign]
    ticks_until(w, lambda: (drop / "outbox" / "c-good.csv").is_file(), "the good file")
    assert names(drop / "inbox") == {"b-raises.csv"}  # left in place, tried again next time
