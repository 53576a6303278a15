"""Big jobs split into shards (TWOLANE_BATCH_SHARD_SIZE): one input object and one async
invocation per shard, the job done when every shard is, results once and in input order, a
failed shard named by its item range; the local runner scaling out over several containers.

The store tests move shards forward with SageMaker-shaped notifications through the real
notifications handler (moto S3); the lifecycle test runs the real container processes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from batchlane_helpers import ITEMS, bucket_ready, lane_settings, moto_server, run_sharded_job
from fastapi.testclient import TestClient

from local_stack.invoker import LocalInvoker
from twolane.api.app import create_app
from twolane.jobs.invoker import Invocation
from twolane.jobs.service import JobRejected, JobService
from twolane.jobs.store import JobGone, JobRecord, S3JobStore
from twolane.layout import BATCH_INPUT, batch_input_key


@pytest.fixture(scope="module")
def moto() -> Any:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture()
def store(moto: str, tmp_path: Path) -> S3JobStore:
    from twolane.aws import client

    settings = lane_settings(tmp_path, tmp_path / "bundles")
    bucket_ready(settings)
    return S3JobStore(client("s3"), settings.bucket)


class RecordingInvoker:
    """Accepts invocations (SageMaker's answer: where output and failure will appear) and
    records them; refuses the `refuse_at`-th call, as an endpoint that throttles would."""

    def __init__(self, bucket: str, refuse_at: int | None = None):
        self.bucket = bucket
        self.calls: list[dict[str, str]] = []
        self.refuse_at = refuse_at

    def unavailable_reason(self, kind: str) -> str | None:
        return None

    def invoke(self, *, input_location: str, inference_id: str, kind: str) -> Invocation:
        if self.refuse_at is not None and len(self.calls) == self.refuse_at:
            raise RuntimeError("ThrottlingException")
        self.calls.append({"input": input_location, "id": inference_id})
        return Invocation(inference_id=inference_id,
                          output_location=f"s3://{self.bucket}/batch/output/{inference_id}.out",
                          failure_location=f"s3://{self.bucket}/batch/failures/{inference_id}-error.out",
                          endpoint="twolane-batch")


def service(store: S3JobStore, invoker: Any, shard_size: int, tmp_path: Path) -> JobService:
    settings = lane_settings(tmp_path, tmp_path / "bundles", batch_shard_size=shard_size)
    return JobService(store, invoker, settings.batch)


def notify(store: S3JobStore, rec: JobRecord, n: int, ok: bool, by_input: bool = False) -> None:
    """The real notifications handler, with SageMaker's message for shard n."""
    from functions.notifications.handler import handler

    sh = rec.shards[n]
    msg: dict[str, Any] = {
        "awsRegion": "eu-west-2", "eventTime": "2026-01-25T22:46:00.608Z",
        "receivedTime": "2026-01-25T22:45:58.455Z",
        "invocationStatus": "Completed" if ok else "Failed",
        "requestParameters": {"contentType": "application/json", "endpointName": "twolane-batch",
                              "inputLocation": sh.input_location},
        "responseParameters": ({"contentType": "application/json",
                                "outputLocation": sh.output_location} if ok else
                               {"contentType": "application/json",
                                "failureLocation": sh.failure_location}),
        "eventVersion": "1.0", "eventSource": "aws:sagemaker", "eventName": "InferenceResult",
    }
    if not by_input:
        msg["inferenceId"] = sh.inference_id
    if not ok:
        msg["failureReason"] = "ClientError: Received server error (500) from model"
    event = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(msg)}}]}
    ctx = SimpleNamespace(function_name="n", memory_limit_in_mb=256, aws_request_id="r",
                          invoked_function_arn="arn:aws:lambda:eu-west-2:123456789012:function:n")
    assert handler(event, ctx) == {"processed": 1, "skipped": 0}


def container_answer(store: S3JobStore, rec: JobRecord, n: int) -> None:
    """What the container writes for shard n: one result per item of that shard."""
    sh = rec.shards[n]
    body = {"model_version": "v1", "target": "ms",
            "results": [{"comment_id": ITEMS[i]["comment_id"], "labels": [f"label{i}"]}
                        for i in range(sh.start, sh.end)]}
    store.write(sh.output_location or "", json.dumps(body).encode(), "application/json")


def keys_of(store: S3JobStore, job_id: str) -> list[str]:
    contents = store.s3.list_objects_v2(Bucket=store.bucket).get("Contents", [])
    return [o["Key"] for o in contents if job_id in o["Key"] and not o["Key"].startswith("jobs/")]


