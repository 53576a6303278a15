"""`twolane recommend`: load-test the lanes, choose Lambda memory and instance type, report,
and write the choice into the deployment config (infra/config/<env>.json)."""

from __future__ import annotations

import difflib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recommender.billing import Host, Workload
from recommender.cost import Choice, choose_instance, choose_lambda_memory, load_prices
from recommender.llm import llm_doc
from recommender.loadtest import Cell, LaneResult, Sweep, payload_texts, run_lane
from recommender.report import results_section, update_results_md, write_report
from recommender.servers import REPO_ROOT
from recommender.workload import NHS_WORKLOAD

LANES = ("instant", "batch")
DEFAULT_SWEEPS: dict[str, Sweep] = {
    # Instant lane: Lambda serves one request per execution environment, so concurrency 1 is
    # what the cost model uses; concurrency 4 shows the local server under load.
    "instant": Sweep(cores=[1, 2], batch_sizes=[1, 20, 100], concurrency=[1, 4],
                     requests=60, max_seconds=4.0, warmup=3, repeats=3),
    # Batch lane: the transformer is ~100x slower per comment, so fewer, bigger requests.
    "batch": Sweep(cores=[1, 2], batch_sizes=[8, 32, 128], concurrency=[1, 2],
                   requests=30, max_seconds=5.0, warmup=1, repeats=3),
}


def _measured_at(report: Path) -> str:
    """When the load tests in an earlier report.json were run: its own run, or, when it reused
    yet another report's, that one's (a chain of --reuse keeps the first date)."""
    doc = json.loads(report.read_text(encoding="utf-8"))
    return str(doc.get("reused_from") or doc["generated_at"])


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def resolve_lane_bundle(lane: str, workdir: Path,
                        log: Callable[[str], None]) -> tuple[Path, str, str]:
    """(bundle, label, warning) for a lane: settings / newest under bundles/, else (batch) tiny."""
    from twolane.bundle import BundleError, resolve_bundle
    from twolane.settings import get_settings

    s = get_settings()
    explicit = s.instant_bundle if lane == "instant" else s.batch_bundle
    try:
        b = resolve_bundle(explicit or s.bundles, lane)  # type: ignore[arg-type]
        return b, str(b), ""
    except BundleError:
        if lane == "instant":
            raise
    log("[batch] no real batch bundle found: building the tiny test bundle (labelled as such)")
    from model_build.batch import build_tiny_bundle

    try:  # ship the instant bundle inside, as the real batch build does (ensemble mode)
        inst: Path | None = resolve_bundle(s.instant_bundle or s.bundles, "instant")
    except BundleError:
        inst = None
    b = build_tiny_bundle(workdir / "batch-tiny", instant_bundle=inst)
    warning = ("No trained batch bundle existed when this ran, so the batch lane was measured on "
               "the TINY randomly initialised test model (same export path and container, far "
               "smaller network). Its numbers show the method, not the real model's speed or "
               "cost: re-run `twolane recommend --lane batch` after `twolane build batch`.")
    return b, f"TINY test bundle (not the real model): {b.name}", warning


def method_notes(lane: str, choice: Choice, prices: dict[str, Any]) -> list[str]:
    m = choice.method
    if choice.target == "lambda_memory":
        lam = prices["lambda"]
        return [
            "Lambda runs one request per execution environment at a time, so the projection "
            "starts from the 1-core, concurrency-1 runs at "
            f"{m.get('reference_batch')} comments per request (the largest size measured).",
            "Work per request on one vCPU = the smaller of the 1-core wall-clock mean "
            f"({m.get('measured_wall_mean_ms_1core', 0):.1f} ms; stretched when other work "
            "shares the core) and the server's CPU time per request "
            f"({m.get('server_cpu_ms_per_request_1core', 0):.1f} ms; includes work between "
            "requests such as uvicorn's access log, which Lambda would not bill): "
            f"{m.get('work_ms_per_request_1vcpu', 0):.1f} ms. p95 = mean x "
            f"{m.get('p95_over_mean', 1):.2f} (the measured p95/mean ratio, less disturbed run).",
            f"CPU share is proportional to memory (1 vCPU at {lam['mb_per_vcpu']} MB): below "
            "that, latency is scaled by 1769/MB (assumes the request is CPU-bound and that "
            "Lambda's CPU throttling behaves like a slower core; short requests may do a "
            "little better in practice).",
            f"Above {lam['mb_per_vcpu']} MB the second vCPU speeds a request up by "
            f"{m.get('two_core_speedup', 1):.2f}x at 2 vCPUs ({m.get('two_core_speedup_basis')}).",
            f"Memory must exceed the measured peak server RSS ({m.get('peak_rss_mb', 0):.0f} MB) "
            "by 10 %; the Lambda runtime (Mangum instead of uvicorn) is assumed similar.",
            "Cost = billed duration (mean latency, rounded up to 1 ms) x GB x $/GB-s plus the "
            "request fee, per request, divided by comments per request. Cold starts, API "
            "Gateway and network time are not included.",
        ]
    return [
        "The batch lane runs on a SageMaker asynchronous endpoint; Inference Recommender cannot "
        "test async endpoints, and neither can this local run: the same container was measured "
        "as a real-time server (requests answered synchronously).",
        "Capacity = cores / server CPU time per comment: what the cores give fully busy. It is "
        "used instead of the wall-clock throughput (also shown) because other work on this "
        "shared machine stretched the wall clock; latency for the p95 check is the measured "
        "wall-clock p95 (pessimistic, so the check is conservative).",
        f"CPU instances: capacity scales as S(n) = 1 + (n-1) x {m.get('core_efficiency', 0):.2f} "
        f"({m.get('core_efficiency_basis')}); beyond the 2 cores measured this is an "
        "extrapolation, and AWS vCPUs are hyper-threads of a different CPU, so expect +-30 %.",
        "GPU instances: NOT measured (no GPU here). Throughput = 1-core throughput x an assumed "
        f"speed-up {m.get('gpu_speedup_assumption')} and latency divided by it; treat GPU rows "
        "as placeholders until measured with `--aws` or on a GPU host.",
        "Operating point: for each candidate the measured (comments per request, concurrency) "
        "with the highest projected throughput whose p95 meets the objective.",
        "Cost per million comments assumes the instance is busy while it runs; the async "
        "endpoint scales to zero, so idle cost is only the scale-in cooldown after each burst.",
    ]


