"""Batch-lane jobs: the S3 job store (exactly-once collection under a race), the notification
handler on real SNS event payloads, the invoke_endpoint_async call shape (botocore Stubber),
up-front rejection of bad items, and the whole lifecycle through the API with the local runner
and the real container process on moto."""

from __future__ import annotations

import json
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from batchlane_helpers import bucket_ready, lane_settings, moto_server, poll_job
from botocore.stub import ANY, Stubber
from fastapi.testclient import TestClient

from local_stack.invoker import LocalInvoker
from twolane.api.app import create_app
from twolane.jobs.invoker import SageMakerInvoker
from twolane.jobs.service import JobService
from twolane.jobs.store import JobGone, JobRecord, S3JobStore, now_iso
from twolane.rules import LABELLING_NOT_POSSIBLE
from twolane.settings import Settings

ITEMS = [
    {"comment_id": "c1", "comment_text": "The nurses were kind and explained everything clearly",
     "question_type": "what_good"},
    {"comment_id": "c2", "comment_text": "Waited four hours in A&E and parking was impossible",
     "question_type": "could_improve"},
    {"comment_id": "c3", "comment_text": "n/a", "question_type": "nonspecific"},
]


@pytest.fixture(scope="module")
def moto() -> Any:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture()
def s3(moto: str) -> Any:
    from twolane.aws import client

    return client("s3")


@pytest.fixture()
def store(s3: Any, tmp_path: Path) -> S3JobStore:
    settings = lane_settings(tmp_path, tmp_path / "bundles")
    bucket_ready(settings)
    return S3JobStore(s3, settings.bucket)


def new_job(store: S3JobStore, body: dict[str, Any] | None = None) -> JobRecord:
    jid = uuid.uuid4().hex
    rec = JobRecord(job_id=jid, target="ms", items=len(ITEMS), input_location=store.input_location(jid),
                    output_location=f"s3://{store.bucket}/batch/output/{jid}.out",
                    failure_location=f"s3://{store.bucket}/batch/failure/{jid}-error.out",
                    created_at=now_iso(), updated_at=now_iso())
    return store.create(rec, json.dumps(body or {"items": ITEMS, "target": "ms"}).encode())


def api(settings: Settings, store: S3JobStore | None = None, invoker: Any = None) -> TestClient:
    jobs = JobService(store, invoker, settings.batch) if store is not None else None
    return TestClient(create_app(settings=settings, jobs=jobs), raise_server_exceptions=False)


# --- the store ---------------------------------------------------------------------------------


def test_store_hands_results_out_exactly_once_when_gets_race(store: S3JobStore) -> None:
    rec = new_job(store)
    assert store.exists(rec.input_location)
    assert store.collect(rec.job_id).payload is None  # nothing yet: still pending
    assert store.get(rec.job_id).status == "pending"

    store.s3.put_object(Bucket=store.bucket, Key=f"batch/output/{rec.job_id}.out",
                        Body=b'{"model_version": "v", "target": "ms", "results": []}')
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def grab() -> None:
        barrier.wait()
        try:
            got = store.collect(rec.job_id)
            outcomes.append("results" if got.payload is not None else "pending")
        except JobGone:
            outcomes.append("gone")

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["gone"] * 7 + ["results"]
    assert store.get(rec.job_id).status == "collected"
    assert not store.exists(rec.input_location)  # the text went when predictions appeared
    assert not store.exists(rec.output_location)  # the results went when handed out
    with pytest.raises(JobGone):
        store.collect(rec.job_id)


def test_transitions_only_move_forward(store: S3JobStore) -> None:
    rec = new_job(store)
    store.mark_failed(rec.job_id, "boom")
    again = store.mark_succeeded(rec.job_id)  # a late/duplicate notification changes nothing
    assert again.status == "failed" and again.error == "boom"
    assert not store.exists(rec.input_location)


# --- notifications -----------------------------------------------------------------------------


