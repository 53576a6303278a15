"""Every AWS call the Lambda handlers make is allowed by the policies the stack creates, and
nothing more.

The real handlers (functions/api, functions/dropfolder, functions/notifications and the API-key
authorizer in functions/api/authorizer) run against a
moto server with IAM enforced. Each signs its calls with the keys of an IAM user whose only
policy is the synthesised policy of that Lambda's role (dev template, bucket and endpoint ARNs
substituted), and gets the environment the template gives it. A missing permission fails here as
it would on AWS (403); a grant no handler call uses fails the last test of the module.

moto is taught the checks it skips (see tests/iam_helpers.py): InvokeEndpointAsync,
lambda:InvokeFunction and sns:Publish against the endpoint's, function's and topic's ARN, and
CopyObject's read of its source. What moto cannot show: S3 answering 403
instead of 404 for a missing key when s3:ListBucket is not granted; the ListBucket grants exist
for that and are left out of the unused-grant check.

The batch lane on Lambda (batch.host "lambda", the `lambda_host` template) runs the same way:
POST /v1/jobs and a batch-inbox file (TWOLANE_BATCH_INVOKER=lambda) with the API's and the drop
folder's roles invoke the worker (moto records the Event invoke after its IAM check and runs
nothing: its Lambda would need Docker); the test hands each recorded payload to the real worker
handler (functions/batch_worker, the tiny real batch bundle) under the worker's role, and what
it publishes to the real notifications handler under that role. Locations the worker's role
does not reach fail the shard as the worker documents.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from batchlane_helpers import wait_for
from botocore.exceptions import ClientError
from iam_helpers import (
    ACCOUNT,
    REGION,
    Aws,
    enforced_account,
    environment,
    refs_for,
    resources,
    role_policy,
    unused_grants,
)
from infra_helpers import endpoint_host
from lambda_http import LambdaContext
from test_api import http_api_event
from test_dropfolder import ROWS, csv_bytes, s3_event

from infra.checks import synth_offline
from infra.config import load_config
from twolane.batchhost.inference import SERVER_ERROR
from twolane.batchhost.worker import INPUT_NOT_FOUND, WorkerEvent
from twolane.layout import (
    batch_failure_key,
    batch_output_key,
    batch_shard_input_key,
    shard_inference_id,
)

REPO = Path(__file__).resolve().parents[2]
BUCKET = "twolane-iam-test"
HANDLERS = {
    "api": "functions.api.handler.handler",
    "dropfolder": "functions.dropfolder.handler.handler",
    "notifications": "functions.notifications.handler.handler",
    "authorizer": "handler.handler",  # functions/api/authorizer is that Lambda's whole asset
}
# Grants used by the Lambda service, not by the handler code: log delivery and the on-failure
# destination queue. s3:ListBucket only turns a missing key's 403 into 404 (see above).
NOT_CALLED_BY_HANDLERS = ("logs:", "sqs:", "s3:ListBucket")
ITEMS = [{"comment_id": "c1", "comment_text": "The nurses were kind"},
         {"comment_id": "c2", "comment_text": "Parking was impossible"}]


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aws]:
    # the async-endpoint host; the Lambda host's roles come from the `lambda_host` template
    tpl = synth_offline(tmp_path_factory.mktemp("iam"), endpoint_host(load_config("dev"))).template
    with enforced_account(tpl, BUCKET, HANDLERS) as account:
        yield account


@pytest.fixture
def as_lambda(aws: Aws, lambda_module: Callable[[str], ModuleType],
              monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """Import a handler fresh as its Lambda would run: the template's environment and the
    Lambda role's permissions (the IAM user's keys), nothing else."""
    def load(name: str) -> ModuleType:
        env = environment(aws.template, HANDLERS[name], aws.refs)
        env.pop("TWOLANE_INSTANT_BUNDLE")  # /var/task/bundle in the Lambda; the test bundle here
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        key, secret = aws.keys[name]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # no cached credentials
        return lambda_module(f"functions.{name}.handler")

    return load


def objects(aws: Aws, prefix: str = "", bucket: str = BUCKET) -> set[str]:
    listed = aws.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {o["Key"] for o in listed.get("Contents", [])}


def call_api(mod: ModuleType, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    r = mod.handler(http_api_event(method, path, body), LambdaContext())
    return r["statusCode"], json.loads(r["body"]) if r.get("body") else None


def sns_event(message: dict[str, Any]) -> dict[str, Any]:
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:batch-success"
    return {"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0",
                         "EventSubscriptionArn": f"{topic}:{uuid.uuid4()}",
                         "Sns": {"Type": "Notification", "MessageId": str(uuid.uuid4()),
                                 "TopicArn": topic, "Subject": None,
                                 "Message": json.dumps(message),
                                 "Timestamp": "2026-11-30T12:00:00.000Z"}}]}


# --- the API: instant predictions and the batch jobs API -----------------------------------------


def test_api_job_lifecycle_with_the_api_role_only(aws: Aws, as_lambda: Callable) -> None:
    api = as_lambda("api")
    assert call_api(api, "POST", "/v1/predict", {"items": ITEMS})[0] == 200
    status, accepted = call_api(api, "POST", "/v1/jobs", {"items": ITEMS, "target": "ms"})
    assert status == 202, (accepted, aws.recorder.denied())
    job = accepted["job_id"]
    inv = aws.recorder.invocations[-1]
    env = environment(aws.template, HANDLERS["api"], aws.refs)
    assert inv["endpoint"] == env["TWOLANE_BATCH_ENDPOINT"]
    assert inv["timeout"] == env["TWOLANE_BATCH_INVOCATION_TIMEOUT_S"] == "900"
    assert inv["input"] == f"s3://{BUCKET}/batch/input/{job}.json"
    assert call_api(api, "GET", f"/v1/jobs/{job}")[0] == 202  # not done: HeadObject says 404
    record = json.loads(aws.client("s3").get_object(Bucket=BUCKET, Key=f"jobs/{job}.json")[
        "Body"].read())
    out_bucket, _, out_key = record["output_location"].removeprefix("s3://").partition("/")
    assert (out_bucket, out_key.split("/")[:2]) == (BUCKET, ["batch", "output"])
    results = {"model_version": "v1", "target": "ms", "results": [
        {"comment_id": i["comment_id"], "labels": ["Staff"],
         "sentiment": {"score": 1, "label": "very positive"}} for i in ITEMS]}
    aws.client("s3").put_object(Bucket=BUCKET, Key=out_key, Body=json.dumps(results).encode())
    status, body = call_api(api, "GET", f"/v1/jobs/{job}")  # as SageMaker wrote it
    assert status == 200, body
    assert [r["comment_id"] for r in body["results"]] == ["c1", "c2"]
    assert call_api(api, "GET", f"/v1/jobs/{job}")[0] == 410
    assert objects(aws, "batch/") == set()  # input and output deleted by the API role


def test_api_failed_job_with_the_api_role_only(aws: Aws, as_lambda: Callable) -> None:
    api = as_lambda("api")
    status, accepted = call_api(api, "POST", "/v1/jobs", {"items": ITEMS, "target": "m"})
    assert status == 202, (accepted, aws.recorder.denied())
    job = accepted["job_id"]
    record = json.loads(aws.client("s3").get_object(Bucket=BUCKET, Key=f"jobs/{job}.json")[
        "Body"].read())
    fail_key = record["failure_location"].removeprefix(f"s3://{BUCKET}/")
    assert fail_key.startswith("batch/failures/")
    aws.client("s3").put_object(Bucket=BUCKET, Key=fail_key, Body=b'{"error": "model crashed"}')
    status, body = call_api(api, "GET", f"/v1/jobs/{job}")
    assert status == 200 and body["status"] == "failed" and "model crashed" in body["error"]
    assert call_api(api, "GET", f"/v1/jobs/{job}")[0] == 410
    assert objects(aws, "batch/") == set()


def test_api_sharded_job_with_the_api_role_only(aws: Aws, as_lambda: Callable,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A job split into shards (shard size 1 here): the API role writes each shard's input
    under batch/input/<job>/, finds each output, deletes every object on collection."""
    template_env = environment
    monkeypatch.setattr(sys.modules[__name__], "environment", lambda *a: {
        **template_env(*a), "TWOLANE_BATCH_SHARD_SIZE": "1"})
    api = as_lambda("api")
    status, accepted = call_api(api, "POST", "/v1/jobs", {"items": ITEMS, "target": "ms"})
    assert status == 202, (accepted, aws.recorder.denied())
    job = accepted["job_id"]
    assert [i["input"] for i in aws.recorder.invocations[-2:]] == [
        f"s3://{BUCKET}/batch/input/{job}/{n}.json" for n in range(2)]
    record = json.loads(aws.client("s3").get_object(Bucket=BUCKET, Key=f"jobs/{job}.json")[
        "Body"].read())
    for item, shard in zip(ITEMS, record["shards"], strict=True):
        out_key = shard["output_location"].removeprefix(f"s3://{BUCKET}/")
        assert out_key.startswith("batch/output/")
        results = {"model_version": "v1", "target": "ms", "results": [
            {"comment_id": item["comment_id"], "labels": ["Staff"],
             "sentiment": {"score": 1, "label": "very positive"}}]}
        aws.client("s3").put_object(Bucket=BUCKET, Key=out_key, Body=json.dumps(results).encode())
    status, body = call_api(api, "GET", f"/v1/jobs/{job}")
    assert status == 200, (body, aws.recorder.denied())
    assert [r["comment_id"] for r in body["results"]] == ["c1", "c2"]
    assert call_api(api, "GET", f"/v1/jobs/{job}")[0] == 410
    assert objects(aws, "batch/") == set()


