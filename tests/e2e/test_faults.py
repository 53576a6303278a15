"""Faults survived (issue 29): each case kills for real (SIGKILL) or breaks for real (a folder
that cannot be written, a stopped local S3, an unsigned request) and asserts the end state;
waits are bounded conditions, never fixed sleeps. Jobs are small (a few hundred comments in
parts of 50) so the suite stays quick; the 15,000-comment figures are measured by hand.

1. every job ends after a crash and a restart: parts done are kept, the rest redone; a lost
   input fails the job in one line; a re-taken drop-folder file's old job is closed;
2. no comment text is left in the local state once jobs are collected, failed or closed;
3. no success is announced before it is true; an unwritable folder stops nothing else;
4. the local S3 answers unsigned requests like S3; /health says when it is down;
5. a container crash shared by two parts is charged to neither.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from batchlane_helpers import (
    bucket_ready,
    lane_settings,
    local_s3_client,
    mocked_s3,
    moto_server,
    start_up,
    stop_up,
    wait_for,
)

from local_stack.recovery import LOST_INPUT, RETAKEN, recover
from local_stack.stack import free_port
from local_stack.watcher import DropFolderWatcher
from twolane.jobs.service import JobService
from twolane.jobs.store import Delivery, JobRecord, S3JobStore, Shard, now_iso
from twolane.layout import shard_inference_id
from twolane.settings import Settings

BUCKET = "twolane-faults"
MARK = "Zyxquorble"  # in every comment's text: must be nowhere in the state once jobs end


def comments_csv(n: int, tag: str) -> bytes:
    rows = "".join(f"{tag}{i},{MARK} {i}: the nurses were kind but parking was awful\n"
                   for i in range(n))
    return ("comment_id,comment_text\n" + rows).encode()


def text_in_state(state: Path) -> list[Path]:
    """Files of the local S3's state that hold comment text."""
    return [p for p in (state / "local-s3").rglob("*")
            if p.is_file() and MARK.encode() in p.read_bytes()]


# --- 1 + 2: a real `twolane up` with the batch lane, SIGKILLed mid-job, started again -------

def _start(tmp_path: Path, env: dict[str, str], port: int, mport: int, log: Path) -> Any:
    """`twolane up` with the batch lane (batchlane_helpers.start_up), healthy within 300 s."""
    return start_up(tmp_path, env, port, mport, log, batch=True, bound_s=300)


def _records(s3: Any, bucket: str) -> list[dict[str, Any]]:
    out = []
    for o in s3.list_objects_v2(Bucket=bucket, Prefix="jobs/").get("Contents", []):
        out.append(json.loads(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()))
    return out


