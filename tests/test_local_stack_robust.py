"""The local stack loses nothing and stays up (issue 22), each case on real files, a real moto
S3, a real `twolane up` stopped with SIGKILL and started again, and raw sockets.

1. every drop-folder entry is handled on its own (odd names, links, folders, FIFOs);
2. nothing taken is lost across a SIGKILL and a restart; jobs and results persist;
3. slow or idle clients cannot hold the API's POST slots;
4. the local S3 checks credentials, sends no CORS, writes no key outside the drop folder;
5. CSV is read strictly; 6. output is safe to open in a spreadsheet.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from batchlane_helpers import local_s3_client, stop_up, wait_for
from moto import mock_aws

from local_stack.stack import free_port
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


# --- 2. nothing taken is lost: SIGKILL and a restart of `twolane up` -----------------------------

def _start_up(tmp_path: Path, env: dict[str, str], port: int, mport: int, log: Path) -> Any:
    code = f"from local_stack.stack import up; up(port={port}, batch=False, moto_port={mport})"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"up exited: {log.read_text()}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, 180, "the API", every=0.2)
    return proc


def up_env(tmp_path: Path, instant_bundle: Path, bucket: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWOLANE_", "AWS_"))}
    env.update(TWOLANE_INSTANT_BUNDLE=str(instant_bundle), TWOLANE_POLL_SECONDS="0.2",
               TWOLANE_DROP_SETTLE_SECONDS="1", TWOLANE_BUCKET=bucket,
               TWOLANE_STATE_DIR=str(tmp_path / "state"),
               TWOLANE_BUNDLES=str(tmp_path / "bundles"), PYTHONUNBUFFERED="1")
    return env


def big_csv(n: int, tag: str) -> bytes:
    rows = "".join(f"{tag}{i},Comment {i}: the nurses were kind but parking was awful\n"
                   for i in range(n))
    return ("comment_id,comment_text\n" + rows).encode()


def test_sigkill_and_restart_of_up_loses_no_file(instant_bundle: Path, tmp_path: Path) -> None:
    """Four 20,000-row CSVs and a small one dropped locally, one file put straight into the local
    S3's inbox; `twolane up` is killed (SIGKILL) as soon as the first file has been taken, then
    started again: every file ends in outbox/ with all its rows, inbox/ empties. (Before: a file
    was deleted from inbox/ when uploaded to the in-memory S3, and a kill lost it.)"""
    port, mport = free_port(), free_port()
    env = up_env(tmp_path, instant_bundle, "restart-test")
    log = tmp_path / "up.log"
    proc = _start_up(tmp_path, env, port, mport, log)
    inbox, outbox = tmp_path / "dropbox" / "inbox", tmp_path / "dropbox" / "outbox"
    files = {f"big{i}.csv": big_csv(20_000, f"b{i}-") for i in range(4)}
    files["small.csv"] = big_csv(3, "s-")
    try:
        s3 = local_s3_client(tmp_path / "state", mport)
        s3.put_object(Bucket="restart-test", Key="inbox/from-s3.csv", Body=big_csv(5, "x-"))
        for name, data in files.items():  # written under .part, renamed when whole (README)
            (inbox / f"{name}.part").write_bytes(data)
            (inbox / f"{name}.part").rename(inbox / name)

        def taken() -> bool:
            keys = {o["Key"] for o in s3.list_objects_v2(Bucket="restart-test").get("Contents", [])}
            return any(f"inbox/{n}" in keys or f"outbox/{n}" in keys for n in files)

        wait_for(taken, 120, "a file taken", every=0.02)
    finally:
        proc.kill()  # SIGKILL: no clean-up of any kind
        proc.wait(30)
    proc = _start_up(tmp_path, env, port, mport, log)
    try:
        files["from-s3.csv"] = big_csv(5, "x-")
        wait_for(lambda: all((outbox / n).is_file() for n in files), 240, "every result",
                 every=0.2)
        wait_for(lambda: not any(inbox.glob("*.csv")), 60, "inbox/ emptied", every=0.2)
        for name, data in files.items():
            rows = list(csv.DictReader(io.StringIO((outbox / name).read_text())))
            want = [r["comment_id"] for r in csv.DictReader(io.StringIO(data.decode()))]
            assert [r["comment_id"] for r in rows] == want, name
        assert not any((tmp_path / "dropbox" / "failed").iterdir())
    finally:
        rc = stop_up(proc)
    assert rc == 0, log.read_text()


# --- 3. slow or idle clients cannot starve others (raw sockets, a real uvicorn) ----------------

@pytest.fixture()
def served(predictor: Any) -> Iterator[int]:
    """The API on a real uvicorn server (as `twolane up` runs it), 2 POST slots, 2 s to read."""
    import threading

    from local_stack.server import api_server
    from twolane.api.app import create_app

    port = free_port()
    app = create_app(predictor, Settings(max_concurrent_requests=2, request_read_seconds=2.0))
    server = api_server(app, "127.0.0.1", port, 2.0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 60, "uvicorn")
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(30)


def _answer(sock: Any, timeout: float = 30) -> bytes:
    """Everything the server sends until it closes the connection (or `timeout` s pass)."""

    sock.settimeout(timeout)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except TimeoutError:
        pass
    return got


def test_idle_clients_cannot_hold_the_post_slots(served: int) -> None:
    """Two clients send half a POST body and go quiet (as many as there are slots), a third
    sends only half its headers: each gets 408 and a closed connection within the deadline,
    and a normal POST is answered meanwhile. (Before: both slots were held for as long as the
    sockets stayed open, and the normal POST timed out.)"""
    import socket

    body = json.dumps({"items": [{"comment_id": "1", "comment_text": "Kind staff"}]}).encode()
    idle = []
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", served))
        s.sendall(b"POST /v1/predict HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  b"content-length: %d\r\n\r\n" % (len(body) + 1000) + body[:10])
        idle.append(s)
    half = socket.create_connection(("127.0.0.1", served))
    half.sendall(b"POST /v1/predict HTTP/1.1\r\nhost: x\r\n")
    r = httpx.post(f"http://127.0.0.1:{served}/v1/predict", content=body,
                   headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 200 and r.json()["results"][0]["comment_id"] == "1"
    for s in (*idle, half):
        got = _answer(s)
        s.close()
        assert got.startswith(b"HTTP/1.1 408"), got[:80]
        assert b"/work" not in got and b"Traceback" not in got
