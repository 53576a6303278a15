"""AWS mode: the same recommendation from measurements taken on AWS itself.

* Batch lane: SageMaker Inference Recommender. It cannot test asynchronous endpoints, so it
  tests the same container and model as a real-time variant. A Default job lets AWS pick
  instance types; an Advanced job tries the given types under a traffic pattern (Phases) and
  stops a configuration when its p95 model latency passes the objective
  (StoppingConditions.ModelLatencyThresholds). Results: describe_inference_recommendations_job
  and list_inference_recommendations_job_steps (every benchmark, also the ones not recommended).
* Instant lane: a memory sweep like AWS Lambda Power Tuning: for each memory size,
  update_function_configuration(MemorySize), wait until the update is done, invoke N times with
  LogType=Tail and read Duration / Billed Duration / Max Memory Used from the REPORT line; the
  original memory size is restored afterwards.

Both feed the same cost model output (Candidate, Choice) and report as the local mode. Not run
here (no AWS account); the call shapes are tested against botocore's service models (Stubber).
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recommender.cost import Candidate, Choice, _message, _pick, load_prices
from recommender.loadtest import Cell

DONE = {"COMPLETED", "FAILED", "STOPPED", "DELETED"}


# --- SageMaker Inference Recommender -------------------------------------------------------

def ir_job_request(job_name: str, role_arn: str, model_name: str, slo_p95_ms: float,  # noqa: PLR0913 (the AWS request's fields)
                   payload_url: str, instance_types: list[str], job_type: str = "Advanced",
                   phases: list[dict[str, int]] | None = None, max_invocations: int = 300,
                   job_duration_s: int = 7200) -> dict[str, Any]:
    """The create_inference_recommendations_job arguments for the batch container."""
    container = {
        "Domain": "NATURAL_LANGUAGE_PROCESSING",
        "Task": "TEXT_CLASSIFICATION",
        "PayloadConfig": {"SamplePayloadUrl": payload_url,
                          "SupportedContentTypes": ["application/json"]},
        "SupportedInstanceTypes": instance_types,
        "SupportedEndpointType": "RealTime",  # async endpoints cannot be tested: same container
    }
    req: dict[str, Any] = {
        "JobName": job_name, "JobType": job_type, "RoleArn": role_arn,
        "JobDescription": f"twolane batch lane, p95 objective {slo_p95_ms:.0f} ms",
        "InputConfig": {"ModelName": model_name, "ContainerConfig": container,
                        "JobDurationInSeconds": job_duration_s},
    }
    if job_type == "Advanced":
        req["InputConfig"]["EndpointConfigurations"] = [{"InstanceType": t} for t in instance_types]
        req["InputConfig"]["TrafficPattern"] = {"TrafficType": "PHASES", "Phases": phases or [
            {"InitialNumberOfUsers": 1, "SpawnRate": 1, "DurationInSeconds": 120},
            {"InitialNumberOfUsers": 2, "SpawnRate": 1, "DurationInSeconds": 120},
            {"InitialNumberOfUsers": 4, "SpawnRate": 1, "DurationInSeconds": 120},
        ]}
        req["InputConfig"]["ResourceLimit"] = {"MaxNumberOfTests": len(instance_types),
                                               "MaxParallelOfTests": min(3, len(instance_types))}
        req["StoppingConditions"] = {
            "MaxInvocations": max_invocations,
            "ModelLatencyThresholds": [{"Percentile": "P95",
                                        "ValueInMilliseconds": int(math.ceil(slo_p95_ms))}],
        }
    return req


def start_ir_job(sm: Any, **kwargs: Any) -> str:
    return sm.create_inference_recommendations_job(**ir_job_request(**kwargs))["JobArn"]


def wait_ir_job(sm: Any, job_name: str, timeout_s: float = 4 * 3600, poll_s: float = 60.0,
                sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Poll describe_inference_recommendations_job until the job ends (bounded by timeout_s)."""
    deadline = time.monotonic() + timeout_s
    while True:
        desc = sm.describe_inference_recommendations_job(JobName=job_name)
        if desc["Status"] in DONE:
            return desc
        if time.monotonic() + poll_s > deadline:
            raise TimeoutError(f"job {job_name} still {desc['Status']} after {timeout_s:.0f} s")
        sleep(poll_s)


