"""Summaries on the async lane: a tiny randomly initialised GPT-2 (2 layers, 64 wide, the packaged
MiniLM tokenizer; nothing fetched). Its text has no meaning; the tests check the mechanics:
prompt fitting, deterministic decoding, the container route and the API job lifecycle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from batchlane_helpers import bucket_ready, lane_settings, moto_server, poll_job
from fastapi.testclient import TestClient

COMMENTS = [
    "There is never anywhere to park near the outpatients entrance",
    "n/a",
    "Parking charges are far too high for people visiting every day",
    "",
    "The car park barrier was broken and we were late for the appointment",
]
INSTRUCTION = "Summarise these comments about parking in three bullet points."


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model_build.tiny_llm import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("llm") / "tiny-gpt2")


@pytest.fixture(scope="module")
def generator(tiny_llm: Path) -> Any:
    from twolane.predictors.summaries import Generator

    return Generator.from_pretrained(tiny_llm, device="cpu")


def test_summarise_is_deterministic_and_skips_blank_comments(generator: Any) -> None:
    a, used = generator.summarise(COMMENTS, INSTRUCTION, max_new_tokens=12)
    b, _ = generator.summarise(COMMENTS, INSTRUCTION, max_new_tokens=12)
    assert a == b and a.strip()  # greedy: same input, same text
    assert used == 3  # "n/a" and "" are not sent to the model
    n_new = len(generator.tokenizer(a, add_special_tokens=False)["input_ids"])
    assert 1 <= n_new <= 12 + 2  # decoding may merge/split word pieces a little


def test_prompt_is_cut_to_the_context(generator: Any) -> None:
    many = [f"Comment number {i} says the parking at the hospital was a problem" for i in range(200)]
    used = generator.fit(INSTRUCTION, many, max_new_tokens=50)
    assert 0 < len(used) < 200 and used == many[:len(used)]
    prompt = generator._prompt(INSTRUCTION, used)
    assert generator._n_tokens(prompt) + 50 <= generator.context
    text, n = generator.summarise(many, INSTRUCTION, max_new_tokens=8)
    assert n == len(generator.fit(INSTRUCTION, many, max_new_tokens=8)) > len(used) and text
    assert generator.summarise(["n/a", ""], INSTRUCTION) == ("", 0)


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


def test_summary_job_through_the_api(moto: str, tmp_path: Path, batch_bundle: Path,
                                     tiny_llm: Path, generator: Any) -> None:
    from local_stack.batch_lane import notifications_lambda
    from local_stack.invoker import local_job_service
    from local_stack.runner import AsyncRunner
    from twolane.api.app import create_app

    settings = lane_settings(tmp_path, batch_bundle, generation_model=str(tiny_llm))
    bucket_ready(settings)
    runner = AsyncRunner(settings, lambda: batch_bundle, notify=notifications_lambda).start()
    try:
        app = create_app(settings=settings, jobs=local_job_service(settings))
        api = TestClient(app, raise_server_exceptions=False)
        items = [{"comment_id": str(i), "comment_text": t} for i, t in enumerate(COMMENTS)]
        r = api.post("/v1/summaries", json={"items": items, "instruction": INSTRUCTION,
                                            "max_new_tokens": 12})
        assert r.status_code == 202, r.text
        done = poll_job(api, r.json()["results_url"], timeout=90)
        assert done.status_code == 200, done.text
        body = done.json()
        expected, used = generator.summarise(COMMENTS, INSTRUCTION, max_new_tokens=12)
        assert body == {"job_id": r.json()["job_id"], "model_version": "tiny-gpt2",
                        "target": "summary", "items": 5, "items_used": used, "summary": expected}
        assert api.get(r.json()["results_url"]).status_code == 410
    finally:
        runner.stop()
