"""Drift checks (twolane.drift) on real data: false alarms on same-source files, detection of
another domain, of mixes, and of single services.

Set-up (about 3-5 min on 2 busy cores, most of it the build):
- a bundle is built (the tests' SMALL config) on a random 30 % of the NHS rows (seed 2026);
  its drift reference is its own test split, as every instant build writes it;
- "same source": random samples of 200 and of 1,000 of the other 70 %, rows the bundle never
  saw (TRIALS each): the share flagged is the false-alarm rate (nominal: ALPHA, family-wise);
- the same samples against a reference made from the bundle's TRAINING rows instead (what the
  build does not do, and why);
- "other domain": data/drift/product_reviews.csv (hand-written consumer reviews), 100 of the
  163 at random, and mixes of 100 reviews with 100 / 300 / 900 unseen NHS comments (50 %, 25 %,
  10 %), given the NHS rows' question types;
- "one service": 200 unseen comments all from one service of the file (e.g. only 111 calls, or
  only the mental-health trust's forensic service): a real change of population within the
  source, reported as measured, not as a pass or fail.
Every comment is observed once (twolane.drift.observe); each trial compares an index sample.

Run: `python -m bench.drift`. Results: bench/results/drift.json and the "Drift" section of
bench/RESULTS.md.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.results_md import write_section
from model_build.data import DEFAULT_DATA, load_dataset
from model_build.instant import SMALL, build
from twolane import drift
from twolane.predictors.instant import InstantPredictor
from twolane.rules import is_unlabellable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "drift.json"
REVIEWS = ROOT / "data" / "drift" / "product_reviews.csv"
START, END = "<!-- drift:start -->", "<!-- drift:end -->"
SEED = 2026
BUILD_SHARE = 0.3
TRIALS = 1000  # same-source samples per size
POWER_TRIALS = 200  # other-domain / mix / service samples per case


def _slice(obs: dict[str, np.ndarray | None], idx: np.ndarray) -> dict[str, np.ndarray | None]:
    return {k: (None if v is None else v[idx]) for k, v in obs.items()}


def _concat(a: dict[str, np.ndarray | None], b: dict[str, np.ndarray | None]
            ) -> dict[str, np.ndarray | None]:
    return {k: (None if a[k] is None or b[k] is None else np.concatenate([a[k], b[k]]))
            for k in a}


def _rate(reports: list[drift.DriftReport]) -> dict[str, Any]:
    flagged = [r for r in reports if r.drifted]
    per = {name: round(sum(r.signals[name].drifted for r in reports) / len(reports), 4)
           for name in drift.SIGNALS}
    return {"trials": len(reports), "flagged": len(flagged),
            "rate": round(len(flagged) / len(reports), 4), "per_signal_rate": per}


def main() -> dict[str, Any]:
    t0 = time.perf_counter()
    rng = np.random.default_rng(SEED)
    ds = load_dataset(DEFAULT_DATA)
    in_build = rng.random(len(ds.ids)) < BUILD_SHARE
    sub = ds.subset(in_build)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = build(sub, Path(tmp), replace(SMALL))
        build_s = time.perf_counter() - t0
        predictor = InstantPredictor.from_bundle(bundle)
        check = drift.checker(bundle)
        ref = check.reference
        n_max = ref.ngram_max
        unseen = np.flatnonzero(~in_build)
        texts = [ds.texts[i] for i in unseen]
        qts = [ds.question_types[i] for i in unseen]
        # every signal on every comment (format 1, as bundles before issue 31), and as shipped
        obs_all = drift.observe(predictor, texts, qts, check.known, n_max, labellable_only=False)
        obs = drift.labellable_view(obs_all, texts)
        test = sub.test
        ref_all = drift.reference_from(
            drift.observe(predictor, test.texts, test.question_types, check.known, n_max,
                          labellable_only=False), ref.known_terms, n_max, "build test split, format 1")
        train = sub.train
        train_ref = drift.reference_from(
            drift.observe(predictor, train.texts, train.question_types, check.known, n_max),
            ref.known_terms, n_max, "build training split (bench only)")
        with REVIEWS.open(encoding="utf-8") as f:
            rev_texts = [r["comment_text"] for r in csv.DictReader(f)]
        rev_qts = [qts[i] for i in rng.choice(len(qts), len(rev_texts), replace=False)]
        rev_obs = drift.observe(predictor, rev_texts, rev_qts, check.known, n_max)
        observe_s = time.perf_counter() - t0 - build_s

    same: dict[str, Any] = {}
    blanks: dict[str, Any] = {}
    junk = np.array([is_unlabellable(t) for t in texts])
    text_rows = np.flatnonzero(~junk)
    for n in (200, 1000):
        samples = [rng.choice(len(unseen), n, replace=False) for _ in range(TRIALS)]
        same[str(n)] = {
            "test_split_reference": _rate([drift.compare(ref, _slice(obs, s)) for s in samples]),
            "training_split_reference": _rate([drift.compare(train_ref, _slice(obs, s))
                                               for s in samples]),
        }
        # the same stream exported without its blank and junk rows (as many exports are)
        removed = [rng.choice(text_rows, n, replace=False) for _ in range(TRIALS)]
        blanks[str(n)] = {
            "kept": {"shipped": same[str(n)]["test_split_reference"],
                     "format_1": _rate([drift.compare(ref_all, _slice(obs_all, s)) for s in samples])},
            "removed": {"shipped": _rate([drift.compare(ref, _slice(obs, s)) for s in removed]),
                        "format_1": _rate([drift.compare(ref_all, _slice(obs_all, s)) for s in removed])},
        }

    power: dict[str, Any] = {}
    cases = [("reviews only", 100, 0), ("50 % reviews", 100, 100), ("25 % reviews", 100, 300),
             ("10 % reviews", 100, 900), ("10 % reviews, n=200", 20, 180)]
    for name, k_rev, k_nhs in cases:
        reports = []
        for _ in range(POWER_TRIALS):
            r_idx = rng.choice(len(rev_texts), k_rev, replace=False)
            n_idx = rng.choice(len(unseen), k_nhs, replace=False)
            reports.append(drift.compare(ref, _concat(_slice(rev_obs, r_idx), _slice(obs, n_idx))))
        power[name] = {"comments": k_rev + k_nhs, **_rate(reports)}

    csv_rows = pd.read_csv(DEFAULT_DATA, dtype=str, keep_default_na=False)
    service = dict(zip(csv_rows["Comment ID"], csv_rows["Trust"] + " " + csv_rows["Service type 1"],
                       strict=True))
    services = np.array([service.get(ds.ids[i], "?") for i in unseen])
    by_service: dict[str, Any] = {}
    for name in sorted(set(services)):
        pool = np.flatnonzero(services == name)
        if len(pool) < 400:
            continue
        reports = [drift.compare(ref, _slice(obs, rng.choice(pool, 200, replace=False)))
                   for _ in range(POWER_TRIALS)]
        by_service[name] = {"comments": 200, "pool": int(len(pool)), **_rate(reports)}

    result = {
        "what": "twolane.drift on the NHS data: bundle (SMALL config) built on a random "
                f"{BUILD_SHARE:.0%} of rows (seed {SEED}); samples from the other rows",
        "alpha": drift.ALPHA, "min_psi": drift.MIN_PSI,
        "reference_rows": ref.rows, "training_reference_rows": train_ref.rows,
        "unseen_rows": int(len(unseen)), "build_rows": int(in_build.sum()),
        "same_source": same, "blanks": blanks, "junk_share_unseen": round(float(junk.mean()), 4),
        "other_domain": power, "one_service": by_service,
        "seconds": {"build": round(build_s, 1), "observe": round(observe_s, 1),
                    "total": round(time.perf_counter() - t0, 1)},
        "load_average": round(os.getloadavg()[0], 1),
    }
    RESULTS.write_text(json.dumps(result, indent=2), encoding="utf-8")
    section = markdown(result)
    write_section(START, END, section)
    print(section)
    return result


def _signals(per: dict[str, float], at_least: float = 0.05) -> str:
    top = sorted(((v, k) for k, v in per.items() if v >= at_least), reverse=True)
    return ", ".join(f"{k} {v:.0%}" for v, k in top) or "-"


def markdown(r: dict[str, Any]) -> str:
    lines = [
        START,
        "## Drift (`twolane drift`, bench/drift.py)",
        "",
        f"A bundle (tests' SMALL config) built on a random {r['build_rows']:,} rows of the NHS "
        f"file; its drift reference is its test split ({r['reference_rows']} rows). Samples are "
        f"drawn from the {r['unseen_rows']:,} rows it never saw. A file is flagged when any "
        f"signal's Holm-adjusted chi-square p < {r['alpha']} and its PSI >= {r['min_psi']}.",
        "",
        "| same-source samples | flagged (test-split reference, shipped) | flagged (training-split "
        "reference, not shipped) |",
        "| --- | --- | --- |",
    ]
    for n, v in r["same_source"].items():
        a, b = v["test_split_reference"], v["training_split_reference"]
        lines.append(f"| {int(n):,} comments x {a['trials']} | {a['rate']:.1%} "
                     f"({a['flagged']}) | {b['rate']:.1%} ({b['flagged']}; "
                     f"{_signals(b['per_signal_rate'])}) |")
    if "blanks" in r:
        lines += ["", f"Blank and junk answers ({r['junk_share_unseen']:.1%} of the unseen rows): the same "
                  "samples with those rows kept, and samples of the same stream with them removed (as "
                  "many exports are). Shipped: `junk_share` is a signal of its own (one-sided: only "
                  "more junk alarms), every other signal reads labellable text only. Format 1: every "
                  "signal on every row, as bundles built before issue 31.", "",
                  "| same-source samples | blanks kept, shipped | blanks removed, shipped | blanks kept, "
                  "format 1 | blanks removed, format 1 |", "| --- | --- | --- | --- | --- |"]
        for n, v in r["blanks"].items():
            cells = [v[a][b] for a, b in (("kept", "shipped"), ("removed", "shipped"),
                                          ("kept", "format_1"), ("removed", "format_1"))]
            lines.append(f"| {int(n):,} comments x {cells[0]['trials']} | " + " | ".join(
                f"{c['rate']:.1%} ({c['flagged']}{'; ' + _signals(c['per_signal_rate']) if c['flagged'] else ''})"
                for c in cells) + " |")
    lines += ["", "| other domain (hand-written product reviews) | comments | flagged | signals "
              "that fired (share of trials) |", "| --- | --- | --- | --- |"]
    for name, v in r["other_domain"].items():
        lines.append(f"| {name} | {v['comments']} | {v['rate']:.0%} | "
                     f"{_signals(v['per_signal_rate'])} |")
    lines += ["", "| one service only (unseen rows, same file) | comments | flagged | signals |",
              "| --- | --- | --- | --- |"]
    for name, v in r["one_service"].items():
        lines.append(f"| {name} | {v['comments']} | {v['rate']:.0%} | "
                     f"{_signals(v['per_signal_rate'])} |")
    lines += [
        "",
        "Reading: the shipped reference (the build's test split) keeps false alarms under the "
        "nominal 1 % at both sizes; a reference from the training rows would flag almost every "
        "honest file (the models are surer of, and know every word of, what they were fitted "
        "to). Another domain is caught alone, at half and at a quarter of a file; a tenth is "
        "not. A file from ONE service is flagged even though the bundle saw that service in "
        "its mix: it is a different population (question types, themes, length), which is "
        "what the check reports; a team whose files come one service at a time should build "
        "on such files or read the signals, not just the verdict.",
    ]
    sec = r["seconds"]
    load = f", 1-min load average {r['load_average']}" if "load_average" in r else ""
    lines += ["", f"Build {sec['build']} s (a 2-core machine shared with other jobs{load}), "
              f"observing every comment once {sec['observe']} s, total {sec['total']} s. Raw "
              "figures: `bench/results/drift.json`.", END]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--markdown-only"]:  # rewrite the section from the last results
        write_section(START, END, markdown(json.loads(RESULTS.read_text(encoding="utf-8"))))
    else:
        main()
