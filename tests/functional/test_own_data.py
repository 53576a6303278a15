"""Any team's comments (issue 21): the data spec in every shape, its refusals, and a bundle
built from a non-NHS file served in its own taxonomy (API, /v1/models, drop folder).

Real text throughout: rows of the UCI drug reviews (data/drug-reviews/, provenance there).
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_dropfolder import BUCKET, s3_event

from model_build.data import DataError
from model_build.dataspec import MIN_ROWS, SpecArgs, load, stratified_split
from twolane.rules import context_input, context_token, top_label

ROOT = Path(__file__).resolve().parents[2]
DRUGS = ROOT / "data" / "drug-reviews" / "drug_reviews.csv"
TOP = ["Birth Control", "Depression", "Pain", "Acne", "Anxiety", "Insomnia"]


def reviews(n_per: int = 40) -> pd.DataFrame:
    """Up to n_per reviews of each of the six most common conditions (real text)."""
    df = pd.read_csv(DRUGS, dtype=str, keep_default_na=False)
    df = df[df["condition"].isin(TOP)]
    return df.groupby("condition", group_keys=False).head(n_per).reset_index(drop=True)


def write(df: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".xlsx":
        df.to_excel(path, index=False)
    elif path.suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in df.to_dict("records")), encoding="utf-8")
    else:
        df.to_csv(path, index=False)
    return path


def single(tmp_path: Path, name: str = "reviews.csv") -> Path:
    return write(reviews(), tmp_path / name)


# --------------------------------------------------------------------------- shapes
def test_single_label_words_sentiment(tmp_path: Path) -> None:
    ds = load(single(tmp_path), SpecArgs(text_column="review", labels_column="condition",
                                         sentiment_column="rating",
                                         sentiment_order=("negative", "neutral", "positive")))
    assert not ds.multilabel and ds.labels == sorted(TOP) and ds.unlabellable is None
    assert ds.sentiment_classes == ["negative", "neutral", "positive"]
    assert set(ds.sentiment.tolist()) <= {0, 1, 2} and (ds.Y.sum(1) == 1).all()
    assert ds.spec is not None and ds.spec.labels_column == "condition" and ds.context == "none"
    # stratified: every condition in the test split, about a fifth of it
    for j in range(len(ds.labels)):
        n, t = int(ds.Y[:, j].sum()), int(ds.Y[ds.is_test, j].sum())
        assert t == round(n * 0.2)


def test_delimited_multilabel_no_sentiment(tmp_path: Path) -> None:
    df = reviews()
    df["labels"] = [c + ("|side effects" if "side effect" in r.lower() else "")
                    for c, r in zip(df["condition"], df["review"], strict=True)]
    ds = load(write(df[["id", "review", "labels"]], tmp_path / "m.csv"),
              SpecArgs(text_column="review", label_sep="|"))
    assert ds.multilabel and "side effects" in ds.labels and ds.sentiment_classes == []
    assert (ds.sentiment == -1).all() and ds.Y.sum(1).max() == 2


def test_wide_columns_numeric_sentiment_and_context(tmp_path: Path) -> None:
    df = reviews()
    wide = pd.DataFrame({"Comment": df["review"], "ward": df["rating"].str.upper(),
                         "score": df["rating"].map({"negative": "1", "neutral": "3.0", "positive": "10"})})
    for c in TOP[:3]:
        wide[c] = (df["condition"] == c).astype(int).astype(str)
    ds = load(write(wide, tmp_path / "w.csv"),
              SpecArgs(text_column="Comment", label_columns=tuple(TOP[:3]), sentiment_column="score",
                       context_column="ward"))
    assert ds.labels == TOP[:3] and ds.multilabel
    assert ds.sentiment_classes == ["1", "3", "10"]  # numbers by value, "3.0" read as "3"
    assert ds.ids[:2] == ["1", "2"]  # no id column: row numbers
    assert ds.context == "column" and ds.spec is not None
    assert ds.spec.context_values == ["NEGATIVE", "NEUTRAL", "POSITIVE"]


@pytest.mark.parametrize("name", ["r.xlsx", "r.jsonl", "r.tsv"])
def test_xlsx_jsonl_tsv_read_like_csv(tmp_path: Path, name: str) -> None:
    df = reviews()
    args = SpecArgs(text_column="review", labels_column="condition", sentiment_column="rating",
                    sentiment_order=("negative", "neutral", "positive"))
    if name.endswith(".tsv"):
        df.to_csv(tmp_path / name, sep="\t", index=False)
    else:
        write(df, tmp_path / name)
    a, b = load(single(tmp_path), args), load(tmp_path / name, args)
    def words(texts: list[str]) -> list[str]:  # Excel keeps line ends its own way
        return [" ".join(t.split()) for t in texts]

    assert a.ids == b.ids and words(a.texts) == words(b.texts) and a.labels == b.labels
    assert (a.Y == b.Y).all() and (a.sentiment == b.sentiment).all()


def test_nhs_file_keeps_its_preset(tmp_path: Path) -> None:
    ds = load(ROOT / "data" / "nhs-patient-feedback" / "v6framework_230831.csv")
    assert len(ds.labels) == 32 and ds.spec is not None and ds.spec.preset == "nhs"
    assert ds.context == "question_type" and ds.sentiment_classes == ["1", "2", "3", "4", "5"]


def test_stratified_split_keeps_singletons_in_training() -> None:
    Y = np.zeros((11, 2), np.uint8)
    Y[:10, 0] = 1
    Y[10, 1] = 1
    mask = stratified_split(Y)
    assert mask.sum() == 2 and not mask[10]


# --------------------------------------------------------------------------- refusals
def _refused(tmp_path: Path, df: pd.DataFrame, args: SpecArgs, match: str) -> None:
    with pytest.raises(DataError, match=match) as err:
        load(write(df, tmp_path / "bad.csv"), args)
    assert "\n" not in str(err.value)


def test_refusals_name_the_column_or_value(tmp_path: Path) -> None:
    df = reviews()
    args = SpecArgs(text_column="review", labels_column="condition")
    _refused(tmp_path, df, replace(args, text_column="comment"), "no text column 'comment'")
    _refused(tmp_path, df.assign(review=""), args, "text column 'review' is empty")
    _refused(tmp_path, df.assign(condition="Pain"), args, "one class only \\('Pain'\\)")
    _refused(tmp_path, df.head(MIN_ROWS - 1), args, f"{MIN_ROWS - 1} rows with text")
    _refused(tmp_path, df.assign(id="7"), args, "id column 'id' repeats 1 id")
    _refused(tmp_path, df, replace(args, sentiment_column="rating", sentiment_order=("negative", "positive")),
             "'neutral', which --sentiment-order does not name")
    _refused(tmp_path, df.assign(rating="positive"),
             replace(args, sentiment_column="rating", sentiment_order=("negative", "positive")),
             "sentiment column 'rating' holds one class only")
    _refused(tmp_path, df.assign(flag="maybe", flag2="1"), SpecArgs(text_column="review",
             label_columns=("flag", "flag2")), "label column 'flag' holds 'maybe'")


def test_cli_refusal_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = single(tmp_path)
    run = subprocess.run([sys.executable, "-m", "twolane_cli", "build", "instant", "--data", str(path),
                          "--text-column", "comment", "--out", str(tmp_path / "b")],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 2, run.stderr
    assert "no text column 'comment'" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) <= 3  # one reason (rich may wrap it)
    assert not (tmp_path / "b").exists()


# --------------------------------------------------------------------------- rules
def test_context_tokens_and_top_label() -> None:
    assert context_token("Birth Control") == "birth_control" and context_token(" ") == "none"
    assert context_token("Café") == "cafe" and context_token("病棟").startswith("x")
    assert context_input("ok", "Ward 7") == "ok qt_ward_7"
    P = np.array([[.1, .2, .3], [.9, .05, .05], [.3, .3, .2]], np.float32)
    D = top_label(P, None, np.array([False, False, True]))
    assert D.tolist() == [[0, 0, 1], [1, 0, 0], [0, 0, 0]]  # junk text: no label at all
    D = top_label(P, 2, np.array([False, False, True]))  # column 2 is the unlabellable label
    assert D.tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 1]]


# --------------------------------------------------------------------------- a bundle, served
@pytest.fixture(scope="module")
def own_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real single-label bundle: six conditions, three-class words sentiment, a context column."""
    from model_build.instant import SMALL, build

    tmp = tmp_path_factory.mktemp("own")
    df = reviews()
    df["channel"] = np.where(np.arange(len(df)) % 2 == 0, "web", "app")
    ds = load(write(df, tmp / "reviews.csv"),
              SpecArgs(text_column="review", labels_column="condition", sentiment_column="rating",
                       sentiment_order=("negative", "neutral", "positive"), context_column="channel"))
    return build(ds, tmp / "bundles", replace(SMALL, xgb_rounds=5, word_aliases=False))