# --- job notifications (SageMaker's SNS topics) ----------------------------------------------------


def new_job(aws: Aws) -> tuple[str, str, str]:
    """A pending job as the API leaves it (written with admin keys: not what is under test)."""
    from twolane.jobs.store import JobRecord, S3JobStore, now_iso

    store = S3JobStore(aws.client("s3"), BUCKET)
    job = uuid.uuid4().hex
    out = f"s3://{BUCKET}/batch/output/{job}.out"
    fail = f"s3://{BUCKET}/batch/failures/{job}-error.out"
    store.create(JobRecord(job_id=job, target="ms", items=2, input_location=store.input_location(
        job), output_location=out, failure_location=fail, created_at=now_iso(),
        updated_at=now_iso()), json.dumps({"items": ITEMS}).encode())
    return job, out, fail


def test_notifications_complete_and_fail_jobs_with_their_role_only(
        aws: Aws, as_lambda: Callable) -> None:
    notes = as_lambda("notifications")
    ok, out, _ = new_job(aws)
    done = notes.handler(sns_event({
        "invocationStatus": "Completed", "inferenceId": ok,
        "requestParameters": {"inputLocation": f"s3://{BUCKET}/batch/input/{ok}.json"},
        "responseParameters": {"outputLocation": out}}), LambdaContext())
    assert done == {"processed": 1, "skipped": 0}
    bad, _, fail = new_job(aws)
    aws.client("s3").put_object(Bucket=BUCKET, Key=fail.removeprefix(f"s3://{BUCKET}/"),
                                Body=b'{"error": "out of memory"}')
    failed = notes.handler(sns_event({
        "invocationStatus": "Failed", "inferenceId": bad, "failureReason": "ClientError",
        "requestParameters": {"inputLocation": f"s3://{BUCKET}/batch/input/{bad}.json"},
        "responseParameters": {"failureLocation": fail}}), LambdaContext())
    assert failed == {"processed": 1, "skipped": 0}
    s3 = aws.client("s3")
    records = {j: json.loads(s3.get_object(Bucket=BUCKET, Key=f"jobs/{j}.json")["Body"].read())
               for j in (ok, bad)}
    assert records[ok]["status"] == "succeeded" and records[bad]["status"] == "failed"
    assert "out of memory" in records[bad]["error"]
    assert not objects(aws, "batch/input/")  # the text goes once predictions (or errors) exist
    s3.delete_object(Bucket=BUCKET, Key=fail.removeprefix(f"s3://{BUCKET}/"))


