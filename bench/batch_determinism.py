"""Does a comment's batch-lane answer depend on the comments sent with it? Mini-batches against
one comment a run, for the int8 model the CPU serves.

The int8 model is dynamically quantised: onnxruntime picks each run's activation scale from the
whole input tensor, so in a mini-batch a comment's probabilities move with its batch mates. This
measures, on the NHS test split (model_build.data, seeded 20 %):

- how far: the transformer's label probabilities of the same comments run in mini-batches of 32
  (what the predictor did before) against one comment a run (what it does now:
  twolane.predictors.batch.batch_size_for), and how many comments change served labels or
  sentiment (the whole batch lane, ensemble included);
- what it costs: comments per second of the transformer both ways, in the same run (best of 3).

Run: `python -m bench.batch_determinism [--bundle DIR]` (about 1-2 min on 2 cores). Results:
bench/results/batch_determinism.json and its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.results_md import write_section
from bench.timing import best_of
from model_build.data import DEFAULT_DATA, load_dataset
from twolane.bundle import resolve_bundle
from twolane.predictors.batch import DEFAULT_BATCH_SIZE, BatchPredictor
from twolane.settings import get_settings

RESULTS = Path(__file__).resolve().parent / "results" / "batch_determinism.json"
START, END = "<!-- batch_determinism:start -->", "<!-- batch_determinism:end -->"


def served(predictor: BatchPredictor, texts: list[str], qts: list[str]) -> list[tuple[tuple[str, ...], int | None]]:
    """(labels, sentiment score) per comment, as the batch lane serves them."""
    return [(tuple(sorted(p.labels)), p.sentiment.score if p.sentiment else None)
            for p in predictor.predict_texts(texts, qts)]


def run(bundle_arg: str | None, rows: int) -> dict[str, Any]:
    bundle = resolve_bundle(bundle_arg or get_settings().bundles, "batch")
    test = load_dataset(DEFAULT_DATA).test
    texts, qts = test.texts[:rows], test.question_types[:rows]
    one = BatchPredictor.from_bundle(bundle, providers=["CPUExecutionProvider"])
    mini = BatchPredictor.from_bundle(bundle, providers=["CPUExecutionProvider"], batch_size=DEFAULT_BATCH_SIZE)
    P1, _ = one.encoder.proba(texts)
    P32, _ = mini.encoder.proba(texts)
    diff = np.abs(P1 - P32).max(axis=1)
    a, b = served(one, texts, qts), served(mini, texts, qts)
    changed = sum(x != y for x, y in zip(a, b, strict=True))
    # the same comments in another job: every other comment only (other batch mates)
    half = served(mini, texts[::2], qts[::2])
    moved = sum(x != y for x, y in zip(b[::2], half, strict=True))
    speed_one = len(texts) / best_of(lambda: one.encoder.proba(texts))
    speed_mini = len(texts) / best_of(lambda: mini.encoder.proba(texts))
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "bundle": one.version,
        "cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2), "comments": len(texts),
        "max_probability_shift": round(float(diff.max()), 4),
        "share_shifted_over_0_01": round(float((diff > 0.01).mean()), 4),
        "served_answers_changed_by_batching": changed,
        "mini_batch_answers_moved_in_another_job": moved, "compared_in_other_job": len(half),
        "comments_per_s_one_a_run": round(speed_one, 1),
        "comments_per_s_mini_batches": round(speed_mini, 1),
    }


def markdown(r: dict[str, Any]) -> str:
    return "\n".join([
        START, "## Batch lane: one comment a run for the int8 model (bench/batch_determinism.py)", "",
        f"Bundle {r['bundle']}, the first {r['comments']} comments of the NHS test split, measured "
        f"{r['measured_at']} on {r['cpus']} shared CPUs (1-min load {r['loadavg_1m']}).", "",
        "| | value |", "| --- | --- |",
        f"| largest label-probability shift, mini-batches of 32 vs one comment a run | {r['max_probability_shift']} |",
        f"| comments whose probabilities shift by more than 0.01 | {r['share_shifted_over_0_01']:.0%} |",
        f"| comments whose served labels or sentiment differ | {r['served_answers_changed_by_batching']} of "
        f"{r['comments']} |",
        f"| with mini-batches, the same comments in another job (every other comment): answers moved "
        f"| {r['mini_batch_answers_moved_in_another_job']} of {r['compared_in_other_job']} |",
        f"| transformer throughput, one comment a run (served now) | {r['comments_per_s_one_a_run']} comments/s |",
        f"| transformer throughput, mini-batches of 32 (before) | {r['comments_per_s_mini_batches']} comments/s |",
        "",
        "One comment a run, the answer is a function of the comment alone (tests/functional/test_batch_predictor.py "
        "checks it bit for bit); that is what lets a cascade job give exactly the batch lane's answer "
        "and a re-run file give the same counts. The fp16 model on CUDA is not quantised and keeps "
        "mini-batches.", "", "Figures: `bench/results/batch_determinism.json`.", END])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None, help="batch bundle folder or bundles root")
    ap.add_argument("--rows", type=int, default=800, help="test-split comments to use")
    a = ap.parse_args()
    result = run(a.bundle, a.rows)
    RESULTS.write_text(json.dumps(result, indent=1), encoding="utf-8")
    write_section(START, END, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
