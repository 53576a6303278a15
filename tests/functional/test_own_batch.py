"""The batch lane on any team's data spec (issue 21 part 4): a transformer bundle built from a
non-NHS file (tiny randomly initialised encoder, the real tokenizer, exported as the real build)
serves in the spec's own labels and sentiment classes through the batch predictor and a job on
the local batch host; a job for an instant model of another taxonomy is refused in one line.

Real text throughout: rows of the UCI drug reviews (data/drug-reviews/, provenance there).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from batchlane_helpers import bucket_ready, lane_settings, moto_server, poll_job
from test_dropfolder import BUCKET, s3_event
from test_own_data import TOP, reviews, write

from model_build.data import Dataset
from model_build.dataspec import SpecArgs, load
from twolane.bundle import BatchEnsemble, Taxonomy, read_manifest, taxonomy_mismatch

SENTIMENT = ["negative", "neutral", "positive"]
ITEMS = [
    {"comment_id": "a", "comment_text": "This pill cleared my skin, no more breakouts and pimples", "context": "web"},
    {"comment_id": "b", "comment_text": "I could not sleep at all, awake every night until 4am", "context": "app"},
    {"comment_id": "c", "comment_text": "n/a"},
    {"comment_id": "d", "comment_text": "My mood lifted after two weeks, less anxious too", "context": "web"},
]


@pytest.fixture(scope="module")
def spec_data(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Single-label (six conditions), three-class words sentiment, a context column."""
    tmp = tmp_path_factory.mktemp("own-batch-data")
    df = reviews()
    df["channel"] = np.where(np.arange(len(df)) % 2 == 0, "web", "app")
    return load(write(df, tmp / "reviews.csv"),
                SpecArgs(text_column="review", labels_column="condition", sentiment_column="rating",
                         sentiment_order=tuple(SENTIMENT), context_column="channel"))


@pytest.fixture(scope="module")
def own_instant(tmp_path_factory: pytest.TempPathFactory, spec_data: Dataset) -> Path:
    from dataclasses import replace

    from model_build.instant import SMALL, build

    out = tmp_path_factory.mktemp("own-instant")
    return build(spec_data, out, replace(SMALL, xgb_rounds=5, word_aliases=False))


@pytest.fixture(scope="module")
def own_batch_bundle(tmp_path_factory: pytest.TempPathFactory, spec_data: Dataset, own_instant: Path) -> Path:
    """The tiny transformer on the same spec, ensembled with the instant bundle of that spec."""
    from model_build.batch import build_tiny_bundle

    return build_tiny_bundle(tmp_path_factory.mktemp("own-batch"), instant_bundle=own_instant, ds=spec_data)


def test_the_batch_bundle_carries_the_spec(own_batch_bundle: Path, own_instant: Path) -> None:
    m = read_manifest(own_batch_bundle, verify=True)
    assert m.lane == "batch" and m.labels == sorted(TOP) and not m.taxonomy.multilabel
    assert m.taxonomy.unlabellable is None and m.sentiment_classes == SENTIMENT and not m.is_nhs
    assert m.data_spec is not None and m.data_spec.context_column == "channel"
    assert m.serving.context == "column"
    assert taxonomy_mismatch(read_manifest(own_instant).taxonomy, m.taxonomy) is None
    if isinstance(m.ensemble, BatchEnsemble):  # mixed in only when it beat the transformer alone
        # the cascade rule is learned on any taxonomy (issue 31): single-label margins
        assert m.ensemble.cascade is not None and m.ensemble.cascade.curve
        assert read_manifest(own_batch_bundle / m.ensemble.instant_dir).labels == m.labels
    assert "accuracy" in m.metrics["transformer_int8"]  # type: ignore[operator]
    rep = json.loads((own_batch_bundle / "report.json").read_text(encoding="utf-8"))  # beside the model
    assert set(rep["per_label"]) == set(TOP) and "confusions" in rep and "accuracy" in rep["scores"]
    assert rep["model"] == m.default_model and "report.html" in m.files


