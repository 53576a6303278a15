"""Billing model: what AWS bills for a batch workload on each host, and how long a job waits.

A workload is a number of comments per week sent in a number of jobs (spread evenly over the
week), with a wait objective per job (submission to results). Three kinds of host:

Asynchronous endpoint (SageMaker, `AsyncEndpointHost`), scaled to zero between jobs
  A job finds no instance. The wake alarm fires after the metric lag plus its evaluation
  window; an instance is provisioned (minutes); the container starts; the job is processed;
  the instance then stays until target tracking's scale-in alarm has seen its window of
  empty-backlog datapoints. Billed: instance-seconds from launch (provisioning included
  when `bills_provisioning`) to scale-in:

      billed_s = provision_s [if billed] + container_start_s + processing_s + idle_s
      usd/job  = billed_s / 3600 x usd_per_hour
      wait_s   = wake_delay_s + provision_s + container_start_s + processing_s

  A job of more than `shard_size` comments is split into shards, one async invocation each
  (twolane.jobs.service), so the invocation timeout binds a shard, not the job; with the
  shards queued, `instances` instances (1 up to `max_instances`, the fewest that meet the
  wait) work through them together:

      processing_s = n / (throughput_cps x instances)
      billed_s     = instances x (provision_s + container_start_s + processing_s + idle_s)

  If jobs come closer together than one such cycle, the instance never scales in: the month
  costs hours_per_month x usd_per_hour and a job waits only for its processing.

Sharded hosts: Lambda (`kind="lambda"`) and SageMaker Serverless Inference
(`kind="serverless"`), both `ShardedHost`
  A job is split into k shards processed in parallel (at most `max_concurrency` at a time),
  each within the per-invocation limit (`max_invocation_s`, and for Serverless the request
  payload limit). k is the smallest number of shards that meets the wait objective:

      shard_s  = ceil(n / k) / throughput_cps
      wait_s   = cold_start_s + ceil(k / max_concurrency) x shard_s
      usd/job  = k x [(shard_s + cold_billed_s) x GB x usd_per_gb_second + usd_per_request]
                 + data_gb x usd_per_gb_data
                 + k x (cold_start_s + shard_s) x caller_gb x caller_usd_per_gb_second

  The last term is the caller that waits on a synchronous invocation (Serverless is invoked
  synchronously, so a Lambda waits on each shard); Lambda shards are started asynchronously
  and need no waiting caller (caller_gb = 0). Nothing is billed between jobs.

Monthly figures: jobs per month = jobs per week x 365.25 / 12 / 7. Every host carries
`assumed` (its throughput or speed is an assumption, not a measurement: such a host can
only be chosen when assumptions are allowed) and `assumptions` (the assumed inputs it rests
on, printed in every output).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

WEEKS_PER_MONTH = 365.25 / 12 / 7  # 4.348
HOURS_PER_MONTH = 365.25 * 24 / 12  # 730.5
SECONDS_PER_WEEK = 7 * 86400
SHARD_TIME_MARGIN = 0.8  # a shard may use at most 80 % of the per-invocation time limit


@dataclass(frozen=True)
class Workload:
    """Comments per week sent in `jobs_per_week` jobs; `max_wait_s`: submission to results."""

    comments_per_week: float
    jobs_per_week: float
    max_wait_s: float = 900.0

    def __post_init__(self) -> None:
        if self.comments_per_week <= 0 or self.jobs_per_week <= 0 or self.max_wait_s <= 0:
            raise ValueError("comments per week, jobs per week and the wait must be > 0")

    @property
    def comments_per_job(self) -> int:
        return max(1, math.ceil(self.comments_per_week / self.jobs_per_week))

    @property
    def jobs_per_month(self) -> float:
        return self.jobs_per_week * WEEKS_PER_MONTH

    @property
    def comments_per_month(self) -> float:
        return self.comments_per_week * WEEKS_PER_MONTH


@dataclass(frozen=True)
class AsyncEndpointHost:
    """A SageMaker asynchronous endpoint on one instance type, scaled to zero between jobs."""

    name: str  # instance type, e.g. "ml.c6i.large"
    usd_per_hour: float
    throughput_cps: float  # comments/s of one instance on one job
    wake_delay_s: float  # job queued -> scale-out decided (metric lag + alarm window)
    provision_s: float  # scale-out decided -> instance running (launch, image, model download)
    container_start_s: float  # container process start -> ready (/ping 200)
    idle_s: float  # backlog empty -> instance gone (scale-in alarm window + lag)
    max_processing_s: float  # per invocation (the endpoint's invocation timeout)
    bills_provisioning: bool = True
    shard_size: int = 0  # comments per invocation (infra config batch.shard_size); 0: unsharded
    max_instances: int = 1  # instances one job may scale out to (service quota)
    assumed: bool = False
    assumptions: tuple[str, ...] = ()
    basis: str = ""
    kind: str = "async_endpoint"
    family: str = "async endpoint, CPU"


@dataclass(frozen=True)
class ShardedHost:
    """Lambda or SageMaker Serverless Inference: per-ms billing, jobs split into shards."""

    name: str  # e.g. "lambda-1769MB", "serverless-6144MB"
    kind: str  # "lambda" or "serverless"
    memory_mb: int
    usd_per_gb_second: float
    usd_per_request: float
    throughput_cps: float  # comments/s of one execution environment
    cold_start_s: float  # added to the wait (once: shards start together)
    cold_billed_s: float  # of the cold start, what is billed per shard (Lambda INIT)
    max_invocation_s: float  # Lambda 900 s, Serverless 60 s
    max_concurrency: int
    max_comments_per_invocation: int | None = None  # payload limit (Serverless 4 MB)
    usd_per_gb_data: float = 0.0  # Serverless: data processed in + out
    bytes_per_comment: float = 0.0  # request + response bytes per comment (data fee)
    caller_gb: float = 0.0  # a Lambda that waits on each synchronous invocation
    caller_usd_per_gb_second: float = 0.0
    assumed: bool = False
    assumptions: tuple[str, ...] = ()
    basis: str = ""
    family: str = ""


Host = AsyncEndpointHost | ShardedHost


@dataclass(frozen=True)
class JobEstimate:
    """One job of `comments` on one host: what is billed, what it costs, how long it waits."""

    comments: int
    shards: int
    processing_s: float  # per shard (sharded hosts) or the whole job (async endpoint)
    billed_s: float  # instance-seconds (async) or function-seconds summed over shards
    usd: float
    wait_s: float
    fits: bool  # within the host's limits (invocation time, payload, concurrency)
    why_not: str = ""
    phases_s: dict[str, float] = field(default_factory=dict)  # the wait, phase by phase
    usd_parts: dict[str, float] = field(default_factory=dict)
    instances: int = 1  # async endpoint: instances the job scaled out to


@dataclass(frozen=True)
class Estimate:
    """A workload on one host: per job, per month, per million comments, and the wait."""

    host: str
    kind: str
    family: str
    job: JobEstimate
    usd_per_job: float
    usd_per_month: float
    usd_per_million: float
    wait_s: float
    meets_wait: bool
    feasible: bool  # fits the limits and meets the wait
    assumed: bool
    assumptions: tuple[str, ...]
    regime: str  # how the month was counted
    basis: str
    deploy: dict[str, Any] = field(default_factory=dict)  # infra config batch.* fields; {}: not deployable


def async_shards(host: AsyncEndpointHost, comments: int) -> tuple[int, int]:
    """(invocations, comments in the largest) for one job, as twolane.jobs.service splits it."""
    if host.shard_size <= 0 or comments <= host.shard_size:
        return 1, comments
    return math.ceil(comments / host.shard_size), host.shard_size


def async_instances(host: AsyncEndpointHost, comments: int, max_wait_s: float | None) -> int:
    """The fewest instances (up to `max_instances`, at most one per shard) whose wait from zero
    meets `max_wait_s`; the most allowed when none does; 1 without a wait objective."""
    shards, _ = async_shards(host, comments)
    top = max(1, min(host.max_instances, shards))
    if max_wait_s is None:
        return 1
    fixed = host.wake_delay_s + host.provision_s + host.container_start_s
    for i in range(1, top + 1):
        if fixed + comments / (host.throughput_cps * i) <= max_wait_s:
            return i
    return top


def async_job(host: AsyncEndpointHost, comments: int, warm: bool = False,
              max_wait_s: float | None = None) -> JobEstimate:
    """One job on an async endpoint: from zero (default) or on an instance already up.
    From zero, as many instances as the wait needs (see `async_instances`; one without
    `max_wait_s`). Warm: only the processing is waited for; its billing is the caller's
    business (the month of an always-up instance, see `estimate`)."""
    shards, largest = async_shards(host, comments)
    shard_proc = largest / host.throughput_cps
    fits = shard_proc <= host.max_processing_s
    why = "" if fits else (f"one invocation needs {shard_proc:.0f} s, over the "
                           f"{host.max_processing_s:.0f} s invocation timeout")
    if warm:
        proc = comments / host.throughput_cps
        return JobEstimate(comments, shards, proc, proc, proc / 3600 * host.usd_per_hour, proc,
                           fits, why, {"processing": proc},
                           {"instance": proc / 3600 * host.usd_per_hour})
    n = async_instances(host, comments, max_wait_s)
    proc = comments / (host.throughput_cps * n)
    phases = {"wake alarm": host.wake_delay_s, "provision instance": host.provision_s,
              "container start": host.container_start_s,
              ("processing" if n == 1 else f"processing ({n} instances)"): proc}
    billed = {"provisioning": host.provision_s if host.bills_provisioning else 0.0,
              "container start": host.container_start_s, "processing": proc,
              "idle until scale-in": host.idle_s}
    billed_s = n * sum(billed.values())
    parts = {k: n * v / 3600 * host.usd_per_hour for k, v in billed.items()}
    return JobEstimate(comments, shards, proc, billed_s, billed_s / 3600 * host.usd_per_hour,
                       sum(phases.values()), fits, why, phases, parts, instances=n)


def async_cycle_s(host: AsyncEndpointHost, comments: int, max_wait_s: float | None = None
                  ) -> float:
    """Seconds from a job's submission until its instances are gone again."""
    n = async_instances(host, comments, max_wait_s)
    return (host.wake_delay_s + host.provision_s + host.container_start_s
            + comments / (host.throughput_cps * n) + host.idle_s)


