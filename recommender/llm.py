"""What the LLM lane's endpoint costs per summary job, scaled to zero between jobs.

A summary job makes two LLM requests per theme it reports (summary, quotes); the number of
themes grows with the job but is at most the model's 32, and each request's prompt is bounded
(a sample of the theme), so the LLM's work per job is nearly flat in the number of comments.
Per job the endpoint bills: provisioning from zero (when SageMaker bills it), the work, and the
idle time until target tracking scales in (prices.json, sagemaker_async). Sources:
  CPU (llama.cpp, ml.c6i.xlarge): seconds per request MEASURED by bench/llm.py on this machine;
  GPU (vLLM, 7-8B model): tokens/s ASSUMED (recommender/llm_prices.json), marked so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LLM_PRICES = HERE / "llm_prices.json"
BENCH = HERE.parent / "bench" / "results" / "llm.json"
MAX_THEMES = 32
REQUESTS_PER_THEME = 2


def themes_per_job(comments: int, measured: dict[str, Any]) -> int:
    """Themes a job of `comments` reports: the measured share of the 32 at the measured size,
    never fewer for a bigger job, at most 32."""
    seen = int(measured.get("themes_reported") or MAX_THEMES)
    if comments >= int(measured.get("comments") or 0):
        return min(MAX_THEMES, seen)
    return max(1, min(seen, round(seen * comments / max(1, int(measured["comments"])))))


def llm_doc(comments_per_week: float, jobs_per_week: float, prices: dict[str, Any],
            measured_path: Path = BENCH, llm_prices_path: Path = LLM_PRICES) -> dict[str, Any] | None:
    """Per-job cost and wait of the LLM endpoint on each candidate (None without a bench run).
    Rows: {instance, engine, model, source, s_per_request, work_s, billed_s, usd_per_job,
    usd_per_month, wait_s}."""
    if not measured_path.is_file():
        return None
    measured = json.loads(measured_path.read_text(encoding="utf-8"))
    lp = json.loads(llm_prices_path.read_text(encoding="utf-8"))
    per_job = comments_per_week / max(jobs_per_week, 1e-9)
    themes = themes_per_job(int(per_job), measured)
    requests = themes * REQUESTS_PER_THEME
    a = prices["sagemaker_async"]
    idle_s = a["scale_in_alarm_datapoints"] * 60 + a["metric_lag_s"]
    rows = []
    cpu = lp["cpu_instance"]
    prompt_tok = measured["prompt_tokens"] / max(1, measured["requests"])
    completion_tok = measured["completion_tokens"] / max(1, measured["requests"])
    candidates = [(cpu, "llama.cpp", measured["llm"], "measured", float(measured["s_per_request"]),
                   prices["sagemaker_instances"][cpu]["usd_per_hour"], "cpu", 1)]
    for name, inst in lp["gpu_instances"].items():
        g = lp["gpu_assumption"][inst["gpu"]]
        s_req = prompt_tok / g["prompt_tokens_per_s"] + completion_tok / g["completion_tokens_per_s"]
        candidates.append((name, "vLLM", "7-8B instruct (bf16)", "ASSUMED", s_req,
                           inst["usd_per_hour"], "gpu", g["concurrent_requests"]))
    for name, engine, model, source, s_req, usd_h, kind, concurrent in candidates:
        work = requests * s_req / concurrent
        provision = a["provision_from_zero_s"][kind]
        billed = (provision if a["bills_provisioning"] else 0) + work + idle_s
        usd = billed / 3600 * usd_h
        rows.append({"instance": name, "engine": engine, "model": model, "source": source,
                     "s_per_request": round(s_req, 3), "work_s": round(work, 1),
                     "billed_s": round(billed), "usd_per_job": round(usd, 4),
                     "usd_per_month": round(usd * jobs_per_week * 52 / 12, 2),
                     "wait_s": round(provision + a["metric_lag_s"] + work)})
    return {"comments_per_job": round(per_job), "themes_per_job": themes, "requests_per_job": requests,
            "rows": rows, "notes": [lp["source"], lp["gpu_assumption"]["note"], lp["cpu_note"],
                                    "The CPU row's speed is the 135M plumbing model's: a 7-8B "
                                    "model on CPU is tens of times slower; deploy it on a GPU."]}
