"""The instant-lane API on a real small bundle: every path, every bad input, the Lambda adapter."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient
from lambda_http import LambdaContext

from twolane.api.app import create_app
from twolane.rules import LABELLING_NOT_POSSIBLE
from twolane.settings import Settings

COMMENTS = [
    {"comment_id": "a1", "comment_text": "The nurses were kind and explained everything clearly",
     "question_type": "what_good"},
    {"comment_id": "a2", "comment_text": "Waited four hours in A&E and parking was impossible",
     "question_type": "could_improve"},
    {"comment_id": "a3", "comment_text": "Food was cold and the ward was noisy at night",
     "question_type": "nonspecific"},
]
PLACEHOLDERS = ["", "n/a", "Did not answer", "\U0001F600\U0001F600", None]


@pytest.fixture(scope="module")
def predictor(instant_bundle: Path) -> Any:
    from twolane.predictors.instant import InstantPredictor

    return InstantPredictor.from_bundle(instant_bundle)


def client_for(predictor: Any, **settings: Any) -> TestClient:
    return TestClient(create_app(predictor, Settings(**settings)), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(predictor: Any) -> TestClient:
    with client_for(predictor) as c:
        yield c


def test_health_and_models(client: TestClient, predictor: Any) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "model_loaded": True, "model_version": predictor.version}
    m = client.get("/v1/models").json()
    assert m["version"] == predictor.version
    assert m["labels"] == list(predictor.labels) and len(m["labels"]) == 32
    assert set(m["thresholds"]) <= set(m["labels"])
    assert isinstance(m["metrics"], dict)
    # what the web page reads: NHS question types, no context column, the batch lane open
    assert m["question_types"] == ["what_good", "could_improve", "nonspecific"]
    assert m["context"] is None and m["batch_lane_refuses"] is None
    # what to trust: per label, training support and test F1; low-support labels named
    per = m["metrics"]["per_label"]
    assert set(per) == set(m["labels"])
    assert all({"train_support", "f1", "low_support"} <= set(v) for v in per.values())
    assert m["metrics"]["low_support_labels"] == [k for k in m["labels"] if per[k]["low_support"]]


def test_docs(client: TestClient) -> None:
    """Swagger UI from the vendored files, never a CDN (blank offline); /redoc sends browsers
    there; every file the docs page names is served."""
    import re

    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn." not in docs.text and "https://" not in docs.text
    for url in re.findall(r"(?:src|href)=['\"]?(/[^'\" >]+)", docs.text):
        assert client.get(url).status_code == 200, url
    assert "/openapi.json" in docs.text
    redoc = client.get("/redoc", follow_redirects=False)
    assert redoc.status_code in (302, 307) and redoc.headers["location"] == "/docs"
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/predict", "/predict_multilabel", "/health", "/v1/models"} <= set(paths)


def test_predict_labels_and_sentiment(client: TestClient, predictor: Any) -> None:
    r = client.post("/v1/predict", json={"items": COMMENTS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == predictor.version
    assert [x["comment_id"] for x in body["results"]] == ["a1", "a2", "a3"]
    direct = predictor.predict_texts([c["comment_text"] for c in COMMENTS],
                               contexts=[c["question_type"] for c in COMMENTS],
                               ids=["a1", "a2", "a3"])
    for got, want in zip(body["results"], direct, strict=False):
        assert got["labels"] == want.labels
        assert set(got["labels"]) <= set(predictor.labels) | {LABELLING_NOT_POSSIBLE}
        assert 1 <= got["sentiment"]["score"] <= 5 and got["sentiment"]["label"]
        assert got["probabilities"] is None
        assert "comment_text" not in got


def test_predict_probabilities(client: TestClient, predictor: Any) -> None:
    r = client.post("/v1/predict", json={"items": COMMENTS[:1], "include_probabilities": True})
    probs = r.json()["results"][0]["probabilities"]
    assert set(probs) == set(predictor.labels)
    assert all(0.0 <= p <= 1.0 for p in probs.values())


def test_placeholders_get_labelling_not_possible(client: TestClient) -> None:
    items = [{"comment_id": str(i), "comment_text": t} for i, t in enumerate(PLACEHOLDERS)]
    res = client.post("/v1/predict", json={"items": items}).json()["results"]
    assert [r["labels"] for r in res] == [[LABELLING_NOT_POSSIBLE]] * len(PLACEHOLDERS)
    assert all(r["sentiment"] is None for r in res)


def test_pxtextmining_shapes_exactly(client: TestClient) -> None:
    """Both of pxtextmining's request schemas in, exactly [{comment_id, labels}] out."""
    px = COMMENTS + [{"comment_id": "a4", "comment_text": "Did not answer",
                      "question_type": "nonspecific"},
                     {"comment_id": 5, "comment_text": "The ward was clean"},  # no question_type
                     {"comment_id": "a6", "comment_text": None, "extra": "ignored"},
                     {"comment_id": "a7", "question_type": "Nonspecific"},  # R drops an NA text
                     {"comment_id": "a8", "comment_text": "Lovely staff", "question_type": "other"}]
    r = client.post("/predict_multilabel", json=px)
    assert r.status_code == 200, r.text
    out = r.json()
    assert [x["comment_id"] for x in out] == ["a1", "a2", "a3", "a4", "5", "a6", "a7", "a8"]
    for got in out:
        assert list(got) == ["comment_id", "labels"]
        assert got["labels"] and all(isinstance(x, str) for x in got["labels"])
    assert [x["labels"] for x in out[3:4] + out[5:7]] == [[LABELLING_NOT_POSSIBLE]] * 3
    assert "comment_text" not in r.text


