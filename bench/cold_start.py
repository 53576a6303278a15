"""API Lambda cold start on the built asset: import of functions/api/handler.py (the model is
loaded there) and the first answer, as bench/infra.py's smoke test measures them.

    nice -n 10 .venv/bin/python -m bench.cold_start [--asset build/lambda/instant]
        [--small-bundle PATH] [--runs 5]

Each run is a fresh `python3.12 -I` (the Lambda runtime's version) with only the asset on
sys.path, PYTHONDONTWRITEBYTECODE=1 (/var/task is read-only: nothing compiled is kept), then
one POST /v1/predict through the handler (API Gateway v2 event, two comments). Four cases:
the asset's own bundle (the full model) and a small test bundle, each with the asset's
precompiled bytecode and with sources only (`-X pycache_prefix` at an empty folder: what an
asset without bytecode costs). Wall and CPU seconds are recorded: the machine is shared, so
CPU seconds are the steadier figure. Writes bench/results/cold_start.json and the cold_start
section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.infra import API_EVENT
from bench.results_md import write_section
from infra.build_lambda_asset import python312

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "cold_start.json"
REPORT = REPO / "bench" / "RESULTS.md"
START, END = "<!-- cold_start:start -->", "<!-- cold_start:end -->"
TARGET_S = 1.0

PROBE = r"""
import json, sys, time
t0 = time.perf_counter(); c0 = time.process_time()
import functions.api.handler as h
imp_wall = time.perf_counter() - t0; imp_cpu = time.process_time() - c0
""" + API_EVENT + r"""
t1 = time.perf_counter(); c1 = time.process_time()
out = h.handler(event, Ctx())
first_wall = time.perf_counter() - t1; first_cpu = time.process_time() - c1
heavy = sorted({m.split(".")[0] for m in sys.modules
                if m.split(".")[0] in ("boto3", "botocore", "s3transfer", "urllib3")})
print(json.dumps({"status": out["statusCode"], "import_wall": imp_wall, "import_cpu": imp_cpu,
                  "first_wall": first_wall, "first_cpu": first_cpu, "sdk_loaded": heavy,
                  "model_version": h.PREDICTOR.version}))
