"""Cost model: project measured local performance onto AWS candidates and pick the cheapest
that meets the p95 latency objective (SLO).

Capacity, not wall-clock throughput: this machine is shared, and other people's work stretches
wall-clock time. The server's own CPU time per comment is hardly affected, so a cell's capacity
is cores / (CPU seconds per comment): what those cores give fully busy. Latency for the p95
check stays the measured wall-clock figure (pessimistic under contention, so conservative).

SageMaker instances (batch lane)
  * CPU: capacity grows with vCPUs as S(n) = 1 + (n - 1) * e, where e, the marginal
    efficiency of an extra core, is measured from the 1-core and 2-core capacities (threading
    overhead shows up as extra CPU time). A cell at k cores (the largest k <= the instance's
    vCPUs) is projected as capacity * S(v) / S(k), keeping its latency (same load per core).
  * GPU: no GPU here, so throughput = (1-core capacity) x an ASSUMED speed-up from
    prices.json, latency / the same factor. Marked as an assumption in every output.
  * cost per million comments = $/hour / (comments/s x 3600) x 1e6 (at full utilisation; the
    async endpoint scales to zero, so idle time costs nothing beyond the scale-in cooldown).

Lambda (instant lane)
  * One request per execution environment at a time, so the concurrency-1 runs count. Work
    per request on 1 vCPU = min(wall-clock mean, server CPU time per request), both upper
    bounds (see choose_lambda_memory). CPU share is proportional
    to memory, 1 vCPU at 1769 MB: below it latency = work / f (f = MB / 1769, CPU-bound);
    above it a second vCPU helps by the 1->2-thread speed-up, capped by the cores the 2-thread
    run really kept busy (CPU time / wall time). p95 = mean x the measured p95/mean ratio.
  * cost per million comments = (1e6 / comments per request) x (billed ms / 1000 x GB x
    $/GB-s + $ per request); memory must hold the measured peak RSS with 10 % headroom.

Choice: drop candidates that miss the p95 objective or memory; take the cheapest; costs within
2 % of it (10 % if it rests on the GPU assumption) count as equal: then the lower $/hour wins for
SageMaker (idle cost while scaling in) and the lower p95 for Lambda (below 1769 MB Lambda cost
is flat in memory).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recommender.loadtest import Cell

PRICES = Path(__file__).resolve().parent / "prices.json"
DEFAULT_EFFICIENCY = 0.8  # used only when no multi-core run exists (stated in the output)


def load_prices(path: Path | None = None) -> dict[str, Any]:
    return json.loads((path or PRICES).read_text(encoding="utf-8"))


@dataclass
class Candidate:
    name: str  # instance type, or "lambda-<MB>MB"
    kind: str  # "sagemaker" or "lambda"
    vcpus: float
    memory_mb: float
    p95_ms: float  # projected p95 per request at the operating point
    p50_ms: float
    throughput_cps: float  # projected comments/s per instance (per execution env for Lambda)
    usd_per_million: float
    meets_slo: bool
    fits_memory: bool
    batch: int  # comments per request at the operating point
    concurrency: int  # concurrent requests per instance at the operating point
    basis: str  # which measurement and projection it rests on
    assumed: bool = False  # rests on an assumption rather than a measurement (GPU)
    usd_per_hour: float | None = None

    @property
    def feasible(self) -> bool:
        return self.meets_slo and self.fits_memory


@dataclass
class Choice:
    lane: str
    target: str  # "sagemaker_instance" or "lambda_memory"
    slo_p95_ms: float
    chosen: Candidate | None
    message: str  # one sentence for people
    candidates: list[Candidate]
    method: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["chosen"] = asdict(self.chosen) if self.chosen else None
        for c, src in zip(d["candidates"], self.candidates, strict=True):
            c["feasible"] = src.feasible
        return d


def _cpu_ok(c: Cell) -> bool:
    return math.isfinite(c.cpu_ms_per_comment) and c.cpu_ms_per_comment > 0


def capacity_cps(c: Cell) -> float:
    """Comments/s the cell's cores would give fully busy: cores / server CPU time per comment.
    Other work on a shared machine stretches wall-clock time but hardly the server's own CPU
    time, so this is the figure that carries over to an instance of one's own. Falls back to
    the measured throughput when CPU time is unknown (AWS measurements)."""
    return c.cores * 1000.0 / c.cpu_ms_per_comment if _cpu_ok(c) else c.throughput_cps


def core_efficiency(cells: Iterable[Cell]) -> tuple[float, str]:
    """Marginal capacity of the 2nd core relative to the 1st, median over request sizes:
    e = S(2) - 1 with S(2) = capacity(2 cores) / capacity(1 core), each the best cell."""
    cells = [c for c in cells if c.errors == 0]
    ratios = []
    for b in sorted({c.batch for c in cells}):
        one = [capacity_cps(c) for c in cells if c.batch == b and c.cores == 1]
        two = [capacity_cps(c) for c in cells if c.batch == b and c.cores == 2]
        if one and two and max(one) > 0:
            ratios.append(max(two) / max(one) - 1.0)
    if not ratios:
        return DEFAULT_EFFICIENCY, (f"assumed {DEFAULT_EFFICIENCY} "
                                    "(no 1-core vs 2-core pair measured)")
    e = float(np.clip(np.median(ratios), 0.0, 1.0))
    spread = ", ".join(f"{r:+.2f}" for r in ratios)
    return e, ("measured: median over request sizes of (2-core capacity / 1-core capacity - 1), "
               "capacity from server CPU time per comment (threading overhead, e.g. onnxruntime "
               f"spin-waiting, shows up as extra CPU time), clipped to 0..1; per size: {spread}")


def _usd_per_million_instance(usd_per_hour: float, cps: float) -> float:
    return usd_per_hour / (cps * 3600.0) * 1e6 if cps > 0 else math.inf


COST_TIE = 0.02  # costs within 2 % of the cheapest count as equal
ASSUMED_TIE = 0.10  # ... within 10 % when the cheapest rests on the assumed GPU speed-up


def _pick(candidates: list[Candidate]) -> Candidate | None:
    """Cheapest feasible candidate. Costs within the tie band of it count as equal; then a
    SageMaker instance with the lower $/hour wins (less idle cost while an async endpoint waits
    to scale in), a Lambda size with the lower p95."""
    ok = [c for c in candidates if c.feasible]
    if not ok:
        return None
    best = min(ok, key=lambda c: c.usd_per_million)
    band = ASSUMED_TIE if best.assumed else COST_TIE
    near = [c for c in ok if c.usd_per_million <= best.usd_per_million * (1 + band)]
    if best.kind == "sagemaker":
        return min(near, key=lambda c: (c.usd_per_hour or 0.0, c.usd_per_million))
    return min(near, key=lambda c: (c.p95_ms, c.usd_per_million))


def choose_instance(cells: list[Cell], slo_p95_ms: float, prices: dict[str, Any],
                    lane: str = "batch", allow_assumed: bool = False) -> Choice:
    """Cheapest SageMaker instance type whose projected p95 meets the SLO. Candidates resting
    on the assumed GPU speed-up are shown but only chosen when `allow_assumed`."""
    cells = [c for c in cells if c.errors == 0 and c.requests_ok > 0]
    e, e_note = core_efficiency(cells)
    S = lambda n: 1.0 + (n - 1) * e  # noqa: E731
    measured_cores = sorted({c.cores for c in cells})
    gpu_speedup = prices.get("gpu_speedup_assumption", {})
    rss = max((c.rss_peak_mb for c in cells), default=0.0)
    out: list[Candidate] = []
    for name, spec in prices["sagemaker_instances"].items():
        v, mem_mb, usd_h = spec["vcpus"], spec["memory_gib"] * 1024, spec["usd_per_hour"]
        options: list[tuple[float, float, float, Cell, str, bool]] = []  # thr, p95, p50, cell
        if spec.get("gpu"):
            g = float(gpu_speedup.get(spec["gpu"], 0.0))
            for c in cells:
                if c.cores == 1 and g > 0:
                    options.append((capacity_cps(c) * g, c.p95_ms / g, c.p50_ms / g, c,
                                    f"1-core capacity {capacity_cps(c):.0f}/s x assumed GPU "
                                    f"speed-up {g:g}", True))
        elif measured_cores:
            k = max([m for m in measured_cores if m <= v] or [min(measured_cores)])
            for c in cells:
                if c.cores == k:
                    f = S(v) / S(k)
                    options.append((capacity_cps(c) * f, c.p95_ms, c.p50_ms, c,
                                    f"{k}-core capacity {capacity_cps(c):.0f}/s (measured "
                                    f"{c.throughput_cps:.0f}/s wall-clock) x S({v})/S({k}) = "
                                    f"{f:.2f}", False))
        if not options:
            continue
        within = [o for o in options if o[1] <= slo_p95_ms]
        thr, p95, p50, cell, how, assumed = (max(within, key=lambda o: o[0]) if within
                                             else min(options, key=lambda o: o[1]))
        out.append(Candidate(
            name=name, kind="sagemaker", vcpus=v, memory_mb=mem_mb, p95_ms=p95, p50_ms=p50,
            throughput_cps=thr, usd_per_million=_usd_per_million_instance(usd_h, thr),
            meets_slo=p95 <= slo_p95_ms, fits_memory=rss * 1.25 <= mem_mb, batch=cell.batch,
            concurrency=max(1, round(cell.concurrency * v / cell.cores)) if not assumed
            else cell.concurrency,
            basis=f"{how} (batch {cell.batch}, concurrency {cell.concurrency})",
            assumed=assumed, usd_per_hour=usd_h))
    eligible = out if allow_assumed else [c for c in out if not c.assumed]
    chosen = _pick(eligible)
    msg = _message(lane, chosen, eligible or out, slo_p95_ms, "instance")
    assumed_best = _pick(out)
    if not allow_assumed and assumed_best is not None and assumed_best.assumed:
        msg += (f" {assumed_best.name} projects {money(assumed_best.usd_per_million)} per "
                "million, but on an ASSUMED GPU speed-up: not chosen without --allow-assumed.")
    method = {"core_efficiency": e, "core_efficiency_basis": e_note, "peak_rss_mb": rss,
              "gpu_speedup_assumption": {k: v for k, v in gpu_speedup.items() if k != "note"}}
    return Choice(lane=lane, target="sagemaker_instance", slo_p95_ms=slo_p95_ms, chosen=chosen,
                  message=msg, candidates=out, method=method)


def lambda_latency_factor(memory_mb: float, mb_per_vcpu: float, two_core_speedup: float) -> float:
    """Latency at this memory size relative to one full vCPU."""
    f = memory_mb / mb_per_vcpu
    if f <= 1.0:
        return 1.0 / f
    extra = min(f, 2.0) - 1.0  # only a 2nd vCPU was measured; beyond 2 vCPUs no extra gain
    return 1.0 / (1.0 + extra * (two_core_speedup - 1.0))


def choose_lambda_memory(cells: list[Cell], slo_p95_ms: float, prices: dict[str, Any],
                         batch: int | None = None, lane: str = "instant") -> Choice:
    """Cheapest Lambda memory size whose projected p95 (at `batch` comments) meets the SLO."""
    lam = prices["lambda"]
    single = [c for c in cells if c.concurrency == 1 and c.errors == 0 and c.requests_ok > 0]
    one = {c.batch: c for c in single if c.cores == 1}
    two = {c.batch: c for c in single if c.cores == 2}
    if not one:
        return Choice(lane, "lambda_memory", slo_p95_ms, None,
                      "No single-request 1-core measurement to project Lambda from.", [])
    b = batch if batch in one else max(one)
    base = one[b]
    # Work per request on one vCPU: the smaller of two upper bounds. The wall-clock mean is
    # stretched by other work on a shared machine; the server's CPU time per request also
    # counts work done between requests (access log, connection handling) that a Lambda
    # handler would not bill. Tail: the cell's p95/mean ratio (the less disturbed of the 1-
    # and 2-core runs).
    cpu_req = base.cpu_ms_per_comment * b if _cpu_ok(base) else math.inf
    work_ms = min(cpu_req, base.mean_ms)
    tails = [c.p95_ms / c.mean_ms for c in (base, two.get(b)) if c is not None and c.mean_ms > 0]
    tail = min(tails) if tails else 1.0
    p50_ratio = base.p50_ms / base.mean_ms if base.mean_ms > 0 else 1.0
    # Gain from a 2nd vCPU: the wall-clock speed-up from 1 to 2 threads, but never more than
    # the 2-thread run's CPU time / wall time (how many cores it really kept busy).
    speedups = []
    for k in one:
        if k in two and two[k].mean_ms > 0:
            par = (two[k].cpu_ms_per_comment * k / two[k].mean_ms) if _cpu_ok(two[k]) else 2.0
            speedups.append(min(one[k].mean_ms / two[k].mean_ms, par))
    s: float = float(np.clip(np.median(speedups), 1.0, 2.0)) if speedups else 1.0
    rss = max((c.rss_peak_mb for c in cells), default=0.0)
    out: list[Candidate] = []
    for mb in lam["memory_sizes_mb"]:
        factor = lambda_latency_factor(mb, lam["mb_per_vcpu"], s)
        mean = work_ms * factor
        p95, p50 = mean * tail, mean * p50_ratio
        billed_ms = math.ceil(mean / lam["billing_granularity_ms"]) * lam["billing_granularity_ms"]
        per_req = billed_ms / 1000 * mb / 1024 * lam["usd_per_gb_second"] \
            + lam["usd_per_million_requests"] / 1e6
        out.append(Candidate(
            name=f"lambda-{mb}MB", kind="lambda", vcpus=round(mb / lam["mb_per_vcpu"], 3),
            memory_mb=mb, p95_ms=p95, p50_ms=p50, throughput_cps=b / (mean / 1000),
            usd_per_million=per_req * 1e6 / b, meets_slo=p95 <= slo_p95_ms,
            fits_memory=rss * 1.1 <= mb, batch=b, concurrency=1,
            basis=f"1-vCPU work {work_ms:.1f} ms/request (batch {b}) x "
                  f"latency factor {k:.2f}; p95 = mean x {tail:.2f}"))
    chosen = _pick(out)
    method = {"two_core_speedup": s, "two_core_speedup_basis":
              ("measured: 1-core / 2-core mean latency at concurrency 1, capped by the 2-core "
               "run's CPU time / wall time, median over sizes" if speedups else
               "no 2-core single-request run: assumed no gain above 1769 MB"),
              "work_ms_per_request_1vcpu": work_ms, "p95_over_mean": tail,
              "server_cpu_ms_per_request_1core": cpu_req,
              "measured_wall_mean_ms_1core": base.mean_ms,
              "peak_rss_mb": rss, "reference_batch": b}
    return Choice(lane=lane, target="lambda_memory", slo_p95_ms=slo_p95_ms, chosen=chosen,
                  message=_message(lane, chosen, out, slo_p95_ms, "memory size"),
                  candidates=out, method=method)


def money(x: float) -> str:
    """$ with 3 significant figures (costs per million comments span 0.001 to 100)."""
    if not math.isfinite(x):
        return "n/a"
    return f"${x:,.2f}" if x >= 10 else f"${x:.3g}"


def ms(x: float) -> str:
    return f"{x:.0f} ms" if x >= 10 else f"{x:.2g} ms"


def _message(lane: str, chosen: Candidate | None, cands: list[Candidate], slo: float,
             what: str) -> str:
    if chosen is not None:
        label = f"{int(chosen.memory_mb)} MB" if chosen.kind == "lambda" else chosen.name
        extra = " (rests on an ASSUMED GPU speed-up, not a measurement)" if chosen.assumed else ""
        steady = " at steady load (kept busy; per job see the workload answer)" \
            if chosen.kind == "sagemaker" else ""
        msg = (f"{lane} lane{steady}: use {label}{extra}: the cheapest {what} whose projected p95 "
               f"({ms(chosen.p95_ms)} at {chosen.batch} comments per request) meets the "
               f"{slo:.0f} ms objective, at about {money(chosen.usd_per_million)} per million "
               f"comments.")
        best = min((c for c in cands if c.feasible), key=lambda c: c.usd_per_million)
        if best is not chosen and chosen.kind == "sagemaker":
            pct = 100 * (1 - best.usd_per_million / chosen.usd_per_million)
            msg += (f" {best.name} projects {pct:.0f} % cheaper per comment, within the "
                    "uncertainty, so the lower hourly price "
                    "won (less idle cost while the asynchronous endpoint waits to scale in).")
        if chosen.assumed:
            alt = _pick([c for c in cands if not c.assumed])
            if alt is not None:
                msg += (f" The cheapest option resting on measurements only is {alt.name} at "
                        f"{money(alt.usd_per_million)} per million (p95 {ms(alt.p95_ms)}).")
        return msg
    if not cands:
        return f"{lane} lane: nothing measured, so no {what} can be recommended."
    fastest = min(cands, key=lambda c: c.p95_ms)
    why = "" if fastest.fits_memory else " and it does not fit in memory"
    return (f"{lane} lane: no {what} meets the p95 objective of {slo:.0f} ms; the fastest, "
            f"{fastest.name}, is projected at {fastest.p95_ms:.0f} ms{why}. The deployment "
            f"config was left unchanged: relax --slo-p95-ms or send fewer comments per request.")
