"""The decide step (twolane.predictors.decide) on whole arrays against one row at a time.

Until the typed manifest (issue 19) the batch predictor decided each comment on its own; both
predictors now call `LabelDecider.decide` once per request and `predictions` once. This bench
times both ways on the same inputs: 10,000 comments, the NHS taxonomy (32 labels, "Labelling not
possible" among them), probabilities drawn from a Beta(0.4, 2) (mostly low, as a classifier's
are), sentiment probabilities from a Dirichlet, 2 % of rows unlabellable, thresholds .3-.6, the
top-label fallback and the second-label rule on (the shipped rule's shape). "Row at a time"
calls the same `decide` on one-row slices, which is what the old per-row loop did; both ways must
give the same label matrix (checked). Each figure is the best of REPEATS runs.

Run: `python -m bench.decide`. Results: bench/results/decide.json and the "Decide step" section
of bench/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from bench.results_md import write_section
from bench.timing import best_of
from model_build.data import DEFAULT_DATA, load_dataset
from twolane.bundle import DecideRule, Taxonomy
from twolane.predictors.decide import LabelDecider, predictions
from twolane.rules import LABELLING_NOT_POSSIBLE, SENTIMENT_NAMES

ROWS = 10_000
REPEATS = 5
OUT = Path(__file__).resolve().parent / "results" / "decide.json"
START, END = "<!-- decide:start -->", "<!-- decide:end -->"




def main() -> dict[str, object]:
    rng = np.random.default_rng(2026)
    labels = list(load_dataset(DEFAULT_DATA).labels)  # the NHS taxonomy, as the build reads it
    L = len(labels)
    taxonomy = Taxonomy(labels=labels, unlabellable=LABELLING_NOT_POSSIBLE,
                        sentiment_classes=list(SENTIMENT_NAMES.values()))
    rule = DecideRule(thresholds=rng.uniform(0.3, 0.6, L).round(3).tolist(), min_one_label=True,
                      label_ratio=0.5, never_fallback=labels[-2:])
    decider = LabelDecider(taxonomy, rule)
    P = rng.beta(0.4, 2.0, (ROWS, L)).astype(np.float32)
    S = rng.dirichlet(np.ones(len(SENTIMENT_NAMES)), ROWS).astype(np.float32)
    bad = rng.random(ROWS) < 0.02
    ids = [str(i) for i in range(ROWS)]

    def whole() -> np.ndarray:
        D = decider.decide(P, S, bad)
        predictions(ids, labels, D, S, ~bad)
        return D

    def per_row() -> np.ndarray:
        D = np.vstack([decider.decide(P[i:i + 1], S[i:i + 1], bad[i:i + 1]) for i in range(ROWS)])
        predictions(ids, labels, D, S, ~bad)
        return D

    assert np.array_equal(whole(), per_row()), "both ways must decide the same labels"
    t_whole, t_row = best_of(whole, REPEATS), best_of(per_row, REPEATS)
    decide_only = best_of(lambda: decider.decide(P, S, bad), REPEATS)
    result: dict[str, object] = {
        "rows": ROWS, "labels": L, "repeats": REPEATS,
        "whole_array_s": round(t_whole, 4), "row_at_a_time_s": round(t_row, 4),
        "decide_only_whole_array_s": round(decide_only, 4),
        "speed_up": round(t_row / t_whole, 1),
        "cpus": os.cpu_count(), "load_1min": round(os.getloadavg()[0], 2),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    block = f"""{START}
## Decide step (bench/decide.py)

{ROWS:,} comments x {L} labels (NHS taxonomy), the shipped rule's shape (thresholds, top-label
fallback with its bars, second-label ratio, unlabellable rows), synthetic probabilities; both
ways give the same labels (checked). Best of {REPEATS}; measured {result['measured_at']} on
{result['cpus']} CPUs (1-min load {result['load_1min']}).

| decide + build the predictions | seconds per {ROWS:,} comments |
| --- | --- |
| whole arrays, once per request (both predictors now) | {t_whole:.4f} (decide alone {decide_only:.4f}) |
| one row at a time (the batch predictor before issue 19) | {t_row:.4f} |

The whole-array step is {result['speed_up']}x faster.
{END}"""
    write_section(START, END, block)
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