"""


def run_once(asset: Path, bundle: Path, bytecode: bool, empty: Path) -> dict[str, Any]:
    py = python312()
    if py is None:
        raise SystemExit("needs a python3.12 on PATH (the Lambda runtime's version)")
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1",
           "TWOLANE_INSTANT_BUNDLE": str(bundle), "TWOLANE_API_KEYS": "",
           "AWS_DEFAULT_REGION": "eu-west-2", "POWERTOOLS_SERVICE_NAME": "bench",
           "TWOLANE_BATCH_INVOKER": "sagemaker", "LANG": "C.UTF-8"}
    cmd = [py, "-I", "-B"]  # -I ignores PYTHON* variables: -B is what stops bytecode writes
    if not bytecode:
        cmd += ["-X", f"pycache_prefix={empty}"]
    cmd += ["-c", f"import sys; sys.path[:0] = [{str(asset)!r}]\n" + PROBE]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    if p.returncode != 0:
        raise SystemExit(f"the handler failed:\n{p.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    return out


def import_breakdown(asset: Path, bundle: Path) -> dict[str, float]:
    """`python3.12 -X importtime` of the handler (bytecode on): milliseconds of each top-level
    package's own import time (its modules' self times summed), largest first."""
    py = python312()
    assert py is not None
    env = {"PATH": os.environ.get("PATH", ""), "TWOLANE_INSTANT_BUNDLE": str(bundle),
           "AWS_DEFAULT_REGION": "eu-west-2", "TWOLANE_BATCH_INVOKER": "sagemaker"}
    p = subprocess.run([py, "-I", "-B", "-X", "importtime", "-c",
                        f"import sys; sys.path[:0] = [{str(asset)!r}]\nimport functions.api.handler"],
                       env=env, capture_output=True, text=True, timeout=300, check=True)
    totals: dict[str, float] = {}
    for line in p.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        top = parts[2].strip().split(".")[0]
        totals[top] = totals.get(top, 0.0) + int(parts[0]) / 1000
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    return {k: round(v, 1) for k, v in ranked[:12]}


def case(asset: Path, bundle: Path, bytecode: bool, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as empty:
        got = [run_once(asset, bundle, bytecode, Path(empty)) for _ in range(runs)]
    assert all(g["status"] == 200 for g in got)

    def med(k: str) -> float:
        return round(statistics.median(g[k] for g in got), 3)

    return {"bundle": str(bundle.relative_to(REPO) if bundle.is_relative_to(REPO) else bundle),
            "model_version": got[0]["model_version"], "bytecode": bytecode, "runs": runs,
            "import_wall_s": med("import_wall"), "import_cpu_s": med("import_cpu"),
            "first_answer_wall_s": med("first_wall"), "first_answer_cpu_s": med("first_cpu"),
            "total_wall_s": round(statistics.median(g["import_wall"] + g["first_wall"]
                                                    for g in got), 3),
            "total_cpu_s": round(statistics.median(g["import_cpu"] + g["first_cpu"]
                                                   for g in got), 3),
            "total_wall_min_s": round(min(g["import_wall"] + g["first_wall"] for g in got), 3),
            "sdk_loaded_at_cold_start": got[0]["sdk_loaded"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cold_start")
    ap.add_argument("--asset", type=Path, default=REPO / "build" / "lambda" / "instant")
    ap.add_argument("--small-bundle", type=Path, default=None,
                    help="a small instant bundle to compare with (default: none)")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args(argv)
    marker = json.loads((a.asset / ".twolane-asset.json").read_text())
    bundles = [("full (the asset's)", a.asset / "bundle")]
    if a.small_bundle is not None:
        bundles.append(("small (test)", a.small_bundle))
    cases = []
    for label, bundle in bundles:
        for bytecode in (True, False):
            c = {"label": label, **case(a.asset, bundle, bytecode, a.runs)}
            print(json.dumps(c), flush=True)
            cases.append(c)
    breakdown = import_breakdown(a.asset, a.asset / "bundle")
    print("import ms by package:", breakdown, flush=True)
    res = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
           "import_ms_by_package": breakdown,
           "machine": {"cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2),
                       "python": "3.12 (-I -B)"},
           "asset": {"path": str(a.asset.relative_to(REPO) if a.asset.is_relative_to(REPO)
                                 else a.asset),
                     "unzipped_mib": round(marker["size_bytes"] / 2**20, 1),
                     "bytecode": marker.get("bytecode"),
                     "bundle_version": marker.get("bundle_version")},
           "target_s": TARGET_S, "cases": cases}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    write_report(res)
    return 0


def write_report(res: dict[str, Any]) -> None:
    rows = [f"| {c['label']} `{c['model_version']}` | {'yes' if c['bytecode'] else 'no (sources)'} "
            f"| {c['import_wall_s']} / {c['import_cpu_s']} | {c['first_answer_wall_s']} / "
            f"{c['first_answer_cpu_s']} | **{c['total_cpu_s']}** | {c['total_wall_s']} "
            f"(min {c['total_wall_min_s']}) |" for c in res["cases"]]
    sdk = sorted({m for c in res["cases"] for m in c["sdk_loaded_at_cold_start"]})
    a = res["asset"]
    section = "\n".join([
        START,
        "## API Lambda cold start (bench/cold_start.py)",
        "",
        (f"The built asset `{a['path']}` ({a['unzipped_mib']} MiB unzipped, bytecode: "
         f"{a['bytecode']}), each run a fresh `python3.12 -I -B` with only the asset on sys.path and "
         "nothing written back (as /var/task is read-only): import of "
         "`functions/api/handler.py` (settings, FastAPI app, the instant model loaded) + the "
         "first POST /v1/predict through the handler. Medians of "
         f"{res['cases'][0]['runs']} runs, wall / CPU seconds; measured {res['measured_at']} on "
         f"{res['machine']['cpus']} shared CPUs (1-min load {res['machine']['loadavg_1m']}), so "
         "CPU seconds are the steadier figure; a Lambda of 1,769 MB or more has one full vCPU."),
        "",
        "| bundle | bytecode in the asset | import s (wall / CPU) | first answer s (wall / CPU) "
        f"| total CPU s (target <= {res['target_s']}) | total wall s |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        ("Where the import goes (`-X importtime`, one run, full bundle, bytecode; ms of each "
         "package's own modules, wall time on the shared machine): "
         + ", ".join(f"{k} {v}" for k, v in res["import_ms_by_package"].items())
         + ". `functions` is the handler module itself: the instant model loaded and the app "
         "built (FastAPI route and pydantic schema set-up), which a cold start exists to do."),
        "",
        ("AWS SDK modules loaded at cold start: " + (", ".join(sdk) if sdk else "none")
         + " (botocore's top-level package only, which Powertools imports for its user-agent "
         "hook; boto3, the clients and botocore.exceptions load when the jobs service is first "
         "used). Lambda SnapStart "
         "(`instant.snapstart`, off by default: docs/deploy.md) would restore a snapshot taken "
         "after this import instead."),
        END,
    ])
    write_section(START, END, section, REPORT)


if __name__ == "__main__":
    sys.exit(main())
