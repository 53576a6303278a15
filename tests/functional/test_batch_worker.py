"""The batch lane on Lambda: the batch-worker handler on real shards (moto S3 + SNS, the tiny
real batch bundle), Lambda's invocation record on the error topic completing the job, the
`lambda.invoke` call shape (botocore Stubber), and a sharded job through the API on the local
stack's Lambda host (`LocalLambdaInvoker` running the real handler on a thread pool)."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from batchlane_helpers import (
    ITEMS,
    TEXTS,
    bucket_ready,
    lane_settings,
    moto_server,
    poll_job,
    run_sharded_job,
    wait_for,
)
from botocore.stub import ANY, Stubber
from fastapi.testclient import TestClient

from local_stack.batch_lane import lambda_context
from local_stack.invoker import destination_record
from twolane.jobs.invoker import LambdaInvoker
from twolane.jobs.notifications import WORKER_EXPIRED, WORKER_STOPPED
from twolane.jobs.service import JobRejected, JobService
from twolane.jobs.store import S3JobStore, reason_from_failure_body
from twolane.layout import (
    BATCH_INPUT,
    batch_failure_key,
    batch_output_key,
    batch_shard_input_key,
    s3_uri,
    shard_inference_id,
)
from twolane.settings import Settings, get_settings
from twolane.wiring import batch_invoker


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


class Lane:
    """The worker's AWS side in moto: the bucket, both topics and an SQS queue subscribed to
    them (to read what the worker publishes), the worker's environment set as on AWS."""

    def __init__(self, settings: Settings):
        from twolane.aws import client

        bucket_ready(settings)
        self.bucket = settings.bucket
        self.s3, self.sns, self.sqs = client("s3"), client("sns"), client("sqs")
        self.ok_arn = self.sns.create_topic(Name=settings.batch_success_topic)["TopicArn"]
        self.err_arn = self.sns.create_topic(Name=settings.batch_error_topic)["TopicArn"]
        self.queue = self.sqs.create_queue(QueueName=settings.batch_notification_queue)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
        for topic in (self.ok_arn, self.err_arn):
            self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)

    def env(self, bundle: Path) -> dict[str, str]:
        return {"TWOLANE_BUCKET": self.bucket, "TWOLANE_BATCH_SUCCESS_TOPIC_ARN": self.ok_arn,
                "TWOLANE_BATCH_ERROR_TOPIC_ARN": self.err_arn, "TWOLANE_BATCH_BUNDLE": str(bundle)}

    def put_shard(self, body: bytes) -> dict[str, str]:
        """A shard's input object; the event the invoker sends for it."""
        inference_id = shard_inference_id(uuid.uuid4().hex, 0)
        job_id = inference_id.split("-")[0]
        key = batch_shard_input_key(job_id, 0)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)
        return {"inference_id": inference_id, "input_location": s3_uri(self.bucket, key),
                "output_location": s3_uri(self.bucket, batch_output_key(inference_id)),
                "failure_location": s3_uri(self.bucket, batch_failure_key(inference_id)),
                "endpoint": "twolane-batch"}

    def read(self, uri: str) -> bytes | None:
        key = uri.split("/", 3)[3]
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None

    def next_message(self) -> tuple[str, dict[str, Any]]:
        """(topic ARN, SageMaker-shaped message) of the next notification published."""
        def receive() -> Any:
            return self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=1,
                                            WaitTimeSeconds=1).get("Messages")

        m = wait_for(receive, 20, "a notification")[0]
        self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])
        envelope = json.loads(m["Body"])
        return envelope["TopicArn"], json.loads(envelope["Message"])

    def queue_is_empty(self) -> bool:
        return not self.sqs.receive_message(QueueUrl=self.queue, WaitTimeSeconds=1).get("Messages")


@pytest.fixture()
def lane(moto: str, tmp_path: Path) -> Lane:
    return Lane(lane_settings(tmp_path, tmp_path / "bundles"))


