"""The batch lane's Lambda host measured: the batch worker (functions/batch_worker/handler.py) in
a fresh process on ONE core, as a 1-vCPU Lambda (1,769 MB) runs it, against moto S3 + SNS.

    nice -n 10 .venv/bin/python -m bench.batch_worker [--bundle bundles] [--comments 5000] [--runs 3]

Each run is a new Python process pinned to one core (sched_setaffinity) with onnxruntime on one
thread (TWOLANE_INTRA_OP_THREADS=1). It times, inside the process:
  * cold start: import the handler, then a 1-comment shard (the model loads on the first event),
    i.e. what Lambda's INIT plus the first invocation cost, without the package download;
  * warm shard: one shard of `--comments` real NHS comments through the same handler (read the
    input object, infer, write the output object, publish the notification).
The recommender (recommender/hosts.py) bills Lambda from these figures: comments/s on one vCPU
and the cold start. Writes bench/results/batch_worker.json and its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.results_md import write_section

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "batch_worker.json"
START, END = "<!-- batch_worker:start -->", "<!-- batch_worker:end -->"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "eu-west-2", "TWOLANE_AWS_REGION": "eu-west-2"}

# Runs in the pinned child: time the handler's import, a 1-comment shard, then the big shard.
PROBE = r"""
import json, os, sys, time
os.sched_setaffinity(0, {int(os.environ["BENCH_CORE"])})
t0 = time.perf_counter(); c0 = time.process_time()
from functions.batch_worker.handler import handler
t_import = time.perf_counter() - t0

class Ctx:
    function_name = "twolane-batch-worker"; memory_limit_in_mb = 1769
    invoked_function_arn = "arn:aws:lambda:eu-west-2:123456789012:function:twolane-batch-worker"
    aws_request_id = "bench"

events = json.loads(os.environ["BENCH_EVENTS"])
out = handler(events[0], Ctx())
t_cold = time.perf_counter() - t0; c_cold = time.process_time() - c0
assert out["status"] == "Completed", out
t1 = time.perf_counter(); c1 = time.process_time()
out = handler(events[1], Ctx())
t_warm = time.perf_counter() - t1; c_warm = time.process_time() - c1
assert out["status"] == "Completed", out
import resource
print(json.dumps({"import_s": t_import, "cold_start_s": t_cold, "cold_start_cpu_s": c_cold,
                  "shard_s": t_warm, "shard_cpu_s": c_warm,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _texts(n: int) -> list[dict[str, str]]:
    from model_build.data import load_dataset
    from twolane.rules import QUESTION_TYPES

    ds = load_dataset()
    qts = list(QUESTION_TYPES)
    rows = [t for t in ds.texts if t.strip()]
    return [{"comment_id": str(i), "comment_text": rows[i % len(rows)],
             "question_type": qts[i % len(qts)]} for i in range(n)]


def measure(bundle: Path, comments: int, runs: int) -> dict[str, Any]:
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    from twolane.layout import batch_failure_key, batch_input_key, batch_output_key, s3_uri

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per moto request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    try:
        kw: dict[str, Any] = {"endpoint_url": endpoint, "region_name": "eu-west-2",
                              "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        s3, sns = boto3.client("s3", **kw), boto3.client("sns", **kw)
        bucket = "twolane-bench"
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
        ok = sns.create_topic(Name="bench-success")["TopicArn"]
        err = sns.create_topic(Name="bench-error")["TopicArn"]
        items = _texts(comments)

        def event(n: int) -> dict[str, str]:
            iid = uuid.uuid4().hex
            key = batch_input_key(iid)
            s3.put_object(Bucket=bucket, Key=key,
                          Body=json.dumps({"items": items[:n], "target": "ms"}).encode())
            return {"inference_id": iid, "input_location": s3_uri(bucket, key),
                    "output_location": s3_uri(bucket, batch_output_key(iid)),
                    "failure_location": s3_uri(bucket, batch_failure_key(iid)),
                    "endpoint": "twolane-batch"}

        env = {**os.environ, **AWS_ENV, "TWOLANE_AWS_ENDPOINT_URL": endpoint,
               "AWS_ENDPOINT_URL": endpoint, "TWOLANE_BUCKET": bucket,
               "TWOLANE_BATCH_SUCCESS_TOPIC_ARN": ok, "TWOLANE_BATCH_ERROR_TOPIC_ARN": err,
               "TWOLANE_BATCH_BUNDLE": str(bundle), "TWOLANE_INTRA_OP_THREADS": "1",
               "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "BENCH_CORE": "0",
               "POWERTOOLS_LOG_LEVEL": "WARNING"}
        out = []
        for _ in range(runs):
            env["BENCH_EVENTS"] = json.dumps([event(1), event(comments)])
            p = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                               text=True, check=True, cwd=REPO)
            out.append(json.loads(p.stdout.strip().splitlines()[-1]))
    finally:
        server.stop()
    return summarise(out, comments, bundle)


def summarise(runs: list[dict[str, Any]], comments: int, bundle: Path) -> dict[str, Any]:
    from twolane.bundle import read_manifest, resolve_bundle

    def med(k: str) -> float:
        return float(statistics.median(r[k] for r in runs))

    resolved = resolve_bundle(bundle, "batch")
    # Throughput from the shard's wall clock, and from its CPU time (the steadier figure on a
    # shared machine: one core, one thread, so CPU time is the work a dedicated vCPU does).
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "bundle": read_manifest(resolved).version, "comments_per_shard": comments,
        "runs": runs, "loadavg": os.getloadavg(),
        "cold_start_s": med("cold_start_s"), "cold_start_cpu_s": med("cold_start_cpu_s"),
        "import_s": med("import_s"), "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "shard_s": med("shard_s"), "shard_cpu_s": med("shard_cpu_s"),
        "comments_per_s_wall": comments / med("shard_s"),
        "comments_per_s_1_vcpu": comments / min(med("shard_cpu_s"), med("shard_s")),
    }


def write_report(res: dict[str, Any]) -> None:
    block = "\n".join([
        START, "### Batch lane on Lambda: the batch worker on one core (bench/batch_worker.py)", "",
        f"Measured {res['measured_at'][:16]} on bundle {res['bundle']}, load "
        f"{res['loadavg'][0]:.1f}: a fresh process pinned to one core, onnxruntime on one "
        "thread, the real handler against moto S3 + SNS (median of "
        f"{len(res['runs'])} runs).", "",
        "| figure | value |", "|---|---|",
        f"| cold start: handler import + model load + a 1-comment shard | {res['cold_start_s']:.2f} s "
        f"(CPU {res['cold_start_cpu_s']:.2f} s; import alone {res['import_s']:.2f} s) |",
        f"| one shard of {res['comments_per_shard']:,} comments, warm | {res['shard_s']:.1f} s "
        f"(CPU {res['shard_cpu_s']:.1f} s) |",
        f"| comments/s on one vCPU (the recommender's Lambda figure) | "
        f"{res['comments_per_s_1_vcpu']:.0f} (wall clock {res['comments_per_s_wall']:.0f}) |",
        f"| peak RSS | {res['peak_rss_mb']:.0f} MB |", "",
        "Not included: Lambda downloading and unpacking the deployment package (assumed in "
        "recommender/prices.json).", END,
    ])
    write_section(START, END, block)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, default=REPO / "bundles")
    ap.add_argument("--comments", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args(argv)
    res = measure(a.bundle, a.comments, a.runs)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2) + "\n")
    write_report(res)
    print(json.dumps({k: v for k, v in res.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
