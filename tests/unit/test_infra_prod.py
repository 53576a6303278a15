"""The prod config as shipped, synthesised once offline. The batch image is a Docker *asset*
(built by `cdk deploy`): synth stages its build context but needs no Docker engine and no
network."""

from __future__ import annotations

import pytest
from infra_helpers import endpoint_host

from infra.checks import cfn_lint, synth_offline, wildcard_actions
from infra.config import load_config


@pytest.fixture(scope="module")
def prod(tmp_path_factory):
    # the async-endpoint host (the shipped config carries the recommender's Lambda choice,
    # tests/functional/test_infra_lambda.py and test_shipped_configs_deploy_the_recommended_host)
    cfg = endpoint_host(load_config("prod"))
    result = synth_offline(tmp_path_factory.mktemp("infra-prod"), cfg)
    return cfg, result, result.template


def test_prod_has_no_nag_findings_lint_problems_or_wildcards(prod):
    _, result, tpl = prod
    assert result.findings == []
    assert cfn_lint(result.template_path) == []
    assert wildcard_actions(tpl) == []


def test_prod_keeps_data_and_uses_its_sizes(prod):
    cfg, _, tpl = prod
    res = tpl["Resources"]
    buckets = [r for r in res.values() if r["Type"] == "AWS::S3::Bucket"]
    assert cfg.storage.retain_on_delete
    assert all(b["DeletionPolicy"] == "Retain" for b in buckets)
    target = next(r["Properties"] for r in res.values()
                  if r["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, cfg.batch.max_instances)


def test_prod_reserves_no_lambda_concurrency_unless_asked(prod):
    """New accounts often have a concurrency quota of 10, and Lambda refuses any reservation
    that would leave fewer than 100 unreserved: reserved concurrency is opt-in."""
    cfg, _, tpl = prod
    assert cfg.instant.reserved_concurrency is None
    fns = [r["Properties"] for r in tpl["Resources"].values()
           if r["Type"] == "AWS::Lambda::Function"]
    assert fns and not any("ReservedConcurrentExecutions" in p for p in fns)


def test_asset_image_is_staged_and_pullable_by_the_endpoint_only(prod):
    _, result, tpl = prod
    manifest = (result.outdir / f"{result.stack_name}.assets.json").read_text()
    assert "dockerImages" in manifest and "sagemaker/Dockerfile" in manifest
    image = next(r["Properties"]["PrimaryContainer"]["Image"] for r in tpl["Resources"].values()
                 if r["Type"] == "AWS::SageMaker::Model")
    assert "cdk-hnb659fds-container-assets" in str(image)
    pulls = [st for r in tpl["Resources"].values() if r["Type"] == "AWS::IAM::Policy"
             for st in r["Properties"]["PolicyDocument"]["Statement"]
             if "ecr:BatchGetImage" in st["Action"]]
    assert len(pulls) == 1


def test_snapstart_is_an_option_on_the_api_function(tmp_path_factory):
    """instant.snapstart (off by default: it bills while idle): SnapStart on published
    versions, and API Gateway calls the alias 'live' on the current version; still clean."""
    cfg = load_config("dev")
    assert cfg.instant.snapstart is False
    cfg = cfg.model_copy(update={"instant": cfg.instant.model_copy(update={"snapstart": True})})
    result = synth_offline(tmp_path_factory.mktemp("infra-snapstart"), cfg)
    assert result.findings == []
    tpl = result.template
    fns = {k: r["Properties"] for k, r in tpl["Resources"].items()
           if r["Type"] == "AWS::Lambda::Function"}
    api = [k for k, p in fns.items() if p.get("Handler") == "functions.api.handler.handler"]
    assert len(api) == 1
    assert fns[api[0]]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert all("SnapStart" not in p for k, p in fns.items() if k != api[0])
    aliases = [r["Properties"] for r in tpl["Resources"].values()
               if r["Type"] == "AWS::Lambda::Alias"]
    assert [a["Name"] for a in aliases] == ["live"]
    assert aliases[0]["FunctionName"] == {"Ref": api[0]}
    alias_id = next(k for k, r in tpl["Resources"].items() if r["Type"] == "AWS::Lambda::Alias")
    integrations = [r["Properties"] for r in tpl["Resources"].values()
                    if r["Type"] == "AWS::ApiGatewayV2::Integration"]
    assert integrations and all(i["IntegrationUri"] == {"Ref": alias_id} for i in integrations)
    assert wildcard_actions(tpl) == []
