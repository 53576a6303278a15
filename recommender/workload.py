"""The workload answer: for N comments a week in K jobs, the cheapest host that meets the wait,
cost per job / month / million comments, the wait per job, and charts of monthly cost and wait
against weekly volume per host family (where the lines cross is the decision)."""

from __future__ import annotations

import html
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from recommender.billing import Estimate, Host, Workload, choose, estimate
from recommender.cascade import cascade_doc
from recommender.cost import money
from recommender.tables import html_table

NHS_WORKLOAD = Workload(comments_per_week=5000, jobs_per_week=3, max_wait_s=900)


def wait_text(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    return f"{s / 60:.1f} min" if s < 2 * 3600 else f"{s / 3600:.1f} h"


def _est_doc(e: Estimate) -> dict[str, Any]:
    d = asdict(e)
    d["job"] = asdict(e.job)
    return d


def analyse(workload: Workload, hosts: list[Host], reference: list[Host],
            allow_assumed: bool) -> dict[str, Any]:
    """Estimates for every host, the choice, the cheapest measured and assumed options."""
    ests = [estimate(h, workload) for h in hosts]
    chosen = choose(ests, allow_assumed)
    measured_best = choose(ests, False)
    any_best = choose(ests, True)
    beside = any_best if any_best is not None and any_best.assumed else None
    refs = [estimate(h, workload) for h in reference]
    ests.sort(key=lambda e: e.usd_per_month)
    # the cascade ("lane": "auto"): every comment on the instant host (the reference), the
    # escalated share on the batch host (recommender.cascade; None without bench/cascade.py)
    cascade = cascade_doc(workload, hosts, reference[0], allow_assumed, volume_grid(n=21)) if reference else None
    return {"workload": asdict(workload) | {"comments_per_job": workload.comments_per_job},
            "cascade": cascade,
            "chosen": _est_doc(chosen) if chosen else None,
            "measured_best": _est_doc(measured_best) if measured_best else None,
            "assumed_cheaper": _est_doc(beside) if beside else None,
            "estimates": [_est_doc(e) for e in ests],
            "reference": [_est_doc(e) for e in refs],
            "message": message(workload, chosen, beside, allow_assumed)}


def api_max_job_items() -> int:
    """Comments one POST /v1/jobs takes by default (twolane.settings)."""
    from twolane.settings import Settings

    return int(Settings.model_fields["max_job_items"].default)


def message(w: Workload, chosen: Estimate | None, beside: Estimate | None,
            allow_assumed: bool) -> str:
    head = (f"{w.comments_per_week:,.0f} comments a week in {w.jobs_per_week:g} jobs "
            f"({w.comments_per_job:,} per job), results within {wait_text(w.max_wait_s)}: ")
    if chosen is None:
        return head + "no host meets the wait within its limits; relax --max-wait-min."
    shape = ""
    if chosen.kind == "lambda":
        shape = (f", {chosen.job.shards} shards in parallel" if chosen.job.shards > 1
                 else ", one invocation per job")
    elif chosen.job.instances > 1:
        shape = f", {chosen.job.instances} instances"
    msg = (f"{head}use {chosen.host} ({chosen.kind}{shape}"
           f"{', ASSUMED speed' if chosen.assumed else ''}): {money(chosen.usd_per_job)} per "
           f"job, {money(chosen.usd_per_month)} a month, {money(chosen.usd_per_million)} per "
           f"million comments; a job waits about {wait_text(chosen.wait_s)} from submission "
           "to results.")
    api_max = api_max_job_items()
    if w.comments_per_job > api_max:
        msg += (f" A job of {w.comments_per_job:,} comments is over the API's {api_max:,} per "
                "job (TWOLANE_MAX_JOB_ITEMS): send it through the drop folder (inbox/batch/) or "
                "as several API jobs.")
    if beside is not None and beside.host != chosen.host and not allow_assumed:
        msg += (f" {beside.host} would be cheaper ({money(beside.usd_per_month)} a month) but "
                "rests on an ASSUMED figure (" + "; ".join(beside.assumptions[:1]) +
                "): not chosen without --allow-assumed.")
    return msg


# Wait objectives for which the report also says where the cheapest host changes: the answer
# moves with how long a team can wait (a host that must start from zero needs minutes).
CROSSING_WAITS_S = (900.0, 4 * 3600.0, 24 * 3600.0)


def crossing_text(found: list[dict[str, Any]]) -> str:
    return "; ".join(f"at about {c['comments_per_week']:,.0f} comments/week {c['from']} -> "
                     f"{c['to']}" for c in found) or "none between 1,000 and 100 million a week"


def volume_grid(lo: float = 1e3, hi: float = 1e8, n: int = 41) -> list[float]:
    return [float(x) for x in np.logspace(math.log10(lo), math.log10(hi), n)]


def sweep(hosts: list[Host], jobs_per_week: float, max_wait_s: float,
          volumes: list[float]) -> dict[str, dict[str, list[float | None]]]:
    """Per host family, at each weekly volume, the cheapest feasible host's monthly cost and
    wait (None where no host of the family is feasible)."""
    families: dict[str, dict[str, list[float | None]]] = {}
    for h in hosts:
        families.setdefault(h.family, {"usd_per_month": [], "wait_s": [], "assumed": []})
    for v in volumes:
        w = Workload(v, jobs_per_week, max_wait_s)
        ests = [estimate(h, w) for h in hosts]
        for fam, series in families.items():
            ok = [e for e in ests if e.family == fam and e.feasible]
            best = min(ok, key=lambda e: e.usd_per_month) if ok else None
            series["usd_per_month"].append(best.usd_per_month if best else None)
            series["wait_s"].append(best.wait_s if best else None)
            series["assumed"].append(float(best.assumed) if best else None)
    return families


def crossings(families: dict[str, dict[str, list[float | None]]], volumes: list[float],
              include_assumed: bool) -> list[dict[str, Any]]:
    """Weekly volumes where the cheapest family changes."""
    out: list[dict[str, Any]] = []
    prev = None
    for i, v in enumerate(volumes):
        cands = [(s["usd_per_month"][i], f) for f, s in families.items()
                 if s["usd_per_month"][i] is not None
                 and (include_assumed or not s["assumed"][i])]
        if not cands:
            continue
        cost, fam = min(cands, key=lambda c: float(c[0] or 0.0))
        if prev is not None and fam != prev:
            out.append({"comments_per_week": v, "from": prev, "to": fam})
        prev = fam
    return out


STYLE = {"Lambda, CPU int8 (sharded)": ("#1b7837", "-"),
         "Serverless Inference, CPU int8 (sharded)": ("#fdb863", "--"),
         "async endpoint, CPU": ("#2166ac", "-"),
         "async endpoint, GPU": ("#b2182b", "--")}


def plot_sweep(families: dict[str, dict[str, list[float | None]]], volumes: list[float],
               key: str, workloads: list[Workload], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    for fam, s in families.items():
        y = [np.nan if v is None else (v / 60 if key == "wait_s" else v) for v in s[key]]
        colour, ls = STYLE.get(fam, ("#555555", ":"))
        assumed = any(a for a in s["assumed"] if a)
        ax.plot(volumes, y, color=colour, linestyle=ls, linewidth=2,
                label=fam + (" (ASSUMED speed)" if assumed else ""))
    for w in workloads:
        ax.axvline(w.comments_per_week, color="#777777", linestyle=":", linewidth=1)
        ax.annotate(f"{w.comments_per_week:,.0f}/week", (w.comments_per_week, 0.02),
                    xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                    ha="right", va="bottom")
    if key == "wait_s":
        ax.axhline(workloads[0].max_wait_s / 60, color="red", linestyle=":",
                   label=f"wait objective {wait_text(workloads[0].max_wait_s)}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"comments per week (log), in {workloads[0].jobs_per_week:g} jobs a week")
    ax.set_ylabel("USD per month (log)" if key == "usd_per_month"
                  else "wait per job, submission to results (minutes, log)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def workload_doc(workloads: list[Workload], hosts: list[Host], reference: list[Host],
                 allow_assumed: bool, inputs: dict[str, Any], out: Path) -> dict[str, Any]:
    """Analyse each workload, sweep volume, draw the crossing charts under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    vols = volume_grid()
    fam = sweep(hosts, workloads[0].jobs_per_week, workloads[0].max_wait_s, vols)
    kw = dict(workloads=workloads, volumes=vols, families=fam)
    cost_png = plot_sweep(key="usd_per_month", path=out / "batch-host-monthly-cost.png",
                          title="batch lane: monthly cost against weekly volume, cheapest "
                          "feasible size per host\n(dashed = rests on an ASSUMED speed; "
                          "where lines cross the cheaper host changes)", **kw)  # type: ignore[arg-type]
    wait_png = plot_sweep(key="wait_s", path=out / "batch-host-wait.png",
                          title="batch lane: wait per job against weekly volume (the "
                          "cheapest feasible size per host)", **kw)  # type: ignore[arg-type]
    by_wait = []
    for wait_s in sorted({workloads[0].max_wait_s, *CROSSING_WAITS_S}):
        f = fam if wait_s == workloads[0].max_wait_s else sweep(
            hosts, workloads[0].jobs_per_week, wait_s, vols)
        by_wait.append({"max_wait_s": wait_s, "measured": crossings(f, vols, False),
                        "with_assumed": crossings(f, vols, True)})
    return {"workloads": [analyse(w, hosts, reference, allow_assumed) for w in workloads],
            "allow_assumed": allow_assumed, "inputs": inputs,
            "sweep": {"comments_per_week": vols, "jobs_per_week": workloads[0].jobs_per_week,
                      "families": fam,
                      "crossings_measured": crossings(fam, vols, False),
                      "crossings_with_assumed": crossings(fam, vols, True),
                      "crossings_by_wait": by_wait},
            "plots": {"cost": cost_png.name, "wait": wait_png.name}}


def _row(e: dict[str, Any], chosen: str | None, reference: bool = False) -> list[str]:
    j = e["job"]
    verdict = ("<b>chosen</b>" if e["host"] == chosen else
               ("ok" if e["feasible"] else ("misses the wait" if not e["meets_wait"]
                                            else html.escape(j["why_not"] or "over a limit"))))
    if reference:  # not a candidate: another, less accurate model
        verdict = "reference only: the instant lane's TF-IDF model, not the transformer"
    if e["assumed"]:
        verdict += " (ASSUMED speed)"
    phases = ", ".join(f"{k} {wait_text(v)}" for k, v in j["phases_s"].items())
    return [html.escape(e["host"]), html.escape(e["kind"]), money(e["usd_per_job"]),
            money(e["usd_per_month"]), money(e["usd_per_million"]), wait_text(e["wait_s"]),
            str(j["shards"]), f"{j['billed_s']:.0f}", verdict,
            html.escape(phases), html.escape("; ".join(e["assumptions"]) or "-")]


HEAD = ["host", "kind", "$ per job", "$ per month", "$ per million comments", "wait per job",
        "shards", "billed s per job", "verdict", "wait, phase by phase", "assumptions"]


def html_section(doc: dict[str, Any]) -> str:
    parts = ["<h2>Batch lane: which host, for your workload</h2>",
             "<p>What AWS bills for a job, not steady-state throughput: an asynchronous "
             "endpoint scaled to zero bills its wake-up, provisioning and the idle minutes "
             "until scale-in for every job; Lambda and Serverless Inference bill per "
             "millisecond of work and nothing idle. Figures marked ASSUMED are not "
             "measurements and never win unless <code>--allow-assumed</code> is given.</p>"]
    for wd in doc["workloads"]:
        chosen = (wd["chosen"] or {}).get("host")
        parts.append(f"<div class='rec'><p>{html.escape(wd['message'])}</p>"
                     + (f"<p>{html.escape(wd['cascade']['message'])}</p>" if wd.get("cascade") else "")
                     + "</div>")
        rows = [_row(e, chosen) for e in wd["estimates"]]
        rows += [_row(e, None, reference=True) for e in wd["reference"]]
        parts.append(html_table(rows, HEAD))
    sw = doc["sweep"]
    rows = [[wait_text(c["max_wait_s"]), html.escape(crossing_text(c["measured"])),
             html.escape(crossing_text(c["with_assumed"]))] for c in sw["crossings_by_wait"]]
    parts.append(f"<p>Where the cheapest host changes ({sw['jobs_per_week']:g} jobs a week, "
                 "1,000 to 100 million comments a week), by how long a job may wait:</p>" +
                 html_table(rows, ["results within", "measured hosts only", "assumed hosts too"]))
    parts.append(f"<p><img src='{doc['plots']['cost']}' alt='monthly cost against volume'>"
                 f"</p><p><img src='{doc['plots']['wait']}' alt='wait against volume'></p>")
    rows = [[html.escape(k), f"{v['value']:.4g} {html.escape(v['unit'])}",
             html.escape(v["status"]), html.escape(v["source"])]
            for k, v in doc["inputs"].items()]
    parts.append("<h3>Inputs of the billing model</h3>" +
                 html_table(rows, ["input", "value", "status", "source"]))
    return "\n".join(parts)


def md_lines(doc: dict[str, Any]) -> list[str]:
    lines = ["", "### Batch lane: what a job costs and waits on AWS (billing model)", ""]
    for wd in doc["workloads"]:
        lines.append(f"- **{wd['message']}**")
        if wd.get("cascade"):
            lines.append(f"  - {wd['cascade']['message']}")
    lines += ["", "| workload (comments/week, jobs) | host | $ per job | $ per month | "
              "$ per million | wait per job | assumed? |", "|---|---|---|---|---|---|---|"]
    for wd in doc["workloads"]:
        w = wd["workload"]
        label = f"{w['comments_per_week']:,.0f}, {w['jobs_per_week']:g}"
        shown = [e for e in wd["estimates"] if e["feasible"]]
        by_fam: dict[str, dict[str, Any]] = {}
        for e in shown:
            by_fam.setdefault(e["family"], e)
        refs = {e["host"] for e in wd["reference"]}
        for e in list(by_fam.values()) + wd["reference"]:
            mark = " (chosen)" if wd["chosen"] and e["host"] == wd["chosen"]["host"] else ""
            if e["host"] in refs:
                mark = " (reference: the instant lane's model, not a batch host)"
            lines.append(f"| {label} | {e['host']}{mark} | {money(e['usd_per_job'])} | "
                         f"{money(e['usd_per_month'])} | {money(e['usd_per_million'])} | "
                         f"{wait_text(e['wait_s'])} | "
                         f"{'ASSUMED speed' if e['assumed'] else 'measured speed'} |")
    sw = doc["sweep"]
    lines += ["", f"Where the cheapest host changes ({sw['jobs_per_week']:g} jobs a week), by "
              "how long a job may wait:", "", "| results within | measured hosts only | "
              "assumed hosts too |", "|---|---|---|"]
    lines += [f"| {wait_text(c['max_wait_s'])} | {crossing_text(c['measured'])} | "
              f"{crossing_text(c['with_assumed'])} |" for c in sw["crossings_by_wait"]]
    lines += ["", f"Charts ({wait_text(doc['workloads'][0]['workload']['max_wait_s'])} wait): "
              f"`bench/recommend/{doc['plots']['cost']}`, `bench/recommend/{doc['plots']['wait']}`."]
    return lines