def update_configs(changes: dict[str, Any], envs: Iterable[str],
                   config_dir: Path | None = None) -> list[dict[str, str]]:
    """Set dotted fields (e.g. 'instant.lambda_memory_mb') in each env's config, validated by
    infra.config; returns a unified diff per env."""
    from infra.config import config_path, dump_config, load_config, save_config

    out = []
    for env in envs:
        cfg = load_config(env, config_dir)
        before = dump_config(cfg)
        data = cfg.model_dump(mode="json")
        for dotted, value in changes.items():
            node = data
            *parents, leaf = dotted.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = value
        path = save_config(env, data, config_dir)  # validates; raises ConfigError if bad
        after = dump_config(load_config(env, config_dir))
        diff = "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                            f"a/{path.name}", f"b/{path.name}"))
        out.append({"env": env, "path": str(config_path(env, config_dir)), "diff": diff})
    return out


def reused_lane(report: Path, lane: str) -> tuple[LaneResult, str]:
    """A lane's measurements from an earlier report.json (no new load test)."""
    doc = json.loads(report.read_text(encoding="utf-8"))
    if lane not in doc.get("lanes", {}):
        raise SystemExit(f"{report} holds no {lane} lane measurements to reuse")
    d = doc["lanes"][lane]
    r = dict(d["result"])
    r["cells"] = [Cell(**{**c, "p95_range_ms": tuple(c["p95_range_ms"]),
                          "throughput_range_cps": tuple(c["throughput_range_cps"])})
                  for c in r["cells"]]
    r["startup_s"] = {int(k): v for k, v in r["startup_s"].items()}
    r["notes"] = [*r.get("notes", []), f"Reused from {doc['generated_at']} (report.json); "
                  "no new load test was run."]
    return LaneResult(**r), d.get("warning", "")


def batch_hosts_doc(batch_choice: Choice, instant_choice: Choice | None,
                    workloads: list[Workload], prices: dict[str, Any], allow_assumed: bool,
                    out: Path, env: str = "prod",
                    config_dir: Path | None = None) -> dict[str, Any]:
    """The billing model for the batch lane on each host, for the given workloads."""
    from infra.config import load_config
    from recommender.hosts import (
        build_hosts,
        figures_doc,
        instant_lane_host,
        measured_inputs,
        request_bytes_per_comment,
        scaling_inputs,
    )
    from recommender.workload import workload_doc

    m = batch_choice.method
    meas = measured_inputs(float(m["core_efficiency"]), str(m["core_efficiency_basis"]),
                           request_bytes_per_comment=request_bytes_per_comment())
    cfg = load_config(env, config_dir)
    sc = scaling_inputs(cfg.batch, prices)
    hosts = build_hosts(prices, meas, sc, float(m.get("peak_rss_mb", 0.0)))
    mem = int(instant_choice.chosen.memory_mb) if instant_choice and instant_choice.chosen \
        else cfg.instant.dropfolder_memory_mb
    ref: list[Host] = [instant_lane_host(prices, meas, mem)]
    return workload_doc(workloads, hosts, ref, allow_assumed, figures_doc(meas, sc), out)


def _lane_result(name: str, reuse: Path | None, bundles: dict[str, Path] | None, sweep: Sweep,
                 work: Path, texts: list[tuple[str, str]],
                 log: Callable[[str], None]) -> tuple[LaneResult, str]:
    """One lane's measurements (or those `reuse`d from an earlier report) and a warning."""
    if reuse is not None:
        return reused_lane(reuse, name)
    if bundles and name in bundles:
        bundle, label, warning = bundles[name], str(bundles[name]), ""
    else:
        bundle, label, warning = resolve_lane_bundle(name, work, log)
    return run_lane(name, bundle, sweep, work / name, texts, bundle_label=label, log=log), warning