ITEMS = [
    {"comment_id": "a", "comment_text": "This pill cleared my skin, no more breakouts and pimples", "context": "web"},
    {"comment_id": "b", "comment_text": "I could not sleep at all, awake every night until 4am", "context": "app"},
    {"comment_id": "c", "comment_text": "n/a"},
]


def test_manifest_and_report_carry_the_taxonomy(own_bundle: Path) -> None:
    from twolane.bundle import read_manifest

    m = read_manifest(own_bundle, verify=True)
    assert m.labels == sorted(TOP) and not m.taxonomy.multilabel and m.taxonomy.unlabellable is None
    assert m.sentiment_classes == ["negative", "neutral", "positive"] and not m.is_nhs
    assert m.serving.context == "column"
    assert m.data_spec is not None and m.data_spec.context_values == ["app", "web"]
    rep = json.loads((own_bundle / "report.json").read_text(encoding="utf-8"))
    assert set(rep["per_label"]) == set(TOP) and "confusions" in rep and "accuracy" in rep["scores"]
    assert "<svg" in (own_bundle / "report.html").read_text(encoding="utf-8")
    assert "drift_reference.json" in m.files  # drift works in its own taxonomy (tests/functional/test_drift.py)
    # the sentiment head: the tuned one or the plain baseline, by CV on the training rows
    choice = m.metrics["test"]["sentiment_choice"]  # type: ignore[index]
    assert choice["chosen"] == m.build["sentiment_head"] and choice["margin"] >= 0
    assert set(choice["cv_accuracy"]) == set(choice["test_accuracy"]) == {"tuned", "plain"}
    assert rep["sentiment_choice"] == choice and "sentiment head:" in (own_bundle / "report.html").read_text(
        encoding="utf-8")