def ir_job_steps(sm: Any, job_name: str, max_pages: int = 50) -> list[dict[str, Any]]:
    """Every benchmark step of a job (paginated by NextToken, bounded)."""
    steps: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(max_pages):
        kw: dict[str, Any] = {"JobName": job_name, "StepType": "BENCHMARK", "MaxResults": 100}
        if token:
            kw["NextToken"] = token
        page = sm.list_inference_recommendations_job_steps(**kw)
        steps.extend(page.get("Steps", []))
        token = page.get("NextToken")
        if not token:
            break
    return steps


def ir_cells(steps: list[dict[str, Any]], comments_per_request: int,
             prices: dict[str, Any]) -> list[Cell]:
    """Benchmark steps as measurement rows (cores = the instance's vCPUs)."""
    cells = []
    for st in steps:
        bench = st.get("InferenceBenchmark") or {}
        m, ep = bench.get("Metrics") or {}, bench.get("EndpointConfiguration") or {}
        itype = ep.get("InstanceType")
        if not m or not itype or st.get("Status") != "COMPLETED":
            continue
        lat = float(m.get("ModelLatency", math.nan))
        thr = m.get("MaxInvocations", 0) / 60.0 * comments_per_request
        vcpus = prices["sagemaker_instances"].get(itype, {}).get("vcpus", 0)
        cells.append(Cell(
            lane="batch", cores=vcpus, threads=0, batch=comments_per_request, concurrency=0,
            p50_ms=lat, p95_ms=lat, p99_ms=lat, mean_ms=lat, throughput_cps=thr,
            requests_ok=int(m.get("MaxInvocations", 0)), errors=0,
            rss_peak_mb=float(m.get("MemoryUtilization", 0.0)),
            server_threads=0, cpu_ms_per_comment=math.nan, other_cpu_share=0.0,
            p95_range_ms=(lat, lat), throughput_range_cps=(thr, thr), repeats=1,
            timed_out_repeats=0, error_samples=[f"{itype} (Inference Recommender)"]))
    return cells


def ir_choice(desc: dict[str, Any], steps: list[dict[str, Any]], comments_per_request: int,
              slo_p95_ms: float, prices: dict[str, Any]) -> Choice:
    """Cheapest instance per million comments among Inference Recommender's results."""
    rows: dict[str, Candidate] = {}
    benches = [s.get("InferenceBenchmark") or {} for s in steps if s.get("Status") == "COMPLETED"]
    benches += list(desc.get("InferenceRecommendations", []))
    for r in benches:
        m, ep = r.get("Metrics") or {}, r.get("EndpointConfiguration") or {}
        itype = ep.get("InstanceType")
        if not itype or not m.get("MaxInvocations"):
            continue
        spec = prices["sagemaker_instances"].get(itype, {})
        thr = m["MaxInvocations"] / 60.0 * comments_per_request
        usd_h = float(m.get("CostPerHour") or spec.get("usd_per_hour") or math.nan)
        lat = float(m.get("ModelLatency", math.nan))
        c = Candidate(
            name=itype, kind="sagemaker", vcpus=spec.get("vcpus", 0),
            memory_mb=spec.get("memory_gib", 0) * 1024, p95_ms=lat, p50_ms=lat,
            throughput_cps=thr, usd_per_million=usd_h / (thr * 3600) * 1e6,
            meets_slo=lat <= slo_p95_ms, fits_memory=True, batch=comments_per_request,
            concurrency=0, basis="SageMaker Inference Recommender benchmark (measured on AWS)",
            usd_per_hour=usd_h)
        if itype not in rows or c.usd_per_million < rows[itype].usd_per_million:
            rows[itype] = c
    cands = sorted(rows.values(), key=lambda c: c.usd_per_million)
    chosen = _pick(cands)
    return Choice("batch", "sagemaker_instance", slo_p95_ms, chosen,
                  _message("batch", chosen, cands, slo_p95_ms, "instance"), cands,
                  {"source": "SageMaker Inference Recommender", "job": desc.get("JobName"),
                   "job_type": desc.get("JobType"), "status": desc.get("Status")})


# --- Lambda memory sweep (Power Tuning style) ----------------------------------------------