def test_sigkill_mid_job_in_parts_then_restart_ends_every_job_and_keeps_no_text(
        instant_bundle: Path, batch_bundle: Path, tmp_path: Path) -> None:
    """An API job of 300 comments in 6 parts and a 120-row file in inbox/batch/; `twolane up`
    is SIGKILLed once a part of the API job is done, then started again: the API job completes
    (the part done kept) with every result once, in order; the file's old job is closed and
    the file labelled again, every row once; no comment text is left in the local S3's state.
    (Before: the API job answered 202 pending for good, its parts' text stayed on disk, and
    the file's old job stayed "pending 1/3".)"""
    port, mport = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWOLANE_", "AWS_"))}
    env.update(TWOLANE_INSTANT_BUNDLE=str(instant_bundle), TWOLANE_BATCH_BUNDLE=str(batch_bundle),
               TWOLANE_POLL_SECONDS="0.2", TWOLANE_DROP_SETTLE_SECONDS="0.5",
               TWOLANE_BUCKET="faults", TWOLANE_STATE_DIR=str(tmp_path / "state"),
               TWOLANE_BUNDLES=str(tmp_path / "bundles"), TWOLANE_BATCH_SHARD_SIZE="50",
               TWOLANE_SERVE_DELAY_S="1", TWOLANE_BATCH_MAX_CONCURRENCY="1",
               PYTHONUNBUFFERED="1")
    log = tmp_path / "up.log"
    items = [{"comment_id": f"a{i}", "comment_text": f"{MARK} {i}: kind nurses, awful parking"}
             for i in range(300)]
    drop = tmp_path / "dropbox"
    proc = _start(tmp_path, env, port, mport, log)
    try:
        r = httpx.post(f"http://127.0.0.1:{port}/v1/jobs", json={"items": items, "target": "ms"},
                       timeout=60)
        assert r.status_code == 202, r.text
        job_id, url = r.json()["job_id"], f"http://127.0.0.1:{port}{r.json()['results_url']}"
        (drop / "inbox" / "batch" / "file.csv.part").write_bytes(comments_csv(120, "f"))
        (drop / "inbox" / "batch" / "file.csv.part").rename(drop / "inbox" / "batch" / "file.csv")
        s3 = local_s3_client(tmp_path / "state", mport)

        def part_done_and_file_taken() -> str | None:
            """The file's job id, once it exists and a part of the API job is done."""
            recs = {rec["job_id"]: rec for rec in _records(s3, "faults")}
            api = recs.get(job_id)
            file_job = [rec["job_id"] for rec in recs.values() if rec.get("delivery")]
            done = bool(api and api["status"] == "pending"
                        and any(sh["status"] == "succeeded" for sh in api["shards"]))
            return file_job[0] if done and file_job else None

        old_file_job = wait_for(part_done_and_file_taken, 600, "a part done", every=0.05)
    finally:
        proc.kill()  # SIGKILL: no clean-up of any kind
        proc.wait(30)
    assert text_in_state(tmp_path / "state")  # the kill left text behind...
    proc = _start(tmp_path, env, port, mport, log)
    try:
        def finished() -> httpx.Response | None:
            got = httpx.get(url, timeout=30)
            return got if got.status_code != 202 else None

        done = wait_for(finished, 600, "the API job", every=0.2)
        assert done.status_code == 200, done.text
        assert [x["comment_id"] for x in done.json()["results"]] == [i["comment_id"] for i in items]
        assert httpx.get(url, timeout=30).status_code == 410
        out = drop / "outbox" / "batch" / "file.csv"
        wait_for(lambda: out.is_file() and not (drop / "inbox" / "batch" / "file.csv").exists(),
                 600, "the file labelled", every=0.2)
        rows = list(csv.DictReader(io.StringIO(out.read_text())))
        assert [x["comment_id"] for x in rows] == [f"f{i}" for i in range(120)]
        s3 = local_s3_client(tmp_path / "state", mport)
        old = json.loads(s3.get_object(Bucket="faults", Key=f"jobs/{old_file_job}.json")["Body"].read())
        assert old["status"] == "collected" and old["error"] == RETAKEN
        wait_for(lambda: not text_in_state(tmp_path / "state"), 60, "no text left", every=0.2)
    finally:
        rc = stop_up(proc)
    assert rc == 0, log.read_text()
    assert "Traceback" not in log.read_text()


# --- 1 + 2: what `recover` does with each kind of record (a moto S3 in process) -------------

@pytest.fixture()
def s3() -> Iterator[Any]:
    with mocked_s3(BUCKET) as c:
        yield c


class _Invoker:
    """Records which inputs were invoked (the runner's queue is not what is tested here)."""

    def __init__(self) -> None:
        self.invoked: list[str] = []

    def unavailable_reason(self, kind: str) -> str | None:
        return None

    def invoke(self, *, input_location: str, inference_id: str, kind: str) -> Any:
        from twolane.jobs.invoker import Invocation

        self.invoked.append(inference_id)
        return Invocation(inference_id=inference_id, output_location=None, failure_location=None,
                          endpoint="e")


def _service(s3: Any) -> tuple[JobService, _Invoker]:
    inv = _Invoker()
    return JobService(S3JobStore(s3, BUCKET), inv, Settings(bucket=BUCKET).batch), inv


def _in_parts(store: S3JobStore, n: int = 3, *, kind: str = "classify", done: int = 1,
              delivery: Delivery | None = None) -> JobRecord:
    """A job of `n` parts, the first `done` of them with their output (and their input gone)."""
    job_id = uuid.uuid4().hex
    shards = [Shard(index=i, start=i * 10, end=i * 10 + 10, inference_id=shard_inference_id(job_id, i),
                    input_location=store.shard_input_location(job_id, i)) for i in range(n)]
    rec = JobRecord(job_id=job_id, kind=kind, target="ms" if kind == "classify" else "summary",
                    items=n * 10, input_location=store.input_location(job_id), created_at=now_iso(),
                    updated_at=now_iso(), shards=shards, delivery=delivery)
    store.create_sharded(rec, [json.dumps({"items": [{"comment_text": f"{MARK} {i}"}]}).encode()
                               for i in range(n)])
    if kind == "summary":
        store.write(rec.input_location, json.dumps({"plan": MARK}).encode(), "application/json")
    for i in range(done):
        out = f"s3://{BUCKET}/batch/output/{shard_inference_id(job_id, i)}.out"
        store.write(out, json.dumps({"results": [{"comment_id": str(i)}]}).encode(), "application/json")
        store.mark_shard(job_id, i, ok=True, location=out)
    return store.get(job_id) or rec


