"""Theme summaries a report can print, measured against people: bench/RESULTS.md section "llm".

    nice -n 10 .venv/bin/python -m bench.llm [--bundle bundles] [--model none|PATH.gguf ...]
    .venv/bin/python -m bench.llm --endpoint twolane-dev-llm --bucket B   # a deployed endpoint

Each `--model` (default: none, then the packaged SmolLM2-135M GGUF) runs the job as the API runs
it (twolane.summaries.plan: instant-lane facts, points from the packaged MiniLM encoder,
redaction, one chat request per theme; assemble: the checks), each request answered by llama.cpp
in this process, one at a time (or, with `--endpoint`, by the deployed endpoint: the same checks
on its answers).

Quality, on the whole test split (1,582 comments, never seen by the instant build) with its human
labels, PLANTED identifiers written into real comments:
  quote precision   share of the quotes whose comment carries the theme by its human labels
  points per theme  mean; quote slots filled (of themes with >= MIN_COMMENTS comments)
  printed/withheld  summaries printed, withheld by reason (first reason of each)
  loops, contradictions   among printed summaries (the checks must make both 0)
  identifiers       planted ones found anywhere in the report; what `redact` catches, by kind
Speed: seconds for the whole job (classify, embed, cluster, every LLM request, checks) at
SIZES comments (5,000 and 50,000: the NHS data cycled, ids made unique), and of the test split.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.results_md import write_section

RESULTS = Path(__file__).resolve().parent / "results" / "llm.json"
SIZES = (1000, 5000, 50000)
MIN_COMMENTS = 5  # a theme with at least this many comments must fill its quote slots
PLANT_EVERY = 12  # every 12th comment of the test split gets one identifier (132 of 1,582)
FIRST = ["Margaret", "David", "Aisha", "Tomasz", "Siobhan", "Graham", "Priya", "Kwame", "Eleanor",
         "Callum", "Fatima", "Gareth"]
LAST = ["Thornbury", "Okonkwo", "Fairweather", "Kowalczyk", "Ashworth", "Pemberton", "Chaudhry",
        "Mensah", "Whitfield", "MacLeod", "Haddad", "Llewellyn"]
POSTCODES = ["LS1 4AP", "M1 1AE", "SW1A 1AA", "B33 8TH", "CR2 6XH", "DN55 1PT", "EH1 2NG",
             "CF10 1EP", "BS8 1TH", "NE1 7RU"]
KINDS = ("phone", "email", "nhs number", "postcode", "name")


def planted(n: int) -> tuple[str, str, list[str]]:
    """The n-th planted sentence: (kind, sentence to append, strings that must never be printed)."""
    kind = KINDS[n % len(KINDS)]
    first, last = FIRST[n % len(FIRST)], LAST[(n * 7) % len(LAST)]
    if kind == "phone":
        num = f"07700 900{n % 1000:03d}"
        return kind, f" Call me on {num}.", [num]
    if kind == "email":
        mail = f"{first.lower()}.{last.lower()}@example.com"
        return kind, f" Email {mail} please.", [mail]
    if kind == "nhs number":
        num = f"{400 + n:03d} {100 + n % 900:03d} {1000 + n:04d}"
        return kind, f" My NHS number is {num}.", [num]
    if kind == "postcode":
        code = POSTCODES[n % len(POSTCODES)]
        return kind, f" I live at {code}.", [code]
    who = ("my mum", "my husband", "my neighbour", "our son")[n % 4]
    return kind, f" {who.capitalize()} {first} {last} came with me.", [f"{first} {last}", last]


class LocalEngine:
    """llama.cpp in this process on a .gguf (what the local container serves)."""

    def __init__(self, path: Path, threads: int | None) -> None:
        from local_stack.llm_engine import Engine

        self.name = path.name
        self.engine = Engine(path, 2048, threads)

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.engine.chat(body)


class DeployedEngine:
    """The deployed LLM endpoint: the body to S3, invoke_endpoint_async, poll the output."""

    def __init__(self, endpoint: str, bucket: str, timeout_s: float = 1800) -> None:
        from twolane.aws import client

        self.name, self.bucket, self.timeout_s = endpoint, bucket, timeout_s
        self.s3, self.runtime = client("s3"), client("sagemaker-runtime")

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        import uuid

        from twolane.layout import parse_s3_uri

        key = f"batch/input/bench-llm/{uuid.uuid4().hex}.json"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(body).encode())
        resp = self.runtime.invoke_endpoint_async(
            EndpointName=self.name, InputLocation=f"s3://{self.bucket}/{key}",
            ContentType="application/json")
        deadline = time.monotonic() + self.timeout_s
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


def test_items(plant: bool) -> tuple[list[Any], list[set[str]], dict[str, tuple[str, list[str]]]]:
    """(the test split as CommentIn, human labels per item, planted (kind, secrets) by id)."""
    from model_build.data import load_dataset
    from twolane.contract import CommentIn

    test = load_dataset().test
    items, human, secrets = [], [], {}
    for i, (cid, text) in enumerate(zip(test.ids, test.texts, strict=True)):
        if plant and i % PLANT_EVERY == 0:
            kind, extra, s = planted(i // PLANT_EVERY)
            text, secrets[cid] = f"{text}{extra}", (kind, s)
        items.append(CommentIn(comment_id=cid, comment_text=text, question_type=test.question_types[i]))
        human.append({lab for lab, y in zip(test.labels, test.Y[i], strict=True) if y})
    return items, human, secrets


def sized_items(n: int) -> list[Any]:
    """`n` comments: the NHS data (every split) cycled, ids made unique."""
    from model_build.data import load_dataset
    from twolane.contract import CommentIn

    ds = load_dataset()
    rows = [(t, q) for split in (ds.test, ds.train) for t, q in zip(split.texts, split.question_types,
                                                                    strict=True)]
    return [CommentIn(comment_id=f"c{i}", comment_text=rows[i % len(rows)][0],
                      question_type=rows[i % len(rows)][1]) for i in range(n)]


def job(items: list[Any], predictor: Any, engine: Any, encoder: Path | None) -> tuple[list[Any], dict[str, Any]]:
    """One summary job as the API and the LLM lane run it; (themes, timings)."""
    from twolane.summaries.plan import LLM_OFF, assemble, judge_with, plan_summaries

    t0 = time.perf_counter()
    plan, requests = plan_summaries(items, predictor, engine.name if engine else LLM_OFF,
                                    encoder=encoder)
    t_plan = time.perf_counter() - t0
    completions: list[dict[str, Any] | None] = []
    errors: list[str | None] = []
    tokens = Counter[str]()
    for body in requests:
        try:
            out = engine.chat(body)
        except Exception as exc:  # noqa: BLE001 (a failed request is that theme's summary withheld)
            completions.append(None)
            errors.append(type(exc).__name__)
            continue
        completions.append(out)
        errors.append(None)
        tokens.update({k: int(v) for k, v in (out.get("usage") or {}).items() if isinstance(v, int)})
    t_llm = time.perf_counter() - t0 - t_plan
    themes = assemble(plan, completions, errors, judge_with(predictor))
    total = time.perf_counter() - t0
    return themes, {"comments": len(items), "seconds": round(total, 2), "plan_s": round(t_plan, 2),
                    "llm_s": round(t_llm, 2), "requests": len(requests),
                    "prompt_tokens": tokens["prompt_tokens"],
                    "completion_tokens": tokens["completion_tokens"],
                    "load_1min": round(os.getloadavg()[0], 2)}


def quality(themes: list[Any], items: list[Any], human: list[set[str]],
            secrets: dict[str, tuple[str, list[str]]], tone: Any) -> dict[str, Any]:
    from twolane.summaries.checks import NEGATIVE_AT, POSITIVE_AT, REPEAT_RUN
    from twolane.summaries.points import words
    from twolane.summaries.redact import leaks, redact

    pos = {it.comment_id: i for i, it in enumerate(items)}
    quotes = [(t.theme, p.quote.comment_id) for t in themes for p in t.points]
    precise = sum(1 for theme, cid in quotes if theme in human[pos[cid]])
    big = [t for t in themes if t.comments >= MIN_COMMENTS]
    slots = sum(max(1, len(t.points)) for t in big)
    filled = sum(len(t.points) for t in big)
    printed = [t for t in themes if t.summary]
    withheld = Counter((t.withheld or "").split(";")[0].split(" (")[0] for t in themes
                       if t.summary is None and t.withheld)
    loops = contradictions = 0
    for t in printed:
        toks = words(t.summary)
        runs = [tuple(toks[i:i + REPEAT_RUN]) for i in range(len(toks) - REPEAT_RUN + 1)]
        loops += len(runs) != len(set(runs))
        score = tone(t.summary)
        share = (t.negative or 0) / t.comments if t.negative is not None and t.comments else None
        if share is not None and score is not None and (
                (share >= NEGATIVE_AT and score <= 2) or (share <= POSITIVE_AT and score >= 4)):
            contradictions += 1
    report = json.dumps([t.model_dump() for t in themes])
    leaked = sum(1 for _, ss in secrets.values() if any(s in report for s in ss))
    caught: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for cid, (kind, ss) in secrets.items():
        kinds[kind] += 1
        caught[kind] += all(s not in redact(items[pos[cid]].comment_text) for s in ss)
    return {
        "themes": len(themes), "quotes": len(quotes), "quote_precision":
            round(precise / len(quotes), 4) if quotes else None,
        "points_per_theme": round(len(quotes) / len(themes), 2) if themes else 0,
        "themes_with_5_or_more": len(big), "quote_slots_filled": round(filled / slots, 4) if slots else None,
        "summaries_printed": len(printed), "summaries_withheld": sum(withheld.values()),
        "withheld_by_reason": dict(withheld.most_common()), "loops": loops,
        "contradictions": contradictions, "identifiers_planted": len(secrets),
        "identifiers_leaked": leaked, "tags_leaks_left": leaks(report),
        "redact_catches": {k: f"{caught[k]}/{kinds[k]}" for k in KINDS},
    }


def run_model(model: str, predictor: Any, encoder: Path | None, sizes: tuple[int, ...],
              threads: int | None, endpoint: tuple[str, str] | None) -> dict[str, Any]:
    from twolane.summaries.packaged import packaged_model
    from twolane.summaries.plan import judge_with

    engine: Any = None
    if endpoint:
        engine = DeployedEngine(*endpoint)
    elif model != "none":
        path = packaged_model() if model == "packaged" else Path(model)
        if path is None or not path.is_file():
            raise SystemExit(f"no such model: {model}")
        engine = LocalEngine(path, threads)
    items, human, secrets = test_items(plant=True)
    themes, timing = job(items, predictor, engine, encoder)
    q = quality(themes, items, human, secrets, judge_with(predictor))
    example = next((t for t in themes if t.summary and len(t.points) >= 2), None) or next(
        (t for t in themes if len(t.points) >= 2), themes[0] if themes else None)
    speed = [timing]
    for n in sizes:
        speed.append(job(sized_items(n), predictor, engine, encoder)[1])
        print(json.dumps(speed[-1]), flush=True)
    return {"llm": engine.name if engine else "none", **q, "test_split": timing, "speed": speed,
            "example": example.model_dump() if example else None}


def write_md(r: dict[str, Any]) -> None:
    head = ["LLM", "quote precision", "points / theme", "quote slots filled", "printed",
            "withheld (by reason)", "loops", "contradictions", "identifiers leaked",
            "s, test split (1,582)", "s at 1,000 / 5,000 / 50,000"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in r["models"]:
        by = "; ".join(f"{k}: {v}" for k, v in m["withheld_by_reason"].items()) or "-"
        secs = " / ".join(str(s["seconds"]) for s in m["speed"][1:])
        rows.append(f"| {m['llm']} | {m['quote_precision']} | {m['points_per_theme']} | "
                    f"{m['quote_slots_filled']} | {m['summaries_printed']}/{m['themes']} | {by} | "
                    f"{m['loops']} | {m['contradictions']} | {m['identifiers_leaked']}/"
                    f"{m['identifiers_planted']} | {m['test_split']['seconds']} | {secs} |")
    catches = ", ".join(f"{k} {v}" for k, v in r["models"][0]["redact_catches"].items())
    ex = next((m["example"] for m in reversed(r["models"]) if m.get("example")), None)
    block = f"""<!-- llm:start -->