REPORT_FIELDS = {
    "duration_ms": r"(?<!Billed )(?<!Init )Duration: ([\d.]+) ms",
    "billed_ms": r"Billed Duration: ([\d.]+) ms",
    "memory_mb": r"Memory Size: (\d+) MB", "max_memory_mb": r"Max Memory Used: (\d+) MB",
    "init_ms": r"Init Duration: ([\d.]+) ms",
}


def parse_report_line(log_result_b64: str) -> dict[str, float]:
    """Numbers from the REPORT line of an invoke's LogResult (last 4 KB of the log, base64)."""
    text = base64.b64decode(log_result_b64).decode("utf-8", "replace")
    line = next((ln for ln in reversed(text.splitlines()) if ln.startswith("REPORT")), "")
    out: dict[str, float] = {}
    for key, pat in REPORT_FIELDS.items():
        m = re.search(pat, line)
        if m:
            out[key] = float(m.group(1))
    if "billed_ms" not in out:
        raise ValueError(f"no REPORT line with Billed Duration in the log tail: {text[-300:]!r}")
    return out


def _wait_updated(lam: Any, function_name: str, timeout_s: float, poll_s: float,
                  sleep: Callable[[float], None]) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        cfg = lam.get_function_configuration(FunctionName=function_name)
        status = cfg.get("LastUpdateStatus", "Successful")
        if status == "Successful":
            return
        if status == "Failed":
            raise RuntimeError(f"update of {function_name} failed: "
                               f"{cfg.get('LastUpdateStatusReason')}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{function_name} still updating after {timeout_s:.0f} s")
        sleep(poll_s)


def lambda_memory_sweep(lam: Any, function_name: str, memory_sizes: list[int], payload: bytes,
                        invocations: int = 10, poll_s: float = 2.0, update_timeout_s: float = 300,
                        sleep: Callable[[float], None] = time.sleep) -> list[dict[str, Any]]:
    """Invoke the function `invocations` times at each memory size; restore the original size.
    The first invocation after each update is a cold start: kept apart, not in the statistics."""
    original = lam.get_function_configuration(FunctionName=function_name)["MemorySize"]
    results = []
    try:
        for mb in memory_sizes:
            lam.update_function_configuration(FunctionName=function_name, MemorySize=mb)
            _wait_updated(lam, function_name, update_timeout_s, poll_s, sleep)
            runs, errors = [], 0
            for _ in range(invocations + 1):  # +1: the cold start
                r = lam.invoke(FunctionName=function_name, InvocationType="RequestResponse",
                               LogType="Tail", Payload=payload)
                if r.get("FunctionError") or r.get("StatusCode") != 200:
                    errors += 1
                if r.get("LogResult"):
                    runs.append(parse_report_line(r["LogResult"]))
            results.append({"memory_mb": mb, "cold": runs[:1], "warm": runs[1:], "errors": errors})
    finally:
        lam.update_function_configuration(FunctionName=function_name, MemorySize=original)
    return results


def lambda_choice(sweep: list[dict[str, Any]], comments_per_request: int, slo_p95_ms: float,
                  prices: dict[str, Any]) -> tuple[list[Cell], Choice]:
    lp = prices["lambda"]
    cells, cands = [], []
    for row in sweep:
        warm = row["warm"]
        if not warm:
            continue
        dur = np.array([w["duration_ms"] for w in warm if "duration_ms" in w] or [math.nan])
        billed = np.array([w["billed_ms"] for w in warm])
        mb = row["memory_mb"]
        p50, p95, p99 = (float(np.percentile(dur, q)) for q in (50, 95, 99))
        max_mem = max(w.get("max_memory_mb", 0) for w in warm)
        per_req = billed.mean() / 1000 * mb / 1024 * lp["usd_per_gb_second"] \
            + lp["usd_per_million_requests"] / 1e6
        thr = comments_per_request / (float(dur.mean()) / 1000)
        cells.append(Cell("instant", round(mb / lp["mb_per_vcpu"], 3), 0, comments_per_request, 1,
                          p50, p95, p99, float(dur.mean()), thr, len(warm), row["errors"],
                          float(max_mem), 0, math.nan, 0.0, (p95, p95), (thr, thr), 1, 0, []))
        cands.append(Candidate(
            name=f"lambda-{mb}MB", kind="lambda", vcpus=round(mb / lp["mb_per_vcpu"], 3),
            memory_mb=mb, p95_ms=p95, p50_ms=p50, throughput_cps=thr,
            usd_per_million=per_req * 1e6 / comments_per_request,
            meets_slo=p95 <= slo_p95_ms and row["errors"] == 0, fits_memory=max_mem < mb,
            batch=comments_per_request, concurrency=1,
            basis=f"{len(warm)} warm invocations on AWS Lambda (billed duration from REPORT)"))
    chosen = _pick(cands)
    return cells, Choice("instant", "lambda_memory", slo_p95_ms, chosen,
                         _message("instant", chosen, cands, slo_p95_ms, "memory size"), cands,
                         {"source": "Lambda memory sweep (Power Tuning style)"})