@pytest.mark.parametrize("bad", [
    {"comment_id": "1", "comment_text": "ok", "question_type": "what_good"},  # not a list
    [{"comment_text": "no id"}],
    [{"comment_id": None, "comment_text": "ok"}],
    [{"comment_id": True, "comment_text": "ok"}],
    [{"comment_id": "1", "comment_text": {"nested": "object"}}],
])
def test_pxtextmining_bad_shapes_422(client: TestClient, bad: Any) -> None:
    r = client.post("/predict_multilabel", json=bad)
    assert r.status_code == 422
    assert isinstance(r.json()["detail"], list)  # FastAPI's own validation detail


@pytest.mark.parametrize("path,body", [
    ("/v1/predict", {"items": []}),
    ("/predict_multilabel", []),
])
def test_empty_list_422(client: TestClient, path: str, body: Any) -> None:
    r = client.post(path, json=body)
    assert r.status_code == 422
    assert "at least one" in r.json()["detail"]


def test_malformed_json_and_wrong_types_422(client: TestClient) -> None:
    r = client.post("/v1/predict", content=b'{"items": [', headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["type"] == "json_invalid"
    for body in ({"items": "x"}, {"items": [{"comment_text": "no id"}]},
                 {"items": [{"comment_id": "1", "comment_text": 5}]},
                 {"items": [{"comment_id": "1", "text": "unknown field"}]},
                 {"items": [{"comment_id": "1", "comment_text": "x", "question_type": "bad"}]}):
        r = client.post("/v1/predict", json=body)
        assert r.status_code == 422, body
        assert r.json()["detail"][0]["loc"][0] == "body"


def test_duplicate_ids_named(client: TestClient) -> None:
    items = [{"comment_id": "x", "comment_text": "a"}, {"comment_id": "y", "comment_text": "b"},
             {"comment_id": "x", "comment_text": "c"}]
    r = client.post("/v1/predict", json={"items": items})
    assert r.status_code == 422
    assert r.json()["comment_ids"] == ["x"] and "'x'" in r.json()["detail"]
    px = [dict(i, question_type="nonspecific") for i in items]
    r = client.post("/predict_multilabel", json=px)
    assert r.status_code == 422 and r.json()["comment_ids"] == ["x"]


def test_too_many_items_413_and_too_long_422(predictor: Any) -> None:
    with client_for(predictor, max_items=3, max_text_chars=40) as c:
        items = [{"comment_id": str(i), "comment_text": "fine"} for i in range(4)]
        r = c.post("/v1/predict", json={"items": items})
        assert r.status_code == 413 and "limit is 3" in r.json()["detail"]
        px = [dict(i, question_type="what_good") for i in items]
        assert c.post("/predict_multilabel", json=px).status_code == 413
        items = [{"comment_id": "short", "comment_text": "fine"},
                 {"comment_id": "long", "comment_text": "x" * 41}]
        r = c.post("/v1/predict", json={"items": items})
        assert r.status_code == 422
        assert r.json()["comment_ids"] == ["long"] and "40 characters" in r.json()["detail"]
        assert c.post("/v1/predict", json={"items": items[:1]}).status_code == 200


def test_api_key_auth(predictor: Any) -> None:
    with client_for(predictor, api_keys="k-one, k-two") as c:
        assert c.get("/health").status_code == 200  # open
        r = c.post("/v1/predict", json={"items": COMMENTS[:1]})
        assert r.status_code == 401 and "x-api-key" in r.json()["detail"]
        r = c.post("/v1/predict", json={"items": COMMENTS[:1]}, headers={"x-api-key": "nope"})
        assert r.status_code == 401
        assert c.post("/predict_multilabel", json=COMMENTS[:1]).status_code == 401
        assert c.get("/v1/models").status_code == 401
        for key in ("k-one", "k-two"):
            r = c.post("/v1/predict", json={"items": COMMENTS[:1]}, headers={"x-api-key": key})
            assert r.status_code == 200


def test_missing_bundle_is_503_not_500(tmp_path: Path) -> None:
    app = create_app(settings=Settings(bundles=tmp_path, instant_bundle=None))
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["model_loaded"] is False
        assert c.post("/v1/predict", json={"items": COMMENTS}).status_code == 503
        assert c.post("/v1/predict", json={"items": []}).status_code == 422  # still the client's


class _Broken:
    """A server fault inside the model (not a prediction): the catch-all must answer a JSON 500."""

    version = "broken"

    def predict(self, *_: Any, **__: Any) -> Any:
        raise RuntimeError("onnxruntime exploded")


def test_server_fault_is_json_500() -> None:
    with TestClient(create_app(_Broken(), Settings()), raise_server_exceptions=False) as c:
        r = c.post("/v1/predict", json={"items": COMMENTS})
        assert r.status_code == 500 and r.json()["detail"] == "internal server error"
        assert set(r.json()) == {"detail", "request_id"} and "exploded" not in r.text


# --- Lambda: Mangum with a real API Gateway HTTP API (payload v2.0) event ---------------------

def http_api_event(method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
                   ) -> dict[str, Any]:
    h = {"accept": "*/*", "content-type": "application/json", "host": "abc123.execute-api.eu-west-2.amazonaws.com",
         "user-agent": "curl/8.5.0", "x-amzn-trace-id": "Root=1-65f0c0de-0123456789abcdef01234567",
         "x-forwarded-for": "203.0.113.7", "x-forwarded-port": "443", "x-forwarded-proto": "https"}
    h.update(headers or {})
    raw = json.dumps(body) if body is not None else None
    if raw is not None:
        h["content-length"] = str(len(raw))
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": h,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-west-2.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "10/Mar/2025:12:00:00 +0000",
            "timeEpoch": 1741608000000,
        },
        **({"body": raw} if raw is not None else {}),
        "isBase64Encoded": False,
    }


