"""The local LLM engine's speed on this CPU: prompt and generation tokens per second, for each
packaged model, with llama.cpp's extra buffer types off (the default) and on.

    nice -n 10 .venv/bin/python -m bench.llm_engine [--threads 2] [--repeats 3]

Each run is the summaries' request pattern: a prompt of about PROMPT_TOKENS tokens (a theme's
points with their counts, from real NHS comments) and up to COMPLETION_TOKENS generated tokens,
temperature 0. Rates are llama.cpp's own counters (llama_perf_context: prompt eval and eval
time), the best of `--repeats` runs (others' load only ever slows a run). Also recorded: the
CPU backend llama.cpp chose (its feature line) and the model's load time.

Results: bench/results/llm_engine.json, bench/RESULTS.md section "llm-engine". recommender/llm.py
prices the CPU endpoint from these rates.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.results_md import write_section
from bench.timing import best_of
from twolane.summaries.packaged import MODELS, packaged_model

RESULTS = Path(__file__).resolve().parent / "results" / "llm_engine.json"
NHS_CSV = Path(__file__).resolve().parent.parent / "data" / "nhs-patient-feedback" / "v6framework_230831.csv"
PROMPT_TOKENS = 500
COMPLETION_TOKENS = 80


def prompt_text(llm: Any, tokens: int = PROMPT_TOKENS) -> str:
    """A theme's points and counts from real comments, cut to about `tokens` tokens of `llm`."""
    with NHS_CSV.open(encoding="utf-8", newline="") as f:
        comments = [r["FFT answer"].strip() for r in csv.DictReader(f) if len(r["FFT answer"]) > 40]
    lines = ["Theme: Staff manner & personal attributes, 166 comments, 14 negative. Points:"]
    for i, c in enumerate(comments):
        lines.append(f"{i + 1}. ({40 - i % 37} comments) \"{c[:160]}\"")
        if len(llm.tokenize("\n".join(lines).encode())) >= tokens:
            break
    return "\n".join(lines) + "\nWrite at most two sentences that summarise these points."


def measure(path: Path, extra_bufts: bool, threads: int | None, repeats: int) -> dict[str, Any]:
    """Load time and the best prompt / generation rates of `repeats` requests."""
    import llama_cpp

    from local_stack.llm_cpu import cpu_features
    from local_stack.llm_engine import load_model

    t0 = time.perf_counter()
    llm = load_model(path, 2048, threads, extra_bufts)
    load_s = time.perf_counter() - t0
    messages = [{"role": "user", "content": prompt_text(llm)}]
    runs: list[dict[str, float]] = []

    def one() -> None:
        llm.reset()
        llama_cpp.llama_perf_context_reset(llm.ctx)
        llm.create_chat_completion(messages=messages, max_tokens=COMPLETION_TOKENS, temperature=0.0,
                                   seed=0)
        p = llama_cpp.llama_perf_context(llm.ctx)
        runs.append({"prompt_tokens": p.n_p_eval, "prompt_s": p.t_p_eval_ms / 1000,
                     "completion_tokens": p.n_eval, "completion_s": p.t_eval_ms / 1000})

    request_s = best_of(one, repeats)
    prompt_tps = max(r["prompt_tokens"] / r["prompt_s"] for r in runs if r["prompt_s"] > 0)
    gen_tps = max(r["completion_tokens"] / r["completion_s"] for r in runs if r["completion_s"] > 0)
    return {"model": path.name, "extra_bufts": extra_bufts, "load_s": round(load_s, 2),
            "prompt_tokens": runs[0]["prompt_tokens"], "completion_tokens": runs[0]["completion_tokens"],
            "prompt_tokens_per_s": round(prompt_tps, 1), "completion_tokens_per_s": round(gen_tps, 1),
            "request_s": round(request_s, 3), "cpu_backend": cpu_features()}


def run(threads: int | None, repeats: int, models: tuple[str, ...] = MODELS) -> dict[str, Any]:
    """Every installed packaged model, extra buffer types off and on (one model loaded at a time)."""
    from local_stack.llm_cpu import cpu_variants

    rows = []
    for name in models:
        path = packaged_model(name)
        if path is None:
            continue
        for extra in (False, True):
            rows.append({"name": name} | measure(path, extra, threads, repeats))
    return {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpu": _cpu_name(), "cpus": os.cpu_count(), "threads": threads,
            "load_1min": round(os.getloadavg()[0], 2), "cpu_variants_installed": cpu_variants(),
            "prompt_tokens_target": PROMPT_TOKENS, "completion_tokens_max": COMPLETION_TOKENS,
            "repeats": repeats, "rows": rows}


def _cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def write_md(r: dict[str, Any]) -> None:
    start, end = "<!-- llm-engine:start -->", "<!-- llm-engine:end -->"
    rows = "\n".join(
        f"| {x['name']} | {'on' if x['extra_bufts'] else 'off'} | {x['prompt_tokens']} | "
        f"{x['prompt_tokens_per_s']:.0f} | {x['completion_tokens']} | {x['completion_tokens_per_s']:.1f} | "
        f"{x['request_s']:.2f} | {x['load_s']:.2f} |" for x in r["rows"])
    feats = r["rows"][0]["cpu_backend"] if r["rows"] else {}
    n = len(r["cpu_variants_installed"])
    build = (f"for any x86-64 CPU ({n} CPU backends, the best loaded at run time)" if n
             else "native (-march=native, one CPU backend linked in), not the portable one")
    on = " ".join(k for k, v in feats.items() if v == "1")
    block = f"""{start}
## LLM engine: tokens per second on this CPU (bench/llm_engine.py)

{r['cpu']}, {r['cpus']} cores shared (load {r['load_1min']} at the end), threads
{r['threads'] or 'all'}, {r['measured_at']}. llama.cpp build: {build}; its CPU backend here
reports: {on}.
One request of the summaries' pattern (about {r['prompt_tokens_target']} prompt tokens, at most
{r['completion_tokens_max']} generated, temperature 0), best of {r['repeats']}; "extra bufts" is
llama.cpp's extra buffer types (weight repacking, AMX), off by default (they crash Sapphire Rapids).

| model | extra bufts | prompt tokens | prompt tok/s | generated | gen tok/s | request s | load s |
|---|---|---|---|---|---|---|---|
{rows}
{end}"""
    write_section(start, end, block)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    r = run(a.threads, a.repeats)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(r, indent=1) + "\n", encoding="utf-8")
    write_md(r)
    for x in r["rows"]:
        print(x["name"], "extra_bufts", x["extra_bufts"], x["prompt_tokens_per_s"], "prompt tok/s",
              x["completion_tokens_per_s"], "gen tok/s", x["request_s"], "s/request")


if __name__ == "__main__":
    main()
