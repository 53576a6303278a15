"""Runtime settings, read once from environment variables (prefix TWOLANE_).

The same code runs locally and on AWS; only these values differ.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class ApiSettings(BaseModel):
    """What the HTTP API needs: limits per request and the API keys."""

    model_config = ConfigDict(frozen=True)

    max_items: int  # comments per request (POST /v1/predict, /predict_multilabel)
    max_job_items: int  # comments per batch job
    max_text_chars: int  # characters per comment
    api_keys: frozenset[str]  # empty = no auth
    max_concurrent_requests: int  # POSTs served at once; more wait before their body is read
    request_read_seconds: float = 10.0  # headers, and a POST's body once admitted, within this
    docs: bool  # serve /docs, /redoc, /openapi.json (behind the key when keys are set)
    batch_enabled: bool = True  # False: /v1/jobs and the slow API answer 503
    summaries_enabled: bool = True  # False: /v1/summaries answers 501


class DropFolderSettings(BaseModel):
    """What the drop folder needs."""

    model_config = ConfigDict(frozen=True)

    max_bytes: int  # larger files go to failed/
    max_text_chars: int  # characters per comment


class BatchSettings(BaseModel):
    """What the batch lane's runtime (job store, invokers) needs."""

    model_config = ConfigDict(frozen=True)

    bucket: str
    invoker: Literal["local", "sagemaker", "lambda"]
    endpoint: str  # classifier endpoint
    function: str  # the Lambda batch worker (name or ARN), when `invoker` is "lambda"
    summary_endpoint: str  # text-generation endpoint
    invocation_timeout_s: float
    shard_size: int = 5000  # comments per async invocation; bigger jobs are split into shards