def test_small_job_is_one_invocation_as_before(store: S3JobStore, tmp_path: Path) -> None:
    inv = RecordingInvoker(store.bucket)
    rec = service(store, inv, 7, tmp_path).submit("classify", "ms", 7, {"items": ITEMS, "target": "ms"})
    assert rec.shards == [] and inv.calls == [{"input": rec.input_location, "id": rec.job_id}]
    assert rec.input_location.endswith(batch_input_key(rec.job_id))
    assert json.loads(store.read(rec.input_location) or b"")["items"] == ITEMS


def test_shards_complete_in_any_order_and_results_come_back_in_input_order(
        store: S3JobStore, tmp_path: Path) -> None:
    inv = RecordingInvoker(store.bucket)
    rec = service(store, inv, 3, tmp_path).submit("classify", "ms", 7, {"items": ITEMS, "target": "ms"})
    assert [(s.start, s.end) for s in rec.shards] == [(0, 3), (3, 6), (6, 7)]
    assert [c["id"] for c in inv.calls] == [f"{rec.job_id}-{n}" for n in range(3)]
    for n, sh in enumerate(rec.shards):  # each shard's own items, under batch/input/<job>/
        assert sh.input_location.endswith(f"{BATCH_INPUT}{rec.job_id}/{n}.json")
        assert sh.output_location and sh.failure_location
        body = json.loads(store.read(sh.input_location) or b"")
        assert body == {"items": ITEMS[sh.start:sh.end], "target": "ms"}

    # Shard 2 finishes first, then shard 0 (notified by input location only): still pending.
    for n, by_input in ((2, False), (0, True)):
        container_answer(store, rec, n)
        notify(store, rec, n, ok=True, by_input=by_input)
        assert not store.exists(rec.shards[n].input_location)  # its text went with its results
    now = store.get(rec.job_id)
    assert now is not None and now.status == "pending"
    assert [s.status for s in now.shards] == ["succeeded", "pending", "succeeded"]
    assert now.shard_done() == pytest.approx(2 / 3)
    assert store.exists(rec.shards[1].input_location)

    # The last shard's notification is lost: a GET finds its output (refresh) and completes.
    container_answer(store, rec, 1)
    got = store.collect(rec.job_id)
    assert got.payload is not None and got.record.status == "succeeded"
    assert [r["comment_id"] for r in got.payload["results"]] == [i["comment_id"] for i in ITEMS]
    assert [r["labels"] for r in got.payload["results"]] == [[f"label{i}"] for i in range(7)]
    assert keys_of(store, rec.job_id) == []  # every shard's input and output deleted
    with pytest.raises(JobGone):
        store.collect(rec.job_id)
    notify(store, rec, 1, ok=True)  # a late notification changes nothing
    assert (store.get(rec.job_id) or rec).status == "collected"


def test_failed_shard_fails_the_job_naming_its_items(store: S3JobStore, tmp_path: Path) -> None:
    inv = RecordingInvoker(store.bucket)
    rec = service(store, inv, 3, tmp_path).submit("classify", "ms", 7, {"items": ITEMS, "target": "ms"})
    container_answer(store, rec, 0)
    notify(store, rec, 0, ok=True)
    store.write(rec.shards[1].failure_location or "",
                b'{"error": "container exited (code -9) during the invocation; gave up after '
                b'2 attempt(s)"}', "application/json")
    notify(store, rec, 1, ok=False)
    failed = store.get(rec.job_id)
    assert failed is not None and failed.status == "failed"
    assert failed.error is not None and failed.error.startswith("shard 1 (items 4-6) failed: ")
    assert "gave up after 2 attempt(s)" in failed.error
    assert [k for k in keys_of(store, rec.job_id) if k.startswith(BATCH_INPUT)] == []  # no text
    notify(store, rec, 2, ok=True)  # the other shard finishing later changes nothing
    got = store.collect(rec.job_id)
    assert got.payload is None and got.record.status == "failed"
    assert keys_of(store, rec.job_id) == []
    with pytest.raises(JobGone):
        store.collect(rec.job_id)


def test_refused_shard_fails_the_job_and_keeps_no_text(store: S3JobStore, tmp_path: Path) -> None:
    inv = RecordingInvoker(store.bucket, refuse_at=1)
    with pytest.raises(JobRejected):
        service(store, inv, 3, tmp_path).submit("classify", "ms", 7, {"items": ITEMS, "target": "ms"})
    job_id = inv.calls[0]["id"].split("-")[0]
    rec = store.get(job_id)
    assert rec is not None and rec.status == "failed"
    assert [k for k in keys_of(store, job_id) if k.startswith(BATCH_INPUT)] == []


