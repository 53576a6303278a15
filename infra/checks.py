"""Offline checks of the synthesised app, shared by tests/test_infra*.py and bench/infra.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from infra.app import SynthResult, synth
from infra.batch_lane.model import write_tar_gz
from infra.build_lambda_asset import build_code_only
from infra.config import DeployConfig

# cfn-lint W3005: CDK puts DependsOn on a Lambda's role *and* its DefaultPolicy; the role one
# is redundant with the GetAtt (harmless, and emitted by the CDK, not by us).
CFN_LINT_IGNORE = ["W3005"]


def placeholder_model(tmp: Path) -> Path:
    """A small model.tar.gz standing in for a packed batch bundle (the template only needs a
    file to hash and upload; tests/e2e/test_infra_artifacts.py packs a real one)."""
    folder = tmp / "placeholder-model"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.txt").write_text("placeholder for infrastructure tests\n")
    return write_tar_gz(folder, tmp / "model.tar.gz")


def synth_offline(tmp: Path, cfg: DeployConfig) -> SynthResult:
    """Synth with a code-only Lambda asset (the real handler code, no pip) and, for the async
    endpoint unless the config names an S3 model, a placeholder model.tar.gz; with batch.host
    "lambda" the same code-only folder stands in for the batch worker's asset: no network, no
    Docker, no model."""
    asset = tmp / "asset"
    build_code_only(asset)
    on_lambda = cfg.batch.enabled and cfg.batch.host == "lambda"
    if cfg.batch.enabled and not on_lambda and not cfg.batch.model_data_url:
        cfg = cfg.model_copy(update={"batch": cfg.batch.model_copy(
            update={"model_path": str(placeholder_model(tmp))})})
    return synth(cfg=cfg, outdir=tmp / "cdk.out", asset_dir=asset,
                 batch_asset_dir=asset if on_lambda else None)


def cfn_lint(template: Path) -> list[str]:
    """cfn-lint (as a library) on one template; returns the problems, [] when clean."""
    from cfnlint import api

    matches = api.lint_file(template, config=api.ManualArgs(ignore_checks=CFN_LINT_IGNORE))
    return [f"{m.rule.id} {m.message} ({m.path})" for m in matches]


def statements(template: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(logical id, resource type, statement) for every policy statement in the template."""
    for lid, res in template["Resources"].items():
        props = res.get("Properties", {})
        docs = []
        for key in ("PolicyDocument", "KeyPolicy", "AssumeRolePolicyDocument"):
            if key in props:
                docs.append(props[key])
        for pol in props.get("Policies", []) or []:
            docs.append(pol.get("PolicyDocument", {}))
        for doc in docs:
            for st in doc.get("Statement", []):
                yield lid, res["Type"], st


def wildcard_actions(template: dict[str, Any]) -> list[tuple[str, str]]:
    """Allow statements granting "*" or "service:*" (TLS-only Deny statements and the account
    root's standard KMS key-administration statement excepted)."""
    bad = []
    for lid, rtype, st in statements(template):
        if st.get("Effect") != "Allow":
            continue
        if rtype == "AWS::KMS::Key" and ":root" in dumps(st.get("Principal")):
            continue
        for action in as_list(st.get("Action", [])):
            if action == "*" or action.endswith(":*"):
                bad.append((lid, action))
    return bad


def as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def dumps(v: Any) -> str:
    return json.dumps(v, sort_keys=True)