class Settings(BaseSettings):
    """Every TWOLANE_* variable, flat (their names are what ops set); code takes the group it
    needs (`settings.api`, `settings.dropfolder`, `settings.batch`)."""

    model_config = SettingsConfigDict(env_prefix="TWOLANE_", extra="ignore")

    # Where bundles live: a bundle folder, or a root holding <lane>/<version>/ folders.
    bundles: Path = REPO_ROOT / "bundles"
    instant_bundle: Path | None = None  # overrides `bundles` for the instant lane
    batch_bundle: Path | None = None  # overrides `bundles` for the batch lane

    # onnxruntime intra-op threads per session (0 = onnxruntime's default: all cores).
    # The recommender sets it to stand in for an instance's vCPU count.
    intra_op_threads: int = Field(0, ge=0)

    # API limits and auth.
    max_items: int = Field(2000, ge=1)
    max_text_chars: int = Field(5000, ge=1)
    api_keys: str = ""  # comma-separated; empty = no auth
    # Bounds the memory a burst of POSTs can take; 2 keeps /health under 100 ms during a burst
    # of 2,000-comment requests (bench/burst.py: p99 64 ms with 2, 103 ms with 4).
    max_concurrent_requests: int = Field(2, ge=1)
    request_read_seconds: float = Field(10.0, gt=0)  # else 408: an idle client holds no slot
    docs: bool = True  # TWOLANE_DOCS=0 turns /docs, /redoc and /openapi.json off
    # Lanes a deployment leaves out (infra sets these from its config): TWOLANE_BATCH_ENABLED=0
    # makes /v1/jobs and the slow API answer 503, TWOLANE_SUMMARIES_ENABLED=0 /v1/summaries 501.
    batch_enabled: bool = True
    summaries_enabled: bool = True

    # Set by AWS Lambda in every function's environment: where CloudWatch reads EMF metrics
    # from stdout (twolane.drift.publish prints them only there).
    lambda_function_name: str | None = Field(None, validation_alias="AWS_LAMBDA_FUNCTION_NAME")

    # AWS (moto locally). boto3 also honours AWS_ENDPOINT_URL on its own.
    aws_endpoint_url: str | None = None
    aws_region: str = "eu-west-2"
    bucket: str = "twolane-local"
    # The API's public base URL (https://host[:port]), for absolute URLs the API hands out (the
    # slow API's results URL); unset: the address the server is bound to, never the Host header.
    public_url: str | None = None

    # Drop folder (S3 inbox/ -> outbox/, failed/) and the local stack.
    dropfolder_max_bytes: int = Field(20_000_000, ge=1)  # larger files go to failed/
    moto_port: int = Field(5000, ge=0)  # local S3 stand-in; 0 or busy = any free port
    poll_seconds: float = Field(1.0, gt=0)  # local watcher: how often to look at inbox/
    drop_settle_seconds: float = Field(5.0, ge=0)  # local watcher: unchanged this long = complete

    # Batch lane (async jobs). The invoker names the batch host. On AWS: "sagemaker" (the async
    # endpoint, by name) or "lambda" (the batch-worker function, one async invoke per shard).
    # Locally the stack stands in for that host: "local" or "sagemaker" = local_stack.runner
    # around sagemaker/serve.py, "lambda" = the worker's handler on a thread pool.
    batch_invoker: Literal["local", "sagemaker", "lambda"] = "local"
    batch_function: str = "twolane-batch-worker"  # the Lambda batch worker: name or ARN
    batch_endpoint: str = "twolane-batch"  # classifier endpoint (ONNX image)
    # The batch bundle's cascade rule (bundle.Cascade as JSON), for `"lane": "auto"` where the
    # API has no batch bundle on disk (AWS: infra sets it from the bundle it deploys).
    cascade_rule: str | None = None
    # The batch bundle's taxonomy (bundle.Taxonomy as JSON): what the batch lane answers in, so
    # jobs for an instant model of another taxonomy are refused (Manifest.batch_lane_refuses);
    # set by infra from the bundle it deploys, as cascade_rule.
    batch_taxonomy: str | None = None
    summary_endpoint: str = "twolane-llm"  # the LLM endpoint (llama.cpp / vLLM / LMI image)
    max_job_items: int = Field(50_000, ge=1)  # items per job (POST /v1/jobs, /v1/summaries)
    batch_max_concurrency: int = Field(2, ge=1)  # MaxConcurrentInvocationsPerInstance
    batch_idle_seconds: float = Field(120.0, gt=0)  # local runner: stop the container after
    # Local runner: tries per part (invocation). A container crash shared by several parts is
    # charged to none of them; each is then retried alone on a fresh container (runner.py).
    batch_max_attempts: int = Field(3, ge=1)
    batch_invocation_timeout_s: float = Field(900.0, gt=0)
    # Comments per async invocation: a bigger job is split into shards invoked separately, so
    # the endpoint's backlog scaling spreads it over instances (and the local runner's workers).
    batch_shard_size: int = Field(5000, ge=1)
    batch_workers: int = Field(1, ge=1)  # local runner: containers it may run at once (scale out)
    batch_queue: str = "twolane-batch-invocations"  # local stand-in for SageMaker's queue
    llm_queue: str = "twolane-llm-invocations"  # the same for the LLM endpoint (summaries)
    # The success / error SNS topics of the batch lane: by name (the local stack creates them),
    # and by ARN (what the Lambda batch worker publishes to; on AWS infra sets the ARNs).
    batch_success_topic: str = "twolane-batch-success"
    batch_error_topic: str = "twolane-batch-error"
    batch_success_topic_arn: str | None = None
    batch_error_topic_arn: str | None = None
    batch_notification_queue: str = "twolane-batch-notifications"
    generation_model: str | None = None  # the LLM for summaries: a .gguf locally, a name on AWS;
    # "none": no LLM (points only, every summary withheld "LLM switched off")
    # The sentence encoder summaries cluster with (a folder: model.onnx + tokenizer.json, made
    # by `twolane build encoder`); unset: the newest under <bundles>/encoder/
    sentence_encoder: Path | None = None

    # The batch host (twolane.batchhost.inference: the container and the Lambda batch worker).
    onnx_providers: str | None = None  # e.g. "CPUExecutionProvider" (default: CUDA when present)
    ort_preload_dlls: bool = False  # load CUDA/cuDNN from the nvidia-* pip wheels (GPU image)
    serve_delay_s: float = Field(0.0, ge=0)  # fault injection for tests: sleep before each prediction
    state_dir: Path = REPO_ROOT / ".twolane"  # local logs and pid files
    # Local stack: a collected job's record is deleted this many days after it was collected
    # (local_stack.recovery; on AWS the bucket's lifecycle rule on jobs/ does it).
    job_record_days: float = Field(7.0, gt=0)

    @property
    def api_key_set(self) -> frozenset[str]:
        return frozenset(k.strip() for k in self.api_keys.split(",") if k.strip())

    @property
    def api(self) -> ApiSettings:
        return ApiSettings(max_items=self.max_items, max_job_items=self.max_job_items,
                           max_text_chars=self.max_text_chars, api_keys=self.api_key_set,
                           max_concurrent_requests=self.max_concurrent_requests, docs=self.docs,
                           request_read_seconds=self.request_read_seconds,
                           batch_enabled=self.batch_enabled,
                           summaries_enabled=self.summaries_enabled)

    @property
    def dropfolder(self) -> DropFolderSettings:
        return DropFolderSettings(max_bytes=self.dropfolder_max_bytes,
                                  max_text_chars=self.max_text_chars)

    @property
    def batch(self) -> BatchSettings:
        return BatchSettings(bucket=self.bucket, invoker=self.batch_invoker,
                             endpoint=self.batch_endpoint, function=self.batch_function,
                             summary_endpoint=self.summary_endpoint,
                             invocation_timeout_s=self.batch_invocation_timeout_s,
                             shard_size=self.batch_shard_size)


@lru_cache
def get_settings() -> Settings:
    return Settings()