@pytest.fixture()
def worker(lane: Lane, batch_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The batch worker's handler, its environment set as the function's would be."""
    for k, v in lane.env(batch_bundle).items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    from functions.batch_worker.handler import handler

    yield handler
    get_settings.cache_clear()


def ctx() -> Any:
    return lambda_context("twolane-batch-worker")


# --- the worker handler --------------------------------------------------------------------------


def test_good_shard_answers_as_the_container_and_notifies_completed(
        lane: Lane, worker: Any, batch_bundle: Path) -> None:
    from twolane.predictors.batch import BatchPredictor

    event = lane.put_shard(json.dumps({"items": ITEMS[:3], "target": "ms"}).encode())
    assert worker(event, ctx()) == {"inference_id": event["inference_id"], "status": "Completed"}

    body = json.loads(lane.read(event["output_location"]) or b"")
    direct = BatchPredictor.from_bundle(batch_bundle).predict_texts(
        TEXTS[:3], ["nonspecific"] * 3, target="ms", ids=["c0", "c1", "c2"])
    assert set(body) == {"model_version", "target", "results"} and body["target"] == "ms"
    assert [r["comment_id"] for r in body["results"]] == ["c0", "c1", "c2"]
    assert [r["labels"] for r in body["results"]] == [p.labels for p in direct]
    assert all("comment_text" not in r for r in body["results"])
    assert lane.read(event["failure_location"]) is None

    topic, msg = lane.next_message()
    assert topic == lane.ok_arn
    assert msg["invocationStatus"] == "Completed" and msg["inferenceId"] == event["inference_id"]
    assert msg["eventSource"] == "aws:sagemaker" and msg["eventName"] == "InferenceResult"
    assert msg["requestParameters"]["inputLocation"] == event["input_location"]
    assert msg["responseParameters"]["outputLocation"] == event["output_location"]


@pytest.mark.parametrize(("body", "status", "reason"), [
    (b"{not json", 400, "body is not valid JSON (NaN and Infinity are not JSON)"),
    (json.dumps({"items": "not a list", "target": "ms"}).encode(), 422, "invalid request: items"),
])
def test_bad_body_is_a_failure_object_and_failed_as_a_container_4xx(
        lane: Lane, worker: Any, body: bytes, status: int, reason: str) -> None:
    event = lane.put_shard(body)
    assert worker(event, ctx())["status"] == "Failed"
    failure = lane.read(event["failure_location"])
    assert failure is not None and lane.read(event["output_location"]) is None
    assert reason_from_failure_body(failure).startswith(reason)
    topic, msg = lane.next_message()
    assert topic == lane.err_arn and msg["invocationStatus"] == "Failed"
    assert msg["failureReason"] == f"ClientError: Received client error ({status}) from model"
    assert msg["responseParameters"]["failureLocation"] == event["failure_location"]


def test_faults_are_failed_with_a_short_reason(lane: Lane, worker: Any, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # The input object is gone.
    event = lane.put_shard(b"{}")
    lane.s3.delete_object(Bucket=lane.bucket, Key=event["input_location"].split("/", 3)[3])
    assert worker(event, ctx())["status"] == "Failed"
    assert reason_from_failure_body(lane.read(event["failure_location"]) or b"") == \
        "the input object of this invocation was not found"
    assert lane.next_message()[0] == lane.err_arn

    # No model where TWOLANE_BATCH_BUNDLE points: the container's 500, nothing of the error.
    monkeypatch.setenv("TWOLANE_BATCH_BUNDLE", str(tmp_path / "no-bundle-here"))
    get_settings.cache_clear()
    event = lane.put_shard(json.dumps({"items": ITEMS[:1]}).encode())
    assert worker(event, ctx())["status"] == "Failed"
    assert reason_from_failure_body(lane.read(event["failure_location"]) or b"") == \
        "the batch worker could not load its model"
    _, msg = lane.next_message()
    assert msg["failureReason"] == "ClientError: Received server error (500) from model"


def test_the_asset_copy_of_the_bundle_without_its_fp16_model_loads_and_predicts(
        lane: Lane, worker: Any, batch_bundle: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's asset holds the batch bundle as infra.build_lambda_asset.copy_bundle copies
    it: model.fp16.onnx (CUDA only) left out while the manifest still names it. The worker's
    load path (resolve_bundle + batchhost.inference.cached_model) does not verify the manifest's
    files, so that copy loads and predicts on CPU exactly as the whole bundle does."""
    from infra.build_lambda_asset import BUNDLE_DIR, copy_bundle
    from twolane.bundle import BundleError, read_manifest

    copy_bundle(tmp_path, batch_bundle, "batch")
    copy = tmp_path / BUNDLE_DIR
    manifest = read_manifest(copy)
    assert manifest.models["fp16"].file == "model.fp16.onnx" in manifest.files
    assert not (copy / "model.fp16.onnx").exists() and (copy / "model.int8.onnx").is_file()
    with pytest.raises(BundleError):  # a verifying load would refuse this copy
        read_manifest(copy, verify=True)

    monkeypatch.setenv("TWOLANE_BATCH_BUNDLE", str(copy))
    get_settings.cache_clear()
    event = lane.put_shard(json.dumps({"items": ITEMS, "target": "ms"}).encode())
    assert worker(event, ctx()) == {"inference_id": event["inference_id"], "status": "Completed"}
    assert lane.next_message()[0] == lane.ok_arn
    body = json.loads(lane.read(event["output_location"]) or b"")
    whole = lane.put_shard(json.dumps({"items": ITEMS, "target": "ms"}).encode())
    monkeypatch.setenv("TWOLANE_BATCH_BUNDLE", str(batch_bundle))
    get_settings.cache_clear()
    assert worker(whole, ctx())["status"] == "Completed"
    assert lane.next_message()[0] == lane.ok_arn
    assert body == json.loads(lane.read(whole["output_location"]) or b"")


def test_malformed_event_is_logged_without_its_content_and_not_raised(
        lane: Lane, worker: Any, caplog: pytest.LogCaptureFixture) -> None:
    secret = "The nurse on ward 7 was rude to my mother"
    bad_events: list[Any] = [
        {"inference_id": "not-an-id", "input_location": secret},
        {**lane.put_shard(b"{}"), "output_location": f"s3://{lane.bucket}/jobs/x.json"},  # not batch/output/
        {"Records": [{"Sns": {"Message": secret}}]},
        [secret],
    ]
    with caplog.at_level(logging.INFO):
        for event in bad_events:
            assert worker(event, ctx()) == {"status": "ignored", "reason": "malformed event"}
    assert secret not in caplog.text
    assert "malformed batch-worker event ignored" in caplog.text
    assert lane.queue_is_empty()


# --- Lambda's invocation record on the error topic ----------------------------------------------


class StubbedLambda:
    """A real boto3 Lambda client whose `invoke` answers are stubbed (botocore Stubber), and
    the payloads it was given."""

    def __init__(self, statuses: list[int]):
        import boto3

        self.client = boto3.client("lambda", region_name="eu-west-2",
                                   endpoint_url="https://lambda.eu-west-2.amazonaws.com")
        self.sent: list[dict[str, Any]] = []
        self.client.meta.events.register("provide-client-params.lambda.Invoke",
                                         lambda params, **_: self.sent.append(dict(params)))
        self.stub = Stubber(self.client)
        for status in statuses:
            self.stub.add_response("invoke", {"StatusCode": status},
                                   {"FunctionName": "twolane-batch-worker-dev",
                                    "InvocationType": "Event", "Payload": ANY})
        self.stub.activate()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(p["Payload"]) for p in self.sent]


