"""LLM lane: a second SageMaker asynchronous endpoint (the batch lane's `AsyncEndpoint`
construct, same scale-to-zero policies, S3 output/failure paths and SNS topics) running an AWS
LLM container on the model the build packs (`llm_model_artifact`)."""

from infra.llm_lane.endpoint import LlmEndpoint, llm_endpoint_name
from infra.llm_lane.model import llm_model_artifact

__all__ = ["LlmEndpoint", "llm_endpoint_name", "llm_model_artifact"]
