"""pxtextmining's clients, unchanged, against twolane: its quick-API examples and API tests, its
slow-API Python and R examples and the experiencesdashboard R client (as the bytes httr sends),
against a real uvicorn server and against the Lambda handler with API Gateway events; the
batch lane behind them is the local runner with the real container process on moto.

The flows live in tests/pxtm_flows.py (sources in docs/pxtextmining.md)."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pxtm_flows as px
import pytest
import requests
import uvicorn
from batchlane_helpers import bucket_ready, lane_settings, moto_server, stop_up, wait_for
from fastapi.testclient import TestClient
from lambda_http import LambdaContext, lambda_session

from local_stack.invoker import local_job_service
from local_stack.stack import free_port
from twolane.api.app import create_app
from twolane.api.deps import JobsHolder
from twolane.contract import Prediction, Sentiment
from twolane.pxtextmining import PxShapeError, parse_target, read_items, result_rows
from twolane.rules import CONTENT_FREE_SENTIMENT
from twolane.rules import LABELLING_NOT_POSSIBLE as LNP
from twolane.settings import Settings

LAMBDA_URL = "https://abc123.execute-api.eu-west-2.amazonaws.com"


# --- the compatibility rules, small -----------------------------------------------------------

def test_read_items_is_as_lenient_as_pxtextmining() -> None:
    items = read_items([
        {"comment_id": 1, "comment_text": "Nurse was great.", "extra": [1, 2]},
        {"comment_id": "2", "comment_text": math.nan, "question_type": "Nonspecific"},
        {"comment_id": 3.5, "question_type": "What was good about your visit?"},
        {"comment_id": "4", "comment_text": 1234567, "question_type": "made up"},
    ])
    assert [i.comment_id for i in items] == ["1", "2", "3.5", "4"]
    assert [i.comment_text for i in items] == ["Nurse was great.", None, None, "1234567"]
    assert [i.question_type for i in items] == [None, "nonspecific", "what_good", "nonspecific"]
    # The docker README's R recipe: toJSON() of JSON, a list holding one string.
    assert [i.comment_id for i in read_items([json.dumps([{"comment_id": "a"}])])] == ["a"]


@pytest.mark.parametrize("doc,reason", [
    ({"comment_id": "1"}, "expected a JSON list"),
    ([{"comment_text": "x"}], "item 1: comment_id"),
    ([{"comment_id": "1"}, {"comment_id": None}], "item 2: comment_id"),
    ([{"comment_id": "1", "comment_text": ["x"]}], "comment_text must be text"),
    (["just a string"], "item 1"),
])
def test_read_items_names_what_is_wrong(doc: Any, reason: str) -> None:
    with pytest.raises(PxShapeError, match=reason):
        read_items(doc)


def test_targets_and_rows() -> None:
    assert [parse_target(t) for t in (None, "", "m", "s", "ms", "sm", "MS")] == \
        ["ms", "ms", "m", "s", "ms", "ms", "ms"]
    with pytest.raises(ValueError, match="m, s or ms"):
        parse_target("x")
    preds = [Prediction(comment_id="1", labels=["Parking"], sentiment=Sentiment(score=4, label="negative")),
             Prediction(comment_id="2", labels=[LNP]),  # blank text
             Prediction(comment_id="3", labels=[LNP])]  # "N/A": twolane has no sentiment
    rows = result_rows(preds, "ms", blank=[1])
    assert rows == [{"comment_id": "1", "sentiment": 4, "labels": ["Parking"]},
                    {"comment_id": "2", "sentiment": LNP, "labels": [LNP]},
                    {"comment_id": "3", "sentiment": CONTENT_FREE_SENTIMENT, "labels": [LNP]}]
    assert [list(r) for r in result_rows(preds, "m", [1])] == [["comment_id", "labels"]] * 3
    assert [list(r) for r in result_rows(preds, "s", [1])] == [["comment_id", "sentiment"]] * 3


# --- a real server, with the batch lane behind it ----------------------------------------------

@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def predictor(instant_bundle: Path) -> Any:
    from twolane.predictors.instant import InstantPredictor

    return InstantPredictor.from_bundle(instant_bundle)


@pytest.fixture(scope="module")
def lane(moto: str, batch_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The batch lane: the local async runner around the real container, on moto."""
    from local_stack.batch_lane import notifications_lambda
    from local_stack.runner import AsyncRunner

    settings = lane_settings(tmp_path_factory.mktemp("lane"), batch_bundle)
    bucket_ready(settings)
    runner = AsyncRunner(settings, lambda: batch_bundle, notify=notifications_lambda).start()
    try:
        yield settings
    finally:
        runner.stop()