def test_sharded_job_through_the_api_and_two_containers(moto: str, tmp_path: Path,
                                                        batch_bundle: Path) -> None:
    """The whole path: POST /v1/jobs -> shards on the queue -> the runner with 2 workers (two
    serve.py processes) -> notifications -> one GET with every result in input order."""
    from local_stack.batch_lane import notifications_lambda
    from local_stack.runner import AsyncRunner
    from twolane.aws import client

    settings = lane_settings(tmp_path, batch_bundle, batch_shard_size=2, batch_workers=2,
                             batch_max_concurrency=1)
    bucket_ready(settings)
    store = S3JobStore(client("s3"), settings.bucket)
    runner = AsyncRunner(settings, lambda: batch_bundle, notify=notifications_lambda,
                         container_env={"TWOLANE_SERVE_DELAY_S": "0.5"}).start()
    try:
        jobs = JobService(store, LocalInvoker(settings), settings.batch)
        api = TestClient(create_app(settings=settings, jobs=jobs), raise_server_exceptions=False)
        job_id = run_sharded_job(api, store, batch_bundle, shards=4, timeout=180)
        assert keys_of(store, job_id) == []
        assert runner.stats.succeeded == 4 and runner.stats.failed == 0
        assert runner.stats.starts == 2  # scaled out: a second instance took the backlog
    finally:
        runner.stop()
    assert runner.container is None


def test_job_id_of_a_shard_notification() -> None:
    from twolane.jobs.notifications import target_of

    jid = uuid.uuid4().hex
    assert target_of({"inferenceId": f"{jid}-12"}) == (jid, 12)
    assert target_of({"inferenceId": jid}) == (jid, None)
    loc = {"requestParameters": {"inputLocation": f"s3://b/batch/input/{jid}/3.json"}}
    assert target_of(loc) == (jid, 3)
    assert target_of({"inferenceId": f"{jid}-x"}) is None


def test_drop_folder_job_in_shards_is_delivered_whole(store: S3JobStore, tmp_path: Path) -> None:
    """inbox/batch/ files become jobs with a `delivery`: the outbox file is written once the
    last shard is done, with every row in input order, and the job's objects are gone."""
    from twolane.jobs.store import Delivery

    d = Delivery(bucket=store.bucket, source_key="inbox/batch/ward.jsonl",
                 result_key="outbox/batch/ward.jsonl", report_key="failed/batch/ward.jsonl.error.json",
                 family="jsonl")
    inv = RecordingInvoker(store.bucket)
    rec = service(store, inv, 3, tmp_path).submit("classify", "ms", 7, {"items": ITEMS, "target": "ms"},
                                                  delivery=d)
    for n in (1, 0, 2):
        container_answer(store, rec, n)
        notify(store, rec, n, ok=True)
    body = store.read(f"s3://{store.bucket}/{d.result_key}")
    assert body is not None
    rows = [json.loads(line) for line in body.decode().splitlines()]
    assert [r["comment_id"] for r in rows] == [i["comment_id"] for i in ITEMS]
    assert (store.get(rec.job_id) or rec).status == "collected"
    assert keys_of(store, rec.job_id) == []


def test_shards_grow_rather_than_outnumber_the_cap(store: S3JobStore, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import twolane.jobs.service as service_module

    monkeypatch.setattr(service_module, "MAX_SHARDS", 2)
    inv = RecordingInvoker(store.bucket)
    rec = service(store, inv, 1, tmp_path).submit("classify", "ms", 7, {"items": ITEMS, "target": "ms"})
    assert [(s.start, s.end) for s in rec.shards] == [(0, 4), (4, 7)]


def test_twolane_up_takes_the_number_of_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import local_stack.stack
    from twolane.settings import get_settings
    from twolane_cli.app import app

    seen: list[int] = []
    monkeypatch.setattr(local_stack.stack, "up",
                        lambda **kw: seen.append(get_settings().batch_workers))
    monkeypatch.delenv("TWOLANE_BATCH_WORKERS", raising=False)
    try:
        assert CliRunner().invoke(app, ["up", "--workers", "3"]).exit_code == 0
        assert CliRunner().invoke(app, ["up", "--workers", "0"]).exit_code != 0
    finally:
        monkeypatch.delenv("TWOLANE_BATCH_WORKERS", raising=False)
        get_settings.cache_clear()
    assert seen == [3]