def run(lane: str = "both", slo_p95_ms: float = 1000.0, out: Path = Path("bench/recommend"),  # noqa: PLR0913 (the CLI's options, all defaulted)
        envs: Iterable[str] = ("dev", "prod"), sweeps: dict[str, Sweep] | None = None,
        bundles: dict[str, Path] | None = None, config_dir: Path | None = None,
        results_md: Path | None = None, log: Callable[[str], None] = print,
        workload: Workload | None = None, compare_scale: float = 100.0,
        allow_assumed: bool = False, reuse: Path | None = None) -> Path:
    """Measure (or `reuse` an earlier report.json's measurements), choose, report and update
    the config. The batch lane also gets the billing model for `workload` (default: the NHS
    team's) and for `compare_scale` times its volume; the first workload's host goes into the
    config. Returns the HTML report's path. The bench/RESULTS.md section is rewritten when
    `results_md` is given, or when the report goes to the repository's bench/recommend."""
    t0 = time.perf_counter()
    lanes = list(LANES) if lane == "both" else [lane]
    if any(x not in LANES for x in lanes):
        raise SystemExit(f"--lane must be instant, batch or both (got {lane!r})")
    sweeps = {**DEFAULT_SWEEPS, **(sweeps or {})}
    prices = load_prices()
    out = Path(out)
    load_before = os.getloadavg()
    texts = payload_texts() if reuse is None else []
    doc_lanes: dict[str, Any] = {}
    changes: dict[str, Any] = {}
    choices: dict[str, Choice] = {}
    with tempfile.TemporaryDirectory(prefix="twolane-recommend-") as tmp:
        work = Path(tmp)
        for name in lanes:
            result, warning = _lane_result(name, reuse, bundles, sweeps[name], work, texts, log)
            if name == "instant":
                choice = choose_lambda_memory(result.cells, slo_p95_ms, prices)
                choices[name] = choice
                if choice.chosen:
                    changes["instant.lambda_memory_mb"] = int(choice.chosen.memory_mb)
            else:
                choice = choose_instance(result.cells, slo_p95_ms, prices,
                                         allow_assumed=allow_assumed)
                choices[name] = choice
            log(choice.message)
            doc_lanes[name] = {"result": result.to_dict(), "choice": choice.to_dict(),
                               "warning": warning,
                               "method_notes": method_notes(name, choice, prices)}
    batch_hosts: dict[str, Any] | None = None
    if "batch" in choices:
        w = workload or NHS_WORKLOAD
        bigger = Workload(w.comments_per_week * compare_scale, w.jobs_per_week, w.max_wait_s)
        batch_hosts = batch_hosts_doc(choices["batch"], choices.get("instant"), [w, bigger],
                                      prices, allow_assumed, out, config_dir=config_dir)
        first = batch_hosts["workloads"][0]
        log(first["message"])
        log(batch_hosts["workloads"][1]["message"])
        chosen = first["chosen"]
        # The endpoint's instance type is the cheapest measured one for steady load unless the
        # workload chose an endpoint: a switch of `batch.host` back to it then deploys that.
        steady = choices["batch"].chosen
        if steady is not None:
            changes["batch.instance_type"] = steady.name
        if chosen and chosen["deploy"]:
            changes.update({f"batch.{k}": v for k, v in chosen["deploy"].items()})
        else:
            log("no host infra/ can deploy meets this workload: the config keeps its host")
    envs = [e for e in envs if e and e != "none"]
    config_changes = update_configs(changes, envs, config_dir) if changes and envs else []
    for ch in config_changes:
        log(f"Updated {ch['path']}:\n{ch['diff'] or '(already set: no change)'}")
    doc: dict[str, Any] = {
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "slo_p95_ms": slo_p95_ms,
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "lanes": doc_lanes,
        "batch_hosts": batch_hosts,
        "llm": llm_doc((workload or NHS_WORKLOAD).comments_per_week,
                       (workload or NHS_WORKLOAD).jobs_per_week, prices),
        "reused_from": _measured_at(reuse) if reuse is not None else None,
        "config_changes": config_changes,
        "prices": {k: prices[k] for k in ("region", "currency", "as_of", "source")},
        "assumptions": [
            f"Prices: {prices['source']} Region {prices['region']}, as of {prices['as_of']}. "
            "The deployment region (infra config) may differ; relative ranking usually holds.",
            "Local cores stand in for vCPUs via CPU affinity plus onnxruntime thread count; the "
            "machine is shared, so every figure carries the noise shown as min-max ranges.",
            "Latency is measured at the server's HTTP interface on 127.0.0.1: no network, API "
            "Gateway, SageMaker queueing or cold start is included.",
        ],
        "wall_s": 0.0,
    }
    doc["wall_s"] = time.perf_counter() - t0
    html_path = write_report(doc, out)
    if results_md is None and out.resolve() == (REPO_ROOT / "bench" / "recommend").resolve():
        results_md = REPO_ROOT / "bench" / "RESULTS.md"
    if results_md is not None:
        update_results_md(results_md, results_section(doc))
        log(f"Updated {results_md}")
    log(f"Report: {html_path} (whole run {doc['wall_s']:.0f} s)")
    return html_path

