"""The CDK app. Synthesise without the CDK CLI:

    .venv/bin/python -m infra.app [--env dev|prod] [--out cdk.out] [--asset-dir DIR]

or with the CLI (cdk.json runs this module): `npx cdk synth -c env=prod`.
cdk-nag (AwsSolutions) runs as a validation plugin; any unacknowledged finding fails the synth.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import infra  # noqa: F401  (sets the jsii environment before aws_cdk loads)
from infra.config import ConfigError, DeployConfig, load_config

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSET_MARKER = ".twolane-asset.json"
# CDK feature flags this app relies on (also in cdk.json for the CLI).
FEATURE_FLAGS = {
    "@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True,
    "@aws-cdk/aws-iam:minimizePolicies": True,
    "@aws-cdk/core:stackRelativeExports": True,
}
REQUIRED_IN_ASSET = ("functions/api/handler.py", "functions/dropfolder/handler.py",
                     "functions/notifications/handler.py", "twolane/__init__.py")


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


def check_asset(asset_dir: Path) -> dict:
    """The Lambda asset must exist and hold the handlers; returns its build marker."""
    missing = [p for p in REQUIRED_IN_ASSET if not (asset_dir / p).is_file()]
    if not asset_dir.is_dir() or missing:
        raise ConfigError(
            f"Lambda asset {asset_dir} is not built (missing: {', '.join(missing) or 'folder'}).\n"
            "  Build it:            .venv/bin/python -m infra.build_lambda_asset --env <env>\n"
            "  Synth-only (no deps): .venv/bin/python -m infra.build_lambda_asset --code-only")
    marker = asset_dir / ASSET_MARKER
    return json.loads(marker.read_text()) if marker.is_file() else {"kind": "unknown"}


def build_app(env: str | None = None, outdir: str | Path | None = None,
              cfg: DeployConfig | None = None, asset_dir: str | Path | None = None,
              nag: bool = True):
    """Build (not synthesise) the CDK app for one environment. Returns (app, stack).
    The config and the asset are checked before the CDK (jsii) starts, so errors are quick."""
    if cfg is None and env is not None:
        cfg = load_config(env)
    if cfg is not None:
        asset = Path(asset_dir) if asset_dir else REPO_ROOT / cfg.instant.asset_dir
        info = check_asset(asset)

    from aws_cdk import App, Environment, Validations
    from cdk_nag import AwsSolutionsChecks

    from infra.common import ACKNOWLEDGED
    from infra.stack import TwolaneStack

    ACKNOWLEDGED.clear()  # one app per process at a time; the bench reads this list
    app = App(outdir=str(outdir) if outdir else None, context=dict(FEATURE_FLAGS))
    if cfg is None:  # run by the CDK CLI: `cdk synth -c env=prod [-c batch=false]`
        cfg = load_config(app.node.try_get_context("env") or "dev")
        if str(app.node.try_get_context("batch")).lower() == "false":
            cfg = cfg.model_copy(update={"batch": cfg.batch.model_copy(update={"enabled": False})})
        asset = Path(asset_dir) if asset_dir else REPO_ROOT / cfg.instant.asset_dir
        info = check_asset(asset)
    stack = TwolaneStack(app, cfg.name, cfg=cfg, asset_dir=asset,
                         env=Environment(account=cfg.account, region=cfg.region))
    stack.asset_info = info
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
          cfg: DeployConfig | None = None, asset_dir: str | Path | None = None) -> SynthResult:
    """Synthesise to `outdir`; cdk-nag findings are returned, not raised."""
    start = time.perf_counter()
    outdir = Path(outdir)
    report = outdir / "validation-report.json"
    if report.exists():
        report.unlink()
    app, stack = build_app(env=env, outdir=outdir, cfg=cfg, asset_dir=asset_dir)
    try:
        app.synth()
    except RuntimeError as exc:  # jsii surfaces the failed validation as RuntimeError
        if "Validation failed" not in str(exc):
            raise
    return SynthResult(outdir=outdir, stack_name=stack.stack_name,
                       template_path=outdir / f"{stack.artifact_id}.template.json",
                       findings=read_findings(outdir), seconds=time.perf_counter() - start,
                       asset_kind=stack.asset_info.get("kind", ""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m infra.app", description=__doc__.splitlines()[0])
    p.add_argument("--env", default=None, help="dev or prod (default: -c env=..., else dev)")
    p.add_argument("--out", default=None, help="cloud assembly folder (default: cdk.out)")
    p.add_argument("--asset-dir", default=None, help="built Lambda asset (default: from config)")
    p.add_argument("--no-batch", action="store_true",
                   help="leave the batch lane out (first deploy, before model.tar.gz is uploaded)")
    args = p.parse_args(argv)
    try:
        if args.out is None and not args.env and not args.asset_dir:
            # Run by the CDK CLI (cdk.json): it sets CDK_OUTDIR and the context itself.
            import os

            if os.environ.get("CDK_OUTDIR"):
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
                       asset_dir=args.asset_dir)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result.findings:
        print(f"cdk-nag: {len(result.findings)} unacknowledged finding(s):", file=sys.stderr)
        for f in result.findings:
            print(f"  {f['rule']} at {f['path']}: {f['description']}", file=sys.stderr)
        return 1
    print(f"synthesised {result.stack_name} to {result.outdir} in {result.seconds:.1f} s; "
          "cdk-nag AwsSolutions: 0 unacknowledged findings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