def shards_needed(host: ShardedHost, comments: int, max_wait_s: float) -> tuple[int, bool, str]:
    """(shards, fits, why not): the fewest shards within the per-invocation limits that meet
    the wait; if none does, the fewest within the limits (fits=False when even that breaks a
    limit, e.g. more shards than the concurrency allows in one wave)."""
    per_inv = math.floor(host.throughput_cps * host.max_invocation_s * SHARD_TIME_MARGIN)
    if host.max_comments_per_invocation is not None:
        per_inv = min(per_inv, host.max_comments_per_invocation)
    if per_inv < 1:
        return 1, False, "not even one comment fits in one invocation"
    k_min = math.ceil(comments / per_inv)
    budget = max_wait_s - host.cold_start_s
    k_wait = math.ceil(comments / (host.throughput_cps * budget)) if budget > 0 else comments
    k = max(k_min, min(k_wait, max(host.max_concurrency, k_min)))
    k = min(k, comments)
    return k, True, ""


def sharded_job(host: ShardedHost, comments: int, max_wait_s: float) -> JobEstimate:
    """One job split into shards on Lambda or Serverless Inference (formulas: module doc)."""
    k, fits, why = shards_needed(host, comments, max_wait_s)
    per_shard = math.ceil(comments / k)
    shard_s = per_shard / host.throughput_cps
    waves = math.ceil(k / host.max_concurrency)
    wait = host.cold_start_s + waves * shard_s
    gb = host.memory_mb / 1024
    compute = k * (shard_s + host.cold_billed_s) * gb * host.usd_per_gb_second
    requests = k * host.usd_per_request
    data = comments * host.bytes_per_comment / 1e9 * host.usd_per_gb_data
    caller = k * (host.cold_start_s + shard_s) * host.caller_gb * host.caller_usd_per_gb_second
    parts = {"compute": compute, "requests": requests}
    if data:
        parts["data processed"] = data
    if caller:
        parts["waiting caller (Lambda)"] = caller
    phases = {"cold start": host.cold_start_s,
              ("processing" if waves == 1 else f"processing ({waves} waves)"): waves * shard_s}
    return JobEstimate(comments, k, shard_s, k * (shard_s + host.cold_billed_s),
                       sum(parts.values()), wait, fits, why, phases, parts)