## LLM lane: theme summaries a report can print (bench/llm.py)

The test split ({r["test_comments"]} comments, human labels) with {r["models"][0]["identifiers_planted"]}
identifiers planted in real comments; instant model {r["instant_model"]}; points by
{r["points_by"]}; measured {r["measured_at"]} on {r["cpus"]} CPUs shared with other engineers
(1-min load {r["load_before"]} before, {r["load_after"]} after: times are upper bounds). LLM requests one at a
time, llama.cpp in process. 5,000 and 50,000: the NHS data cycled (ids unique).

{chr(10).join(rows)}

Quote precision: the share of points whose quoted comment carries the theme by its human labels.
What `redact` catches of the planted identifiers (the report must print none): {catches}.

One theme exactly as the report prints it:

```json
{json.dumps(ex, indent=2, ensure_ascii=False) if ex else "{}"}
```

Raw figures: `bench/results/llm.json`.
<!-- llm:end -->"""
    write_section("<!-- llm:start -->", "<!-- llm:end -->", block)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="bundles", help="instant bundle or bundles root")
    ap.add_argument("--model", action="append", help="none, packaged, or a .gguf path (repeat)")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp CPU threads")
    ap.add_argument("--endpoint", help="a deployed LLM endpoint instead of the local engine")
    ap.add_argument("--bucket", help="the stack's bucket (with --endpoint)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--merge", type=Path, action="append", default=[],
                    help="add the models of an earlier run's JSON (e.g. one per model, run apart)")
    ap.add_argument("--save", type=Path, help="write this run's JSON here too")
    a = ap.parse_args(argv)
    from twolane.bundle import resolve_bundle
    from twolane.predictors.instant import InstantPredictor
    from twolane.settings import get_settings
    from twolane.wiring import sentence_encoder

    predictor = InstantPredictor.from_bundle(resolve_bundle(a.bundle, "instant"))
    encoder = sentence_encoder(get_settings())
    sizes = tuple(int(s) for s in a.sizes.split(",") if s)
    load_before = round(os.getloadavg()[0], 2)
    models = []
    for m in a.model if a.model is not None else ["none", "packaged"]:
        models.append(run_model(m, predictor, encoder, sizes, a.threads,
                                (a.endpoint, a.bucket) if a.endpoint else None))
        print(json.dumps({k: v for k, v in models[-1].items() if k != "example"}, indent=2), flush=True)
    r = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
         "load_before": load_before, "load_after": round(os.getloadavg()[0], 2),
         "instant_model": predictor.version, "points_by": encoder.name if encoder else "words",
         "test_comments": models[0]["test_split"]["comments"], "models": models}
    for f in a.merge:
        r["models"] += json.loads(f.read_text(encoding="utf-8"))["models"]
    if a.save:
        a.save.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    if not a.no_write:
        RESULTS.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
        write_md(r)


if __name__ == "__main__":
    main()