def test_lambda_invoke_call_shape_per_shard(moto: str, tmp_path: Path) -> None:
    settings = lane_settings(tmp_path, tmp_path / "bundles", batch_invoker="lambda",
                             batch_function="twolane-batch-worker-dev", batch_shard_size=3)
    bucket_ready(settings)
    from twolane.aws import client

    store = S3JobStore(client("s3"), settings.bucket)
    lam = StubbedLambda([202, 202, 202])
    rec = JobService(store, LambdaInvoker(settings.batch, lam.client), settings.batch).submit(
        "classify", "ms", 7, {"items": ITEMS, "target": "ms"})
    lam.stub.assert_no_pending_responses()
    b = settings.bucket
    assert lam.events() == [
        {"inference_id": f"{rec.job_id}-{n}",
         "input_location": f"s3://{b}/{BATCH_INPUT}{rec.job_id}/{n}.json",
         "output_location": f"s3://{b}/batch/output/{rec.job_id}-{n}.out",
         "failure_location": f"s3://{b}/batch/failures/{rec.job_id}-{n}-error.out",
         "endpoint": "twolane-batch"} for n in range(3)]
    # The record holds the locations the invoker answered, where the worker writes.
    assert [(s.output_location, s.failure_location) for s in rec.shards] == [
        (e["output_location"], e["failure_location"]) for e in lam.events()]

    # Lambda refusing the second invoke (not 202): the job fails and keeps no text.
    lam = StubbedLambda([202, 429])
    service = JobService(store, LambdaInvoker(settings.batch, lam.client), settings.batch)
    with pytest.raises(JobRejected):
        service.submit("classify", "ms", 7, {"items": ITEMS, "target": "ms"})
    job_id = lam.events()[0]["inference_id"].split("-")[0]
    failed = store.get(job_id)
    assert failed is not None and failed.status == "failed"
    assert not any(store.exists(s.input_location) for s in failed.shards)

    # The settings choose it; without an LLM endpoint summaries are not served on this host,
    # with one (TWOLANE_SUMMARIES_ENABLED=1, as infra sets it) they go to that endpoint.
    no_llm = settings.model_copy(update={"summaries_enabled": False})
    chosen = batch_invoker(no_llm)
    assert isinstance(chosen, LambdaInvoker) and chosen.unavailable_reason("classify") is None
    assert "text-generation" in (chosen.unavailable_reason("summary") or "")
    with_llm = batch_invoker(settings.model_copy(update={"summaries_enabled": True}))
    assert isinstance(with_llm, LambdaInvoker) and with_llm.summaries is not None
    assert with_llm.unavailable_reason("summary") is None