def test_notifications_deliver_a_sharded_drop_folder_job_with_their_role_only(
        aws: Aws, as_lambda: Callable) -> None:
    """A batch-inbox file's job in two shards: each shard's notification marks it (its input
    deleted); the last one has the notifications role write outbox/batch/ from both shards'
    results and hand the job out (results deleted)."""
    from twolane.jobs.store import Delivery, JobRecord, S3JobStore, Shard, now_iso

    store = S3JobStore(aws.client("s3"), BUCKET)  # admin keys: the API's part, not under test
    job = uuid.uuid4().hex
    shards = [Shard(index=n, start=n, end=n + 1, inference_id=f"{job}-{n}",
                    input_location=store.shard_input_location(job, n),
                    output_location=f"s3://{BUCKET}/batch/output/{job}-{n}.out",
                    failure_location=f"s3://{BUCKET}/batch/failures/{job}-{n}-error.out")
              for n in range(2)]
    delivery = Delivery(bucket=BUCKET, source_key="inbox/batch/ward 9.jsonl",
                        result_key="outbox/batch/ward 9.jsonl",
                        report_key="failed/batch/ward 9.jsonl.error.json", family="jsonl")
    store.create_sharded(JobRecord(job_id=job, target="ms", items=2,
                                   input_location=store.input_location(job), shards=shards,
                                   delivery=delivery, created_at=now_iso(), updated_at=now_iso()),
                         [json.dumps({"items": [i]}).encode() for i in ITEMS])
    s3 = aws.client("s3")
    for item, sh in zip(ITEMS, shards, strict=True):  # what SageMaker writes
        s3.put_object(Bucket=BUCKET, Key=(sh.output_location or "").removeprefix(f"s3://{BUCKET}/"),
                      Body=json.dumps({"model_version": "v1", "target": "ms", "results": [
                          {"comment_id": item["comment_id"], "labels": ["Staff"],
                           "sentiment": {"score": 1, "label": "very positive"}}]}).encode())
    notes = as_lambda("notifications")
    for sh in shards:
        done = notes.handler(sns_event({
            "invocationStatus": "Completed", "inferenceId": sh.inference_id,
            "requestParameters": {"inputLocation": sh.input_location},
            "responseParameters": {"outputLocation": sh.output_location}}), LambdaContext())
        assert done == {"processed": 1, "skipped": 0}, aws.recorder.denied()
    record = json.loads(s3.get_object(Bucket=BUCKET, Key=f"jobs/{job}.json")["Body"].read())
    assert record["status"] == "collected", aws.recorder.denied()
    rows = s3.get_object(Bucket=BUCKET, Key=delivery.result_key)["Body"].read().decode()
    assert [json.loads(r)["comment_id"] for r in rows.splitlines()] == ["c1", "c2"]
    assert not [k for k in objects(aws, "batch/") if job in k]  # inputs and results deleted


# --- the drop folder ---------------------------------------------------------------------------


def test_drop_folder_labels_a_file_and_a_repeated_event_finds_the_result(
        aws: Aws, as_lambda: Callable) -> None:
    drop = as_lambda("dropfolder")
    aws.client("s3").put_object(Bucket=BUCKET, Key="inbox/ward 7.csv", Body=csv_bytes())
    event = s3_event("inbox/ward 7.csv", bucket=BUCKET)
    first = drop.handler(event, LambdaContext())
    assert [o["status"] for o in first["outcomes"]] == ["done"]
    again = drop.handler(event, LambdaContext())  # S3 delivers at least once
    assert [o["status"] for o in again["outcomes"]] == ["already_done"]  # HeadObject on outbox/
    assert objects(aws, "inbox/") == set() and "outbox/ward 7.csv" in objects(aws, "outbox/")


