"""The one intake under every door (twolane.intake): lane choice, the batch lane's refusals, the
cascade split and its kept results, job submission and drift, for each door's `Origin`.

The jobs service is the real one over a real S3 job store (moto in process); the endpoint is a
recording stand-in (what is under test is what reaches it, not an inference). The cascade and
drift run the small real instant bundle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from batchlane_helpers import ITEMS, mocked_s3

from twolane import drift
from twolane.bundle import Cascade, Taxonomy
from twolane.contract import CommentIn
from twolane.intake import Intake, IntakeRefused, Loaded, Origin, cascade_for, label
from twolane.jobs.invoker import Invocation
from twolane.jobs.service import JobService
from twolane.jobs.store import Delivery, JobKind, S3JobStore
from twolane.settings import Settings

BUCKET = "intake-test"
COMMENTS = [CommentIn(**i) for i in ITEMS] + [CommentIn(comment_id="blank", comment_text="")]


class Endpoint:
    """The batch host as the jobs service sees it: records each invocation; `missing` says the
    model is not there yet (a local stack still building it)."""

    def __init__(self, missing: str | None = None) -> None:
        self.missing = missing
        self.calls: list[str] = []

    def unavailable_reason(self, kind: JobKind) -> str | None:
        return self.missing

    def invoke(self, *, input_location: str, inference_id: str, kind: JobKind) -> Invocation:
        self.calls.append(input_location)
        return Invocation(inference_id=inference_id, output_location=f"s3://{BUCKET}/out/{inference_id}",
                          failure_location=None, endpoint="test")


@pytest.fixture()
def s3() -> Any:
    with mocked_s3(BUCKET) as c:
        yield c


def _service(s3: Any, endpoint: Endpoint) -> JobService:
    return JobService(S3JobStore(s3, BUCKET), endpoint, Settings(bucket=BUCKET).batch)


def _settings(**kw: Any) -> Settings:
    """Settings with no bundles on disk: the batch lane's rule and taxonomy only as given."""
    return Settings(bucket=BUCKET, bundles=Path(__file__).parent / "no-bundles-here", **kw)


def _input(s3: Any, location: str) -> Any:
    key = location.removeprefix(f"s3://{BUCKET}/")
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def _delivery() -> Delivery:
    return Delivery(bucket=BUCKET, source_key="inbox/batch/f.csv", result_key="outbox/batch/f.csv",
                    report_key="failed/batch/f.csv.error.json", family="csv")


def _never() -> JobService | None:
    raise AssertionError("the jobs service was asked for where no job is made")


# --- units: a fake model, the real jobs service ---------------------------------------------------


def test_instant_file_is_answered_in_place_without_a_job(fake_predictor: Any) -> None:
    """A drop-folder file on the instant lane: the predictions come back to the door (which
    writes outbox/), CHUNK at a time, and the jobs service is never asked for."""
    intake = Intake(_settings(), Loaded(fake_predictor), _never)
    taken = intake.take(COMMENTS, "instant", "ms", Origin.dropfolder(_delivery(), [3]))
    assert taken.record is None and taken.sent == 0 and taken.model_version == "fake-1"
    assert taken.predictions == label(fake_predictor, COMMENTS)
    assert [p.comment_id for p in taken.predictions] == [c.comment_id for c in COMMENTS]


def test_instant_slow_api_request_is_a_finished_job(s3: Any, fake_predictor: Any) -> None:
    """The slow API's `&lane=instant`: a finished job (same once-only collection), its results
    the instant lane's, blank rows kept for pxtextmining's shapes; no inference started."""
    endpoint = Endpoint()
    jobs = _service(s3, endpoint)
    taken = Intake(_settings(), Loaded(fake_predictor), lambda: jobs).take(
        COMMENTS, "instant", "m", Origin.slow_api("key:abc", [3]))
    rec = taken.record
    assert rec is not None and rec.status == "succeeded" and rec.owner == "key:abc" and rec.blank_rows == [3]
    assert endpoint.calls == [] and taken.predictions is None
    got = jobs.collect(rec.job_id, "key:abc")
    assert got.payload is not None and got.payload["target"] == "m"
    assert got.payload["results"] == [p.model_dump(mode="json") for p in fake_predictor.predict(COMMENTS, target="m")]


def test_batch_job_carries_every_comment_and_the_origin(s3: Any, fake_predictor: Any) -> None:
    endpoint = Endpoint()
    jobs = _service(s3, endpoint)
    taken = Intake(_settings(), Loaded(fake_predictor), lambda: jobs).take(
        COMMENTS, "batch", "s", Origin.dropfolder(_delivery(), [3]))
    rec = taken.record
    assert rec is not None and taken.sent == len(COMMENTS) and taken.predictions is None
    assert rec.delivery == _delivery() and rec.blank_rows == [3] and rec.target == "s"
    assert endpoint.calls == [rec.input_location]
    body = _input(s3, rec.input_location)
    assert body == {"items": [c.model_dump() for c in COMMENTS], "target": "s"}  # no "lane": the host's JobRequest