def test_lambda_invocation_record_fails_the_shard_with_a_short_reason(
        moto: str, tmp_path: Path) -> None:
    """The worker timed out or ran out of memory: Lambda's on-failure record (not
    SageMaker-shaped) reaches the notifications Lambda on the error topic."""
    from functions.notifications.handler import handler as notifications
    from twolane.aws import client

    settings = lane_settings(tmp_path, tmp_path / "bundles", batch_shard_size=3,
                             batch_function="twolane-batch-worker-dev")
    bucket_ready(settings)
    store = S3JobStore(client("s3"), settings.bucket)
    lam = StubbedLambda([202] * 4)
    service = JobService(store, LambdaInvoker(settings.batch, lam.client), settings.batch)

    def record_event(event: dict[str, Any], condition: str = "RetriesExhausted") -> dict[str, Any]:
        rec = destination_record(event, ctx(), "Sandbox.Timedout", condition)
        rec["responsePayload"]["errorMessage"] = "Task timed out after 900.00 seconds: c1 text"
        return {"Records": [{"EventSource": "aws:sns",
                             "Sns": {"Message": json.dumps(rec), "TopicArn": "err"}}]}

    rec = service.submit("classify", "ms", 7, {"items": ITEMS, "target": "ms"})
    e0, e1, e2 = lam.events()
    # Shard 0 wrote its output and then stopped before publishing: its output decides.
    store.write(e0["output_location"], json.dumps({"model_version": "v", "target": "ms",
                                                   "results": []}).encode(), "application/json")
    assert notifications(record_event(e0), ctx()) == {"processed": 1, "skipped": 0}
    now = store.get(rec.job_id)
    assert now is not None and now.status == "pending"
    assert [s.status for s in now.shards] == ["succeeded", "pending", "pending"]

    # Shard 1 stopped with nothing written: the job fails, naming it, with the short reason.
    assert notifications(record_event(e1), ctx()) == {"processed": 1, "skipped": 0}
    failed = store.get(rec.job_id)
    assert failed is not None and failed.status == "failed"
    assert failed.error == f"shard 1 (items 4-6) failed: {WORKER_STOPPED}"
    assert "timed out" not in failed.error  # never the record's error message
    assert not any(store.exists(s.input_location) for s in failed.shards)
    notifications(record_event(e2), ctx())  # later records change nothing
    assert (store.get(rec.job_id) or rec).error == failed.error

    # A one-shard job whose event expired in Lambda's queue; an on-success record is ignored.
    small = service.submit("classify", "ms", 2, {"items": ITEMS[:2], "target": "ms"})
    (event,) = lam.events()[3:]
    assert notifications(record_event(event, "Success"), ctx()) == {"processed": 0, "skipped": 1}
    assert notifications(record_event(event, "EventAgeExceeded"), ctx())["processed"] == 1
    got = store.get(small.job_id)
    assert got is not None and got.status == "failed" and got.error == WORKER_EXPIRED