def test_auto_jobs_keep_exactly_what_predict_gives(own_bundle: Path) -> None:
    """The cascade's instant part on a team's bundle (issue 31): the kept results are
    /v1/predict's answers (the file's class names, the context column read, no sentiment for
    junk text), and the single-label margins are the top-two gaps."""
    from twolane.bundle import Cascade
    from twolane.contract import CommentIn
    from twolane.predictors.cascade import split_lanes
    from twolane.predictors.instant import InstantPredictor

    pred = InstantPredictor.from_bundle(own_bundle)
    items = [CommentIn(**i) for i in ITEMS]
    never = Cascade(theme_margin_below=0.0, sentiment_margin_below=0.0, escalate_share=0.0, chosen_by="test",
                    instant_version=pred.version, tuned_on="test", validation_rows=0, curve=[])
    kept, esc = split_lanes(pred, never, items)
    assert not esc.any()
    assert [p.model_dump() for p in kept] == [p.model_dump() for p in pred.predict(items)]
    assert kept[2].sentiment is None and kept[0].sentiment is not None
    assert kept[0].sentiment.label in ("negative", "neutral", "positive")
    always = never.model_copy(update={"theme_margin_below": 1.01})  # every gap is below 1.01
    _, esc = split_lanes(pred, always, items)
    assert esc.tolist() == [True, True, False]  # junk text: answered by rule, never escalated