def test_only_a_deferring_door_waits_for_a_missing_batch_model(s3: Any, fake_predictor: Any) -> None:
    from twolane.jobs.service import JobRejected

    jobs = _service(s3, Endpoint(missing="the batch model is still being built"))
    intake = Intake(_settings(), Loaded(fake_predictor), lambda: jobs)
    with pytest.raises(JobRejected):
        intake.take(COMMENTS, "batch", "ms", Origin.api(None))
    waiting = intake.take(COMMENTS, "batch", "ms", Origin.slow_api(None, []))
    assert waiting.record is not None and waiting.record.deferred


def test_refusals_come_before_any_job(fake_predictor: Any) -> None:
    """The batch lane answers only in its own taxonomy; no batch lane; no cascade for a model
    that is not an instant one: each a typed refusal, before a job or a model call."""
    other = Taxonomy(labels=["a", "b"], sentiment_classes=["neg", "pos"]).model_dump_json()
    refusing = Intake(_settings(batch_taxonomy=other), Loaded(fake_predictor), _never)
    for route in ("batch", "auto"):
        with pytest.raises(IntakeRefused) as exc:
            refusing.take(COMMENTS, route, "ms", Origin.api(None))
        assert exc.value.why == "taxonomy" and exc.value.reason
    with pytest.raises(IntakeRefused) as exc:
        Intake(_settings(), Loaded(fake_predictor), lambda: None).take(
            COMMENTS, "batch", "ms", Origin.dropfolder(_delivery(), []))
    assert exc.value.why == "no_batch_lane"
    with pytest.raises(IntakeRefused) as exc:
        cascade_for(fake_predictor, _settings())
    assert exc.value.why == "no_cascade"
    assert fake_predictor.calls == []


# --- the cascade and drift, on the small real instant bundle --------------------------------------


@pytest.fixture(scope="module")
def instant(instant_bundle: Path) -> Any:
    from twolane.predictors.instant import InstantPredictor

    return InstantPredictor.from_bundle(instant_bundle)


def _rule(instant: Any, theme: float) -> str:
    return Cascade(theme_margin_below=theme, sentiment_margin_below=0.0, escalate_share=0.5,
                   instant_version=instant.version).model_dump_json()


def _half(instant: Any) -> tuple[float, list[int]]:
    """A theme cut-off that escalates about half the labellable comments, and which ones."""
    from twolane.predictors.cascade import margins

    P, S = instant.predict_arrays([c.comment_text for c in COMMENTS], [c.question_type for c in COMMENTS])
    theme, _ = margins(P, S, instant.thresholds, instant.decider.lnp)
    cut = float(np.median(theme[np.isfinite(theme)]))
    return cut, [i for i, t in enumerate(theme) if t < cut]


def test_auto_sends_only_the_unsure_and_keeps_the_rest(s3: Any, instant: Any) -> None:
    cut, unsure = _half(instant)
    assert unsure and len(unsure) < len(COMMENTS)
    endpoint = Endpoint()
    jobs = _service(s3, endpoint)
    intake = Intake(_settings(cascade_rule=_rule(instant, cut)), Loaded(instant), lambda: jobs)
    taken = intake.take(COMMENTS, "auto", "ms", Origin.api("key:abc"))
    rec = taken.record
    assert rec is not None and rec.cascade is not None and taken.sent == len(unsure)
    assert rec.cascade.escalated == unsure and rec.items == len(COMMENTS)
    assert _input(s3, rec.input_location)["items"] == [COMMENTS[i].model_dump() for i in unsure]
    direct = instant.predict(COMMENTS)
    kept = _input(s3, rec.cascade.kept_location)
    assert kept["results"] == [direct[i].model_dump(mode="json") for i in range(len(COMMENTS)) if i not in unsure]
    assert "comment_text" not in json.dumps(kept)


def test_auto_all_kept_answers_in_place_or_as_a_finished_job(s3: Any, instant: Any) -> None:
    endpoint = Endpoint()
    jobs = _service(s3, endpoint)
    intake = Intake(_settings(cascade_rule=_rule(instant, 0.0)), Loaded(instant), lambda: jobs)
    direct = instant.predict(COMMENTS)
    here = intake.take(COMMENTS, "auto", "ms", Origin.dropfolder(_delivery(), []))
    assert here.record is None and here.predictions == direct
    job = intake.take(COMMENTS, "auto", "ms", Origin.slow_api(None, []))
    assert job.record is not None and job.record.status == "succeeded" and job.sent == 0
    got = jobs.collect(job.record.job_id)
    assert got.payload is not None
    assert [r["lane"] for r in got.payload["results"]] == ["instant"] * len(COMMENTS)
    assert endpoint.calls == []


def test_every_door_publishes_drift(s3: Any, instant: Any) -> None:
    """Drift was published for the API and the drop folder, never the slow API: now for each."""
    jobs = _service(s3, Endpoint())
    intake = Intake(_settings(), Loaded(instant), lambda: jobs)
    for origin in (Origin.api(None), Origin.slow_api(None, []), Origin.dropfolder(_delivery(), [])):
        taken = intake.take(COMMENTS, "instant" if origin.door == "slow_api" else "batch", "ms", origin)
        assert taken.drift is not None and drift.DRIFTED_METRIC in taken.drift, origin.door
