"""What the LLM lane's endpoint costs per summary job, scaled to zero between jobs.

A summary job makes one short LLM request per theme it reports: the prompt is the theme's points
and their counts (PROMPT_TOKENS at most), the answer at most two sentences as a JSON object
bounded by a schema (COMPLETION_TOKENS at most). The number of themes grows with the job but is
at most the model's 32, and each request is bounded, so the LLM's work per job is nearly flat in
the number of comments. Per job the endpoint bills: provisioning from zero (when SageMaker bills
it), the work, and the idle time until target tracking scales in (prices.json, sagemaker_async).

Seconds per request = prompt tokens / prompt tokens per s + completion tokens / completion tokens
per s, priced at the pattern's bounds (an upper bound per request). Rates:
  CPU (llama.cpp, ml.c6i.xlarge): MEASURED by bench/llm_engine.py on this machine (the packaged
      SmolLM2-135M, llama.cpp's extra buffer types off as the engine runs it);
  GPU (vLLM, 7-8B model): ASSUMED (recommender/llm_prices.json), marked so.
Themes per job: bench/llm.py's measured share of the 32 when it has run, else all 32.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
LLM_PRICES = HERE / "llm_prices.json"
BENCH = HERE.parent / "bench" / "results" / "llm.json"
ENGINE_BENCH = HERE.parent / "bench" / "results" / "llm_engine.json"
MAX_THEMES = 32
REQUESTS_PER_THEME = 1
PROMPT_TOKENS = 600  # a theme's points and counts: about 300-600 tokens
COMPLETION_TOKENS = 80  # at most two sentences in a JSON object, bounded by the schema
CPU_MODEL = "smollm2-135m"  # the packaged model the CPU row is measured with


def seconds_per_request(prompt_tps: float, completion_tps: float,
                        prompt_tokens: int = PROMPT_TOKENS, completion_tokens: int = COMPLETION_TOKENS) -> float:
    """Seconds one request of the pattern takes at the given rates (tokens per second)."""
    return prompt_tokens / prompt_tps + completion_tokens / completion_tps


def cpu_rates(engine_path: Path = ENGINE_BENCH) -> tuple[str, float, float] | None:
    """(model file, prompt tokens/s, completion tokens/s) measured by bench/llm_engine.py for
    CPU_MODEL with the extra buffer types off, or None without that run."""
    if not engine_path.is_file():
        return None
    rows = json.loads(engine_path.read_text(encoding="utf-8"))["rows"]
    row = next((r for r in rows if r["name"] == CPU_MODEL and not r["extra_bufts"]), None)
    return (row["model"], float(row["prompt_tokens_per_s"]), float(row["completion_tokens_per_s"])) if row else None


def themes_per_job(comments: int, measured: dict[str, Any] | None) -> int:
    """Themes a job of `comments` reports: the measured share of the 32 at the measured size,
    never fewer for a bigger job, at most 32 (all 32 without a measurement)."""
    if not measured:
        return MAX_THEMES
    seen = int(measured.get("themes_reported") or MAX_THEMES)
    if comments >= int(measured.get("comments") or 0):
        return min(MAX_THEMES, seen)
    return max(1, min(seen, round(seen * comments / max(1, int(measured["comments"])))))


def llm_doc(comments_per_week: float, jobs_per_week: float, prices: dict[str, Any],
            measured_path: Path = BENCH, llm_prices_path: Path = LLM_PRICES,
            engine_path: Path = ENGINE_BENCH) -> dict[str, Any] | None:
    """Per-job cost and wait of the LLM endpoint on each candidate (None without a
    bench/llm_engine.py run). Rows: {instance, engine, model, source, s_per_request, work_s,
    billed_s, usd_per_job, usd_per_month, wait_s}; also the request pattern priced."""
    rates = cpu_rates(engine_path)
    if rates is None:
        return None
    measured = json.loads(measured_path.read_text(encoding="utf-8")) if measured_path.is_file() else None
    lp = json.loads(llm_prices_path.read_text(encoding="utf-8"))
    per_job = comments_per_week / max(jobs_per_week, 1e-9)
    themes = themes_per_job(int(per_job), measured)
    requests = themes * REQUESTS_PER_THEME
    a = prices["sagemaker_async"]
    idle_s = a["scale_in_alarm_datapoints"] * 60 + a["metric_lag_s"]
    rows = []
    cpu = lp["cpu_instance"]
    model, prompt_tps, completion_tps = rates
    candidates = [(cpu, "llama.cpp", model, "measured", seconds_per_request(prompt_tps, completion_tps),
                   prices["sagemaker_instances"][cpu]["usd_per_hour"], "cpu", 1)]
    for name, inst in lp["gpu_instances"].items():
        g = lp["gpu_assumption"][inst["gpu"]]
        s_req = seconds_per_request(g["prompt_tokens_per_s"], g["completion_tokens_per_s"])
        candidates.append((name, "vLLM", "7-8B instruct (bf16)", "ASSUMED", s_req,
                           inst["usd_per_hour"], "gpu", g["concurrent_requests"]))
    for name, engine, model_name, source, s_req, usd_h, kind, concurrent in candidates:
        work = requests * s_req / concurrent
        provision = a["provision_from_zero_s"][kind]
        billed = (provision if a["bills_provisioning"] else 0) + work + idle_s
        usd = billed / 3600 * usd_h
        rows.append({"instance": name, "engine": engine, "model": model_name, "source": source,
                     "s_per_request": round(s_req, 3), "work_s": round(work, 1),
                     "billed_s": round(billed), "usd_per_job": round(usd, 4),
                     "usd_per_month": round(usd * jobs_per_week * 52 / 12, 2),
                     "wait_s": round(provision + a["metric_lag_s"] + work)})
    return {"comments_per_job": round(per_job), "themes_per_job": themes, "requests_per_job": requests,
            "requests_per_theme": REQUESTS_PER_THEME, "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS, "themes_measured": measured is not None,
            "rows": rows, "notes": [lp["source"], lp["gpu_assumption"]["note"], lp["cpu_note"],
                                    "The CPU row's speed is the 135M packaged model's: a 7-8B "
                                    "model on CPU is tens of times slower; deploy it on a GPU."]}