def test_served_in_its_own_taxonomy(own_bundle: Path) -> None:
    from fastapi.testclient import TestClient

    from twolane.api.app import create_app
    from twolane.predictors.instant import InstantPredictor
    from twolane.settings import Settings

    predictor = InstantPredictor.from_bundle(own_bundle)
    with TestClient(create_app(predictor, Settings()), raise_server_exceptions=False) as c:
        r = c.post("/v1/predict", json={"items": ITEMS, "include_probabilities": True})
        assert r.status_code == 200, r.text
        res = r.json()["results"]
        assert [len(x["labels"]) for x in res] == [1, 1, 0]  # one label each; junk: none
        assert res[0]["labels"] == ["Acne"] and res[1]["labels"] == ["Insomnia"]
        assert res[0]["sentiment"]["label"] in ("negative", "neutral", "positive")
        assert res[2]["sentiment"] is None and set(res[0]["probabilities"]) == set(TOP)
        info = c.get("/v1/models").json()
        assert info["labels"] == sorted(TOP) and info["sentiment_classes"] == ["negative", "neutral", "positive"]
        assert info["multilabel"] is False and info["context"] == {"column": "channel", "values": ["app", "web"]}
        assert info["question_types"] is None and info["columns"] == {"id": "id", "text": "review"}
        assert "instant lane" in info["batch_lane_refuses"]  # the page greys out Batch and Auto
        px = c.post("/predict_multilabel", json=[{"comment_id": "1", "comment_text": "fine"}])
        assert px.status_code == 409 and "NHS bundles only" in px.json()["detail"]
        slow = c.post("/api/StartContainerInstance", json=[{"comment_id": "1", "comment_text": "fine"}])
        assert slow.status_code == 409 and "NHS bundles only" in slow.json()["detail"]
        # the batch lane answers in the NHS taxonomy: jobs (and so the cascade) say so, never
        # hand back another taxonomy's labels
        for lane in ("batch", "auto"):
            job = c.post("/v1/jobs", json={"items": ITEMS, "lane": lane})
            assert job.status_code == 409 and "instant lane" in job.json()["detail"], job.text


def test_drop_folder_in_its_own_taxonomy(own_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto import mock_aws

    from twolane.dropfolder.process import process_event
    from twolane.predictors.instant import InstantPredictor
    from twolane.settings import Settings

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    monkeypatch.delenv("TWOLANE_AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    predictor = InstantPredictor.from_bundle(own_bundle)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["comment_id", "comment_text", "context"])
    w.writerows([(i["comment_id"], i["comment_text"], i.get("context", "")) for i in ITEMS])
    with mock_aws():
        s3: Any = boto3.client("s3", region_name="eu-west-2")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        s3.put_object(Bucket=BUCKET, Key="inbox/reviews.csv", Body=out.getvalue().encode())
        o = process_event(s3_event("inbox/reviews.csv"), predictor, s3=s3, settings=Settings())["outcomes"][0]
        assert o["status"] == "done", o
        rows = list(csv.DictReader(io.StringIO(s3.get_object(Bucket=BUCKET, Key="outbox/reviews.csv")
                                               ["Body"].read().decode())))
    direct = predictor.predict_texts([i["comment_text"] for i in ITEMS], [i.get("context") for i in ITEMS])
    assert [r["labels"] for r in rows] == ["; ".join(p.labels) for p in direct]
    assert rows[0]["sentiment_label"] in ("negative", "neutral", "positive") and rows[2]["labels"] == ""
    with mock_aws():  # inbox/batch/ and inbox/auto/: a report naming the instant lane
        s3 = boto3.client("s3", region_name="eu-west-2")
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        for key in ("inbox/batch/reviews.csv", "inbox/auto/reviews.csv"):
            s3.put_object(Bucket=BUCKET, Key=key, Body=out.getvalue().encode())
            o = process_event(s3_event(key), predictor, s3=s3, settings=Settings())["outcomes"][0]
            assert o["status"] == "failed" and "instant lane" in o["detail"], o