def test_drop_folder_rejects_a_bad_file_and_a_repeated_event_finds_the_report(
        aws: Aws, as_lambda: Callable) -> None:
    drop = as_lambda("dropfolder")
    aws.client("s3").put_object(Bucket=BUCKET, Key="inbox/notes.csv", Body=b"just,some\n1,2\n")
    event = s3_event("inbox/notes.csv", bucket=BUCKET)
    first = drop.handler(event, LambdaContext())
    assert [o["status"] for o in first["outcomes"]] == ["failed"]  # CopyObject + report
    again = drop.handler(event, LambdaContext())
    assert [o["status"] for o in again["outcomes"]] == ["already_done"]  # HeadObject on failed/
    assert objects(aws, "failed/") >= {"failed/notes.csv", "failed/notes.csv.error.json"}


def test_batch_inbox_file_becomes_a_job_and_its_results_come_back_to_outbox(
        aws: Aws, as_lambda: Callable) -> None:
    """inbox/batch/: the drop folder submits a job (input, record, InvokeEndpointAsync) with its
    role only; the notifications Lambda delivers the results to outbox/batch/ with its own."""
    drop = as_lambda("dropfolder")
    aws.client("s3").put_object(Bucket=BUCKET, Key="inbox/batch/ward 9.csv", Body=csv_bytes())
    out = drop.handler(s3_event("inbox/batch/ward 9.csv", bucket=BUCKET), LambdaContext())
    [outcome] = out["outcomes"]
    assert outcome["status"] == "submitted", (outcome, aws.recorder.denied())
    job = outcome["job_id"]
    s3 = aws.client("s3")
    record = json.loads(s3.get_object(Bucket=BUCKET, Key=f"jobs/{job}.json")["Body"].read())
    out_key = record["output_location"].removeprefix(f"s3://{BUCKET}/")
    ids = [r[0] for r in ROWS]
    results = {"model_version": "v1", "target": "ms", "results": [
        {"comment_id": i, "labels": ["Staff"], "sentiment": {"score": 1, "label": "very positive"}}
        for i in ids]}
    s3.put_object(Bucket=BUCKET, Key=out_key, Body=json.dumps(results).encode())  # SageMaker
    notes = as_lambda("notifications")
    done = notes.handler(sns_event({
        "invocationStatus": "Completed", "inferenceId": job,
        "requestParameters": {"inputLocation": record["input_location"]},
        "responseParameters": {"outputLocation": record["output_location"]}}), LambdaContext())
    assert done == {"processed": 1, "skipped": 0}, aws.recorder.denied()
    assert "outbox/batch/ward 9.csv" in objects(aws, "outbox/batch/")
    # a job that fails: its report goes to failed/batch/
    s3.put_object(Bucket=BUCKET, Key="inbox/batch/ward 10.csv", Body=csv_bytes())
    [outcome] = drop.handler(s3_event("inbox/batch/ward 10.csv", bucket=BUCKET),
                             LambdaContext())["outcomes"]
    job = outcome["job_id"]
    record = json.loads(s3.get_object(Bucket=BUCKET, Key=f"jobs/{job}.json")["Body"].read())
    fail_key = record["failure_location"].removeprefix(f"s3://{BUCKET}/")
    s3.put_object(Bucket=BUCKET, Key=fail_key, Body=b'{"error": "out of memory"}')
    failed = notes.handler(sns_event({
        "invocationStatus": "Failed", "inferenceId": job, "failureReason": "ClientError",
        "requestParameters": {"inputLocation": record["input_location"]},
        "responseParameters": {"failureLocation": record["failure_location"]}}), LambdaContext())
    assert failed == {"processed": 1, "skipped": 0}, aws.recorder.denied()
    assert "failed/batch/ward 10.csv.error.json" in objects(aws, "failed/batch/")


def test_without_read_on_outbox_a_repeated_event_is_refused(aws: Aws) -> None:
    """The check bites: the drop-folder policy as it was (PutObject only on outbox/ and
    failed/) makes the repeated event's HeadObject fail with 403, as on AWS."""
    from twolane.dropfolder.process import process_event

    start = len(aws.recorder.calls)
    old = json.loads(json.dumps(aws.policies["dropfolder"]))
    for st in old["Statement"]:
        if any("/outbox/" in r for r in st["Resource"]) and isinstance(st["Action"], list):
            st["Action"] = [a for a in st["Action"] if a != "s3:GetObject"]
    iam = aws.client("iam")
    iam.create_user(UserName="dropfolder-old")
    iam.put_user_policy(UserName="dropfolder-old", PolicyName="old",
                        PolicyDocument=json.dumps(old))
    k = iam.create_access_key(UserName="dropfolder-old")["AccessKey"]
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=aws.endpoint,
                      aws_access_key_id=k["AccessKeyId"],
                      aws_secret_access_key=k["SecretAccessKey"])
    event = s3_event("inbox/ward 7.csv", bucket=BUCKET)  # labelled above: a repeat
    with pytest.raises(ClientError) as e:
        process_event(event, predictor=None, s3=s3)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError):  # and a role never reaches what it was not given
        aws.client("s3", "dropfolder").put_object(Bucket=BUCKET, Key="batch/output/x.out",
                                                  Body=b"{}")
    del aws.recorder.calls[start:]  # refused on purpose: not the handlers' calls