def _text_objects(s3: Any) -> list[str]:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    return [k for k in keys if MARK.encode() in s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()]


@pytest.mark.parametrize("kind", ["classify", "summary"])
def test_a_job_in_parts_resumes_with_its_parts_done_kept(s3: Any, kind: str) -> None:
    service, inv = _service(s3)
    rec = _in_parts(service.store, kind=kind)
    got = recover(s3, BUCKET, service, dropbox=None, record_days=7)
    assert got.resumed == [rec.job_id]
    service.start_deferred(rec.job_id)
    assert inv.invoked == [shard_inference_id(rec.job_id, 1), shard_inference_id(rec.job_id, 2)]


@pytest.mark.parametrize("kind", ["classify", "summary"])
def test_a_job_whose_input_is_gone_fails_in_one_line_and_keeps_no_text(s3: Any, kind: str) -> None:
    service, _ = _service(s3)
    rec = _in_parts(service.store, kind=kind)
    service.store.delete(rec.shards[2].input_location)  # lost (a stop between two writes)
    got = recover(s3, BUCKET, service, dropbox=None, record_days=7)
    after = service.store.get(rec.job_id)
    assert got.failed == 1 and after is not None and after.status == "failed"
    assert after.error == LOST_INPUT and "\n" not in LOST_INPUT
    assert _text_objects(s3) == []


def test_a_retaken_files_old_job_is_closed_and_its_objects_deleted(s3: Any, tmp_path: Path) -> None:
    service, inv = _service(s3)
    d = Delivery(bucket=BUCKET, source_key="inbox/batch/f.csv", result_key="outbox/batch/f.csv",
                 report_key="failed/batch/f.csv.error.json", family="csv")
    rec = _in_parts(service.store, delivery=d)
    (tmp_path / "inbox" / "batch").mkdir(parents=True)
    (tmp_path / "inbox" / "batch" / "f.csv").write_bytes(b"comment_id,comment_text\n")
    got = recover(s3, BUCKET, service, dropbox=tmp_path, record_days=7)
    after = service.store.get(rec.job_id)
    assert got.closed == 1 and got.resumed == [] and inv.invoked == []
    assert after is not None and after.status == "collected" and after.error == RETAKEN
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert left == [f"jobs/{rec.job_id}.json"]


def test_the_sweep_deletes_leftover_text_orphans_and_expired_records(s3: Any) -> None:
    """A collected job's leftovers, an input of no job (a stop between input and record) and a
    failed job's input are deleted; a collected record older than `record_days` goes, a newer
    one stays."""
    service, _ = _service(s3)
    store = service.store
    old, new = _in_parts(store), _in_parts(store)
    for rec, age in ((old, 8), (new, 1)):
        at = (datetime.now(UTC) - timedelta(days=age)).isoformat()
        store.update(rec.job_id, lambda r, at=at: r.model_copy(update={"status": "collected", "updated_at": at}))
    failed = _in_parts(store, done=0)
    store.update(failed.job_id, lambda r: r.model_copy(update={"status": "failed", "error": "x"}))
    store.write(store.input_location(uuid.uuid4().hex), MARK.encode(), "application/json")
    got = recover(s3, BUCKET, service, dropbox=None, record_days=7)
    assert got.expired == 1 and store.get(old.job_id) is None and store.get(new.job_id) is not None
    assert _text_objects(s3) == []


def test_a_summary_jobs_failed_parts_are_withheld_named_by_theme_and_keep_no_text(s3: Any) -> None:
    """A summary job's failed LLM call is that theme's summary withheld, not a failed job: the
    part is named by its theme, its text goes at once, the plan stays for the report until the
    job (every part failed here: the LLM down) is collected, and then no text is left."""
    service, _ = _service(s3)
    rec = _in_parts(service.store, kind="summary", done=0)
    service.store.update(rec.job_id, lambda r: r.model_copy(update={"shards": [
        sh.model_copy(update={"unit": f"theme {t!r} (summary)"})
        for sh, t in zip(r.shards, ("Staff", "Food", "Parking"), strict=True)]}))
    after = service.store.mark_shard(rec.job_id, 1, ok=False, reason="the LLM failed")
    assert after.status == "pending" and after.error is None
    assert after.shards[1].status == "failed" and after.shards[1].describe() == "theme 'Food' (summary)"
    assert service.store.read(after.shards[1].input_location) is None  # its text: gone at once
    assert service.store.read(after.input_location) is not None  # the plan: kept for the report
    for i in (0, 2):
        after = service.store.mark_shard(rec.job_id, i, ok=False, reason="the LLM failed")
    assert after.status == "succeeded"  # the report still comes: every theme withheld
    got = service.store.collect(rec.job_id)
    assert got.payload is not None and got.payload["errors"] == ["the LLM failed"] * 3
    assert _text_objects(s3) == []