def sns_event(message: dict[str, Any] | str, topic: str = "twolane-batch-success") -> dict[str, Any]:
    """A Lambda SNS event exactly as SNS delivers it, around a SageMaker async notification."""
    return {"Records": [{
        "EventSource": "aws:sns", "EventVersion": "1.0",
        "EventSubscriptionArn": f"arn:aws:sns:eu-west-2:123456789012:{topic}:0b1f8c2e-1111-2222",
        "Sns": {
            "Type": "Notification", "MessageId": str(uuid.uuid4()),
            "TopicArn": f"arn:aws:sns:eu-west-2:123456789012:{topic}", "Subject": None,
            "Message": message if isinstance(message, str) else json.dumps(message),
            "Timestamp": "2026-01-25T22:46:00.608Z", "SignatureVersion": "1",
            "Signature": "EXAMPLE", "SigningCertUrl": "https://sns.eu-west-2.amazonaws.com/x.pem",
            "UnsubscribeUrl": "https://sns.eu-west-2.amazonaws.com/?Action=Unsubscribe",
            "MessageAttributes": {},
        },
    }]}


def sagemaker_message(rec: JobRecord, ok: bool, **extra: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "awsRegion": "eu-west-2", "eventTime": "2026-01-25T22:46:00.608Z",
        "receivedTime": "2026-01-25T22:45:58.455Z",
        "invocationStatus": "Completed" if ok else "Failed",
        "requestParameters": {"contentType": "application/json", "endpointName": "twolane-batch",
                              "inputLocation": rec.input_location},
        "responseParameters": ({"contentType": "application/json",
                                "outputLocation": rec.output_location} if ok else
                               {"contentType": "application/json",
                                "failureLocation": rec.failure_location}),
        "inferenceId": rec.job_id, "eventVersion": "1.0", "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }
    msg.update(extra)
    return msg


def test_notification_handler_completes_jobs(store: S3JobStore) -> None:
    from types import SimpleNamespace

    from functions.notifications.handler import handler

    ctx = SimpleNamespace(function_name="notifications", memory_limit_in_mb=256,
                          invoked_function_arn="arn:aws:lambda:eu-west-2:123456789012:function:n",
                          aws_request_id="req-1")
    ok, bad = new_job(store), new_job(store)
    out = handler(sns_event(sagemaker_message(ok, True)), ctx)
    assert out == {"processed": 1, "skipped": 0}
    assert store.get(ok.job_id).status == "succeeded"
    assert not store.exists(ok.input_location)

    # The error topic: the container's own reason (in the failure object) wins over SageMaker's
    # generic failureReason.
    store.s3.put_object(Bucket=store.bucket, Key=f"batch/failure/{bad.job_id}-error.out",
                        Body=b'{"error": "invalid request: items.0.comment_id: Field required"}')
    msg = sagemaker_message(bad, False, failureReason="ClientError: Received client error (422) "
                                                      "from model. See the SageMaker Endpoint logs.")
    out = handler(sns_event(msg, "twolane-batch-error"), ctx)
    assert out == {"processed": 1, "skipped": 0}
    got = store.get(bad.job_id)
    assert got.status == "failed"
    assert got.error == "invalid request: items.0.comment_id: Field required"
    assert not store.exists(bad.input_location)

    # Redelivery, a message that is not JSON and an unknown job: skipped, nothing raised.
    event = sns_event(sagemaker_message(ok, True))
    event["Records"] += sns_event("not json")["Records"]
    event["Records"] += sns_event(sagemaker_message(ok, True, inferenceId=uuid.uuid4().hex))["Records"]
    assert handler(event, ctx) == {"processed": 1, "skipped": 2}
    assert store.get(ok.job_id).status == "succeeded"


# --- invoking SageMaker ------------------------------------------------------------------------


def test_invoke_endpoint_async_call_shape(store: S3JobStore, tmp_path: Path) -> None:
    import boto3

    settings = lane_settings(tmp_path, tmp_path / "bundles", batch_invoker="sagemaker",
                             batch_endpoint="twolane-batch-prod")
    runtime = boto3.client("sagemaker-runtime", region_name="eu-west-2",
                           endpoint_url="https://runtime.sagemaker.eu-west-2.amazonaws.com")
    stub_calls: list[dict[str, Any]] = []
    runtime.meta.events.register(
        "provide-client-params.sagemaker-runtime.InvokeEndpointAsync",
        lambda params, **_: stub_calls.append(dict(params)))
    with Stubber(runtime) as stub:
        stub.add_response(
            "invoke_endpoint_async",
            {"OutputLocation": "s3://sm-out/async/out-1.out",
             "FailureLocation": "s3://sm-out/async-failures/out-1-error.out"},
            {"EndpointName": "twolane-batch-prod", "InputLocation": ANY,
             "ContentType": "application/json", "Accept": "application/json",
             "InferenceId": ANY, "InvocationTimeoutSeconds": 900},
        )
        client = api(settings, store, SageMakerInvoker(settings.batch, runtime))
        r = client.post("/v1/jobs", json={"items": ITEMS, "target": "m"})
        assert r.status_code == 202, r.text
        stub.assert_no_pending_responses()
    job_id = r.json()["job_id"]
    sent = stub_calls[0]
    assert sent["InferenceId"] == job_id
    assert sent["InputLocation"] == f"s3://{store.bucket}/batch/input/{job_id}.json"
    assert r.json() == {"job_id": job_id, "status": "pending", "results_url": f"/v1/jobs/{job_id}"}
    assert r.headers["location"] == f"/v1/jobs/{job_id}"
    rec = store.get(job_id)
    assert rec.output_location == "s3://sm-out/async/out-1.out"  # as SageMaker answered
    assert rec.failure_location == "s3://sm-out/async-failures/out-1-error.out"
    assert rec.endpoint == "twolane-batch-prod" and rec.target == "m" and rec.items == 3
    body = json.loads(store.read(rec.input_location))
    assert body == {"items": ITEMS, "target": "m"}


# --- bad requests, unavailability, unknown jobs ------------------------------------------------


def test_bad_items_rejected_up_front(store: S3JobStore, tmp_path: Path) -> None:
    settings = lane_settings(tmp_path, tmp_path / "bundles", max_text_chars=50, max_job_items=5)
    client = api(settings, store, LocalInvoker(settings))
    before = store.s3.list_objects_v2(Bucket=store.bucket).get("KeyCount", 0)
    cases = [
        ({"items": []}, 422, "no comments"),
        ({"items": [ITEMS[0], ITEMS[0]]}, 422, "unique"),
        ({"items": [{"comment_id": "x", "comment_text": "y" * 51}]}, 422, "longer than 50"),
        ({"items": [{"comment_id": str(i), "comment_text": "ok"} for i in range(6)]}, 413, "limit is 5"),
        ({"items": ITEMS, "target": "q"}, 422, "target"),
        ({"items": [{"comment_id": "x", "text": "y"}]}, 422, "text"),
        ({"items": [{"comment_id": "", "comment_text": "y"}]}, 422, "comment_id"),
    ]
    for body, status, reason in cases:
        r = client.post("/v1/jobs", json=body)
        assert r.status_code == status, (body, r.text)
        assert reason in r.text, (reason, r.text)
    r = client.post("/v1/summaries", json={"items": ITEMS, "points_per_theme": 9})
    assert r.status_code == 422 and "points_per_theme" in r.text
    after = store.s3.list_objects_v2(Bucket=store.bucket).get("KeyCount", 0)
    assert after == before  # nothing stored for a rejected request


def test_unavailable_batch_model_answers_503(store: S3JobStore, tmp_path: Path) -> None:
    settings = lane_settings(tmp_path, tmp_path / "empty-bundles")
    client = api(settings, store, LocalInvoker(settings))
    r = client.post("/v1/jobs", json={"items": ITEMS})
    assert r.status_code == 503 and "twolane build batch" in r.json()["detail"]
    # While `twolane up` builds the model in the background: say so, and where the log is.
    log = settings.state_dir / "logs" / "batch-build.log"
    log.parent.mkdir(parents=True)
    log.write_text("training...\n")
    (settings.state_dir / "batch-build.pid").write_text(str(os.getpid()))
    r = client.post("/v1/jobs", json={"items": ITEMS})
    assert r.status_code == 503
    assert r.json()["detail"] == f"batch model is still building; see {log.name} in the state folder"
    no_llm = lane_settings(tmp_path, tmp_path / "empty-bundles",
                           generation_model=str(tmp_path / "missing.gguf"))
    r = api(no_llm, store, LocalInvoker(no_llm)).post("/v1/summaries", json={"items": ITEMS})
    detail = r.json()["detail"]
    assert r.status_code == 503 and ("TWOLANE_GENERATION_MODEL" in detail
                                     or "llama-cpp-python" in detail)


def test_unknown_job_is_404(store: S3JobStore, tmp_path: Path) -> None:
    settings = lane_settings(tmp_path, tmp_path / "bundles")
    client = api(settings, store, LocalInvoker(settings))
    assert client.get(f"/v1/jobs/{uuid.uuid4().hex}").status_code == 404
    assert client.get("/v1/jobs/..%2Fjobs%2Fx").status_code == 404
    assert client.get("/v1/jobs/not-a-job-id").status_code == 404


def test_api_key_required_when_set(store: S3JobStore, tmp_path: Path) -> None:
    settings = lane_settings(tmp_path, tmp_path / "bundles", api_keys="k1")
    client = api(settings, store, LocalInvoker(settings))
    assert client.post("/v1/jobs", json={"items": ITEMS}).status_code == 401
    assert client.get(f"/v1/jobs/{uuid.uuid4().hex}").status_code == 401


# --- the whole lifecycle, with the local runner and the real container -------------------------


def test_job_lifecycle_through_the_api(store: S3JobStore, tmp_path: Path, batch_bundle: Path) -> None:
    from local_stack.batch_lane import notifications_lambda
    from local_stack.runner import AsyncRunner
    from twolane.predictors.batch import BatchPredictor

    settings = lane_settings(tmp_path, batch_bundle)
    runner = AsyncRunner(settings, lambda: batch_bundle, notify=notifications_lambda,
                         container_env={"TWOLANE_SERVE_DELAY_S": "0.5"}).start()
    try:
        client = api(settings, store, LocalInvoker(settings))
        r = client.post("/v1/jobs", json={"items": ITEMS, "target": "ms"})
        assert r.status_code == 202, r.text
        url = r.json()["results_url"]
        job_id = r.json()["job_id"]

        first = client.get(url)
        assert first.status_code == 202 and first.headers["retry-after"]
        state = first.json()
        assert state["status"] == "pending" and state["items"] == 3 and state["progress"] == 0.0

        done = poll_job(client, url)
        assert done.status_code == 200, done.text
        body = done.json()
        assert body["job_id"] == job_id and body["target"] == "ms"
        assert [x["comment_id"] for x in body["results"]] == ["c1", "c2", "c3"]
        # Real predictions: the same as the predictor gives directly.
        direct = BatchPredictor.from_bundle(batch_bundle).predict_texts(
            [i["comment_text"] for i in ITEMS], [i["question_type"] for i in ITEMS],
            target="ms", ids=["c1", "c2", "c3"])
        assert body["model_version"] == BatchPredictor.from_bundle(batch_bundle).version
        assert [x["labels"] for x in body["results"]] == [p.labels for p in direct]
        assert body["results"][2]["labels"] == [LABELLING_NOT_POSSIBLE]
        assert body["results"][0]["sentiment"]["score"] in range(1, 6)
        # No comment text in the results, nor anywhere in S3 once predictions exist.
        assert "comment_text" not in done.text
        assert all(i["comment_text"] not in done.text for i in ITEMS if i["comment_text"] != "n/a")
        rec = store.get(job_id)
        assert not store.exists(rec.input_location)
        keys = [o["Key"] for o in store.s3.list_objects_v2(Bucket=store.bucket).get("Contents", [])]
        assert not [k for k in keys if job_id in k and not k.startswith("jobs/")]

        gone = client.get(url)
        assert gone.status_code == 410 and "handed out already" in gone.json()["detail"]
        assert client.get(url).status_code == 410
        assert runner.stats.succeeded == 1 and runner.stats.starts == 1
    finally:
        runner.stop()
    assert runner.container is None