# --- Putting it together -------------------------------------------------------------------

def run_aws(slo_p95_ms: float, out: Path, *, lane: str = "both", role_arn: str = "",  # noqa: PLR0913 (the CLI's --aws options)
            model_name: str = "", payload_url: str = "", function_name: str = "",
            instance_types: list[str] | None = None, comments_per_request: int = 32,
            invocations: int = 10, envs: tuple[str, ...] = ("dev", "prod"),
            sm: Any = None, lam: Any = None, log: Callable[[str], None] = print) -> Path:
    """Run the AWS measurements, then report and update the config like the local mode."""
    from recommender.loadtest import instant_body, payload_texts
    from recommender.report import write_report
    from recommender.run import update_configs
    from twolane.aws import client

    t0 = time.perf_counter()
    prices = load_prices()
    lanes: dict[str, Any] = {}
    changes: dict[str, Any] = {}
    if lane in ("batch", "both"):
        sm = sm or client("sagemaker")
        types = instance_types or list(prices["sagemaker_instances"])
        job = f"twolane-batch-{time.strftime('%Y%m%d-%H%M%S')}"
        start_ir_job(sm, job_name=job, role_arn=role_arn, model_name=model_name,
                     slo_p95_ms=slo_p95_ms, payload_url=payload_url, instance_types=types)
        log(f"Inference Recommender job {job} started; waiting ...")
        desc = wait_ir_job(sm, job)
        steps = ir_job_steps(sm, job)
        choice = ir_choice(desc, steps, comments_per_request, slo_p95_ms, prices)
        cells = ir_cells(steps, comments_per_request, prices)
        lanes["batch"] = _lane_doc("batch", cells, choice, f"SageMaker model {model_name}", t0)
        if choice.chosen:
            changes["batch.instance_type"] = choice.chosen.name
    if lane in ("instant", "both"):
        lam = lam or client("lambda")
        texts = payload_texts(comments_per_request)
        body = json.dumps({"version": "2.0", "rawPath": "/v1/predict", "requestContext": {
            "http": {"method": "POST", "path": "/v1/predict"}}, "headers": {
            "content-type": "application/json"}, "body": instant_body(texts),
            "isBase64Encoded": False}).encode()
        sweep = lambda_memory_sweep(lam, function_name, prices["lambda"]["memory_sizes_mb"],
                                    body, invocations)
        cells, choice = lambda_choice(sweep, comments_per_request, slo_p95_ms, prices)
        lanes["instant"] = _lane_doc("instant", cells, choice, f"Lambda {function_name}", t0)
        if choice.chosen:
            changes["instant.lambda_memory_mb"] = int(choice.chosen.memory_mb)
    config_changes = update_configs(changes, envs) if changes else []
    doc = {"generated_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "slo_p95_ms": slo_p95_ms, "mode": "aws",
           "machine": {"cpu": "AWS (SageMaker Inference Recommender / Lambda)", "cores": 0},
           "lanes": lanes, "config_changes": config_changes,
           "assumptions": [f"Prices: Inference Recommender's CostPerHour where given, else "
                           f"{prices['source']}"], "wall_s": time.perf_counter() - t0}
    return write_report(doc, out)


def _lane_doc(lane: str, cells: list[Cell], choice: Choice, label: str,
              t0: float) -> dict[str, Any]:
    from dataclasses import asdict

    return {"result": {"lane": lane, "bundle": label, "bundle_label": label, "sweep": {},
                       "cells": [asdict(c) for c in cells], "startup_s": {},
                       "wall_s": time.perf_counter() - t0, "cpu_count": 0, "notes": []},
            "choice": choice.to_dict(), "warning": "",
            "method_notes": [f"Measured on AWS: {choice.method.get('source')}."]}
