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
from batchlane_helpers import local_s3_client, mocked_s3, start_up, stop_up, wait_for

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
    with mocked_s3(BUCKET) as c:
        yield c


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
    proc = start_up(tmp_path, env, port, mport, log)
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
    proc = start_up(tmp_path, env, port, mport, log)
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


# --- 4. the local S3 is not a door; 2. jobs and results survive its restart ---------------------

def _s3_server(state: Path, port: int) -> Any:
    proc = subprocess.Popen([sys.executable, "-m", "local_stack.s3local", str(state), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up() -> bool:
        assert proc.poll() is None, "the local S3 exited"
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return True
        except httpx.HTTPError:
            return False

    wait_for(up, 60, "the local S3", every=0.1)
    return proc


def test_local_s3_checks_credentials_and_is_no_door(tmp_path: Path) -> None:
    """Without the stack's keys (moto's usual 'testing', a wrong secret, none at all) nothing is
    read or written; no browser origin is answered, no CORS header sent; /moto-api is closed; a
    key with '..' is refused. (Before: moto took any credentials, answered any origin with
    permissive CORS, and job inputs were readable by anyone on the machine.)"""
    from botocore.exceptions import ClientError

    port = free_port()
    proc = _s3_server(tmp_path / "state", port)
    try:
        good = local_s3_client(tmp_path / "state", port)
        good.create_bucket(Bucket="door", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        good.put_object(Bucket="door", Key="batch/input/j.json", Body=SECRET.encode())
        url = f"http://127.0.0.1:{port}"
        creds = good._request_signer._credentials
        for key_id, secret in (("testing", "testing"), (creds.access_key, "wrong-secret")):
            other = boto3.client("s3", endpoint_url=url, region_name="eu-west-2",
                                 aws_access_key_id=key_id, aws_secret_access_key=secret)
            for call in (lambda c=other: c.get_object(Bucket="door", Key="batch/input/j.json"),
                         lambda c=other: c.list_objects_v2(Bucket="door"),
                         lambda c=other: c.put_object(Bucket="door", Key="inbox/x.csv", Body=b"x")):
                with pytest.raises(ClientError) as err:
                    call()
                assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        for r in (httpx.get(f"{url}/door/batch/input/j.json"),
                  httpx.get(f"{url}/door/batch/input/j.json", headers={"origin": "http://evil"}),
                  httpx.options(f"{url}/door/batch/input/j.json",
                                headers={"origin": "http://evil",
                                         "access-control-request-method": "GET"}),
                  httpx.get(f"{url}/moto-api/data.json"), httpx.post(f"{url}/moto-api/reset")):
            assert r.status_code == 403 and SECRET not in r.text
            assert not any(h.lower().startswith("access-control-") for h in r.headers)
        assert httpx.put(f"{url}/door/inbox/..%2F..%2Fx", content=b"x").status_code == 400
        with pytest.raises(ClientError) as err:
            good.put_object(Bucket="door", Key="inbox/../../x", Body=b"x")
        assert err.value.response["Error"]["Code"] == "InvalidKey"
        assert good.get_object(Bucket="door", Key="batch/input/j.json")["Body"].read() == SECRET.encode()
    finally:
        proc.kill()
        proc.wait(30)


def test_jobs_and_results_survive_a_kill_of_the_local_s3(tmp_path: Path) -> None:
    """A finished job and a pending one are written through the local S3, which is killed
    (SIGKILL) and started again on the same state folder: both records are there, and the
    finished job's results are handed out once. (Before: moto kept them in memory only, and a
    restart answered 404.)"""
    from twolane.jobs.store import JobRecord, S3JobStore, now_iso

    port = free_port()
    proc = _s3_server(tmp_path / "state", port)
    try:
        s3 = local_s3_client(tmp_path / "state", port)
        s3.create_bucket(Bucket="jobs-kept", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        store = S3JobStore(s3, "jobs-kept")
        rec = JobRecord(job_id="a" * 32, kind="classify", target="ms", items=1, status="succeeded",
                        input_location=store.input_location("a" * 32),
                        output_location=store.output_location("a" * 32), endpoint="instant",
                        created_at=now_iso(), updated_at=now_iso())
        store.create_done(rec, json.dumps({"results": [{"comment_id": "1"}]}).encode())
        pending = rec.model_copy(update={"job_id": "b" * 32, "status": "pending",
                                         "input_location": store.input_location("b" * 32),
                                         "output_location": None})
        store.create(pending, SECRET.encode())
    finally:
        proc.kill()
        proc.wait(30)
    proc = _s3_server(tmp_path / "state", port)
    try:
        store = S3JobStore(local_s3_client(tmp_path / "state", port), "jobs-kept")
        pending_after = store.get("b" * 32)
        assert pending_after is not None and pending_after.status == "pending"
        assert store.read(pending_after.input_location) == SECRET.encode()
        got = store.collect("a" * 32)
        assert got.payload == {"results": [{"comment_id": "1"}]}
    finally:
        proc.kill()
        proc.wait(30)


def test_no_key_is_written_outside_the_local_folder(s3: Any, predictor: Any, tmp_path: Path) -> None:
    """Objects whose keys climb out of outbox/ or failed/ ('..' segments, as moto itself takes
    them) are never written to disk. (Before: outbox/../../x was written to a path outside
    dropbox/.)"""
    drop = tmp_path / "deep" / "dropbox"
    w = watcher_on(s3, predictor, drop)
    for key in ("outbox/../../escaped.csv", "failed/../../../escaped2.csv", "outbox/a/../../b.csv"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    s3.put_object(Bucket=BUCKET, Key="outbox/fine.csv", Body=b"ok")
    ticks_until(w, lambda: (drop / "outbox" / "fine.csv").is_file(), "the plain key")
    assert names(tmp_path) == {"deep/dropbox/outbox/fine.csv"}


# --- 5. CSV read strictly ------------------------------------------------------------------------

STRICT_CSV = {  # name: (file, the line the report names)
    "folded.csv": (b'comment_id,comment_text\n1,"Nurse kind\n2,ok\n3,"\n4,good\n', "line 2"),
    "stray.csv": (b'comment_id,comment_text\n1,"Nurse said ""hi"" \n2,ok\n3,"fine" x\n4,good\n',
                  "line 2"),
    "unclosed.csv": (b'comment_id,comment_text\n1,ok\n2,"never closed\n3,x\n', "line 3"),
    "twice.csv": (b"comment_id,comment_text,Comment Text\n1,a,b\n", "line 1"),
    "wide.csv": (b"comment_id,comment_text\n1,ok\n2,a,b\n", "line 3"),
}


@pytest.mark.parametrize("name", sorted(STRICT_CSV))
def test_a_csv_that_would_lose_rows_goes_to_failed_naming_the_line(s3: Any, predictor: Any,
                                                                   name: str) -> None:
    """(Before: an unbalanced quote folded the following rows into one comment's text, 4 rows in
    and 2 labelled with no report; a column named twice used the last silently.)"""
    from twolane.dropfolder.process import process_object

    data, line = STRICT_CSV[name]
    s3.put_object(Bucket=BUCKET, Key=f"inbox/{name}", Body=data)
    o = process_object(s3, BUCKET, f"inbox/{name}", predictor, Settings(bucket=BUCKET))
    assert o.status == "failed" and o.detail.startswith(line + ":"), o
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=f"failed/{name}.error.json")["Body"].read())
    assert report["error"] == o.detail


def test_a_comment_over_several_lines_is_one_row(s3: Any, predictor: Any) -> None:
    """The strict reader still takes a quoted comment that spans lines (Excel writes them)."""
    from twolane.dropfolder.process import process_object

    data = b'comment_id,comment_text\n1,"Good care,\nbut parking, awful"\n2,"Line one\nline two"\n3,ok\n'
    s3.put_object(Bucket=BUCKET, Key="inbox/multi.csv", Body=data)
    o = process_object(s3, BUCKET, "inbox/multi.csv", predictor, Settings(bucket=BUCKET))
    assert o.status == "done" and o.comments == 3, o


# --- 6. safe output --------------------------------------------------------------------------

FORMULAS = ["=HYPERLINK(\"http://x\",\"y\")", "+1", "-2", "@SUM(A1)", "\tx", "\rx"]


def test_no_id_is_written_as_a_live_formula(s3: Any, predictor: Any) -> None:
    """(Before: an id such as =HYPERLINK(...) or +1 was written as is into outbox/*.csv.)"""
    from twolane.dropfolder.process import process_object

    buf = io.StringIO(newline="")
    csv.writer(buf).writerows([["comment_id", "comment_text"],
                               *[[i, f"Comment {n}"] for n, i in enumerate(FORMULAS[:4])]])
    s3.put_object(Bucket=BUCKET, Key="inbox/f.csv", Body=buf.getvalue().encode())
    o = process_object(s3, BUCKET, "inbox/f.csv", predictor, Settings(bucket=BUCKET))
    assert o.status == "done", o
    out = s3.get_object(Bucket=BUCKET, Key="outbox/f.csv")["Body"].read().decode()
    ids = [r["comment_id"] for r in csv.DictReader(io.StringIO(out, newline=""))]
    assert ids[:4] == ["'" + i for i in FORMULAS[:4]], ids  # (ids are trimmed: "\tx" is "x")
    from twolane.dropfolder.formats import spreadsheet_safe

    assert [spreadsheet_safe(i) for i in FORMULAS] == ["'" + i for i in FORMULAS]
    assert spreadsheet_safe("ward 7") == "ward 7"


def test_the_pages_downloads_escape_formulas_too(tmp_path: Path) -> None:
    """The page's CSV and .xlsx rows pass through `safeCell` (run here in Node, as the browser
    runs it). (Before: the downloads held the ids as given.)"""
    import re
    import shutil

    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    js = (Path(__file__).resolve().parents[2] / "twolane" / "api" / "page" / "app.js").read_text()
    rule = re.search(r"const FORMULA_START = .*?\n  function safeCell\(v\) \{.*?\n  \}", js, re.S)
    assert rule is not None, "safeCell is gone"
    rows = re.search(r"function resultRows\(\) \{.*?\n  \}", js, re.S)
    assert rows is not None and "safeCell(r.comment_id)" in rows.group(0)
    assert "resultRows()" in js.split("function downloadCsv()")[1].split("function")[0]
    assert "resultRows()" in js.split("async function downloadXlsx()")[1].split("function")[0]
    script = tmp_path / "t.js"
    script.write_text(rule.group(0) + f"\nconsole.log(JSON.stringify({json.dumps(FORMULAS + ['ok', 7])}"
                      ".map(safeCell)));\n")
    got = json.loads(subprocess.run([node, str(script)], capture_output=True, text=True,
                                    check=True).stdout)
    assert got == ["'" + f for f in FORMULAS] + ["ok", 7]


def test_results_url_never_comes_from_the_host_header(predictor: Any, s3: Any) -> None:
    """(Before: a forged Host header was reflected in the slow API's results URL.)"""
    from fastapi.testclient import TestClient

    from twolane.api.app import create_app
    from twolane.jobs.invoker import Invocation
    from twolane.jobs.service import JobService
    from twolane.jobs.store import S3JobStore

    class Pending:
        def unavailable_reason(self, kind: str) -> str | None:
            return None

        def invoke(self, *, input_location: str, inference_id: str, kind: str) -> Invocation:
            return Invocation(inference_id=inference_id, output_location=None,
                              failure_location=None, endpoint="t")

    body = [{"comment_id": "1", "comment_text": "Kind staff"}]
    for public, want in ((None, "http://testserver/api/GetResults/"),
                         ("https://api.example.nhs.uk", "https://api.example.nhs.uk/api/GetResults/")):
        st = Settings(bucket=BUCKET, public_url=public)
        jobs = JobService(S3JobStore(s3, BUCKET), Pending(), st.batch)  # type: ignore[arg-type]
        c = TestClient(create_app(predictor, st, jobs=jobs))
        r = c.post("/api/StartContainerInstance?target=ms", json=body,
                   headers={"host": "evil.example:666"})
        assert r.status_code == 202 and r.text.startswith(want) and "evil" not in r.text, r.text
        pending = c.get(r.text.removeprefix(want[: want.index("/api/")]),
                        headers={"host": "evil.example:666"})
        assert pending.status_code == 202 and "evil" not in pending.text


def test_a_503_names_no_local_path(tmp_path: Path) -> None:
    """(Before: the jobs 503 while the batch model builds named the build log's full path.)"""
    from local_stack.batch_lane import build_log, unavailable_reason

    st = Settings(state_dir=tmp_path / "state", bundles=tmp_path / "bundles")
    build_log(st).parent.mkdir(parents=True, exist_ok=True)
    build_log(st).write_text("stopped")
    reason = unavailable_reason(st, "classify")
    assert reason and str(tmp_path) not in reason and "/" not in reason


def test_results_of_local_files_leave_the_local_s3(s3: Any, predictor: Any, tmp_path: Path) -> None:
    """Memory bounded however many files pass: once a local file's result (or failed copy and
    report) is in the local folder, its objects are deleted from the S3 stand-in. (Before: every
    failed input stayed in moto's memory for good.)"""
    drop = tmp_path / "dropbox"
    w = watcher_on(s3, predictor, drop)
    (drop / "inbox" / "good.csv").write_bytes(CSV)
    (drop / "inbox" / "bad.csv").write_bytes(b"no,header\n1,x\n" * 1000)
    ticks_until(w, lambda: not any((drop / "inbox").glob("*.csv")), "inbox emptied")
    assert (drop / "outbox" / "good.csv").is_file() and (drop / "failed" / "bad.csv").is_file()
    assert (drop / "failed" / "bad.csv.error.json").is_file()
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert left == [], left


def test_jobs_left_pending_by_a_stop_start_again(s3: Any) -> None:
    """The invocation queue is not kept across a restart: `up` finds the jobs a previous run
    left pending and starts them again (deferred, then started by the watcher); one whose
    output is there already is marked done instead. (Before: they stayed pending for good.)"""
    from local_stack.recovery import recover
    from twolane.jobs.service import JobService
    from twolane.jobs.store import JobRecord, S3JobStore, now_iso

    store = S3JobStore(s3, BUCKET)
    service = JobService(store, None, Settings(bucket=BUCKET).batch)  # type: ignore[arg-type]

    def record(job_id: str, **kw: Any) -> JobRecord:
        return JobRecord(job_id=job_id, target="ms", items=1, input_location=store.input_location(job_id),
                         created_at=now_iso(), updated_at=now_iso(), **kw)

    waiting, finished = "c" * 32, "d" * 32
    store.create(record(waiting), b"{}")
    out = f"s3://{BUCKET}/batch/output/{finished}.out"
    store.create(record(finished, output_location=out), b"{}")
    store.write(out, json.dumps({"results": []}).encode(), "application/json")
    assert recover(s3, BUCKET, service, dropbox=None, record_days=7).resumed == [waiting]
    again = store.get(waiting)
    assert again is not None and again.deferred and again.status == "pending"
    done = store.get(finished)
    assert done is not None and done.status == "succeeded"
