"""Runtime switches the infra sets from its config: TWOLANE_BATCH_ENABLED=0 (no batch lane:
/v1/jobs and the slow API answer 503 with a reason) and TWOLANE_SUMMARIES_ENABLED=0 (no LLM:
/v1/summaries answers 501). The key is still checked first; the instant lane is unaffected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from twolane.api.app import create_app
from twolane.predictors.instant import InstantPredictor
from twolane.settings import Settings

ITEMS = [{"comment_id": "c1", "comment_text": "The nurses were kind", "question_type": "what_good"}]


@pytest.fixture(scope="module")
def predictor(instant_bundle: Path) -> InstantPredictor:
    return InstantPredictor.from_bundle(instant_bundle)


def client(predictor: Any, **kw: Any) -> TestClient:
    return TestClient(create_app(predictor, Settings(**kw)), raise_server_exceptions=False)


def test_batch_off_answers_503_on_jobs_and_the_slow_api(predictor: Any) -> None:
    c = client(predictor, batch_enabled=False)
    for method, path, body in (("POST", "/v1/jobs", {"items": ITEMS}),
                               ("GET", "/v1/jobs/" + "0" * 32, None),
                               ("POST", "/api/StartContainerInstance", ITEMS),
                               ("GET", "/api/GetResults/" + "0" * 32, None)):
        r = c.request(method, path, json=body)
        assert r.status_code == 503, (path, r.text)
        assert "batch lane is not enabled" in r.json()["detail"], path
    assert c.post("/v1/predict", json={"items": ITEMS}).status_code == 200  # instant lane on
    assert c.post("/api/StartContainerInstance", content=b"not json").status_code == 503


def test_summaries_off_answers_501(predictor: Any) -> None:
    c = client(predictor, summaries_enabled=False)
    r = c.post("/v1/summaries", json={"items": ITEMS})
    assert r.status_code == 501 and "summaries are not enabled" in r.json()["detail"]
    assert client(predictor, summaries_enabled=False, batch_enabled=False).post(
        "/v1/summaries", json={"items": ITEMS}).status_code == 501


def test_the_key_is_checked_before_the_switch(predictor: Any) -> None:
    c = client(predictor, batch_enabled=False, summaries_enabled=False, api_keys="k1")
    assert c.post("/v1/jobs", json={"items": ITEMS}).status_code == 401
    assert c.post("/v1/summaries", json={"items": ITEMS}).status_code == 401
    assert c.post("/api/StartContainerInstance", json=ITEMS).status_code == 401
    r = c.post("/v1/jobs", json={"items": ITEMS}, headers={"x-api-key": "k1"})
    assert r.status_code == 503


def test_switches_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWOLANE_BATCH_ENABLED", "0")
    monkeypatch.setenv("TWOLANE_SUMMARIES_ENABLED", "0")
    api = Settings().api
    assert not api.batch_enabled and not api.summaries_enabled
    monkeypatch.delenv("TWOLANE_BATCH_ENABLED")
    monkeypatch.delenv("TWOLANE_SUMMARIES_ENABLED")
    assert Settings().api.batch_enabled and Settings().api.summaries_enabled  # on by default
