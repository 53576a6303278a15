"""Infra figures: synth time, resources per stack, cdk-nag, cfn-lint, Lambda asset size.

    nice -n 10 .venv/bin/python -m bench.infra [--asset build/lambda/instant] [--no-smoke]

Writes bench/results/infra.json and the infra section of bench/RESULTS.md. The asset (built
with `python -m infra.build_lambda_asset`) is measured unzipped and zipped, and smoke-tested:
imported under Python 3.12 (the Lambda runtime's version) and the API handler invoked with an
API Gateway v2 event, when a python3.12 is on PATH.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC
from pathlib import Path

from bench.results_md import write_section

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "infra.json"
REPORT = REPO / "bench" / "RESULTS.md"
START, END = "<!-- infra:start -->", "<!-- infra:end -->"
MiB = 2 ** 20


def synth_env(env: str, asset: Path, tmp: Path) -> dict:
    from infra.app import synth
    from infra.checks import cfn_lint, wildcard_actions
    from infra.common import ACKNOWLEDGED
    from infra.config import load_config

    cfg = load_config(env)
    r = synth(cfg=cfg, outdir=tmp / f"cdk.out-{env}", asset_dir=asset)
    tpl = r.template
    types = collections.Counter(res["Type"] for res in tpl["Resources"].values())
    t0 = time.perf_counter()
    lint = cfn_lint(r.template_path)
    return {
        "stack": r.stack_name, "synth_seconds": round(r.seconds, 1),
        "asset_kind": r.asset_kind, "resources": sum(types.values()),
        "resources_by_type": dict(types.most_common()),
        "cdk_nag_unacknowledged": len(r.findings),
        "cdk_nag_acknowledged": len(ACKNOWLEDGED),
        "cdk_nag_acknowledged_rules": dict(collections.Counter(
            rule.split("[")[0] for _, rule, _ in ACKNOWLEDGED)),
        "cfn_lint_problems": len(lint), "cfn_lint_seconds": round(time.perf_counter() - t0, 1),
        "wildcard_iam_actions": len(wildcard_actions(tpl)),
    }


def asset_figures(asset: Path) -> dict:
    from infra.build_lambda_asset import LAMBDA_UNZIPPED_LIMIT, MARKER, dir_size

    size = dir_size(asset)
    top = sorted(((dir_size(p) if p.is_dir() else p.stat().st_size, p.name)
                  for p in asset.iterdir()), reverse=True)[:8]
    with tempfile.TemporaryDirectory() as tmp:
        z = Path(tmp) / "asset.zip"
        with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in asset.rglob("*"):
                if f.is_file():
                    zf.write(f, f.relative_to(asset))
        zipped = z.stat().st_size
    bundle = asset / "bundle"
    marker = json.loads((asset / MARKER).read_text()) if (asset / MARKER).is_file() else {}
    return {
        "path": str(asset.relative_to(REPO) if asset.is_relative_to(REPO) else asset),
        "kind": marker.get("kind"), "architecture": marker.get("architecture"),
        "bundle_version": marker.get("bundle_version"),
        "unzipped_mib": round(size / MiB, 1), "zipped_mib": round(zipped / MiB, 1),
        "bundle_mib": round(dir_size(bundle) / MiB, 1) if bundle.is_dir() else None,
        "limit_unzipped_mib": LAMBDA_UNZIPPED_LIMIT // MiB,
        "share_of_limit": round(size / LAMBDA_UNZIPPED_LIMIT, 3),
        "largest": {name: round(s / MiB, 1) for s, name in top},
        "build_seconds": marker.get("build_seconds"),
    }


# The API Gateway (HTTP API v2) event and Lambda context the asset probes send to the API
# handler (here and in bench/cold_start.py): one POST /v1/predict of two comments.
API_EVENT = r"""
body = {"items": [{"comment_id": "1", "comment_text": "The nurses were kind and the food was cold"},
                  {"comment_id": "2", "comment_text": ""}]}
event = {"version": "2.0", "routeKey": "$default", "rawPath": "/v1/predict", "rawQueryString": "",
         "headers": {"content-type": "application/json", "x-api-key": "k"},
         "requestContext": {"http": {"method": "POST", "path": "/v1/predict", "sourceIp": "1.2.3.4",
                                     "protocol": "HTTP/1.1", "userAgent": "bench"},
                            "requestId": "r", "stage": "$default", "routeKey": "$default"},
         "body": json.dumps(body), "isBase64Encoded": False}
class Ctx:
    function_name = "bench"; memory_limit_in_mb = 1024; aws_request_id = "r"
    invoked_function_arn = "arn:aws:lambda:eu-west-2:123456789012:function:bench"
"""


SMOKE = r"""
import json, time
t0 = time.perf_counter()
import functions.api.handler as h
cold = time.perf_counter() - t0
""" + API_EVENT + r"""t1 = time.perf_counter()
out = h.handler(event, Ctx())
warm = time.perf_counter() - t1
print(json.dumps({"status": out["statusCode"], "import_s": round(cold, 2),
                  "first_call_s": round(warm, 3), "body": json.loads(out["body"])}))
