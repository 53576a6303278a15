"""The hosts the billing model compares, built from measurements, prices and the stack's config.

Every input is a `Figure` with its source and whether it was measured here, written from
memory (AWS prices and limits) or assumed. Measured inputs:

* job throughput of the batch lane on 2 local cores: a real 5,000-comment job through the
  local stack (bench/results/batch_e2e.json, warm container);
* the marginal efficiency of extra cores, from the recommender's 1- and 2-core sweep;
* the container start (process start -> /ping 200, bench/results/batch_e2e.json) and the
  Lambda-style process start (import, load bundle, one prediction, bench/results/batch.json);
* the instant lane's 1-thread throughput and Lambda asset import (instant.json, infra.json);
* the Lambda host's own figures when bench/batch_worker.py has run: the batch worker handler's
  throughput on one core, its cold start and peak memory (batch_worker.json);
* request bytes per comment, from the data set.

Throughput on n vCPUs = 2-core throughput x S(n) / S(2), S(n) = 1 + (n - 1) x e (the steady-
state model's projection); below one vCPU (small Lambda sizes) it shrinks in proportion.
Assumed (marked in every output): the GPU speed-up, Serverless Inference's CPU share,
instance provisioning time, Lambda's package fetch, CloudWatch's metric lag.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recommender.billing import AsyncEndpointHost, ShardedHost
from recommender.servers import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results"
RESPONSE_BYTES_PER_COMMENT = 250.0  # assumed: ids, labels and sentiment as JSON


@dataclass(frozen=True)
class Figure:
    value: float
    unit: str
    source: str
    status: str  # "measured", "from memory" (AWS prices / limits / behaviour) or "assumed"


def _read(name: str, results: Path) -> dict[str, Any]:
    return json.loads((results / name).read_text(encoding="utf-8"))


def measured_inputs(core_efficiency: float, core_efficiency_source: str,
                    results: Path = RESULTS, request_bytes_per_comment: float | None = None
                    ) -> dict[str, Figure]:
    """The measured figures the hosts rest on, each with where it comes from."""
    e2e, batch = _read("batch_e2e.json", results), _read("batch.json", results)
    inst, infra = _read("instant.json", results), _read("infra.json", results)
    warm = e2e["job_warm"]
    cold_runs = batch["speed"]["cold_start_s"]["runs"]
    out = {
        "job_cps_2_cores": Figure(
            float(warm["comments_per_s"]), "comments/s",
            f"bench/results/batch_e2e.json: a {warm['results']}-comment job through the local "
            f"stack, container warm, 2 shared cores, bundle {e2e['model_version']}, "
            f"{e2e['measured_at'][:16]}", "measured"),
        "core_efficiency": Figure(core_efficiency, "", core_efficiency_source, "measured"),
        "container_start_s": Figure(
            float(e2e["serve_cold_start_median_s"]), "s",
            "bench/results/batch_e2e.json: sagemaker/serve.py process start -> /ping 200, "
            f"median of {len(e2e['serve_cold_start_s'])}", "measured"),
        "process_start_s": Figure(
            float(statistics.median(cold_runs)), "s",
            "bench/results/batch.json: new process, import, load bundle, one prediction "
            f"(Lambda-style start), median of {len(cold_runs)}", "measured"),
        "instant_cps_1_thread": Figure(
            float(inst["speed"]["threads"]["1"]["onnx_predict_10000_per_s"]), "comments/s",
            "bench/results/instant.json: InstantPredictor.predict, 10,000 comments, 1 thread",
            "measured"),
        "instant_import_s": Figure(
            float(infra["smoke"]["import_seconds_local"]), "s",
            "bench/results/infra.json: Lambda asset handler import (Python 3.12), locally",
            "measured"),
    }
    worker = results / "batch_worker.json"
    if worker.is_file():  # the Lambda host's own figures (bench/batch_worker.py)
        w = json.loads(worker.read_text(encoding="utf-8"))
        src = (f"bench/results/batch_worker.json: the batch worker handler in a fresh process "
               f"on one core, bundle {w['bundle']}, {w['measured_at'][:16]}")
        out["worker_cps_1_vcpu"] = Figure(
            float(w["comments_per_s_1_vcpu"]), "comments/s",
            f"{src}: a {w['comments_per_shard']:,}-comment shard, CPU time", "measured")
        out["worker_cold_start_s"] = Figure(
            float(w["cold_start_s"]), "s", f"{src}: import + model load + a 1-comment shard",
            "measured")
        out["worker_peak_rss_mb"] = Figure(
            float(w["peak_rss_mb"]), "MB", f"{src}: peak RSS with a "
            f"{w['comments_per_shard']:,}-comment shard", "measured")
        out["worker_shard_comments"] = Figure(
            float(w["comments_per_shard"]), "comments", src, "measured")
    if request_bytes_per_comment is not None:
        out["request_bytes_per_comment"] = Figure(
            request_bytes_per_comment, "bytes", "mean JSON request bytes per comment of the NHS "
            "data set (recommender.loadtest.batch_body)", "measured")
    return out


def request_bytes_per_comment(n: int = 2000) -> float:
    from recommender.loadtest import batch_body, payload_texts

    texts = payload_texts(n)
    return len(batch_body(texts).encode("utf-8")) / max(len(texts), 1)


def scaling_inputs(batch_cfg: Any, prices: dict[str, Any]) -> dict[str, Figure]:
    """The async endpoint's wake-up and scale-in times, from the stack's own settings."""
    from infra.config import SCALING_METRIC_PERIOD_S, WAKE_ALARM_EVALUATION_PERIODS

    a = prices["sagemaker_async"]
    period = SCALING_METRIC_PERIOD_S
    lag = float(a["metric_lag_s"])
    return {
        "wake_delay_s": Figure(
            lag + WAKE_ALARM_EVALUATION_PERIODS * period, "s",
            f"infra: wake alarm on HasBacklogWithoutCapacity, {WAKE_ALARM_EVALUATION_PERIODS} "
            f"x {period} s period (infra/config.py, used by infra/batch_lane/endpoint.py) + "
            f"{lag:.0f} s metric lag (assumed)", "assumed"),
        "idle_s": Figure(
            a["scale_in_alarm_datapoints"] * period + lag, "s",
            f"target tracking scale-in: {a['scale_in_alarm_datapoints']} datapoints x {period} s "
            f"(AWS behaviour, from memory; period from infra/config.py) + {lag:.0f} s metric "
            f"lag (assumed). The config's scale_in_cooldown_s ({batch_cfg.scale_in_cooldown_s} "
            "s) only delays a second scale-in after a first, so it does not bind for jobs "
            "hours apart", "from memory"),
        "invocation_timeout_s": Figure(
            float(batch_cfg.invocation_timeout_s), "s",
            "infra config batch.invocation_timeout_s (per async invocation: one shard)",
            "config"),
        "shard_size": Figure(
            float(batch_cfg.shard_size), "comments",
            "infra config batch.shard_size: a bigger job is split into invocations of this "
            "many comments (twolane.jobs.service)", "config"),
        "max_instances": Figure(
            float(a["max_instances"]), "instances",
            "recommender/prices.json sagemaker_async.max_instances (service quota; extra "
            "instances assumed to start with the first)", "from memory"),
    }


def _speedup(vcpus: float, e: float) -> float:
    return 1.0 + (vcpus - 1.0) * e if vcpus >= 1 else vcpus


def cpu_cps(vcpus: float, m: dict[str, Figure]) -> float:
    """Job throughput on `vcpus` vCPUs, projected from the 2-core job measurement."""
    e = m["core_efficiency"].value
    return m["job_cps_2_cores"].value * _speedup(vcpus, e) / _speedup(2.0, e)


def build_hosts(prices: dict[str, Any], m: dict[str, Figure], sc: dict[str, Figure],
                rss_mb: float) -> list[AsyncEndpointHost | ShardedHost]:
    """Every candidate host for the batch lane's transformer, CPU and GPU."""
    hosts: list[AsyncEndpointHost | ShardedHost] = []
    a, lam, sls = prices["sagemaker_async"], prices["lambda"], prices["sagemaker_serverless"]
    gpu_speedup = prices.get("gpu_speedup_assumption", {})
    one_core = cpu_cps(1.0, m)
    prov = a["provision_from_zero_s"]
    prov_note = f"instance provisioning {prov['cpu']} s CPU / {prov['gpu']} s GPU (assumed)"
    for name, spec in prices["sagemaker_instances"].items():
        gpu = spec.get("gpu")
        if gpu:
            g = float(gpu_speedup.get(gpu, 0.0))
            if g <= 0:
                continue
            cps, assumed = one_core * g, True
            basis = (f"1-vCPU job throughput {one_core:.0f}/s x ASSUMED {gpu} speed-up {g:g} "
                     "(no GPU measured)")
            notes: tuple[str, ...] = (f"GPU speed-up {g:g}x (assumed)", prov_note)
            prov = float(a["provision_from_zero_s"]["gpu"])
        else:
            cps, assumed = cpu_cps(spec["vcpus"], m), False
            basis = (f"2-core job throughput {m['job_cps_2_cores'].value:.0f}/s x S({spec['vcpus']})"
                     f"/S(2), core efficiency {m['core_efficiency'].value:.2f}")
            notes = (prov_note,)
            prov = float(a["provision_from_zero_s"]["cpu"])
        hosts.append(AsyncEndpointHost(
            name=name, usd_per_hour=spec["usd_per_hour"], throughput_cps=cps,
            wake_delay_s=sc["wake_delay_s"].value, provision_s=prov,
            container_start_s=m["container_start_s"].value, idle_s=sc["idle_s"].value,
            max_processing_s=sc["invocation_timeout_s"].value,
            bills_provisioning=bool(a["bills_provisioning"]),
            shard_size=int(sc["shard_size"].value), max_instances=int(sc["max_instances"].value),
            assumed=assumed,
            assumptions=notes + ("metric lag, scale-in alarm window (assumed / from memory)",),
            basis=basis, family="async endpoint, GPU" if gpu else "async endpoint, CPU"))
    bytes_pc = m["request_bytes_per_comment"].value if "request_bytes_per_comment" in m else 300.0
    per_request = lam["usd_per_million_requests"] / 1e6
    extra = float(lam["package_fetch_extra_cold_start_s"])
    lam_cap = int(lam["batch_max_comments_per_invocation"])
    worker = "worker_cps_1_vcpu" in m
    if worker:  # measured on the worker itself; a shard is at most what was measured
        lam_cap = min(lam_cap, int(m["worker_shard_comments"].value))
        need_mb = max(rss_mb, m["worker_peak_rss_mb"].value)
    else:
        need_mb = rss_mb
    for mb in lam["batch_memory_sizes_mb"]:
        if mb < need_mb * 1.1:
            continue
        vcpus = min(mb / lam["mb_per_vcpu"], lam["max_vcpus"])
        if worker:
            e = m["core_efficiency"].value
            cps = m["worker_cps_1_vcpu"].value * _speedup(vcpus, e)
            cold = m["worker_cold_start_s"].value / min(vcpus, 1.0) + extra
            how = (f"{vcpus:.2f} vCPU: the worker's measured 1-vCPU throughput x "
                   f"S({vcpus:.2f}); cold start = the worker's measured start / min(vCPU, 1) "
                   "+ package fetch")
        else:
            cps = cpu_cps(vcpus, m)
            cold = m["process_start_s"].value / min(vcpus, 1.0) + extra
            how = (f"{vcpus:.2f} vCPU: 2-core job throughput x S({vcpus:.2f})/S(2); cold start "
                   "= measured process start / min(vCPU, 1) + package fetch")
        hosts.append(ShardedHost(
            name=f"lambda-{mb}MB", kind="lambda", memory_mb=mb,
            usd_per_gb_second=lam["usd_per_gb_second"], usd_per_request=per_request,
            throughput_cps=cps, cold_start_s=cold,
            cold_billed_s=cold if lam["bills_init"] else 0.0,
            max_invocation_s=lam["max_duration_s"], max_concurrency=lam["max_concurrency"],
            max_comments_per_invocation=lam_cap,
            assumptions=(f"package fetch +{extra:g} s per cold start (assumed)",),
            basis=f"{how}; at most {lam_cap:,} comments per invocation",
            family="Lambda, CPU int8 (sharded)"))
    caller_gb = sls["caller_memory_mb"] / 1024
    for mb in sls["memory_sizes_mb"]:
        if mb < rss_mb * 1.1:
            continue
        vcpus = mb / sls["mb_per_vcpu_assumed"]
        payload_cap = int(sls["max_payload_mb"] * 1e6 / max(bytes_pc, 1.0))
        hosts.append(ShardedHost(
            name=f"serverless-{mb}MB", kind="serverless", memory_mb=mb,
            usd_per_gb_second=sls["usd_per_gb_second"], usd_per_request=0.0,
            throughput_cps=cpu_cps(vcpus, m),
            cold_start_s=float(sls["cold_start_s"]) + m["container_start_s"].value,
            cold_billed_s=0.0 if not sls["bills_cold_start"] else float(sls["cold_start_s"]),
            max_invocation_s=sls["max_invocation_s"], max_concurrency=sls["max_concurrency"],
            max_comments_per_invocation=payload_cap, usd_per_gb_data=sls["usd_per_gb_data"],
            bytes_per_comment=bytes_pc + RESPONSE_BYTES_PER_COMMENT,
            caller_gb=caller_gb, caller_usd_per_gb_second=lam["usd_per_gb_second"],
            assumed=True,
            assumptions=(f"CPU share {vcpus:.2f} vCPU at {mb} MB (assumed: AWS does not publish "
                         "it)", f"cold start {sls['cold_start_s']:g} s + measured container "
                         "start (assumed)"),
            basis=f"ASSUMED {vcpus:.2f} vCPU: 2-core job throughput x S({vcpus:.2f})/S(2)",
            family="Serverless Inference, CPU int8 (sharded)"))
    return hosts


