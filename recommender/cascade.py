"""What a cascade job ("lane": "auto") costs: every comment on the instant host, the escalated
share on the batch host, billed by the same model as a batch job (recommender.billing).

The share and the quality come from the cascade's bench on the test split
(bench/results/cascade.json: the shipped point's share escalated and its gap to the batch lane).
The cascade is the cheapest way to the batch lane's quality where it costs less than the batch
lane alone AND its quality is within the goal (0.5 pt on macro-F1, micro-F1, sentiment accuracy).
A batch host scaled to zero bills its wake-up and idle minutes per job whatever the job's size,
so the cascade saves only the work of the kept comments: much on per-millisecond hosts (Lambda)
and on large jobs, little on an async endpoint woken for a small job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recommender.billing import Host, Workload, choose, estimate
from recommender.cost import money

CASCADE_JSON = Path(__file__).resolve().parent.parent / "bench" / "results" / "cascade.json"


def measured_cascade(path: Path = CASCADE_JSON) -> dict[str, Any] | None:
    """The shipped point of bench/cascade.py ({share, gaps, goal met}), or None without a run."""
    if not path.is_file():
        return None
    r = json.loads(path.read_text(encoding="utf-8"))
    return {"share": float(r["shipped"]["share"]), "gap_to_batch": r["shipped_gap_to_batch"],
            "quality_met": bool(r["goal"]["met"]), "bundle": r["bundle"]}


def cascade_estimate(workload: Workload, hosts: list[Host], instant_host: Host, share: float,
                     allow_assumed: bool = False) -> dict[str, Any] | None:
    """A cascade job on `workload`: the instant host labels every comment, the cheapest
    feasible batch host the `share` (0..1) escalated (its own jobs, same number a week).
    Returns USD per job / month / million comments beside the batch lane alone; None when no
    batch host is feasible."""
    alone = choose([estimate(h, workload) for h in hosts], allow_assumed)
    inst = estimate(instant_host, workload)
    if alone is None:
        return None
    esc_usd, esc_host, esc_wait = 0.0, "none (nothing escalated)", 0.0
    if share > 0:
        part = Workload(workload.comments_per_week * share, workload.jobs_per_week, workload.max_wait_s)
        esc = choose([estimate(h, part) for h in hosts], allow_assumed)
        if esc is None:
            return None
        esc_usd, esc_host, esc_wait = esc.usd_per_month, esc.host, esc.wait_s
    month = inst.usd_per_month + esc_usd
    return {"share": share, "instant_host": inst.host, "batch_host": esc_host,
            "usd_per_month": month, "usd_per_job": month / workload.jobs_per_month,
            "usd_per_million": month / workload.comments_per_month * 1e6,
            "wait_s": max(inst.wait_s, esc_wait),
            "batch_alone_host": alone.host, "batch_alone_usd_per_month": alone.usd_per_month,
            "cheaper": month < alone.usd_per_month}


def cascade_doc(workload: Workload, hosts: list[Host], instant_host: Host, allow_assumed: bool,
                volumes: list[float], measured: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The cascade line of the workload answer, and the weekly volumes (of `volumes`, same jobs
    a week and wait) where it is cheaper than the batch lane alone; None without a bench run."""
    measured = measured if measured is not None else measured_cascade()
    if measured is None:
        return None
    here = cascade_estimate(workload, hosts, instant_host, measured["share"], allow_assumed)
    if here is None:
        return None
    cheaper_at = []
    for v in volumes:
        e = cascade_estimate(Workload(v, workload.jobs_per_week, workload.max_wait_s), hosts, instant_host,
                             measured["share"], allow_assumed)
        if e is not None and e["cheaper"]:
            cheaper_at.append(v)
    g = measured["gap_to_batch"]
    quality = (f"within 0.5 pt of the batch lane (macro-F1 {g['macro_f1'] * 100:+.2f}, micro-F1 "
               f"{g['micro_f1'] * 100:+.2f}, sentiment {g['sentiment_accuracy'] * 100:+.2f} pt)"
               if measured["quality_met"] else
               f"NOT within 0.5 pt of the batch lane (macro-F1 {g['macro_f1'] * 100:+.2f}, micro-F1 "
               f"{g['micro_f1'] * 100:+.2f}, sentiment {g['sentiment_accuracy'] * 100:+.2f} pt)")
    span = (f"cheaper than the batch lane alone from about {min(cheaper_at):,.0f} to "
            f"{max(cheaper_at):,.0f} comments a week" if cheaper_at else
            "never cheaper than the batch lane alone between 1,000 and 100 million comments a week")
    verdict = ("the cheapest way to the batch lane's quality here" if here["cheaper"] and measured["quality_met"]
               else "not the cheapest way to the batch lane's quality here")
    msg = (f"Cascade (\"lane\": \"auto\", {measured['share']:.0%} of comments escalated, {quality}): "
           f"{money(here['usd_per_month'])} a month ({here['instant_host']} for every comment + "
           f"{here['batch_host']} for the escalated ones) against {money(here['batch_alone_usd_per_month'])} "
           f"for the batch lane alone on {here['batch_alone_host']}: {verdict}; {span} "
           f"({workload.jobs_per_week:g} jobs a week).")
    return {**here, "quality_met": measured["quality_met"], "gap_to_batch": g,
            "cheaper_from_to": [min(cheaper_at), max(cheaper_at)] if cheaper_at else None, "message": msg}
