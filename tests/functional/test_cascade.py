"""The cascade between the lanes ("lane": "auto"): the rule learned on validation and stored in
the batch manifest, the margins it reads, and auto jobs through the jobs API on small real
bundles (kept comments get exactly /v1/predict's answer; an all-kept job never wakes the batch
host)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from batchlane_helpers import ITEMS, bucket_ready, lane_settings, moto_server, poll_job
from fastapi.testclient import TestClient

from local_stack.invoker import LocalInvoker
from twolane.api.app import create_app
from twolane.bundle import BatchEnsemble, Cascade, DecideRule, Manifest, Taxonomy, read_manifest, write_manifest
from twolane.contract import CommentIn, Prediction
from twolane.jobs.service import JobService
from twolane.jobs.store import CascadePart, S3JobStore, merge_cascade
from twolane.predictors.cascade import NEVER, margins

# --- units: margins, the learned rule, the merge -----------------------------------------------


def test_margins_read_the_nearest_threshold_and_the_sentiment_gap() -> None:
    P = np.array([[0.9, 0.1, 0.0], [0.55, 0.2, 0.0], [0.0, 0.0, 1.0]], np.float32)
    S = np.array([[0.8, 0.1, 0.1, 0, 0], [0.4, 0.35, 0.25, 0, 0], [np.nan] * 5], np.float32)
    theme, sent = margins(P, S, np.array([0.5, 0.5, 0.5]), lnp=2)
    assert theme[1] < theme[0]  # 0.55 sits nearer its threshold than 0.9 or 0.1
    assert sent[0] == pytest.approx(0.7) and sent[1] == pytest.approx(0.05)
    assert theme[2] == NEVER and sent[2] == NEVER  # no sentiment (unknown text): never escalated


def _lanes(n: int = 400, seed: int = 0) -> tuple[Any, Any, Any, np.ndarray, np.ndarray]:
    """Synthetic validation: 3 labels + unlabellable; the instant lane is wrong exactly where its
    probabilities sit near the threshold, the batch lane is always right."""
    from model_build.cascade import lane_out

    rng = np.random.default_rng(seed)
    Y = np.zeros((n, 4), np.uint8)
    Y[np.arange(n), rng.integers(0, 3, n)] = 1
    unsure = rng.random(n) < 0.2
    P = np.where(Y[:, :3] == 1, 0.95, 0.05).astype(np.float32)
    P[unsure] = np.where(Y[unsure, :3] == 1, 0.45, 0.55)  # just on the wrong side
    P = np.hstack([P, np.zeros((n, 1), np.float32)])
    y_sent = rng.integers(0, 5, n)
    S = np.full((n, 5), 0.025, np.float32)
    S[np.arange(n), y_sent] = 0.9
    tax = Taxonomy(labels=["a", "b", "c", "Labelling not possible"], unlabellable="Labelling not possible",
                   sentiment_classes=list("12345"))
    rule = DecideRule(thresholds=[0.5] * 4, min_one_label=True)
    none = np.zeros(n, bool)
    inst = lane_out(tax, rule, P, S, none)
    batch = lane_out(tax, rule, np.hstack([Y[:, :3], np.zeros((n, 1))]).astype(np.float32), S, none)
    return inst, batch, Y, y_sent, unsure


def test_learned_rule_escalates_the_unsure_share_and_reaches_the_batch_lane() -> None:
    from model_build.cascade import learn, merge, scores

    inst, batch, Y, y_sent, unsure = _lanes()
    rule = learn(Y, y_sent, inst, batch, np.array([0.5] * 4), 3, "v1")
    assert rule.escalate_share == pytest.approx(unsure.mean(), abs=0.03)
    shares = [p.escalate_share for p in rule.curve]
    assert shares == sorted(shares) and shares[0] == 0.0 and shares[-1] <= 1.0
    theme, sent = margins(inst.P, inst.S, np.array([0.5] * 4), 3)
    esc = (theme < rule.theme_margin_below) | (sent < rule.sentiment_margin_below)
    got = scores(Y, y_sent, *merge(esc, inst, batch))
    assert got["macro_f1"] == pytest.approx(scores(Y, y_sent, batch.D, batch.sent)["macro_f1"])
    # a team's own share: never more than it asked for
    cheap = learn(Y, y_sent, inst, batch, np.array([0.5] * 4), 3, "v1", escalate_share=0.1)
    assert cheap.escalate_share <= 0.1


def test_shares_count_all_comments_junk_included() -> None:
    """The validation fold holds no junk text; a job's comments do (never escalated), so a share
    on the fold is scaled to all comments: the cap means the same thing on both."""
    from model_build.cascade import learn, non_junk_share

    assert non_junk_share(["The nurse was kind", "n/a", "", "Long wait"]) == pytest.approx(0.5)
    inst, batch, Y, y_sent, unsure = _lanes()
    rule = learn(Y, y_sent, inst, batch, np.array([0.5] * 4), 3, "v1", non_junk=0.5)
    assert rule.escalate_share == pytest.approx(unsure.mean() * 0.5, abs=0.02)
    assert "0.500" in rule.tuned_on
    # the cap is of all comments: at most 15 % of them is 30 % of the fold
    capped = learn(Y, y_sent, inst, batch, np.array([0.5] * 4), 3, "v1", escalate_share=0.15, non_junk=0.5)
    theme, sent = margins(inst.P, inst.S, np.array([0.5] * 4), 3)
    fold = ((theme < capped.theme_margin_below) | (sent < capped.sentiment_margin_below)).mean()
    assert capped.escalate_share <= 0.15 and fold == pytest.approx(2 * capped.escalate_share, abs=0.01)


def test_merge_puts_each_result_back_in_input_order_with_its_lane() -> None:
    part = CascadePart(kept_location="s3://b/k", escalated=[1, 3], instant_version="i1")
    kept = {"results": [{"comment_id": "a"}, {"comment_id": "c"}, {"comment_id": "e"}]}
    batch = {"model_version": "b1", "target": "ms", "results": [{"comment_id": "b"}, {"comment_id": "d"}]}
    merged = merge_cascade(part, kept, batch)
    assert [(r["comment_id"], r["lane"]) for r in merged["results"]] == [
        ("a", "instant"), ("b", "batch"), ("c", "instant"), ("d", "batch"), ("e", "instant")]
    assert merged["model_version"] == "b1" and merged["instant_version"] == "i1"
    with pytest.raises(ValueError):
        merge_cascade(part, kept, {"results": [{"comment_id": "b"}]})


def test_lane_is_absent_from_plain_results() -> None:
    """pxtextmining's shapes and plain jobs' results are as before: no `lane` key at all."""
    p = Prediction(comment_id="1", labels=["Staff"])
    assert "lane" not in p.model_dump() and "lane" not in p.model_dump_json()
    assert Prediction(comment_id="1", labels=[], lane="batch").model_dump()["lane"] == "batch"


# --- the manifest section, on the small real bundles --------------------------------------------


def test_cascade_section_is_written_and_loaded(batch_bundle: Path) -> None:
    m = read_manifest(batch_bundle, verify=True)
    assert isinstance(m.ensemble, BatchEnsemble)
    rule = m.ensemble.cascade
    assert rule is not None and rule.curve and rule.validation_rows > 0
    assert rule.instant_version == read_manifest(batch_bundle / m.ensemble.instant_dir).version
    assert "validation" in rule.tuned_on and 0.0 <= rule.escalate_share <= 0.35 + 1e-9
    again = Manifest.model_validate_json(m.model_dump_json())
    assert isinstance(again.ensemble, BatchEnsemble) and again.ensemble.cascade == rule


def test_the_rule_reaches_an_api_without_a_batch_bundle(batch_bundle: Path, tmp_path: Path) -> None:
    """On AWS the API's asset holds only the instant bundle: infra reads the rule from the
    batch bundle (or its model.tar.gz) it deploys into TWOLANE_CASCADE_RULE, which wins."""
    import tarfile

    from infra.stack import Artifacts, cascade_rule_json
    from twolane.settings import Settings
    from twolane.wiring import cascade_rule

    m = read_manifest(batch_bundle)
    assert isinstance(m.ensemble, BatchEnsemble) and m.ensemble.cascade is not None
    want = m.ensemble.cascade.model_copy(update={"curve": []})
    from_folder = cascade_rule_json(Artifacts(batch_bundle=batch_bundle))
    tar_path = tmp_path / "model.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(batch_bundle / "manifest.json", arcname="manifest.json")
    from_tar = cascade_rule_json(Artifacts(model_artifact=tar_path))
    assert from_folder is not None and from_folder == from_tar and len(from_folder) < 2000
    nowhere = Settings(bundles=tmp_path / "none", batch_bundle=None)
    assert cascade_rule(nowhere) is None
    got = cascade_rule(nowhere.model_copy(update={"cascade_rule": from_folder}))
    assert got == want
    assert cascade_rule(nowhere.model_copy(update={"cascade_rule": "{not json"})) is None


# --- auto jobs through the jobs API ---------------------------------------------------------------


@pytest.fixture(scope="module")
def moto() -> Any:
    with moto_server() as endpoint:
        yield endpoint


def _bundle_with_rule(batch_bundle: Path, tmp: Path, theme: float, sentiment: float) -> Path:
    """A copy of the small batch bundle whose cascade cut-offs are set by hand (so the job has
    comments on both lanes, or none escalated)."""
    out = tmp / "batch" / batch_bundle.name
    shutil.copytree(batch_bundle, out)
    m = read_manifest(out)
    assert isinstance(m.ensemble, BatchEnsemble) and m.ensemble.cascade is not None
    m.ensemble.cascade = m.ensemble.cascade.model_copy(
        update={"theme_margin_below": theme, "sentiment_margin_below": sentiment})
    write_manifest(out, m)
    return out


def _client(settings: Any, invoker: Any, predictor: Any) -> tuple[TestClient, S3JobStore]:
    from twolane.aws import client

    bucket_ready(settings)
    store = S3JobStore(client("s3", settings), settings.bucket)
    app = create_app(predictor=predictor, settings=settings, jobs=JobService(store, invoker, settings.batch))
    return TestClient(app, raise_server_exceptions=False), store


def test_auto_job_answers_every_comment_with_its_lane(moto: str, tmp_path: Path, batch_bundle: Path) -> None:
    from local_stack.batch_lane import notifications_lambda
    from local_stack.runner import AsyncRunner
    from twolane.predictors.batch import BatchPredictor
    from twolane.predictors.cascade import margins
    from twolane.predictors.instant import InstantPredictor

    instant = InstantPredictor.from_bundle(batch_bundle / "instant")
    P, S = instant.predict_arrays([i["comment_text"] for i in ITEMS], [i["question_type"] for i in ITEMS])
    theme, _ = margins(P, S, instant.thresholds, instant.decider.lnp)
    cut = float(np.median(theme[np.isfinite(theme)]))  # about half the labellable comments escalate
    bundle = _bundle_with_rule(batch_bundle, tmp_path / "bundles", theme=cut, sentiment=0.0)
    settings = lane_settings(tmp_path, bundle)
    runner = AsyncRunner(settings, lambda: bundle, notify=notifications_lambda).start()
    try:
        client, _store = _client(settings, LocalInvoker(settings), instant)
        r = client.post("/v1/jobs", json={"items": ITEMS, "target": "ms", "lane": "auto"})
        assert r.status_code == 202, r.text
        done = poll_job(client, r.json()["results_url"])
        assert done.status_code == 200, done.text
        results = done.json()["results"]
        assert [x["comment_id"] for x in results] == [i["comment_id"] for i in ITEMS]
        lanes = [x["lane"] for x in results]
        assert set(lanes) == {"instant", "batch"}, lanes
        assert lanes == ["batch" if t < cut else "instant" for t in theme]
        direct = client.post("/v1/predict", json={"items": ITEMS}).json()["results"]
        batch = BatchPredictor.from_bundle(bundle).predict(
            [CommentIn(**i) for i in ITEMS], target="ms")
        for x, d, b in zip(results, direct, batch, strict=True):
            want = d if x["lane"] == "instant" else b.model_dump(mode="json")
            assert {k: v for k, v in x.items() if k != "lane"} == want
        assert "comment_text" not in done.text
        assert client.get(r.json()["results_url"]).status_code == 410
        assert runner.stats.starts == 1
    finally:
        runner.stop()


class CountingInvoker(LocalInvoker):
    """The local invoker, counting its invocations (the test asserts there are none)."""

    calls = 0

    def invoke(self, **kw: Any) -> Any:
        CountingInvoker.calls += 1
        return super().invoke(**kw)


def test_all_kept_job_never_wakes_the_batch_host(moto: str, tmp_path: Path, batch_bundle: Path) -> None:
    from twolane.predictors.instant import InstantPredictor

    bundle = _bundle_with_rule(batch_bundle, tmp_path / "bundles", theme=0.0, sentiment=0.0)
    settings = lane_settings(tmp_path, bundle)
    instant = InstantPredictor.from_bundle(batch_bundle / "instant")
    client, store = _client(settings, CountingInvoker(settings), instant)
    CountingInvoker.calls = 0
    r = client.post("/v1/jobs", json={"items": ITEMS, "target": "m", "lane": "auto"})
    assert r.status_code == 202, r.text
    got = client.get(r.json()["results_url"])  # done at once: nothing to wait for
    assert got.status_code == 200, got.text
    results = got.json()["results"]
    assert [x["lane"] for x in results] == ["instant"] * len(ITEMS)
    direct = client.post("/v1/predict", json={"items": ITEMS}).json()["results"]
    assert [x["labels"] for x in results] == [d["labels"] for d in direct]
    assert all(x["sentiment"] is None for x in results)  # target "m", as a plain job
    assert CountingInvoker.calls == 0
    job_id = r.json()["job_id"]  # the bucket is shared by this module's tests: this job's keys
    keys = [o["Key"] for o in store.s3.list_objects_v2(Bucket=store.bucket).get("Contents", [])]
    assert not [k for k in keys if k.startswith("batch/input/") and job_id in k]


def test_auto_without_a_rule_is_a_clear_409(moto: str, tmp_path: Path, batch_bundle: Path) -> None:
    from twolane.predictors.instant import InstantPredictor

    out = tmp_path / "bundles" / "batch" / batch_bundle.name
    shutil.copytree(batch_bundle, out)
    raw = json.loads((out / "manifest.json").read_text())
    raw["ensemble"].pop("cascade", None)  # a bundle built before the cascade
    (out / "manifest.json").write_text(json.dumps(raw))
    settings = lane_settings(tmp_path, out)
    client, _ = _client(settings, CountingInvoker(settings), InstantPredictor.from_bundle(batch_bundle / "instant"))
    r = client.post("/v1/jobs", json={"items": ITEMS, "lane": "auto"})
    assert r.status_code == 409 and "cascade" in r.json()["detail"]
    assert client.post("/v1/jobs", json={"items": ITEMS, "lane": "fast"}).status_code == 422
    assert isinstance(Cascade, type)


# --- the drop folder: inbox/auto/ -------------------------------------------------------------------


def test_drop_folder_auto_file_is_delivered_whole(moto: str, tmp_path: Path, batch_bundle: Path) -> None:
    """inbox/auto/X: the kept comments are labelled at once, the unsure ones go to the batch
    lane; outbox/auto/X has every row in input order once the job is done."""
    from batchlane_helpers import wait_for

    from local_stack.batch_lane import notifications_lambda
    from local_stack.runner import AsyncRunner
    from twolane.dropfolder.process import process_object
    from twolane.predictors.instant import InstantPredictor

    instant = InstantPredictor.from_bundle(batch_bundle / "instant")
    P, S = instant.predict_arrays([i["comment_text"] for i in ITEMS], [i["question_type"] for i in ITEMS])
    theme, _ = margins(P, S, instant.thresholds, instant.decider.lnp)
    cut = float(np.median(theme[np.isfinite(theme)]))
    bundle = _bundle_with_rule(batch_bundle, tmp_path / "bundles", theme=cut, sentiment=0.0)
    settings = lane_settings(tmp_path, bundle)
    runner = AsyncRunner(settings, lambda: bundle, notify=notifications_lambda).start()
    try:
        _client_, store = _client(settings, LocalInvoker(settings), instant)
        jobs = JobService(store, LocalInvoker(settings), settings.batch)
        body = "\n".join(json.dumps(i) for i in ITEMS).encode()
        store.s3.put_object(Bucket=store.bucket, Key="inbox/auto/ward.jsonl", Body=body)
        out = process_object(store.s3, store.bucket, "inbox/auto/ward.jsonl", instant, settings, jobs)
        assert out.status == "submitted" and out.job_id, out
        result = f"s3://{store.bucket}/outbox/auto/ward.jsonl"
        wait_for(lambda: store.exists(result), 90, "outbox/auto/ward.jsonl")
        rows = [json.loads(line) for line in (store.read(result) or b"").decode().splitlines()]
        assert [r["comment_id"] for r in rows] == [i["comment_id"] for i in ITEMS]
        direct = instant.predict([CommentIn(**i) for i in ITEMS])
        kept = [k for k, t in enumerate(theme) if not t < cut]
        assert kept and all(rows[k]["labels"] == direct[k].labels for k in kept)
    finally:
        runner.stop()


def test_drop_folder_auto_file_all_kept_is_written_at_once(moto: str, tmp_path: Path, batch_bundle: Path) -> None:
    from twolane.dropfolder.process import process_object
    from twolane.predictors.instant import InstantPredictor

    bundle = _bundle_with_rule(batch_bundle, tmp_path / "bundles", theme=0.0, sentiment=0.0)
    settings = lane_settings(tmp_path, bundle)
    instant = InstantPredictor.from_bundle(batch_bundle / "instant")
    _c, store = _client(settings, CountingInvoker(settings), instant)
    CountingInvoker.calls = 0
    jobs = JobService(store, CountingInvoker(settings), settings.batch)
    store.s3.put_object(Bucket=store.bucket, Key="inbox/auto/all.jsonl",
                        Body="\n".join(json.dumps(i) for i in ITEMS).encode())
    out = process_object(store.s3, store.bucket, "inbox/auto/all.jsonl", instant, settings, jobs)
    assert out.status == "done" and out.result_key == "outbox/auto/all.jsonl"
    assert CountingInvoker.calls == 0 and not store.exists(f"s3://{store.bucket}/inbox/auto/all.jsonl")


# --- the recommender's cascade line ----------------------------------------------------------------


def _lambda(name: str, cps: float) -> Any:
    from recommender.billing import ShardedHost

    return ShardedHost(name=name, kind="lambda", memory_mb=1024, usd_per_gb_second=1.6667e-5,
                       usd_per_request=2e-7, throughput_cps=cps, cold_start_s=1.0, cold_billed_s=1.0,
                       max_invocation_s=900, max_concurrency=100, family="lambda")


def test_cascade_job_bills_the_instant_host_for_all_and_the_batch_host_for_the_share() -> None:
    from recommender.billing import Workload, estimate
    from recommender.cascade import cascade_doc, cascade_estimate

    w = Workload(comments_per_week=500_000, jobs_per_week=3)
    batch, instant = _lambda("batch", 100.0), _lambda("instant", 5000.0)
    none = cascade_estimate(w, [batch], instant, 0.0)
    assert none is not None and none["batch_host"].startswith("none")
    assert none["usd_per_month"] == pytest.approx(estimate(instant, w).usd_per_month)
    part = cascade_estimate(w, [batch], instant, 0.25)
    assert part is not None and part["cheaper"] and part["usd_per_month"] < part["batch_alone_usd_per_month"]
    doc = cascade_doc(w, [batch], instant, False, [1e4, 1e6], measured={
        "share": 0.25, "quality_met": True, "bundle": "b",
        "gap_to_batch": {"macro_f1": -0.003, "micro_f1": 0.0, "sentiment_accuracy": -0.004}})
    assert doc is not None and "cheapest way to the batch lane's quality here" in doc["message"]
    assert "not the cheapest" not in doc["message"]


def test_slow_api_auto_keeps_pxtextminings_shapes(moto: str, tmp_path: Path, batch_bundle: Path) -> None:
    """pxtextmining's slow API with `&lane=auto`: an all-kept job is done at once, and its rows
    are exactly pxtextmining's {comment_id, sentiment, labels}: no `lane` key."""
    from urllib.parse import urlsplit

    from twolane.predictors.instant import InstantPredictor

    bundle = _bundle_with_rule(batch_bundle, tmp_path / "bundles", theme=0.0, sentiment=0.0)
    settings = lane_settings(tmp_path, bundle)
    client, _store = _client(settings, CountingInvoker(settings),
                             InstantPredictor.from_bundle(batch_bundle / "instant"))
    CountingInvoker.calls = 0
    r = client.post("/api/StartContainerInstance?target=ms&lane=auto", json=ITEMS)
    assert r.status_code == 202, r.text
    url = urlsplit(r.text)
    got = client.get(url.path + (f"?{url.query}" if url.query else ""))
    assert got.status_code == 200, got.text
    rows = got.json()
    assert [x["comment_id"] for x in rows] == [i["comment_id"] for i in ITEMS]
    assert all(set(x) == {"comment_id", "sentiment", "labels"} for x in rows)
    assert CountingInvoker.calls == 0
