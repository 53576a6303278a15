"""Write the recommendation as JSON, PNG plots and one HTML page a newcomer can read."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

from recommender.cost import money, ms
from recommender.tables import html_table

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CHOSEN, OK, BAD, ASSUMED = "#1b7837", "#7fbf7b", "#bbbbbb", "#fdb863"


def plot_latency_throughput(lane: dict[str, Any], slo: float, path: Path) -> Path:
    cells = lane["result"]["cells"]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    keys = sorted({(c["cores"], c["batch"]) for c in cells})
    for cores, batch in keys:
        pts = sorted((c for c in cells if c["cores"] == cores and c["batch"] == batch),
                     key=lambda c: c["concurrency"])
        x = [c["throughput_cps"] for c in pts]
        y = [c["p95_ms"] for c in pts]
        lo = [c["p95_ms"] - c["p95_range_ms"][0] for c in pts]
        hi = [c["p95_range_ms"][1] - c["p95_ms"] for c in pts]
        ax.errorbar(x, y, yerr=[lo, hi], marker="o" if cores == 1 else "s", capsize=3,
                    linestyle="-" if cores == 1 else "--",
                    label=f"{cores} core{'s' if cores > 1 else ''}, {batch}/request")
        for c in pts:
            ax.annotate(f"c={c['concurrency']}", (c["throughput_cps"], c["p95_ms"]),
                        textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.axhline(slo, color="red", linestyle=":", label=f"p95 objective {slo:.0f} ms")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("throughput (comments per second, log)")
    ax.set_ylabel("p95 latency per request (ms, log)")
    ax.set_title(f"{lane['result']['lane']} lane: latency against throughput\n"
                 "(bars: min..max over repeats; c = concurrent requests)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_cost(lane: dict[str, Any], path: Path) -> Path:
    choice = lane["choice"]
    cands = choice["candidates"]
    chosen = (choice["chosen"] or {}).get("name")
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    names = [c["name"].replace("lambda-", "") for c in cands]
    vals = [c["usd_per_million"] if math.isfinite(c["usd_per_million"]) else 0 for c in cands]
    colours = [CHOSEN if c["name"] == chosen else (BAD if not c["feasible"] else
               (ASSUMED if c["assumed"] else OK)) for c in cands]
    bars = ax.bar(names, vals, color=colours, edgecolor="black", linewidth=0.5)
    for bar, c in zip(bars, cands, strict=True):
        tag = "" if c["feasible"] else ("\nslow" if not c["meets_slo"] else "\nno fit")
        ax.annotate(f"{money(c['usd_per_million'])}{tag}\np95 {ms(c['p95_ms'])}",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                    va="bottom", fontsize=6.5)
    ax.set_ylabel("USD per million comments")
    what = "Lambda memory size" if choice["target"] == "lambda_memory" else "SageMaker instance"
    ax.set_title(f"{choice['lane']} lane: cost per million comments by {what}\n"
                 "(dark green = chosen; grey = misses the objective or memory; "
                 "orange = assumed GPU speed-up)", fontsize=9)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.set_ylim(0, max(vals + [1e-9]) * 1.35)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _cells_table(cells: list[dict[str, Any]]) -> str:
    rows = [[str(c["cores"]), str(c["batch"]), str(c["concurrency"]), f"{c['p50_ms']:.1f}",
             f"{c['p95_ms']:.1f} <small>({c['p95_range_ms'][0]:.0f}&ndash;"
             f"{c['p95_range_ms'][1]:.0f})</small>", f"{c['p99_ms']:.1f}",
             f"{c['throughput_cps']:.1f} <small>({c['throughput_range_cps'][0]:.0f}&ndash;"
             f"{c['throughput_range_cps'][1]:.0f})</small>",
             f"{c['cpu_ms_per_comment']:.2f}", f"{c['requests_ok']}", f"{c['errors']}",
             f"{c['rss_peak_mb']:.0f}", f"{c['server_threads']}",
             f"{100 * c['other_cpu_share']:.0f} %"] for c in cells]
    return html_table(rows, ["cores", "comments/request", "concurrency", "p50 ms",
                         "p95 ms (min&ndash;max)", "p99 ms", "comments/s (min&ndash;max)",
                         "server CPU ms/comment", "requests", "errors", "peak RSS MB",
                         "threads", "other load"])


def _cands_table(choice: dict[str, Any]) -> str:
    chosen = (choice["chosen"] or {}).get("name")
    rows = []
    for c in choice["candidates"]:
        mark = "<b>chosen</b>" if c["name"] == chosen else ("ok" if c["feasible"] else (
            "misses p95" if not c["meets_slo"] else "too little memory"))
        rows.append([html.escape(c["name"]), f"{c['vcpus']:g}", f"{c['memory_mb']:.0f}",
                     money(c["usd_per_hour"]) if c.get("usd_per_hour") else "&ndash;",
                     f"{c['p95_ms']:.3g}", f"{c['throughput_cps']:.1f}",
                     money(c["usd_per_million"]),
                     mark + (" (assumed)" if c["assumed"] else ""),
                     html.escape(c["basis"])])
    return html_table(rows, ["candidate", "vCPUs", "memory MB", "$/hour", "projected p95 ms",
                         "projected comments/s", "$ per million comments", "verdict", "basis"])


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}table{border-collapse:collapse;font-size:.82em;margin:.6em 0}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f2f2f2}
td:first-child{text-align:left}.rec{background:#e8f5e9;border-left:6px solid #1b7837;
padding:.8em 1em;font-size:1.1em}.warn{background:#fff3e0;border-left:6px solid #e65100;
padding:.6em 1em}pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.85em}
img{max-width:100%;border:1px solid #ddd}small{color:#666}"""