def instant_lane_host(prices: dict[str, Any], m: dict[str, Figure],
                      memory_mb: int) -> ShardedHost:
    """The instant lane (TF-IDF, a different and less accurate model) on its Lambda, for
    reference: what the same job costs on the drop folder today."""
    lam = prices["lambda"]
    vcpus = min(memory_mb / lam["mb_per_vcpu"], lam["max_vcpus"])
    cold = m["instant_import_s"].value / min(vcpus, 1.0)
    return ShardedHost(
        name=f"instant-lambda-{memory_mb}MB", kind="lambda", memory_mb=memory_mb,
        usd_per_gb_second=lam["usd_per_gb_second"],
        usd_per_request=lam["usd_per_million_requests"] / 1e6,
        throughput_cps=m["instant_cps_1_thread"].value * min(vcpus, 1.0),
        cold_start_s=cold, cold_billed_s=cold if lam["bills_init"] else 0.0,
        max_invocation_s=lam["max_duration_s"], max_concurrency=lam["max_concurrency"],
        basis="instant lane (TF-IDF + linear, ONNX): 1-thread throughput, measured import",
        family="instant lane on Lambda (reference: TF-IDF model, lower quality)")


def figures_doc(*groups: dict[str, Figure]) -> dict[str, dict[str, Any]]:
    return {k: asdict(v) for g in groups for k, v in g.items()}