class Server:
    """uvicorn serving an app on a free 127.0.0.1 port, in a thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=30)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def url(lane: Settings, predictor: Any) -> Iterator[str]:
    app = create_app(predictor, lane, jobs=local_job_service(lane))
    with Server(app) as base:
        yield base


def _quick_flows(http: Any, url: str) -> None:
    px.quick_api_tests(http, url)
    px.check_quick(px.QUICK_DOCS_ITEMS, px.quick_docs_python(http, url))
    px.check_quick(px.API_TEST_ITEMS, http.post(f"{url}/predict_multilabel", json=px.API_TEST_ITEMS).json())
    for q_type in ("what_good", "could_improve", "nonspecific"):
        labels = px.quick_streamlit(http, url, "The nurses were lovely but parking was hard.", q_type)
        assert labels and all(isinstance(x, str) for x in labels)
    for body in (px.R_QUICK_DOCS_BODY, px.R_QUICK_NUMERIC_NA_BODY, px.R_QUICK_DASH_BODY):
        px.check_quick(json.loads(body), px.quick_r(http, url, body))


def _slow_flows(http: Any, start_url: str, key: str) -> None:
    for target in ("ms", "m", "s"):
        results_url, rows = px.slow_docs_python(http, start_url, key, target, every_s=0.2)
        px.check_px_results(px.DOCS_ITEMS, target, rows)
        assert results_url.startswith(start_url.replace("StartContainerInstance", "GetResults/"))
        # the key never travels in a results URL: its `code` is the job's results token
        assert key not in results_url and "code=r1-" in results_url and f"target={target}" in results_url
        gone = http.get(results_url)
        assert gone.status_code == 404 and gone.text == "File already collected"
    _, rows = px.slow_docs_r(http, start_url, key, every_s=0.2)
    px.check_px_results(json.loads(px.R_SLOW_DOCS_BODY), "ms", rows)
    rows = px.slow_dashboard_r(http, start_url, key, every_s=0.2)
    px.check_px_results(json.loads(px.R_SLOW_DASH_BODY), "ms", rows)
    # Asking for the instant lane: the same URLs and once-only results, no batch model needed.
    r = http.post(start_url, params={"code": key, "target": "ms", "lane": "instant"}, json=px.DOCS_ITEMS)
    assert r.status_code == 202
    done = http.get(r.text)
    assert done.status_code == 200
    px.check_px_results(px.DOCS_ITEMS, "ms", done.json())
    assert http.get(r.text).status_code == 404


def test_clients_against_a_real_server(url: str) -> None:
    _quick_flows(requests, url)
    _slow_flows(requests, f"{url}/api/StartContainerInstance", "any-key")
    # The API's own routes keep working beside them.
    r = requests.post(f"{url}/v1/predict", json={"items": px.DOCS_ITEMS})
    assert r.status_code == 200 and len(r.json()["results"]) == 3
    r = requests.post(f"{url}/v1/jobs", json={"items": px.DOCS_ITEMS, "target": "ms"})
    assert r.status_code == 202 and r.json()["results_url"].startswith("/v1/jobs/")


def test_clients_against_the_lambda_handler(lane: Settings, lambda_module: Callable[[str], ModuleType]) -> None:
    mod = lambda_module("functions.api.handler")
    # The batch lane behind the Lambda: the local stand-in for SageMaker async (runtime code
    # is the same; only the invoker differs).
    mod._mangum.app.state.jobs = JobsHolder(lane, local_job_service(lane))
    http = lambda_session(mod.handler)
    _quick_flows(http, LAMBDA_URL)
    _slow_flows(http, f"{LAMBDA_URL}/api/StartContainerInstance", "any-key")


# --- keys, bad bodies, failures, no batch model yet --------------------------------------------

def test_code_is_the_key_on_the_slow_api(lane: Settings, predictor: Any) -> None:
    settings = lane.model_copy(update={"api_keys": "k1"})
    c = TestClient(create_app(predictor, settings, jobs=local_job_service(settings)))
    start = "/api/StartContainerInstance"
    assert c.post(start, json=px.DOCS_ITEMS).status_code == 401
    assert c.post(start, params={"code": "nope"}, json=px.DOCS_ITEMS).status_code == 401
    r = c.post(start, params={"code": "k1", "lane": "instant"}, json=px.DOCS_ITEMS)
    assert r.status_code == 202
    results = r.text
    assert "k1" not in results  # the results URL carries the job's token, never the key
    assert c.get(results.split("?")[0]).status_code == 401
    token = results.split("code=")[1]
    other = results.replace(results.split("/GetResults/")[1].split("?")[0], "0" * 32)
    assert c.get(other).status_code == 401  # the token opens its own job only
    assert c.post(start, params={"code": token, "lane": "instant"},
                  json=px.DOCS_ITEMS).status_code == 401  # and starts nothing
    assert c.get(results).status_code == 200
    r = c.post(start, headers={"x-api-key": "k1"}, params={"lane": "instant"}, json=px.DOCS_ITEMS)
    assert r.status_code == 202
    assert c.post("/predict_multilabel", json=px.QUICK_DOCS_ITEMS).status_code == 401
    assert c.get("/").json() == {"test": "Hello"}  # the hello is open


@pytest.mark.parametrize("content,params,reason", [
    (b"not json", {}, "not JSON"),
    (b'{"comment_id": "1"}', {}, "expected a JSON list"),
    (b'[{"comment_text": "x"}]', {}, "item 1: comment_id"),
    (b'[{"comment_id": "1"}, {"comment_id": "1"}]', {}, "unique"),
    (b"[]", {}, "at least one"),
    (json.dumps(px.DOCS_ITEMS).encode(), {"target": "q"}, "target"),
])
def test_bad_slow_api_requests_422(lane: Settings, predictor: Any, content: bytes,
                                   params: dict[str, str], reason: str) -> None:
    c = TestClient(create_app(predictor, lane, jobs=local_job_service(lane)))
    r = c.post("/api/StartContainerInstance", content=content, params=params)
    assert r.status_code == 422 and reason in r.json()["detail"], r.text


def test_failed_job_is_500_once_then_404(lane: Settings, predictor: Any, tmp_path: Path) -> None:
    settings = lane.model_copy(update={"bundles": tmp_path / "none", "batch_bundle": None,
                                       "state_dir": tmp_path / "state"})
    service = local_job_service(settings)  # no batch model: the job waits, nothing runs it
    c = TestClient(create_app(predictor, settings, jobs=service))
    rec = service.submit("classify", "ms", 1, {"items": [{"comment_id": "1"}], "target": "ms"},
                         defer=True)
    service.store.mark_failed(rec.job_id, "Traceback (most recent call last): secret internals")
    r = c.get(f"/api/GetResults/{rec.job_id}")
    assert r.status_code == 500 and r.text.startswith("Error during processing")
    assert "Traceback" not in r.text and "secret" not in r.text
    r = c.get(f"/api/GetResults/{rec.job_id}")
    assert r.status_code == 404 and r.text == "File already collected"
    assert c.get("/api/GetResults/" + "0" * 32).status_code == 404


def test_no_batch_model_yet_accepts_and_runs_when_ready(lane: Settings, predictor: Any,
                                                        batch_bundle: Path, tmp_path: Path) -> None:
    later = tmp_path / "bundles"  # no batch model there yet
    settings = lane.model_copy(update={"bundles": later, "batch_bundle": None,
                                       "state_dir": tmp_path / "state"})
    service = local_job_service(settings)
    assert service.invoker.unavailable_reason("classify")
    c = TestClient(create_app(predictor, settings, jobs=service))
    r = c.post("/api/StartContainerInstance", params={"target": "ms"}, json=px.DOCS_ITEMS)
    assert r.status_code == 202, r.text  # never a bare 503 to a slow-API client
    job_id = r.text.rsplit("/", 1)[1].split("?")[0]
    assert service.store.get(job_id).deferred
    pending = c.get(r.text)
    assert pending.status_code == 202 and pending.text == r.text and service.store.get(job_id).deferred
    # /v1/jobs keeps its own contract: 503 with the reason.
    assert c.post("/v1/jobs", json={"items": px.DOCS_ITEMS}).status_code == 503
    later.symlink_to(batch_bundle)  # the model is built
    done = wait_for(lambda: (g := c.get(r.text)).status_code == 200 and g, timeout=120, every=0.2)
    px.check_px_results(px.DOCS_ITEMS, "ms", done.json())


def test_deferred_job_starts_once_under_racing_polls(lane: Settings, batch_bundle: Path,
                                                     tmp_path: Path) -> None:
    later = tmp_path / "bundles"
    settings = lane.model_copy(update={"bundles": later, "batch_bundle": None,
                                       "state_dir": tmp_path / "state"})
    service = local_job_service(settings)
    rec = service.submit("classify", "ms", 3, {"items": px.DOCS_ITEMS, "target": "ms"}, defer=True)
    later.symlink_to(batch_bundle)
    calls: list[str] = []
    invoke = service.invoker.invoke

    def counting(**kw: Any) -> Any:
        calls.append(kw["inference_id"])
        return invoke(**kw)

    service.invoker.invoke = counting  # type: ignore[method-assign]
    threads = [threading.Thread(target=service.start_deferred, args=(rec.job_id,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [rec.job_id]
    got = service.store.get(rec.job_id)
    assert not got.deferred and got.output_location


# --- docker data_in -> data_out through the drop folder (both lanes) ---------------------------

DOCKER_FILES = [  # (name, data_in, target, items as pxtextmining's container would read them)
    ("file_01.json", px.DATA_IN_FILE_01, "ms", json.loads(px.DATA_IN_FILE_01)),
    ("nan_texts.json", px.DATA_IN_NAN, "ms", json.loads(px.DATA_IN_NAN)),
    ("from_r.m.json", px.DATA_IN_R_MISSING_KEYS, "m", json.loads(px.DATA_IN_R_MISSING_KEYS)),
    ("r_docs.s.json", px.DATA_IN_R_DOCS, "s", json.loads(px.R_SLOW_DOCS_BODY)),
]


@pytest.mark.parametrize("folder", ["inbox/", "inbox/batch/"], ids=["instant", "batch"])
def test_docker_files_through_the_drop_folder_lambda(lane: Settings, folder: str,
                                                     lambda_module: Callable[[str], ModuleType]) -> None:
    from local_stack.s3events import object_created
    from twolane.aws import client

    mod = lambda_module("functions.dropfolder.handler")
    mod.JOBS = local_job_service(lane)  # the batch lane: the local stand-in for SageMaker async
    s3, bucket = client("s3"), lane.bucket
    out_folder = folder.replace("inbox/", "outbox/", 1)

    def put(name: str, data: bytes) -> None:
        s3.put_object(Bucket=bucket, Key=folder + name, Body=data)
        outcomes = mod.handler(object_created(bucket, folder + name, len(data)), LambdaContext())["outcomes"]
        assert [o["status"] for o in outcomes] == ["submitted" if "batch" in folder else "done"]

    def get(name: str) -> bytes | None:
        try:
            return s3.get_object(Bucket=bucket, Key=out_folder + name)["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None

    for name, data_in, target, items in DOCKER_FILES:
        rows = px.docker_flow(put, get, name, data_in)
        px.check_px_results(items, target, rows)  # LNP sentiment exactly for NaN/missing/""
    left = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=folder).get("Contents", [])}
    assert not left  # inputs deleted once labelled / handed to the batch lane


def test_batch_inbox_without_a_batch_lane_fails_the_file_with_a_reason(
        lane: Settings, lambda_module: Callable[[str], ModuleType]) -> None:
    from local_stack.s3events import object_created
    from twolane.aws import client

    mod = lambda_module("functions.dropfolder.handler")
    assert mod.JOBS is None  # no TWOLANE_BATCH_INVOKER here
    s3, key = client("s3"), "inbox/batch/no_lane.json"
    s3.put_object(Bucket=lane.bucket, Key=key, Body=px.DATA_IN_FILE_01.encode())
    [o] = mod.handler(object_created(lane.bucket, key), LambdaContext())["outcomes"]
    assert o["status"] == "failed" and "inbox/ (not inbox/batch/)" in o["detail"]


# --- all of it against `twolane up` ------------------------------------------------------------

def test_clients_against_twolane_up(instant_bundle: Path, batch_bundle: Path, tmp_path: Path) -> None:
    """`up` in a subprocess (API, moto, drop folder, batch lane with the tiny model): the quick
    and slow API flows over HTTP, the docker files through ./dropbox on both lanes."""
    import os
    import subprocess
    import sys

    port, mport = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWOLANE_", "AWS_"))}
    env.update(TWOLANE_INSTANT_BUNDLE=str(instant_bundle), TWOLANE_BATCH_BUNDLE=str(batch_bundle),
               TWOLANE_POLL_SECONDS="0.2", TWOLANE_BUCKET="px-up-test",
               TWOLANE_STATE_DIR=str(tmp_path / "state"), TWOLANE_BUNDLES=str(tmp_path / "bundles"),
               TWOLANE_BATCH_QUEUE=f"px-{port}", PYTHONUNBUFFERED="1")
    code = f"from local_stack.stack import up; up(port={port}, batch=True, moto_port={mport})"
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def healthy() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return requests.get(f"{url}/health", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_for(healthy, timeout=90, every=0.2)
        _quick_flows(requests, url)
        start = f"{url}/api/StartContainerInstance"
        _, rows = px.slow_docs_python(requests, start, "key", "ms", timeout_s=180, every_s=0.3)
        px.check_px_results(px.DOCS_ITEMS, "ms", rows)
        _, rows = px.slow_docs_r(requests, start, "key", timeout_s=180, every_s=0.3)
        px.check_px_results(json.loads(px.R_SLOW_DOCS_BODY), "ms", rows)

        dropbox = tmp_path / "dropbox"
        for sub in ("", "batch/"):
            def put(name: str, data: bytes, sub: str = sub) -> None:
                (dropbox / "inbox" / sub).mkdir(parents=True, exist_ok=True)
                (dropbox / "inbox" / sub / name).write_bytes(data)

            def get(name: str, sub: str = sub) -> bytes | None:
                f = dropbox / "outbox" / sub / name
                return f.read_bytes() if f.is_file() else None

            for name, data_in, target, items in DOCKER_FILES:
                rows = px.docker_flow(put, get, name, data_in, timeout_s=180)
                px.check_px_results(items, target, rows)
    finally:
        rc = stop_up(proc)
    assert rc == 0, f"up did not stop cleanly (exit {rc}):\n{log.read_text()}"


# --- one input boundary: the drop folder and both APIs read a data_in alike --------------------

DATA_IN: list[dict[str, Any]] = [  # ids as sent: padded, a number, a plain string
    {"comment_id": " 7 ", "comment_text": "The nurses were kind but parking was awful",
     "question_type": "nonspecific"},
    {"comment_id": 8, "comment_text": "Food was cold and the ward was noisy", "question_type": "could_improve"},
    {"comment_id": "9", "comment_text": None},
    {"comment_id": "10", "comment_text": "n/a", "question_type": "What was good?"},
]


def test_drop_folder_and_both_apis_give_the_same_answer(predictor: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The same pxtextmining data_in through the drop folder (inbox/ -> outbox/), the quick API
    and the slow API (lane=instant): the same ids, kept as sent (" 7 " stays " 7 "), and the
    same labels; an all-space id is refused by all three."""
    import boto3
    from moto import mock_aws

    from local_stack.s3events import object_created
    from twolane.dropfolder.process import process_event

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    monkeypatch.delenv("TWOLANE_AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    bucket = "twolane-boundary"
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-2")
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        settings = Settings(bucket=bucket, aws_endpoint_url=None)
        api = TestClient(create_app(predictor, settings, jobs=local_job_service(settings)))

        def drop(name: str, doc: list[dict[str, Any]]) -> dict[str, Any]:
            s3.put_object(Bucket=bucket, Key=f"inbox/{name}", Body=json.dumps(doc).encode())
            (outcome,) = process_event(object_created(bucket, f"inbox/{name}"), predictor, s3=s3,
                                       settings=settings)["outcomes"]
            return outcome

        def slow(doc: list[dict[str, Any]]) -> Any:
            r = api.post("/api/StartContainerInstance", params={"lane": "instant"}, json=doc)
            return api.get(r.text) if r.status_code == 202 else r

        outcome = drop("data_in.json", DATA_IN)
        assert outcome["status"] == "done", outcome
        dropped = json.loads(s3.get_object(Bucket=bucket, Key=outcome["result_key"])["Body"].read())
        quick = api.post("/predict_multilabel", json=DATA_IN)
        slowed = slow(DATA_IN)
        assert quick.status_code == 200 and slowed.status_code == 200, (quick.text, slowed.text)
        ids = [" 7 ", "8", "9", "10"]
        for rows in (dropped, quick.json(), slowed.json()):
            assert [r["comment_id"] for r in rows] == ids
        assert [r["labels"] for r in dropped] == [r["labels"] for r in quick.json()] \
            == [r["labels"] for r in slowed.json()]
        assert dropped == slowed.json()  # data_out rows, sentiment included
        assert dropped[2]["labels"] == [LNP] and dropped[3]["labels"] == [LNP]

        blank_id = [*DATA_IN, {"comment_id": "   ", "comment_text": "Lovely staff"}]
        failed = drop("blank_id.json", blank_id)
        assert failed["status"] == "failed" and "item 5: comment_id" in failed["detail"], failed
        for r in (api.post("/predict_multilabel", json=blank_id), slow(blank_id)):
            assert r.status_code == 422 and "comment_id" in r.text and "blank" in r.text, r.text