def write_html(doc: dict[str, Any], out: Path) -> Path:
    lanes = doc["lanes"]
    recs = "".join(f"<p><b>{html.escape(w['message'])}</b></p>"
                   for w in (doc.get("batch_hosts") or {}).get("workloads", []))
    recs += "".join(f"<p>{html.escape(v['choice']['message'])}</p>" for v in lanes.values())
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>twolane hardware "
             f"recommendation</title><style>{CSS}</style></head><body>",
             "<h1>twolane: which hardware to run on</h1>",
             f"<div class='rec'>{recs}</div>",
             f"<p><small>Generated {html.escape(doc['generated_at'])}; the whole run took "
             f"{doc['wall_s']:.0f} s on {html.escape(doc['machine']['cpu'])} "
             f"({doc['machine']['cores']} cores, shared with other work). p95 objective: "
             f"{doc['slo_p95_ms']:.0f} ms per request.</small></p>"]
    parts.append("""<h2>What was measured, and how to read it</h2>
<p>Each lane's real serving process was started on this machine (the instant lane: the FastAPI
app under uvicorn, <code>twolane serve</code>; the batch lane: the SageMaker container's
<code>sagemaker/serve.py</code>) and sent real NHS patient comments by a load generator (locust)
on 127.0.0.1. The sweep varied <b>comments per request</b>, <b>concurrent requests</b> (each
client sends its next request as soon as the last one is answered) and <b>CPU cores</b>: the
server was pinned to 1 or 2 cores, with onnxruntime told to use as many threads, standing in
for an instance's vCPUs. Each configuration ran several times, interleaved; tables show the
median, with min&ndash;max across repeats as the noise.</p>
<p><b>p50/p95/p99</b>: the time within which 50/95/99 % of requests were answered (lower is
better). <b>Throughput</b>: comments labelled per second. <b>Server CPU ms/comment</b>: CPU time the
server used per comment, which other work on the machine disturbs less than wall time.
<b>Other load</b>: share of the machine's CPU used by other processes meanwhile (this machine is
shared; high values mean noisier numbers).</p>
<p><b>Cost</b>: the measurements are projected onto AWS hardware (method below) and turned into
US dollars per million comments at list prices; candidates whose projected p95 misses the objective,
or whose memory cannot hold the server, are ruled out; the cheapest of the rest is chosen.</p>""")
    for name, lane in lanes.items():
        res, choice = lane["result"], lane["choice"]
        parts.append(f"<h2>{html.escape(name)} lane</h2>")
        if lane.get("warning"):
            parts.append(f"<div class='warn'>{html.escape(lane['warning'])}</div>")
        parts.append(f"<p>Model bundle: <code>{html.escape(res['bundle_label'])}</code>. Sweep "
                     f"took {res['wall_s']:.0f} s; server start-up (spawn to healthy): "
                     + ", ".join(f"{k} core(s) {v:.1f} s" for k, v in res["startup_s"].items())
                     + ".</p>")
        for note in res.get("notes", []):
            parts.append(f"<p><small>{html.escape(note)}</small></p>")
        parts.append(f"<h3>Measurements</h3>{_cells_table(res['cells'])}")
        parts.append(f"<p><img src='{lane['plots']['latency']}' alt='latency against "
                     f"throughput'></p>")
        parts.append(f"<h3>Candidates</h3><p>{html.escape(choice['message'])}</p>"
                     f"{_cands_table(choice)}")
        parts.append(f"<p><img src='{lane['plots']['cost']}' alt='cost per candidate'></p>")
        m = choice.get("method", {})
        parts.append("<h3>Method and uncertainty</h3><ul>" + "".join(
            f"<li>{html.escape(line)}</li>" for line in lane["method_notes"]) + "</ul>")
        if m:
            parts.append(f"<pre>{html.escape(json.dumps(m, indent=2))}</pre>")
    if doc.get("batch_hosts"):
        from recommender.workload import html_section

        parts.append(html_section(doc["batch_hosts"]))
    parts.append("<h2>Deployment config change</h2>")
    if doc["config_changes"]:
        for ch in doc["config_changes"]:
            parts.append(f"<p><code>{html.escape(ch['path'])}</code></p>"
                         f"<pre>{html.escape(ch['diff'] or '(no change: already set)')}</pre>")
        parts.append("<p>The next <code>cdk deploy</code> uses these values.</p>")
    else:
        parts.append("<p>None written.</p>")
    parts.append("<h2>Prices and assumptions</h2><ul>" + "".join(
        f"<li>{html.escape(a)}</li>" for a in doc["assumptions"]) + "</ul>")
    parts.append(llm_html(doc.get("llm")))
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def llm_html(llm: dict[str, Any] | None) -> str:
    """The LLM endpoint's per-job cost table (recommender.llm.llm_doc), or "" without one."""
    if not llm:
        return ""
    head = ["instance", "engine", "model", "speed", "s per request", "work s", "billed s",
            "$ per job", "$ per month", "wait s"]
    rows = [[r["instance"], r["engine"], r["model"], r["source"], f"{r['s_per_request']:.2f}",
             f"{r['work_s']:.0f}", str(r["billed_s"]), f"${r['usd_per_job']:.4f}",
             f"${r['usd_per_month']:.2f}", str(r["wait_s"])] for r in llm["rows"]]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in llm["notes"])
    themes = (f"about {llm['themes_per_job']} themes" if llm["themes_measured"]
              else f"at most {llm['themes_per_job']} themes (bench/llm.py has not run)")
    return (f"<h2>LLM endpoint (summaries)</h2><p>A summary job of {llm['comments_per_job']} "
            f"comments reports {themes}: one short LLM request per theme, "
            f"{llm['requests_per_job']} in all (the theme's points and counts in, at most "
            f"{llm['prompt_tokens']} prompt tokens; at most two sentences out as JSON bounded "
            f"by a schema, at most {llm['completion_tokens']} tokens), on an async endpoint "
            f"scaled to zero between jobs. Seconds per request are priced at those bounds.</p>"
            f"{html_table(rows, head)}<ul>{notes}</ul>")