def test_lambda_handler_http_api_v2(lambda_module: Callable[[str], ModuleType]) -> None:
    mod = lambda_module("functions.api.handler")
    ctx = LambdaContext()
    r = mod.handler(http_api_event("GET", "/health"), ctx)
    assert r["statusCode"] == 200 and json.loads(r["body"])["model_loaded"] is True
    r = mod.handler(http_api_event("POST", "/v1/predict", {"items": COMMENTS}), ctx)
    assert r["statusCode"] == 200, r
    body = json.loads(r["body"])
    assert [x["comment_id"] for x in body["results"]] == ["a1", "a2", "a3"]
    r = mod.handler(http_api_event("POST", "/predict_multilabel", COMMENTS), ctx)
    assert r["statusCode"] == 200 and len(json.loads(r["body"])) == 3
    r = mod.handler(http_api_event("POST", "/v1/predict", {"items": []}), ctx)
    assert r["statusCode"] == 422


# --- unit tests with a fake predictor (the model is not under test) ---------------------------


def test_routes_speak_to_the_predictor_interface(fake_predictor: Any) -> None:
    from twolane.predictors import Predictor

    assert isinstance(fake_predictor, Predictor)
    c = TestClient(create_app(fake_predictor, Settings()), raise_server_exceptions=False)
    r = c.post("/v1/predict", json={"items": [{"comment_id": "b", "comment_text": "Kind staff"},
                                              {"comment_id": "a", "comment_text": "n/a"}]})
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == "fake-1"
    assert [(x["comment_id"], x["labels"]) for x in r.json()["results"]] == [
        ("b", ["Staff"]), ("a", ["Labelling not possible"])]
    px = c.post("/predict_multilabel", json=[{"comment_id": "1", "comment_text": "Kind staff",
                                              "question_type": "what_good"}])
    assert px.status_code == 200 and px.json()[0]["labels"] == ["Staff"]
    assert fake_predictor.calls == [2, 1]