def deploy_fields(host: Host, job: JobEstimate) -> dict[str, Any]:
    """The infra config's `batch.*` fields that deploy `host` as this job was billed; {} for a
    host infra/ cannot deploy (Serverless Inference). A Lambda's shard size is the comments
    per shard the wait needs, or the per-invocation cap when one shard meets it."""
    if isinstance(host, AsyncEndpointHost):
        return {"host": "async_endpoint", "instance_type": host.name,
                "max_instances": job.instances}
    if host.kind == "lambda":
        per_shard = math.ceil(job.comments / job.shards)
        if job.shards == 1:  # one shard fits: the cap lets bigger jobs fan out only when needed
            per_shard = host.max_comments_per_invocation or per_shard
        return {"host": "lambda", "lambda_memory_mb": host.memory_mb, "shard_size": per_shard}
    return {}


def estimate(host: Host, workload: Workload) -> Estimate:
    """The workload on one host: per job, per month, per million, wait, feasibility."""
    n = workload.comments_per_job
    regime = "per job"
    if isinstance(host, AsyncEndpointHost):
        gap_s = SECONDS_PER_WEEK / workload.jobs_per_week
        if gap_s >= async_cycle_s(host, n, workload.max_wait_s):
            job = async_job(host, n, max_wait_s=workload.max_wait_s)
            month = job.usd * workload.jobs_per_month
            regime = "scaled to zero between jobs: each job starts from zero"
        else:
            job = async_job(host, n, warm=True)
            busy = workload.comments_per_week / host.throughput_cps / SECONDS_PER_WEEK
            month = HOURS_PER_MONTH * host.usd_per_hour * max(1, math.ceil(busy))
            regime = ("jobs closer together than one scale-out/scale-in cycle "
                      f"({async_cycle_s(host, n, workload.max_wait_s) / 60:.0f} min): the "
                      "instance stays up")
            if busy > 1:
                job = JobEstimate(**{**job.__dict__, "fits": False, "why_not":
                                     f"needs {busy:.1f} instances busy all week"})
        per_job = month / workload.jobs_per_month
    else:
        job = sharded_job(host, n, workload.max_wait_s)
        per_job = job.usd
        month = per_job * workload.jobs_per_month
    meets = job.wait_s <= workload.max_wait_s
    return Estimate(
        host=host.name, kind=host.kind, family=host.family, job=job, usd_per_job=per_job,
        usd_per_month=month, usd_per_million=month / workload.comments_per_month * 1e6,
        wait_s=job.wait_s, meets_wait=meets, feasible=meets and job.fits,
        assumed=host.assumed, assumptions=host.assumptions, regime=regime, basis=host.basis,
        deploy=deploy_fields(host, job))


COST_TIE = 0.02  # monthly costs within 2 % count as equal: then the shorter wait wins


def choose(estimates: Sequence[Estimate], allow_assumed: bool = False) -> Estimate | None:
    """The cheapest feasible estimate per month; within 2 % of it the shorter wait wins.
    Hosts infra/ cannot deploy (no `deploy` fields) are left out, and so are hosts whose speed
    is assumed unless `allow_assumed`."""
    ok = [e for e in estimates if e.feasible and e.deploy and (allow_assumed or not e.assumed)]
    if not ok:
        return None
    best = min(ok, key=lambda e: e.usd_per_month)
    near = [e for e in ok if e.usd_per_month <= best.usd_per_month * (1 + COST_TIE)]
    return min(near, key=lambda e: (e.wait_s, e.usd_per_month))


def cheapest_per_family(estimates: Sequence[Estimate]) -> dict[str, Estimate | None]:
    """For each host family, its cheapest feasible estimate (None if none is feasible)."""
    out: dict[str, Estimate | None] = {}
    for e in estimates:
        out.setdefault(e.family, None)
        cur = out[e.family]
        if e.feasible and (cur is None or e.usd_per_month < cur.usd_per_month):
            out[e.family] = e
    return out
