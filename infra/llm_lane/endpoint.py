"""`LlmEndpoint`: the LLM lane's SageMaker asynchronous endpoint.

The batch lane's `AsyncEndpoint` (model, endpoint config with S3 output/failure paths and SNS
success/error topics, execution role, scale to zero: target tracking on
ApproximateBacklogSizePerInstance, step scaling on HasBacklogWithoutCapacity) with an AWS LLM
container instead of ours:

* llama_cpp: the llama.cpp DLC (SageMaker flavour). Its entrypoint finds the *.gguf in
  /opt/ml/model and turns SM_LLAMA_CPP_<FLAG> variables into llama-server flags.
* vllm: the vLLM DLC (SageMaker flavour, CUDA) on ml.g5/g6, model from /opt/ml/model
  (SM_VLLM_MODEL), on SageMaker's GPU inference AMI (InferenceAmiVersion).

Both answer POST /invocations with the OpenAI chat-completions contract, the body the jobs API
writes (twolane.summaries.prompt).
"""

from __future__ import annotations

from pathlib import Path

from constructs import Construct

from infra.batch_lane import AsyncEndpoint
from infra.common import Shared
from infra.config import GPU_INFERENCE_AMI, BatchConfig, DeployConfig, LlmConfig
from infra.storage import Storage

MODEL_DIR = "/opt/ml/model"


def llm_endpoint_name(cfg: DeployConfig) -> str:
    """As the batch endpoint: the instance type is in the name (a new type, a new endpoint)."""
    size = cfg.llm.instance_type.removeprefix("ml.").replace(".", "-")
    return f"twolane-{cfg.env}-llm-{size}"[:63]


def endpoint_settings(llm: LlmConfig, region: str) -> BatchConfig:
    """The LLM lane's sizes in the shape `AsyncEndpoint` takes (an image given by URI)."""
    return BatchConfig(
        enabled=True, host="async_endpoint", instance_type=llm.instance_type,
        max_concurrent_invocations_per_instance=llm.max_concurrent_invocations_per_instance,
        min_instances=llm.min_instances, max_instances=llm.max_instances,
        backlog_target_per_instance=llm.backlog_target_per_instance,
        scale_in_cooldown_s=llm.scale_in_cooldown_s, scale_out_cooldown_s=llm.scale_out_cooldown_s,
        image_source="uri", image_uri=llm.image(region), model_data_url=llm.model_data_url,
        invocation_timeout_s=llm.invocation_timeout_s,
        container_startup_timeout_s=llm.container_startup_timeout_s,
        model_download_timeout_s=llm.model_download_timeout_s)


def engine_env(llm: LlmConfig) -> dict[str, str]:
    """The container's environment: context size and parallel requests, model from
    /opt/ml/model (never a hub)."""
    if llm.engine == "vllm":
        return {"SM_VLLM_MODEL": MODEL_DIR, "SM_VLLM_MAX_MODEL_LEN": str(llm.context_tokens),
                "SM_VLLM_MAX_NUM_SEQS": str(llm.max_concurrent_invocations_per_instance)}
    return {"SM_LLAMA_CPP_CTX_SIZE": str(llm.context_tokens),
            "SM_LLAMA_CPP_PARALLEL": str(llm.max_concurrent_invocations_per_instance)}


class LlmEndpoint(Construct):
    """`model_artifact`: the packed model.tar.gz (a CDK asset), or None with llm.model_data_url."""

    def __init__(self, scope: Construct, id: str, *, shared: Shared, storage: Storage,
                 endpoint_name: str, model_artifact: Path | None) -> None:
        super().__init__(scope, id)
        llm = shared.cfg.llm
        self.endpoint = AsyncEndpoint(
            self, "Endpoint", shared=shared, storage=storage, endpoint_name=endpoint_name,
            batch=endpoint_settings(llm, shared.cfg.region), model_artifact=model_artifact,
            container_env=engine_env(llm))
        if llm.gpu:  # CUDA images need SageMaker's GPU inference AMI (a recent driver)
            self.endpoint.config.add_property_override(
                "ProductionVariants.0.InferenceAmiVersion", GPU_INFERENCE_AMI)
        self.topics = self.endpoint.topics
        self.role = self.endpoint.role