# --- the whole path on the local stack's Lambda host ----------------------------------------------


def test_sharded_job_through_the_api_on_the_lambda_host(moto: str, tmp_path: Path,
                                                         batch_bundle: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """POST /v1/jobs -> 3 shards -> LocalLambdaInvoker (3 threads, the real worker handler)
    -> S3 + SNS -> the relay -> the real notifications handler -> one GET, input order. A
    shard whose worker crashes is reported by Lambda's invocation record instead."""
    from functions.batch_worker.handler import handler as real_handler
    from local_stack.batch_lane import start_batch_lane
    from local_stack.invoker import LocalLambdaInvoker
    from twolane.api.app import create_app
    from twolane.aws import client

    monkeypatch.setenv("TWOLANE_SERVE_DELAY_S", "0.3")  # shards overlap in time
    settings = lane_settings(tmp_path, batch_bundle, batch_invoker="lambda", batch_shard_size=3,
                             batch_workers=3)
    bucket_ready(settings)
    running, peak, crash_shard = [0], [0], [""]
    lock = threading.Lock()

    def handler(event: dict[str, Any], context: Any) -> Any:  # the real one, counted
        if crash_shard[0] and event["inference_id"].endswith(crash_shard[0]):
            raise MemoryError  # as a worker killed mid-shard
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return real_handler(event, context)
        finally:
            with lock:
                running[0] -= 1

    lane = start_batch_lane(settings, build_if_missing=False)
    invoker = LocalLambdaInvoker(settings, handler=handler)
    try:
        store = S3JobStore(client("s3"), settings.bucket)
        jobs = JobService(store, invoker, settings.batch)
        api = TestClient(create_app(settings=settings, jobs=jobs), raise_server_exceptions=False)
        run_sharded_job(api, store, batch_bundle, shards=3, timeout=60)
        assert peak[0] >= 2  # fan-out: shards ran at once

        # A worker that dies: the job fails through the invocation record, not stays pending.
        crash_shard[0] = "-1"
        r = api.post("/v1/jobs", json={"items": ITEMS, "target": "ms"})
        failed = poll_job(api, r.json()["results_url"], timeout=60)
        assert failed.status_code == 200 and failed.json()["status"] == "failed", failed.text
        assert failed.json()["error"] == f"shard 1 (items 4-6) failed: {WORKER_STOPPED}"
    finally:
        invoker.close()
        lane.stop()


def test_twolane_up_takes_the_batch_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import local_stack.stack
    from twolane_cli.app import app

    seen: list[str] = []
    monkeypatch.setattr(local_stack.stack, "up", lambda **kw: seen.append(get_settings().batch_invoker))
    # setenv, not delenv of an absent name (that records nothing): monkeypatch then restores
    # the environment as it was, whatever the command set in os.environ
    monkeypatch.setenv("TWOLANE_BATCH_INVOKER", "local")
    try:
        for host in ("lambda", "sagemaker"):
            assert CliRunner().invoke(app, ["up", "--batch-host", host]).exit_code == 0
        assert CliRunner().invoke(app, ["up", "--batch-host", "ec2"]).exit_code != 0
    finally:
        get_settings.cache_clear()
    assert seen == ["lambda", "local"]