def test_the_batch_predictor_answers_in_the_spec_taxonomy(own_batch_bundle: Path) -> None:
    from twolane.contract import CommentIn
    from twolane.predictors.batch import BatchPredictor, encoder_inputs

    p = BatchPredictor.from_bundle(own_batch_bundle)
    res = p.predict([CommentIn(**i) for i in ITEMS], include_probabilities=True)
    assert [r.comment_id for r in res] == ["a", "b", "c", "d"]
    for r in (res[0], res[1], res[3]):  # single-label: exactly one label each
        assert len(r.labels) == 1 and r.labels[0] in TOP
        assert r.sentiment is not None and r.sentiment.label in SENTIMENT
        assert r.probabilities is not None and set(r.probabilities) == set(TOP)
    assert res[2].labels == [] and res[2].sentiment is None  # junk text: no label (no such label)
    # the transformer reads the context as the instant lane does (twolane.rules.context_input)
    assert encoder_inputs(["ok"], ["Ward 7"], True) == ["ok qt_ward_7"]
    assert encoder_inputs(["ok"], ["Ward 7"], False) == ["ok"]


def _items_csv() -> bytes:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["comment_id", "comment_text", "context"])
    w.writerows([(i["comment_id"], i["comment_text"], i.get("context", "")) for i in ITEMS])
    return out.getvalue().encode()


def test_a_job_on_the_local_batch_host_answers_in_the_spec_labels(
        own_batch_bundle: Path, own_instant: Path, tmp_path: Path) -> None:
    """POST /v1/jobs -> LocalLambdaInvoker (the real worker handler) -> S3 + SNS -> the real
    notifications handler -> GET: the batch predictor's own answers, in the spec's labels."""
    from fastapi.testclient import TestClient

    from local_stack.batch_lane import start_batch_lane
    from local_stack.invoker import LocalLambdaInvoker
    from twolane.api.app import create_app
    from twolane.aws import client
    from twolane.contract import CommentIn
    from twolane.dropfolder.process import process_event
    from twolane.jobs.service import JobService
    from twolane.jobs.store import S3JobStore
    from twolane.predictors.batch import BatchPredictor
    from twolane.predictors.instant import InstantPredictor

    with moto_server():
        settings = lane_settings(tmp_path, own_batch_bundle, batch_invoker="lambda", batch_shard_size=3,
                                 batch_workers=2, bucket=BUCKET)
        bucket_ready(settings)
        lane = start_batch_lane(settings, build_if_missing=False)
        invoker = LocalLambdaInvoker(settings)
        try:
            store = S3JobStore(client("s3"), settings.bucket)
            jobs = JobService(store, invoker, settings.batch)
            instant = InstantPredictor.from_bundle(own_instant)
            api = TestClient(create_app(instant, settings=settings, jobs=jobs), raise_server_exceptions=False)
            r = api.post("/v1/jobs", json={"items": ITEMS, "target": "ms"})
            assert r.status_code == 202, r.text
            done = poll_job(api, r.json()["results_url"], timeout=120)
            assert done.status_code == 200, done.text
            results = done.json()["results"]
            direct = BatchPredictor.from_bundle(own_batch_bundle).predict_texts(
                [i["comment_text"] for i in ITEMS], [i.get("context") for i in ITEMS],
                ids=[i["comment_id"] for i in ITEMS])
            assert [x["comment_id"] for x in results] == [i["comment_id"] for i in ITEMS]
            assert [x["labels"] for x in results] == [d.labels for d in direct]
            assert all(len(x["labels"]) == 1 and x["labels"][0] in TOP for x in results if x["comment_id"] != "c")
            assert {x["sentiment"]["label"] for x in results if x["sentiment"]} <= set(SENTIMENT)
            ens = read_manifest(own_batch_bundle).ensemble
            if isinstance(ens, BatchEnsemble) and ens.cascade is not None:  # "lane": "auto" (issue 31)
                r = api.post("/v1/jobs", json={"items": ITEMS, "target": "ms", "lane": "auto"})
                assert r.status_code == 202, r.text
                auto = poll_job(api, r.json()["results_url"], timeout=120)
                assert auto.status_code == 200, auto.text
                got = auto.json()["results"]
                assert [x["comment_id"] for x in got] == [i["comment_id"] for i in ITEMS]
                assert all(x["lane"] in ("instant", "batch") for x in got)
                direct_i = {d.comment_id: d.model_dump(mode="json") for d in instant.predict(
                    [CommentIn(**i) for i in ITEMS])}
                for x in got:  # a kept comment gets exactly /v1/predict's answer
                    if x["lane"] == "instant":
                        assert {k: x[k] for k in ("labels", "sentiment")} == {
                            k: direct_i[x["comment_id"]][k] for k in ("labels", "sentiment")}
                assert all(len(x["labels"]) == 1 and x["labels"][0] in TOP for x in got if x["comment_id"] != "c")
            # inbox/batch/ takes the file too (a batch job, not a failed/ report)
            s3 = client("s3")
            s3.put_object(Bucket=BUCKET, Key="inbox/batch/reviews.csv", Body=_items_csv())
            o = process_event(s3_event("inbox/batch/reviews.csv"), instant, s3=s3, settings=settings,
                              jobs=jobs)["outcomes"][0]
            assert o["status"] != "failed", o
        finally:
            invoker.close()
            lane.stop()