def write_report(doc: dict[str, Any], out: Path) -> Path:
    """Plots, report.json and report.html under `out`; returns the HTML path."""
    out.mkdir(parents=True, exist_ok=True)
    for name, lane in doc["lanes"].items():
        lat = plot_latency_throughput(lane, doc["slo_p95_ms"],
                                      out / f"{name}-latency-throughput.png")
        cost = plot_cost(lane, out / f"{name}-cost.png")
        lane["plots"] = {"latency": lat.name, "cost": cost.name}
    (out / "report.json").write_text(json.dumps(_clean(doc), indent=2) + "\n", encoding="utf-8")
    return write_html(doc, out)


def _clean(o: Any) -> Any:
    """JSON-safe copy: infinities/NaN become null, tuples lists, paths strings."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, Path):
        return str(o)
    return o


START, END = "<!-- recommend:start -->", "<!-- recommend:end -->"


def results_section(doc: dict[str, Any], report_dir: str = "bench/recommend") -> str:
    """The bench/RESULTS.md section: the choice, the key measurements, where the report is."""
    lines = [START, "## Hardware recommendation (`twolane recommend`)", "",
             f"Run {doc['generated_at']}, {doc['wall_s']:.0f} s in all, on "
             f"{doc['machine']['cpu']} ({doc['machine']['cores']} cores, shared with other "
             f"work; load average {doc['machine']['loadavg_before'][0]:.1f} before, "
             f"{doc['machine']['loadavg_after'][0]:.1f} after). p95 objective "
             f"{doc['slo_p95_ms']:.0f} ms per request. Full report: "
             f"[{report_dir}/report.html]({report_dir.removeprefix('bench/')}/report.html).", ""]
    if doc.get("reused_from"):
        lines[-1:] = [f"Load-test measurements reused from the run of {doc['reused_from']} "
                      "(`--reuse`: no new load test); the billing model and charts are new.", ""]
    for lane in doc["lanes"].values():
        lines.append(f"- Steady state (full instances, no cold starts or idle): "
                     f"{lane['choice']['message']}")
        if lane.get("warning"):
            lines.append(f"  - {lane['warning']}")
    if doc.get("batch_hosts"):
        from recommender.workload import md_lines

        lines += md_lines(doc["batch_hosts"])
    lines += ["", "| lane | cores | comments/request | concurrency | p50 ms | p95 ms (min-max) "
              "| comments/s | errors | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|"]
    for name, lane in doc["lanes"].items():
        for c in lane["result"]["cells"]:
            lines.append(f"| {name} | {c['cores']} | {c['batch']} | {c['concurrency']} | "
                         f"{c['p50_ms']:.1f} | {c['p95_ms']:.1f} ({c['p95_range_ms'][0]:.1f}-"
                         f"{c['p95_range_ms'][1]:.1f}) | {c['throughput_cps']:.1f} | "
                         f"{c['errors']} | {c['rss_peak_mb']:.0f} |")
    for ch in doc["config_changes"]:
        lines += ["", f"Config change `{Path(ch['path']).name}`:", "```diff",
                  (ch["diff"] or "(no change)").rstrip(), "```"]
    lines.append(END)
    return "\n".join(lines) + "\n"


def update_results_md(path: Path, section: str) -> Path:
    """Replace the recommender's section between the markers (or append it)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmark results\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