"""


def smoke(asset: Path, tmp: Path) -> dict:
    py = shutil.which("python3.12")
    if py is None or not (asset / "bundle").is_dir():
        return {"ran": False, "why": "no python3.12 on PATH or no bundle in the asset"}
    extra = tmp / "runtime-provided"  # what the Lambda runtime adds: boto3
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(extra),
                    "--python-version", "3.12", "--only-binary=:all:", "--platform",
                    "manylinux2014_x86_64", "boto3"], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": f"{asset}:{extra}", "PYTHONNOUSERSITE": "1",
           "TWOLANE_INSTANT_BUNDLE": str(asset / "bundle"), "TWOLANE_API_KEYS": "",
           "AWS_DEFAULT_REGION": "eu-west-2", "POWERTOOLS_SERVICE_NAME": "bench"}
    p = subprocess.run([py, "-I", "-c", f"import sys; sys.path[:0] = {[str(asset), str(extra)]!r}\n"
                        + SMOKE], env=env, capture_output=True, text=True, timeout=300, check=False)
    if p.returncode != 0:
        return {"ran": True, "ok": False, "stderr_tail": p.stderr[-2000:]}
    res = json.loads(p.stdout.strip().splitlines()[-1])
    preds = res["body"].get("predictions") or res["body"].get("results") or res["body"]
    return {"ran": True, "ok": res["status"] == 200, "python": "3.12", "status": res["status"],
            "import_seconds_local": res["import_s"], "first_call_seconds_local": res["first_call_s"],
            "sample": preds if isinstance(preds, list) else str(preds)[:300]}


def write_report(data: dict) -> None:
    lines = [START, "## Infra (AWS CDK)", "",
             f"Measured {data['measured_at']} on the shared 2-core build machine (offline synth).", "",
             "Synth s: the first synth in a process includes starting Node/jsii and importing the "
             "sagemaker SDK (DLC lookup); later ones in the same process reuse them.", "",
             "| env | synth s | resources | cdk-nag unacknowledged | acknowledged (justified) | "
             "cfn-lint problems | wildcard IAM actions |", "|---|---|---|---|---|---|---|"]
    for env, s in data["synth"].items():
        lines.append(f"| {env} | {s['synth_seconds']} | {s['resources']} | "
                     f"{s['cdk_nag_unacknowledged']} | {s['cdk_nag_acknowledged']} | "
                     f"{s['cfn_lint_problems']} | {s['wildcard_iam_actions']} |")
    a = data.get("asset")
    if a:
        bundle = (f"bundle {a['bundle_version']} ({a['bundle_mib']} MiB)" if a["bundle_version"]
                  else "dependencies only: no instant bundle inside (none could be built when "
                  "this was measured), add its size")
        lines += ["", f"Lambda asset ({a['kind']}, {a['architecture']}, {bundle}): "
                  f"**{a['unzipped_mib']} MiB unzipped** "
                  f"({a['share_of_limit']:.0%} of the 250 MiB limit; target 100), "
                  f"{a['zipped_mib']} MiB zipped, built in {a['build_seconds']} s. Largest: "
                  + ", ".join(f"{k} {v}" for k, v in a["largest"].items()) + "."]
    s = data.get("smoke")
    if s and s.get("ran"):
        lines += ["", f"Asset smoke test under Python 3.12: API handler answered "
                  f"{s.get('status')} (import {s.get('import_seconds_local')} s, first call "
                  f"{s.get('first_call_seconds_local')} s on this machine, not a Lambda)."]
    lines += ["", "Raw figures: `bench/results/infra.json`.", END]
    block = "\n".join(lines)
    write_section(START, END, block, REPORT)


def rewrite_report() -> None:
    write_report(json.loads(RESULTS.read_text()))


def main(argv: list[str] | None = None) -> int:
    from datetime import datetime

    from infra.build_lambda_asset import build_code_only

    p = argparse.ArgumentParser(prog="python -m bench.infra")
    p.add_argument("--asset", default=str(REPO / "build" / "lambda" / "instant"),
                   help="a built Lambda asset to measure (and synth with)")
    p.add_argument("--no-smoke", action="store_true")
    a = p.parse_args(argv)
    asset = Path(a.asset)
    data: dict = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                  "synth": {}}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        code_only = tmp / "code-only"
        build_code_only(code_only)
        for env in ("dev", "prod"):
            data["synth"][env] = synth_env(env, code_only, tmp)
            print(env, json.dumps(data["synth"][env])[:300], flush=True)
        if asset.is_dir():
            data["synth"]["dev-real-asset"] = synth_env("dev", asset, tmp)
            data["asset"] = asset_figures(asset)
            print(json.dumps(data["asset"]), flush=True)
            if not a.no_smoke:
                data["smoke"] = smoke(asset, tmp)
                print(json.dumps(data["smoke"])[:600], flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    write_report(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
