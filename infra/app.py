"""The CDK app. Synthesise with the CDK CLI (cdk.json runs this module):

    npx cdk synth -c env=prod            # or: npx cdk deploy -c env=prod [-c batch=false]

or without it:

    .venv/bin/python -m infra.app [--env dev|prod] [--out cdk.out] [--asset-dir DIR]
                                  [--batch-asset-dir DIR] [--no-batch]

Either way the app builds what it ships: the Lambda asset (CDK local bundling with pip, no
Docker; infra/lambda_code.py) and the batch lane's model: with batch.host "async_endpoint" the
model.tar.gz (a file asset; infra/batch_lane/model.py) and the image, a Docker image asset that
`cdk deploy` builds (synth only stages its context); with "lambda" the batch worker's own Lambda
asset (pip again, the batch bundle inside; no Docker at all).
cdk-nag (AwsSolutions) runs as a validation plugin; any unacknowledged finding fails the synth.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import infra  # noqa: F401  (sets the jsii environment before aws_cdk loads)
from infra.build_lambda_asset import (
    LANES,
    MARKER,
    REQUIRED_IN_ASSET,  # noqa: F401  (tests read the instant asset's handlers from here)
    Lane,
    resolve_batch_bundle,
    resolve_instant_bundle,
)
from infra.config import ConfigError, DeployConfig, load_config

REPO_ROOT = Path(__file__).resolve().parent.parent
CDK_JSON = REPO_ROOT / "cdk.json"


def feature_flags() -> dict:
    """The CDK feature flags (and other context) from cdk.json, so a synth without the CLI
    builds the same template as `cdk synth`."""
    context = json.loads(CDK_JSON.read_text(encoding="utf-8")).get("context", {})
    return {k: v for k, v in context.items() if k.startswith("@aws-cdk")}


@dataclass
class SynthResult:
    outdir: Path
    stack_name: str
    template_path: Path
    findings: list[dict] = field(default_factory=list)  # unacknowledged cdk-nag findings
    seconds: float = 0.0
    asset_kind: str = ""

    @property
    def template(self) -> dict:
        return json.loads(self.template_path.read_text())


def check_asset(asset_dir: Path, lane: Lane = "instant") -> dict:
    """A prebuilt Lambda asset must exist and hold the lane's handlers; returns its marker."""
    missing = [p for p in LANES[lane].required if not (asset_dir / p).is_file()]
    if not asset_dir.is_dir() or missing:
        flag = "--asset-dir" if lane == "instant" else "--batch-asset-dir"
        raise ConfigError(
            f"{lane} Lambda asset {asset_dir} is not built (missing: "
            f"{', '.join(missing) or 'folder'}).\n"
            f"  Leave {flag} out and the app builds it, or build one by hand:\n"
            f"  .venv/bin/python -m infra.build_lambda_asset --lane {lane} --env <env> --out DIR")
    marker = asset_dir / MARKER
    return json.loads(marker.read_text()) if marker.is_file() else {"kind": "unknown"}


def find_artifacts(cfg: DeployConfig, asset_dir: str | Path | None = None,
                   batch_asset_dir: str | Path | None = None):
    """Everything the stack ships, located and checked before the CDK (jsii) starts, so a
    missing model is one readable error. Returns (Artifacts, description of the Lambda asset).
    `batch_asset_dir`: a prebuilt batch worker asset (batch.host "lambda"); else the CDK
    bundles one with the batch bundle that batch.model_path names."""
    from infra.stack import Artifacts

    instant = None
    if asset_dir is not None:
        lambda_asset = Path(asset_dir)
        kind = "prebuilt " + check_asset(lambda_asset).get("kind", "unknown")
    else:
        lambda_asset = None
        instant = resolve_instant_bundle(cfg.instant.bundle)
        kind = "bundled"
    model = batch_bundle = batch_asset = None
    if cfg.batch.enabled and cfg.batch.host == "lambda":
        if batch_asset_dir is not None:
            batch_asset = Path(batch_asset_dir)
            kind += "; batch worker: prebuilt " + check_asset(batch_asset, "batch").get(
                "kind", "unknown")
        else:
            batch_bundle = resolve_batch_bundle(cfg.batch.model_path)
            kind += "; batch worker: bundled"
    elif cfg.batch.enabled and not cfg.batch.model_data_url:
        from infra.batch_lane.model import model_artifact

        model = model_artifact(cfg.batch.model_path, instant)
    llm = None
    if cfg.llm.enabled and not cfg.llm.model_data_url:
        from infra.llm_lane import llm_model_artifact

        llm = llm_model_artifact(cfg.llm)
    return Artifacts(instant_bundle=instant, lambda_asset=lambda_asset, model_artifact=model,
                     batch_bundle=batch_bundle, batch_asset=batch_asset, llm_artifact=llm), kind


NOT_BUILT_MODEL = "s3://twolane-not-built/model.tar.gz"  # never deployed: see ships_assets()


def ships_assets(app) -> bool:
    """False under CDK CLI commands that deploy nothing (destroy, ls, ...): the CLI then sets
    the bundling-stacks context to [] and builds no asset, so none need exist. `cdk destroy`
    works on a machine without the models."""
    return app.node.try_get_context("aws:cdk:bundling-stacks") != []


def unbuilt_artifacts(cfg: DeployConfig):
    """Artifacts for a command that ships nothing: no Lambda asset, no model file."""
    from infra.stack import Artifacts

    if cfg.batch.enabled and cfg.batch.host == "async_endpoint" \
            and not cfg.batch.model_data_url:
        cfg = cfg.model_copy(update={"batch": cfg.batch.model_copy(
            update={"model_data_url": NOT_BUILT_MODEL})})
    return cfg, (Artifacts(), "not built (this command deploys nothing)")