@pytest.fixture(scope="module")
def other_batch_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A batch bundle of another spec of the same reviews: multi-label (condition, plus "side
    effects" where the review names them), no sentiment, no instant bundle to mix in."""
    from model_build.batch import build_tiny_bundle

    tmp = tmp_path_factory.mktemp("other-batch")
    df = reviews()
    df["labels"] = [c + ("|side effects" if "side effect" in r.lower() else "")
                    for c, r in zip(df["condition"], df["review"], strict=True)]
    ds = load(write(df[["id", "review", "labels"]], tmp / "m.csv"), SpecArgs(text_column="review", label_sep="|"))
    return build_tiny_bundle(tmp / "bundles", ds=ds)


def test_multilabel_without_sentiment(other_batch_bundle: Path) -> None:
    from twolane.predictors.batch import BatchPredictor

    m = read_manifest(other_batch_bundle)
    assert m.taxonomy.multilabel and m.sentiment_classes == [] and "side effects" in m.labels
    assert m.ensemble is None and m.default_model == "int8"  # no instant bundle of this taxonomy
    res = BatchPredictor.from_bundle(other_batch_bundle).predict_texts(
        [i["comment_text"] for i in ITEMS])
    assert all(r.sentiment is None for r in res) and all(set(r.labels) <= set(m.labels) for r in res)
    assert res[2].labels == []


def test_another_taxonomy_is_refused_in_one_line(other_batch_bundle: Path, own_instant: Path,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch lane's bundle is of another spec than the instant model: /v1/jobs (batch and
    auto) answers 409 and inbox/batch/ goes to failed/, both naming the mismatch."""
    import boto3
    from fastapi.testclient import TestClient
    from moto import mock_aws

    from twolane.api.app import create_app
    from twolane.dropfolder.process import process_event
    from twolane.predictors.instant import InstantPredictor
    from twolane.settings import Settings

    settings = Settings(bundles=tmp_path / "none", batch_bundle=other_batch_bundle)
    instant = InstantPredictor.from_bundle(own_instant)
    with TestClient(create_app(instant, settings=settings), raise_server_exceptions=False) as c:
        for lane in ("batch", "auto"):
            r = c.post("/v1/jobs", json={"items": ITEMS, "lane": lane})
            assert r.status_code == 409, r.text
            detail = r.json()["detail"]
            assert "another taxonomy" in detail and "7 labels" in detail and "\n" not in detail
            assert "twolane build batch --data" in detail and "instant lane" in detail
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    monkeypatch.delenv("TWOLANE_AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        s3: Any = boto3.client("s3", region_name="eu-west-2")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        s3.put_object(Bucket=BUCKET, Key="inbox/batch/reviews.csv", Body=_items_csv())
        o = process_event(s3_event("inbox/batch/reviews.csv"), instant, s3=s3, settings=settings)["outcomes"][0]
        assert o["status"] == "failed" and "another taxonomy" in o["detail"], o


def test_the_taxonomy_rule() -> None:
    """Manifest.batch_lane_refuses: the same labels and sentiment classes, or one line naming
    what differs; no batch bundle known: NHS answered as before, any other refused."""
    from twolane.bundle import NO_BATCH_OF_TAXONOMY, DataSpec, Manifest, ModelEntry

    def manifest(labels: list[str], classes: list[str], nhs: bool) -> Manifest:
        spec = DataSpec(preset="nhs" if nhs else None, id_column="id", text_column="text")
        return Manifest(lane="instant", version="v", created_at="t",
                        taxonomy=Taxonomy(labels=labels, sentiment_classes=classes),
                        models={"m": ModelEntry(file="f", task="multilabel", kind="k")},
                        default_model="m", data_spec=spec)

    own = manifest(["a", "b"], ["neg", "pos"], nhs=False)
    assert own.batch_lane_refuses(Taxonomy(labels=["a", "b"], sentiment_classes=["neg", "pos"])) is None
    why = own.batch_lane_refuses(Taxonomy(labels=["a", "b"], sentiment_classes=["1", "2", "3"]))
    assert why is not None and "other sentiment classes ('1', '2', '3')" in why and "('neg', 'pos')" in why
    why = own.batch_lane_refuses(Taxonomy(labels=["x", "b"]))
    assert why is not None and "labels 'a' are not among its 2 labels" in why
    assert own.batch_lane_refuses(None) == NO_BATCH_OF_TAXONOMY
    assert manifest(["a", "b"], [], nhs=True).batch_lane_refuses(None) is None


def test_the_taxonomy_reaches_an_api_without_a_batch_bundle(own_batch_bundle: Path, tmp_path: Path) -> None:
    """On AWS the API's asset holds only the instant bundle: infra hands it the batch bundle's
    taxonomy as TWOLANE_BATCH_TAXONOMY, which wins over a bundle on disk."""
    from infra.stack import Artifacts, batch_bundle_environment
    from twolane.settings import Settings
    from twolane.wiring import batch_taxonomy

    env = batch_bundle_environment(Artifacts(batch_bundle=own_batch_bundle))
    ens = read_manifest(own_batch_bundle).ensemble
    has_rule = isinstance(ens, BatchEnsemble) and ens.cascade is not None  # learned on any taxonomy
    assert ("TWOLANE_CASCADE_RULE" in env) == has_rule
    nowhere = Settings(bundles=tmp_path / "none")
    assert batch_taxonomy(nowhere) is None
    got = batch_taxonomy(nowhere.model_copy(update={"batch_taxonomy": env["TWOLANE_BATCH_TAXONOMY"]}))
    assert got == read_manifest(own_batch_bundle).taxonomy
    assert batch_taxonomy(Settings(bundles=tmp_path / "none", batch_bundle=own_batch_bundle)) == got
    assert batch_taxonomy(nowhere.model_copy(update={"batch_taxonomy": "{not json"})) is None


def test_cli_batch_build_refuses_a_bad_spec_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write(reviews(), tmp_path / "reviews.csv")
    run = subprocess.run([sys.executable, "-m", "twolane_cli", "build", "batch", "--data", str(path),
                          "--text-column", "comment", "--out", str(tmp_path / "b")],
                         capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 2, run.stderr
    assert "no text column 'comment'" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) <= 3  # one reason (rich may wrap it)
    assert not (tmp_path / "b").exists()
