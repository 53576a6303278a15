"""The OpenAPI document fuzzed by schemathesis (issue 22): every operation, with data made from
its schema (valid and not), against the real app on the real small bundle. Each answer must be
documented (status code, content type, body shape), never a 5xx, and data the schema calls
invalid must be refused. Bounded: a fixed seed, a few examples per operation; the smaller
cases the fuzz found are tests of their own below.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from moto import mock_aws
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from twolane.api.app import create_app
from twolane.jobs.invoker import Invocation
from twolane.jobs.service import JobService
from twolane.jobs.store import S3JobStore
from twolane.settings import Settings

BUCKET = "twolane-schema-fuzz"
CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection)


class PendingInvoker:
    """Takes every job and never finishes it (the container's side is tested elsewhere)."""

    def unavailable_reason(self, kind: str) -> str | None:
        return None

    def invoke(self, *, input_location: str, inference_id: str, kind: str) -> Invocation:
        return Invocation(inference_id=inference_id,
                          output_location=f"s3://{BUCKET}/batch/output/{inference_id}.out",
                          failure_location=None, endpoint="test")


@pytest.fixture(scope="module")
def app(instant_bundle: Path) -> Iterator[Any]:
    from twolane.predictors.instant import InstantPredictor

    mp = pytest.MonkeyPatch()
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        mp.setenv(k, "testing")
    mp.delenv("AWS_SESSION_TOKEN", raising=False)
    mp.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    mp.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-2")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        st = Settings(bucket=BUCKET)
        jobs = JobService(S3JobStore(s3, BUCKET), PendingInvoker(), st.batch)  # type: ignore[arg-type]
        yield create_app(InstantPredictor.from_bundle(instant_bundle), st, jobs=jobs)
    mp.undo()


FUZZ = settings(max_examples=15, derandomize=True, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


def test_every_operation_answers_as_documented(app: Any) -> None:
    """Each operation in turn (valid and invalid data from its schema, 15 examples, fixed seed)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8
    for op in operations:
        @FUZZ
        @given(case=op.as_strategy())
        def answers(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        answers()


# --- what the fuzz found, one test each (each failed before) ---------------------------------

@pytest.fixture(scope="module")
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("value", ["yes", 1, "true", 0])
def test_include_probabilities_is_a_strict_boolean(client: TestClient, value: Any) -> None:
    r = client.post("/v1/predict", json={"items": [{"comment_id": "1", "comment_text": "Kind"}],
                                         "include_probabilities": value})
    assert r.status_code == 422, r.text


@pytest.mark.parametrize("path,body", [
    ("/v1/predict", b'{"items": [{"comment_id": "1", "comment_text": "a"}], "items": []}'),
    ("/v1/predict", b'{"items": [{"comment_id": "1", "comment_id": "2", "comment_text": "a"}]}'),
    ("/predict_multilabel", b'[{"comment_id": "1", "comment_text": "a", "comment_text": "b"}]'),
])
def test_a_json_body_with_a_key_twice_is_422(client: TestClient, path: str, body: bytes) -> None:
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text


def test_the_schema_tells_the_truth(app: Any) -> None:
    """`[]` is refused by the schema as by the API; 401, 422 and 503 documented wherever they
    can happen (every route but /health), 413 wherever items are counted."""
    doc = app.openapi()
    assert doc["components"]["schemas"]["PredictRequest"]["properties"]["items"]["minItems"] == 1
    body = doc["paths"]["/predict_multilabel"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"]["minItems"] == 1
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path == "/health":
                continue
            assert {"401", "503"} <= set(op["responses"]), (method, path)
            if method == "post":
                assert {"408", "413", "422"} <= set(op["responses"]), (method, path)