# --- the API-key authorizer --------------------------------------------------------------------


def test_authorizer_reads_the_key_hashes_with_its_role_only(
        aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.api_keys import key_hash, new_key

    env = environment(aws.template, HANDLERS["authorizer"], aws.refs)
    key = new_key()
    aws.client("ssm").put_parameter(Name=env["TWOLANE_API_KEY_PARAMETER"], Type="String",
                                    Value=json.dumps({"trust-a": key_hash(key)}))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    access, secret = aws.keys["authorizer"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    monkeypatch.syspath_prepend(str(REPO / "functions" / "api" / "authorizer"))
    monkeypatch.delitem(sys.modules, "handler", raising=False)
    authz = importlib.import_module("handler")
    monkeypatch.setattr(authz, "_cache", None)
    event = {"version": "2.0", "type": "REQUEST", "routeKey": "$default",
             "headers": {"x-api-key": key}}
    assert authz.handler(event, LambdaContext()) == {"isAuthorized": True,
                                                     "context": {"client": "trust-a"}}
    monkeypatch.delitem(sys.modules, "handler", raising=False)


# --- the batch lane on Lambda (batch.host "lambda") -------------------------------------------

ON_LAMBDA = {"batch_worker": "functions.batch_worker.handler.handler",
             "api_on_lambda": HANDLERS["api"], "dropfolder_on_lambda": HANDLERS["dropfolder"],
             "notifications_on_lambda": HANDLERS["notifications"]}
# moto's SNS does not call KMS when a message is published: the worker's kms:GenerateDataKey /
# kms:Decrypt on the topics' key (what SNS needs on AWS for an encrypted topic) go unused here.
NOT_CALLED_IN_MOTO = ("kms:",)
OTHER_BUCKET = "twolane-iam-elsewhere"  # a bucket none of the stack's roles is granted


@dataclass
class OnLambda:
    template: dict[str, Any]
    refs: dict[str, dict[str, str]]
    policies: dict[str, dict[str, Any]]
    queue: str  # SQS queue (admin) subscribed to the worker's two topics

    def env(self, user: str) -> dict[str, str]:
        return environment(self.template, ON_LAMBDA[user], self.refs)


@pytest.fixture(scope="module")
def on_lambda(aws: Aws, lambda_host: tuple[Any, Any]) -> OnLambda:
    """The lambda-host template's worker, invoker and notifications policies as IAM users of
    the same moto (the bucket is the same), its two batch topics, and a queue (admin) that
    reads what is published to them."""
    tpl = lambda_host[1].template
    data = [lid for lid, r in resources(tpl, "AWS::S3::Bucket").items()
            if "LoggingConfiguration" in r["Properties"]]
    refs = refs_for(tpl, {data[0]: BUCKET})
    policies = {user: role_policy(tpl, handler, refs) for user, handler in ON_LAMBDA.items()}
    iam = aws.client("iam")
    for user, doc in policies.items():
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="role", PolicyDocument=json.dumps(doc))
        k = iam.create_access_key(UserName=user)["AccessKey"]
        aws.keys[user] = (k["AccessKeyId"], k["SecretAccessKey"])
    sns, sqs = aws.client("sns"), aws.client("sqs")
    queue = sqs.create_queue(QueueName="worker-topics")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    for lid in resources(tpl, "AWS::SNS::Topic"):
        arn = sns.create_topic(Name=refs[lid]["Arn"].rsplit(":", 1)[-1])["TopicArn"]
        sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
    aws.client("s3").create_bucket(Bucket=OTHER_BUCKET,
                                   CreateBucketConfiguration={"LocationConstraint": REGION})
    return OnLambda(tpl, refs, policies, queue)


@pytest.fixture
def on_lambda_as(aws: Aws, on_lambda: OnLambda, batch_bundle: Path,
                 lambda_module: Callable[[str], ModuleType],
                 monkeypatch: pytest.MonkeyPatch) -> Callable[..., ModuleType]:
    """Import a lambda-host handler fresh, as its Lambda would run it: that function's
    environment from the lambda-host template (no other TWOLANE_* variable; the bundles are
    the test's) and its role's keys. Each load is a new execution environment: boto3 clients
    are made on first use with the keys of the role loaded last."""
    keep = ("TWOLANE_AWS_ENDPOINT_URL", "TWOLANE_INSTANT_BUNDLE")  # moto; the test bundle

    def load(user: str, **override: str) -> ModuleType:
        env = on_lambda.env(user)
        env.pop("TWOLANE_INSTANT_BUNDLE", None)  # /var/task/bundle in the Lambda
        if "TWOLANE_BATCH_BUNDLE" in env:
            env["TWOLANE_BATCH_BUNDLE"] = str(batch_bundle)  # /var/task/bundle in the Lambda
        for k in [k for k in os.environ if k.startswith("TWOLANE_") and k not in keep]:
            monkeypatch.delenv(k)
        for k, v in {**env, **override}.items():
            monkeypatch.setenv(k, v)
        key, secret = aws.keys[user]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
        return lambda_module(ON_LAMBDA[user].rsplit(".", 1)[0])

    return load


def published(aws: Aws, on_lambda: OnLambda, n: int) -> list[tuple[str, dict[str, Any]]]:
    """The next `n` messages published to the worker's topics: (topic ARN, message)."""
    sqs = aws.client("sqs")
    got: list[tuple[str, dict[str, Any]]] = []

    def receive() -> bool:
        for m in sqs.receive_message(QueueUrl=on_lambda.queue, MaxNumberOfMessages=10,
                                     WaitTimeSeconds=1).get("Messages", []):
            sqs.delete_message(QueueUrl=on_lambda.queue, ReceiptHandle=m["ReceiptHandle"])
            envelope = json.loads(m["Body"])
            got.append((envelope["TopicArn"], json.loads(envelope["Message"])))
        return len(got) >= n

    wait_for(receive, 30, f"{n} message(s) on the worker's topics")
    return got


def topic_event(topic: str, message: dict[str, Any]) -> dict[str, Any]:
    """The SNS event Lambda gives the notifications function for one message of `topic`."""
    event = sns_event(message)
    record = event["Records"][0]
    record["Sns"]["TopicArn"] = topic
    record["EventSubscriptionArn"] = f"{topic}:{uuid.uuid4()}"
    return event


def worker_topics(on_lambda: OnLambda) -> tuple[str, str]:
    env = on_lambda.env("batch_worker")
    return env["TWOLANE_BATCH_SUCCESS_TOPIC_ARN"], env["TWOLANE_BATCH_ERROR_TOPIC_ARN"]


def refused_calls(aws: Aws, start: int) -> list[Any]:
    return [c for c in aws.recorder.calls[start:] if c.user in ON_LAMBDA and not c.allowed]


def test_lambda_host_job_runs_through_the_real_handlers_each_with_its_role_only(
        aws: Aws, on_lambda: OnLambda, on_lambda_as: Callable[..., ModuleType],
        batch_bundle: Path) -> None:
    """POST /v1/jobs (API role, TWOLANE_BATCH_INVOKER=lambda, shard size 1): two Event
    invokes of the worker named in its environment -> the real worker handler on each shard
    (worker role, the tiny batch bundle) -> its messages -> the notifications handler
    (notifications role) -> GET /v1/jobs/<id> (API role) answers the model's labels. The
    invoke is the only grant the API needs beyond the endpoint host's S3 statements."""
    start = len(aws.recorder.calls)
    api_env = on_lambda.env("api_on_lambda")
    api = on_lambda_as("api_on_lambda", TWOLANE_BATCH_SHARD_SIZE="1")
    items = [{**i, "question_type": "nonspecific"} for i in ITEMS]
    status, accepted = call_api(api, "POST", "/v1/jobs", {"items": items, "target": "ms"})
    assert status == 202, (accepted, refused_calls(aws, start))
    job = accepted["job_id"]
    invoked = aws.recorder.invocations[-2:]
    assert [(i["function"], i["type"]) for i in invoked] == \
        [(api_env["TWOLANE_BATCH_FUNCTION"], "Event")] * 2
    events = [json.loads(i["payload"]) for i in invoked]
    assert [e["input_location"] for e in events] == \
        [f"s3://{BUCKET}/{batch_shard_input_key(job, n)}" for n in range(2)]
    api_calls = {c.action for c in aws.recorder.calls[start:] if c.user == "api_on_lambda"}
    assert "lambda:InvokeFunction" in api_calls and not [
        a for a in api_calls if not a.startswith(("s3:", "lambda:InvokeFunction"))]

    worker = on_lambda_as("batch_worker")
    for e in events:
        assert worker.handler(e, LambdaContext()) == {"inference_id": e["inference_id"],
                                                      "status": "Completed"}
    success, _ = worker_topics(on_lambda)
    messages = published(aws, on_lambda, 2)
    assert {(t, m["inferenceId"]) for t, m in messages} == \
        {(success, shard_inference_id(job, n)) for n in range(2)}

    notes = on_lambda_as("notifications_on_lambda")
    for topic, message in messages:
        assert notes.handler(topic_event(topic, message), LambdaContext()) == \
            {"processed": 1, "skipped": 0}, refused_calls(aws, start)

    api = on_lambda_as("api_on_lambda")  # another execution environment answers the GET
    status, body = call_api(api, "GET", f"/v1/jobs/{job}")
    assert status == 200, (body, refused_calls(aws, start))
    from twolane.predictors.batch import BatchPredictor

    direct = BatchPredictor.from_bundle(batch_bundle).predict_texts(  # the worker's bundle
        [i["comment_text"] for i in ITEMS], ["nonspecific"] * 2, target="ms",
        ids=[i["comment_id"] for i in ITEMS])
    assert [(r["comment_id"], r["labels"]) for r in body["results"]] == \
        [(p.comment_id, p.labels) for p in direct]
    assert call_api(api, "GET", f"/v1/jobs/{job}")[0] == 410
    assert not [k for k in objects(aws, "batch/") if job in k]
    assert refused_calls(aws, start) == []
    assert unused_grants(on_lambda.policies["api_on_lambda"], aws.recorder.calls,
                         "api_on_lambda", NOT_CALLED_BY_HANDLERS + ("s3:",)) == []


def test_lambda_host_batch_inbox_file_runs_through_the_real_handlers_each_with_its_role_only(
        aws: Aws, on_lambda: OnLambda, on_lambda_as: Callable[..., ModuleType]) -> None:
    """inbox/batch/: the drop folder (its role) submits the job with an Event invoke of the
    worker; the worker finds the shard's input gone (the job's inputs deleted, as when another
    shard failed first): its "not found" failure goes to the error topic, and the
    notifications Lambda reports the failed job to failed/batch/."""
    start = len(aws.recorder.calls)
    drop = on_lambda_as("dropfolder_on_lambda")
    aws.client("s3").put_object(Bucket=BUCKET, Key="inbox/batch/ward 11.csv", Body=csv_bytes())
    [outcome] = drop.handler(s3_event("inbox/batch/ward 11.csv", bucket=BUCKET),
                             LambdaContext())["outcomes"]
    assert outcome["status"] == "submitted", (outcome, refused_calls(aws, start))
    invoked = aws.recorder.invocations[-1]
    assert (invoked["function"], invoked["type"]) == (
        on_lambda.env("dropfolder_on_lambda")["TWOLANE_BATCH_FUNCTION"], "Event")
    event = json.loads(invoked["payload"])
    assert event["inference_id"].startswith(outcome["job_id"])
    aws.client("s3").delete_object(  # admin: the test's setup, not under test
        Bucket=BUCKET, Key=event["input_location"].removeprefix(f"s3://{BUCKET}/"))

    worker = on_lambda_as("batch_worker")
    assert worker.handler(event, LambdaContext())["status"] == "Failed"
    [(topic, message)] = published(aws, on_lambda, 1)
    assert topic == worker_topics(on_lambda)[1] and message["invocationStatus"] == "Failed"
    notes = on_lambda_as("notifications_on_lambda")
    assert notes.handler(topic_event(topic, message), LambdaContext()) == \
        {"processed": 1, "skipped": 0}, refused_calls(aws, start)
    report = json.loads(aws.client("s3").get_object(
        Bucket=BUCKET, Key="failed/batch/ward 11.csv.error.json")["Body"].read())
    assert report["job_id"] == outcome["job_id"] and "could not label" in report["error"]
    record = json.loads(aws.client("s3").get_object(
        Bucket=BUCKET, Key=f"jobs/{outcome['job_id']}.json")["Body"].read())
    assert record["status"] != "pending" and INPUT_NOT_FOUND in record["error"], record
    assert refused_calls(aws, start) == []
    assert unused_grants(on_lambda.policies["dropfolder_on_lambda"], aws.recorder.calls,
                         "dropfolder_on_lambda", NOT_CALLED_BY_HANDLERS + ("s3:",)) == []
    for key in objects(aws, "batch/"):
        if outcome["job_id"] in key:
            aws.client("s3").delete_object(Bucket=BUCKET, Key=key)


def test_lambda_host_worker_refused_by_its_role_fails_as_documented(
        aws: Aws, on_lambda: OnLambda, on_lambda_as: Callable[..., ModuleType]) -> None:
    """The real worker handler under its role, given locations its role does not reach:
    - an input outside batch/input/ in the bucket: refused by the event's validation before any
      call ("ignored"); its role could not read it either (403);
    - an input under batch/input/ of another bucket: GetObject is refused (403), and the shard
      fails as any unexpected fault does: the container's 500 answer as the failure object and
      a "Failed" message on the error topic, never the exception's text;
    - an output in another bucket: PutObject is refused and the handler raises (403), so on
      AWS Lambda's on-failure record goes to the error topic and fails the shard.
    With one shard done, every grant of the worker's role has been used by its handler; its
    role reaches nothing else."""
    worker = on_lambda_as("batch_worker")
    s3, sns = aws.client("s3", "batch_worker"), aws.client("sns", "batch_worker")
    admin = aws.client("s3")
    job = uuid.uuid4().hex
    ok = WorkerEvent.for_invocation(
        BUCKET, input_location=f"s3://{BUCKET}/{batch_shard_input_key(job, 0)}",
        inference_id=shard_inference_id(job, 0), endpoint="twolane-batch").model_dump()
    body = json.dumps({"items": ITEMS}).encode()
    admin.put_object(Bucket=BUCKET, Key=f"jobs/{job}.json", Body=body)
    admin.put_object(Bucket=OTHER_BUCKET, Key=batch_shard_input_key(job, 0), Body=body)
    admin.put_object(Bucket=BUCKET, Key=batch_shard_input_key(job, 0), Body=body)
    start = len(aws.recorder.calls)

    assert worker.handler(ok, LambdaContext()) == {"inference_id": ok["inference_id"],
                                                   "status": "Completed"}
    [(topic, _)] = published(aws, on_lambda, 1)
    assert topic == worker_topics(on_lambda)[0]
    admin.put_object(Bucket=BUCKET, Key=batch_shard_input_key(job, 0), Body=body)  # as new
    start = len(aws.recorder.calls)

    outside = {**ok, "input_location": f"s3://{BUCKET}/jobs/{job}.json"}
    assert worker.handler(outside, LambdaContext()) == {"status": "ignored",
                                                        "reason": "malformed event"}
    assert [c for c in aws.recorder.calls[start:] if c.user == "batch_worker"] == []
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=BUCKET, Key=f"jobs/{job}.json")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    elsewhere = {**ok, "input_location": f"s3://{OTHER_BUCKET}/{batch_shard_input_key(job, 0)}"}
    assert worker.handler(elsewhere, LambdaContext()) == {"inference_id": ok["inference_id"],
                                                          "status": "Failed"}
    assert [c.resource for c in refused_calls(aws, start) if c.action == "s3:GetObject"] == [
        f"arn:aws:s3:::{BUCKET}/jobs/{job}.json",
        f"arn:aws:s3:::{OTHER_BUCKET}/{batch_shard_input_key(job, 0)}"]
    failure = admin.get_object(Bucket=BUCKET, Key=batch_failure_key(ok["inference_id"]))
    assert json.loads(failure["Body"].read()) == {"error": SERVER_ERROR}
    [(topic, message)] = published(aws, on_lambda, 1)
    assert topic == worker_topics(on_lambda)[1]
    assert message["failureReason"] == "ClientError: Received server error (500) from model"

    away = {**ok, "output_location": f"s3://{OTHER_BUCKET}/{batch_output_key(ok['inference_id'])}"}
    with pytest.raises(ClientError) as e:
        worker.handler(away, LambdaContext())
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "Contents" not in admin.list_objects_v2(Bucket=OTHER_BUCKET, Prefix="batch/output/")

    # and nothing else: no job records, no reading results, no rewriting or deleting inputs,
    # no other topic, no invoking
    alarms = next(on_lambda.refs[lid]["Arn"] for lid, r in resources(
        on_lambda.template, "AWS::SNS::Topic").items()
        if "alarms" in r["Properties"].get("DisplayName", ""))
    refused: list[Callable[[], Any]] = [
        lambda: s3.put_object(Bucket=BUCKET, Key=f"jobs/{job}.json", Body=b"{}"),
        lambda: s3.get_object(Bucket=BUCKET, Key=batch_failure_key(ok["inference_id"])),
        lambda: s3.put_object(Bucket=BUCKET, Key=batch_shard_input_key(job, 0), Body=b"{}"),
        lambda: s3.delete_object(Bucket=BUCKET, Key=batch_shard_input_key(job, 0)),
        lambda: s3.put_object(Bucket=BUCKET, Key="outbox/x.csv", Body=b""),
        lambda: sns.publish(TopicArn=alarms, Message="{}"),
        lambda: aws.client("lambda", "batch_worker").invoke(
            FunctionName=on_lambda.env("api_on_lambda")["TWOLANE_BATCH_FUNCTION"],
            InvocationType="Event", Payload=b"{}"),
    ]
    for call in refused:
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert unused_grants(on_lambda.policies["batch_worker"], aws.recorder.calls, "batch_worker",
                         NOT_CALLED_BY_HANDLERS + NOT_CALLED_IN_MOTO) == []
    for bucket in (BUCKET, OTHER_BUCKET):
        for key in objects(aws, "", bucket):
            if job in key:
                admin.delete_object(Bucket=bucket, Key=key)


