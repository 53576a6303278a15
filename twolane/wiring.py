"""Wiring: the one place the runtime's services are built from a `Settings` object.

    client(service, settings)    boto3 clients (twolane.aws: moto locally, AWS in the cloud)
    job_store(settings)          the S3 job store in the settings' bucket
    batch_invoker(settings)      the batch host the settings name (SageMaker async or Lambda)
    job_service(settings)        the jobs service over those two (None: no batch host here)
    batch_worker(settings)       the Lambda batch worker (its model loaded on the first event)
    cascade_rule(settings)       the batch bundle's cascade rule ("lane": "auto" jobs), or None
    batch_taxonomy(settings)     the batch bundle's taxonomy (what jobs answer in), or None
    instant_predictor(settings)  the instant lane's model the settings name
    get_predictor()              the process's own instant model (its settings; loaded once)
    sentence_encoder(settings)   the folder of the encoder summaries' points are clustered with

The Lambda handlers (functions/*) and the API (`twolane.api.deps`) call these; the local stack
passes its own stand-in invoker to `job_service`. Nothing else builds a store, an invoker or
a service, and nothing here reads the environment: `twolane.settings` does.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from twolane.aws import client
from twolane.batchhost.inference import Model, cached_model
from twolane.batchhost.worker import BatchWorker
from twolane.bundle import BatchEnsemble, BundleError, Cascade, Manifest, Taxonomy, read_manifest, resolve_bundle
from twolane.jobs.invoker import Invoker, LambdaInvoker, SageMakerInvoker
from twolane.jobs.service import JobService
from twolane.jobs.store import S3JobStore
from twolane.predictors.instant import InstantPredictor
from twolane.settings import Settings, get_settings
from twolane.summaries.embed import find_encoder

__all__ = ["batch_invoker", "batch_taxonomy", "batch_worker", "cascade_rule", "client", "get_predictor",
           "instant_predictor", "job_service", "job_store"]

ModelT = TypeVar("ModelT", bound=BaseModel)  # a setting parsed from JSON (_parsed)


def job_store(settings: Settings, s3: Any | None = None) -> S3JobStore:
    """The S3 job store in `settings.bucket`; `s3`: a boto3 S3 client to share (else a new one)."""
    return S3JobStore(s3 if s3 is not None else client("s3", settings), settings.bucket)


def batch_invoker(settings: Settings) -> Invoker | None:
    """The AWS invoker `settings.batch_invoker` names ("sagemaker": the async endpoint,
    "lambda": the batch worker function); None for "local" (the local stack passes its own
    stand-in: the runtime never imports the local stack). With summaries enabled, summary jobs
    go to the LLM endpoint by SageMaker async inference, whatever the batch host."""
    batch = settings.batch
    if batch.invoker == "sagemaker":
        return SageMakerInvoker(batch, client("sagemaker-runtime", settings))
    if batch.invoker == "lambda":
        llm = (SageMakerInvoker(batch, client("sagemaker-runtime", settings))
               if settings.summaries_enabled else None)
        return LambdaInvoker(batch, client("lambda", settings), summaries=llm)
    return None


def job_service(settings: Settings, invoker: Invoker | None = None,
                s3: Any | None = None) -> JobService | None:
    """The jobs service: the S3 job store + `invoker` (default: the one the settings name,
    `batch_invoker`). None when there is no invoker (no batch host configured)."""
    chosen = invoker if invoker is not None else batch_invoker(settings)
    if chosen is None:
        return None
    return JobService(job_store(settings, s3), chosen, settings.batch)


def batch_worker(settings: Settings) -> BatchWorker:
    """The Lambda batch worker: the model from `settings.batch_bundle` (TWOLANE_BATCH_BUNDLE:
    a batch bundle with instant/ inside, or a bundles root; else `settings.bundles`), loaded on
    the first event, once per process; the topics from `batch_success_topic_arn` and
    `batch_error_topic_arn`. Raises RuntimeError when a topic ARN is not set."""
    if not settings.batch_success_topic_arn or not settings.batch_error_topic_arn:
        raise RuntimeError("the batch worker needs TWOLANE_BATCH_SUCCESS_TOPIC_ARN and "
                           "TWOLANE_BATCH_ERROR_TOPIC_ARN")
    source = settings.batch_bundle or settings.bundles

    def model() -> Model:
        return cached_model(resolve_bundle(source, "batch"), settings)

    return BatchWorker(s3=client("s3", settings), sns=client("sns", settings), model=model,
                       success_topic_arn=settings.batch_success_topic_arn,
                       error_topic_arn=settings.batch_error_topic_arn,
                       region=settings.aws_region)


def _batch_manifest(settings: Settings) -> Manifest | None:
    """The manifest of the batch bundle the settings name (`batch_bundle`, else the newest under
    `bundles`; only the manifest is read, no model), or None when there is none. Read on each
    call: the local stack may build the batch bundle later."""
    try:
        return read_manifest(resolve_bundle(settings.batch_bundle or settings.bundles, "batch"))
    except BundleError:
        return None


def _parsed(model: type[ModelT], raw: str) -> ModelT | None:
    """A setting's JSON as `model`, or None when it does not validate."""
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        return None


def cascade_rule(settings: Settings) -> Cascade | None:
    """The cascade rule of the batch bundle: `settings.cascade_rule` (TWOLANE_CASCADE_RULE, the
    rule as JSON; on AWS the API has no batch bundle, infra sets it from the one it deploys),
    else the manifest's `ensemble.cascade`; None when there is no batch bundle or it has no rule
    (built before the cascade, or without the instant lane)."""
    if settings.cascade_rule:
        return _parsed(Cascade, settings.cascade_rule)
    manifest = _batch_manifest(settings)
    ens = manifest.ensemble if manifest is not None else None
    return ens.cascade if isinstance(ens, BatchEnsemble) else None


def batch_taxonomy(settings: Settings) -> Taxonomy | None:
    """The taxonomy the batch lane answers in: `settings.batch_taxonomy` (TWOLANE_BATCH_TAXONOMY,
    JSON; set by infra as cascade_rule), else the batch bundle's manifest; None when neither is
    there or readable."""
    if settings.batch_taxonomy:
        return _parsed(Taxonomy, settings.batch_taxonomy)
    manifest = _batch_manifest(settings)
    return manifest.taxonomy if manifest is not None else None


def instant_predictor(settings: Settings) -> InstantPredictor:
    """The instant model from `settings.instant_bundle` (a bundle folder or a bundles root;
    else `settings.bundles`), with `settings.intra_op_threads` onnxruntime threads. Raises
    BundleError when there is no usable bundle there."""
    return InstantPredictor.from_bundle(settings.instant_bundle or settings.bundles,
                                        threads=settings.intra_op_threads)


@lru_cache(maxsize=1)
def get_predictor() -> InstantPredictor:
    """The process's own instant model (`get_settings()`), loaded once and then cached: what a
    Lambda handler loads at its cold start."""
    return instant_predictor(get_settings())


def sentence_encoder(settings: Settings) -> Path | None:
    """The folder of the sentence encoder summaries cluster with (`settings.sentence_encoder`,
    TWOLANE_SENTENCE_ENCODER; else the newest under the bundles root's encoder/), or None: then
    points are found by the comments' words (twolane.summaries.embed)."""
    return find_encoder(settings.sentence_encoder, settings.bundles)