# --- 3: a local folder that cannot be written ---------------------------------------------------

@pytest.fixture(scope="module")
def predictor(instant_bundle: Path) -> Any:
    from twolane.predictors.instant import InstantPredictor

    return InstantPredictor.from_bundle(instant_bundle)


def _block(folder: Path) -> None:
    """Make `folder` unwritable, even for root (tests may run as root): a file in its place."""
    shutil.rmtree(folder)
    folder.write_bytes(b"")


def _unblock(folder: Path) -> None:
    folder.unlink()
    folder.mkdir()


def test_an_unwritable_outbox_announces_nothing_false_and_stops_no_other_file(
        s3: Any, predictor: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """outbox/ cannot be written: the good file is not announced and stays in inbox/, the
    folder is named once with the reason, a malformed file still reaches failed/; once outbox/
    can be written the good file arrives and only then is announced. With failed/ blocked too,
    a malformed file stays in inbox/ and is named. (Before: "-> outbox/ (20 comments
    labelled)" was printed, an error repeated every second naming nothing, and the malformed
    file never reached failed/.)"""
    drop = tmp_path / "dropbox"
    told: list[dict[str, Any]] = []
    w = DropFolderWatcher(s3, BUCKET, predictor,
                          Settings(bucket=BUCKET, poll_seconds=0.05, drop_settle_seconds=0), drop,
                          told.append)
    for sub in ("inbox", "inbox/batch", "outbox", "failed"):
        (drop / sub).mkdir(parents=True, exist_ok=True)
    _block(drop / "outbox")
    (drop / "inbox" / "good.csv").write_bytes(comments_csv(20, "g"))
    (drop / "inbox" / "bad.csv").write_bytes(b"no,header\n1,x\n")
    caplog.set_level(logging.INFO, logger="twolane.local")

    def tick_until(done: Any, what: str) -> None:
        def step() -> bool:
            w.tick()
            return bool(done())
        wait_for(step, 60, what)

    tick_until(lambda: (drop / "failed" / "bad.csv").is_file(), "bad.csv in failed/")
    for _ in range(5):
        w.tick()
    assert (drop / "inbox" / "good.csv").is_file()
    assert [o["key"] for o in told] == ["inbox/bad.csv"]  # the good one not announced
    lines = [r.getMessage() for r in caplog.records if "outbox/" in r.getMessage()]
    assert sum("cannot write to the local outbox/" in x for x in lines) == 1, lines
    assert any("NotADirectoryError" in x or "FileExistsError" in x for x in lines), lines
    assert any("'good.csv' stays in inbox/" in x for x in lines), lines
    assert not any(str(tmp_path) in r.getMessage() for r in caplog.records)
    _unblock(drop / "outbox")
    w._blocked["outbox"].next_try = 0.0  # no wait for the back-off in a test
    tick_until(lambda: not (drop / "inbox" / "good.csv").exists(), "good.csv delivered")
    assert (drop / "outbox" / "good.csv").is_file()
    assert [o["key"] for o in told] == ["inbox/bad.csv", "inbox/good.csv"]

    _block(drop / "failed")
    (drop / "inbox" / "bad2.csv").write_bytes(b"no,header\n1,x\n")
    tick_until(lambda: any("'bad2.csv' stays in inbox/" in r.getMessage() for r in caplog.records),
               "bad2.csv named")
    assert (drop / "inbox" / "bad2.csv").is_file() and len(told) == 2


# --- 4: the local S3 answers like S3; /health says when it is down -----------------------------

def test_an_unsigned_request_gets_403_and_s3s_xml_error_no_traceback(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "s3.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "local_stack.s3local", str(tmp_path / "state"),
                                 str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                httpx.get(url, timeout=1)
                return True
            except httpx.HTTPError:
                return False

        wait_for(up, 60, "the local S3", every=0.1)
        good = local_s3_client(tmp_path / "state", port)
        good.create_bucket(Bucket="faults-b", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        b = url + "/faults-b"
        wrong = ("AWS4-HMAC-SHA256 Credential=LKIA0000/20260101/eu-west-2/s3/aws4_request, "
                 "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64)
        for r in (httpx.get(url + "/"), httpx.get(b), httpx.put(b + "/inbox/x.csv", content=b"x"),
                  httpx.delete(b + "/inbox/x.csv"), httpx.post(b + "?delete", content=b"<Delete/>"),
                  httpx.get(b + "/k", headers={"authorization": "AWS4-HMAC-SHA256 Signature=00"}),
                  httpx.get(b + "/k", headers={"authorization": wrong, "x-amz-date": "20260101T000000Z"})):
            assert r.status_code == 403, (r.request.method, r.request.url, r.status_code, r.text)
            assert r.headers["content-type"] == "application/xml" and "<Error><Code>" in r.text
    finally:
        proc.kill()
        proc.wait(30)
    assert "Traceback" not in log.read_text()


def test_health_says_when_the_local_s3_is_down_and_up_stops_loudly(predictor: Any, tmp_path: Path) -> None:
    """/health answers 503 "degraded" naming the local S3 once it is stopped, and the stack's
    main loop stops (LocalS3Died, exit code 1) instead of running on without it."""
    import threading

    from fastapi.testclient import TestClient
    from moto import settings as moto_settings

    from local_stack.s3local import LocalS3
    from local_stack.supervise import LocalS3Died, health_checks, keep_running
    from twolane.api.app import create_app

    saved = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT  # LocalS3 turns moto's auth on: put back
    try:
        local = LocalS3(tmp_path / "state", 0).start()
        app = create_app(predictor, Settings(bucket=BUCKET))
        app.state.health_checks = health_checks(local, None)
        with TestClient(app) as client:
            assert client.get("/health").json()["status"] == "ok"
            local.stop()
            r = client.get("/health")
        with pytest.raises(LocalS3Died):
            keep_running(threading.Event(), threading.current_thread(), local, lambda: None, every_s=0.01)
    finally:
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = saved
    assert r.status_code == 503 and r.json()["status"] == "degraded" and r.json()["down"] == ["local_s3"]


# --- 5: a crash shared by two parts is charged to neither -----------------------------------------

@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


def test_a_container_crash_shared_by_two_parts_costs_neither_an_attempt(
        moto: str, tmp_path: Path, batch_bundle: Path) -> None:
    """One attempt per part allowed, two parts on one container, the container SIGKILLed while
    it serves both: both are retried (alone, on a fresh container) and succeed. (Before: each
    spent one of its attempts on the one crash, so both failed.)"""
    from local_stack.batch_lane import notifications_lambda
    from local_stack.invoker import LocalInvoker
    from local_stack.runner import AsyncRunner
    from twolane.aws import client

    settings = lane_settings(tmp_path, batch_bundle, batch_max_attempts=1, batch_max_concurrency=2)
    bucket_ready(settings)
    store, invoker = S3JobStore(client("s3"), settings.bucket), LocalInvoker(settings)
    runner = AsyncRunner(settings, lambda: batch_bundle, notify=notifications_lambda,
                         container_env={"TWOLANE_SERVE_DELAY_S": "3"}).start()
    try:
        jobs = []
        for n in range(2):
            jid = uuid.uuid4().hex
            rec = JobRecord(job_id=jid, target="ms", items=1, input_location=store.input_location(jid),
                            created_at=now_iso(), updated_at=now_iso())
            store.create(rec, json.dumps({"items": [{"comment_id": f"p{n}", "comment_text": "Kind staff"}],
                                          "target": "ms"}).encode())
            inv = invoker.invoke(input_location=rec.input_location, inference_id=jid, kind="classify")
            store.update(jid, lambda r, inv=inv: r.model_copy(update={
                "output_location": inv.output_location, "failure_location": inv.failure_location}))
            jobs.append(jid)

        def both_on_one() -> int | None:
            pid = runner.container_pid()
            return pid if pid is not None and len(runner._serving.get(pid, ())) == 2 else None

        pid = wait_for(both_on_one, 120, "both parts on one container")
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: all(store.get(j).status != "pending" for j in jobs), 120, "both ended")
        assert [store.get(j).status for j in jobs] == ["succeeded", "succeeded"]
        assert runner.stats.starts >= 2 and pid not in runner.container_pids()
    finally:
        runner.stop()