def cli_config(app) -> DeployConfig:
    """The config for a CDK CLI run: `-c env=prod`, `-c batch=false`."""
    cfg = load_config(app.node.try_get_context("env") or "dev")
    if str(app.node.try_get_context("batch")).lower() == "false":
        cfg = cfg.model_copy(update={"batch": cfg.batch.model_copy(update={"enabled": False})})
    return cfg


def build_app(env: str | None = None, outdir: str | Path | None = None,
              cfg: DeployConfig | None = None, asset_dir: str | Path | None = None,
              nag: bool = True, batch_asset_dir: str | Path | None = None):
    """Build (not synthesise) the CDK app for one environment. Returns (app, stack).
    Config and artifacts are checked before the CDK (jsii) starts where possible."""
    if cfg is None and env is not None:
        cfg = load_config(env)
    found = find_artifacts(cfg, asset_dir, batch_asset_dir) if cfg is not None else None

    from aws_cdk import App, Environment, Validations
    from cdk_nag import AwsSolutionsChecks

    from infra.common import ACKNOWLEDGED
    from infra.stack import TwolaneStack

    ACKNOWLEDGED.clear()  # one app per process at a time; the bench reads this list
    app = App(outdir=str(outdir) if outdir else None, context=feature_flags())
    if cfg is None:  # run by the CDK CLI
        cfg = cli_config(app)
        if ships_assets(app) or asset_dir is not None:
            found = find_artifacts(cfg, asset_dir, batch_asset_dir)
        else:
            cfg, found = unbuilt_artifacts(cfg)
    assert found is not None  # a config was given or read, so its artifacts were looked up
    artifacts, kind = found
    stack = TwolaneStack(app, cfg.name, cfg=cfg, artifacts=artifacts,
                         env=Environment(account=cfg.account, region=cfg.region))
    stack.asset_kind = kind
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def read_findings(outdir: Path) -> list[dict]:
    """Unacknowledged violations from the validation report CDK writes (none = no file)."""
    report = outdir / "validation-report.json"
    if not report.is_file():
        return []
    found = []
    for plugin in json.loads(report.read_text()).get("pluginReports", []):
        for v in plugin.get("violations", []):
            for c in v.get("violatingConstructs", []):
                found.append({"rule": v["ruleName"], "path": c["constructPath"],
                              "description": v.get("description", "")})
    return found


def synth(env: str | None = None, outdir: str | Path = REPO_ROOT / "cdk.out",
          cfg: DeployConfig | None = None, asset_dir: str | Path | None = None,
          batch_asset_dir: str | Path | None = None) -> SynthResult:
    """Synthesise to `outdir`; cdk-nag findings are returned, not raised."""
    start = time.perf_counter()
    outdir = Path(outdir)
    report = outdir / "validation-report.json"
    if report.exists():
        report.unlink()
    app, stack = build_app(env=env, outdir=outdir, cfg=cfg, asset_dir=asset_dir,
                           batch_asset_dir=batch_asset_dir)
    try:
        app.synth()
    except RuntimeError as exc:  # jsii surfaces the failed validation as RuntimeError
        if "Validation failed" not in str(exc):
            raise
    return SynthResult(outdir=outdir, stack_name=stack.stack_name,
                       template_path=outdir / f"{stack.artifact_id}.template.json",
                       findings=read_findings(outdir), seconds=time.perf_counter() - start,
                       asset_kind=stack.asset_kind)


def bundling_failure(exc: Exception) -> str | None:
    """The readable part of a failed asset build (the CDK wraps it in a jsii RuntimeError)."""
    text = str(exc)
    if "Failed to bundle asset" not in text:
        return None
    return text.rsplit("RuntimeError: ", 1)[-1].strip() or text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.app", description=__doc__.splitlines()[0])
    p.add_argument("--env", default=None, help="dev or prod (default: -c env=..., else dev)")
    p.add_argument("--out", default=None, help="cloud assembly folder (default: cdk.out)")
    p.add_argument("--asset-dir", default=None,
                   help="a prebuilt Lambda asset (default: the app builds it)")
    p.add_argument("--batch-asset-dir", default=None,
                   help="a prebuilt batch worker asset, for batch.host 'lambda' (default: the "
                   "app builds it)")
    p.add_argument("--no-batch", action="store_true", help="leave the batch lane out")
    args = p.parse_args(argv)
    try:
        if args.out is None and not args.env and not args.asset_dir \
                and not args.batch_asset_dir \
                and os.environ.get("CDK_OUTDIR"):
            # Run by the CDK CLI (cdk.json): it sets CDK_OUTDIR and the context itself.
            app, _ = build_app()
            try:
                app.synth()
            except RuntimeError as exc:
                if "Validation failed" not in str(exc):
                    raise
                print("cdk-nag: unacknowledged findings (see above)", file=sys.stderr)
                return 1
            return 0
        cfg = load_config(args.env or "dev")
        if args.no_batch:
            cfg.batch.enabled = False
        result = synth(cfg=cfg, outdir=args.out or REPO_ROOT / "cdk.out",
                       asset_dir=args.asset_dir, batch_asset_dir=args.batch_asset_dir)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        reason = bundling_failure(err)
        if reason is None:
            raise
        print(f"error: the Lambda asset could not be built: {reason}", file=sys.stderr)
        return 2
    if result.findings:
        print(f"cdk-nag: {len(result.findings)} unacknowledged finding(s):", file=sys.stderr)
        for f in result.findings:
            print(f"  {f['rule']} at {f['path']}: {f['description']}", file=sys.stderr)
        return 1
    print(f"synthesised {result.stack_name} to {result.outdir} in {result.seconds:.1f} s "
          f"(Lambda asset: {result.asset_kind}); cdk-nag AwsSolutions: 0 unacknowledged findings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