def test_lambda_host_invokers_may_invoke_the_worker_only(
        aws: Aws, on_lambda: OnLambda) -> None:
    """The invokers' one new grant reaches the worker (used by the flows above) and nothing
    else: not another function, not SageMaker."""
    for user in ("api_on_lambda", "dropfolder_on_lambda"):
        lam = aws.client("lambda", user)
        with pytest.raises(ClientError) as e:
            lam.invoke(FunctionName="another-function", InvocationType="Event", Payload=b"{}")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        with pytest.raises(ClientError) as e:
            aws.client("sagemaker-runtime", user).invoke_endpoint_async(
                EndpointName="twolane-dev-batch-g4dn-xlarge",
                InputLocation=f"s3://{BUCKET}/batch/input/x.json")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_lambda_host_keeps_the_s3_grants_the_endpoint_tests_exercise(
        aws: Aws, on_lambda: OnLambda) -> None:
    """Only the invoke grant differs between the hosts: the S3 statements of the jobs API, the
    drop folder and the notifications Lambda are the same, so the handler flows above (run on
    the endpoint template) hold on the Lambda host as well."""
    def s3_statements(policy: dict[str, Any]) -> list[Any]:
        return [st for st in policy["Statement"] if str(st["Action"]).startswith(("s3:", "['s3:"))]

    lambda_notes = role_policy(on_lambda.template, HANDLERS["notifications"], on_lambda.refs)
    for user, theirs in (("api", on_lambda.policies["api_on_lambda"]),
                         ("dropfolder", on_lambda.policies["dropfolder_on_lambda"]),
                         ("notifications", lambda_notes)):
        assert s3_statements(theirs) == s3_statements(aws.policies[user]), user
        assert s3_statements(theirs)


# --- nothing more ------------------------------------------------------------------------------


def test_every_call_was_allowed_and_every_grant_was_used(
        aws: Aws, request: pytest.FixtureRequest) -> None:
    """Runs last in this module: the handler tests above exercised every flow."""
    flows = {name for name, f in globals().items() if name.startswith("test_") and callable(f)}
    flows.discard(request.node.name)
    selected = {i.name for i in request.session.items if i.module is request.module}
    if not flows <= selected:
        pytest.skip("the unused-grant check needs every test of this module to run")
    handler_users = set(HANDLERS)
    denied = [c for c in aws.recorder.denied() if c.user in handler_users]
    assert denied == [], "handler calls the stack's policies refuse"
    for user in HANDLERS:
        unused = unused_grants(aws.policies[user], aws.recorder.calls, user,
                               NOT_CALLED_BY_HANDLERS)
        assert unused == [], f"{user}: granted but never called by the handler"

