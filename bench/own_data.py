"""Quality on a team's own data (issue 21): the instant lane against a plain baseline on a
public non-NHS data set, trained on the same rows, judged on the same held-out rows.

Data: data/drug-reviews/drug_reviews.csv (UCI Drug Review data, CC BY 4.0; README there), the
20 conditions with at least 10 reviews (600 reviews): single-label `condition` from the review
text, three-class words sentiment `rating` (negative, neutral, positive). Read by the data spec
exactly as `twolane build instant --data ... --text-column review --labels-column condition
--sentiment-column rating --sentiment-order negative,neutral,positive` reads it (stratified,
seeded split, model_build.dataspec).

- instant: `twolane build instant` (default Config), served by the InstantPredictor (the
  rules it serves with: one label per comment, the most likely).
- baseline: scikit-learn TfidfVectorizer (1-2-grams, min_df 2) + LogisticRegression (lbfgs
  multinomial), fitted on the same training rows, argmax label; the same for sentiment. Twice:
  sklearn's defaults (C=1), and C chosen by 5-fold CV macro-F1 on the training rows with
  balanced class weights (a baseline given the same chance to tune as the instant lane).

One scoring rule: model_build.metrics (macro-F1 over every label of the taxonomy, micro-F1,
accuracy on the rows with a label; sentiment accuracy and macro-F1). Writes
bench/results/own_data.json and the own_data section of bench/RESULTS.md.

    python -m bench.own_data            # ~2-4 min on 2 cores
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "drug-reviews" / "drug_reviews.csv"
RESULTS = ROOT / "bench" / "results" / "own_data.json"
MD = ROOT / "bench" / "RESULTS.md"
MIN_PER_CONDITION = 10
ORDER = ("negative", "neutral", "positive")


def baseline(train_texts: list[str], y: np.ndarray, test_texts: list[str], tuned: bool = False) -> np.ndarray:
    """TF-IDF + logistic regression: the predicted class index per test row. tuned: C from
    {0.1, 1, 10, 100} by 5-fold cross-validated macro-F1 on the training rows only, classes
    balanced (sklearn's defaults otherwise: C=1, unweighted)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2)
    X = vec.fit_transform(train_texts)
    if tuned:
        grid = GridSearchCV(LogisticRegression(max_iter=3000, class_weight="balanced"),
                            {"C": [0.1, 1.0, 10.0, 100.0]}, scoring="f1_macro",
                            cv=StratifiedKFold(5, shuffle=True, random_state=42))
        with warnings.catch_warnings():  # classes with fewer rows than folds
            warnings.simplefilter("ignore", UserWarning)
            clf = grid.fit(X, y).best_estimator_
    else:
        clf = LogisticRegression(C=1.0, max_iter=2000).fit(X, y)
    return clf.predict(vec.transform(test_texts))


def onehot(idx: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((len(idx), n), np.uint8)
    ok = idx >= 0
    out[np.flatnonzero(ok), idx[ok]] = 1
    return out


def scores(Y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from model_build import metrics

    s = metrics.multilabel_scores(Y, pred)
    return {"macro_f1": round(s["macro_f1"], 4), "micro_f1": round(s["micro_f1"], 4),
            "accuracy": round(metrics.single_label_accuracy(Y, pred), 4), "rows": s["rows"]}


def reviews(tmp: Path) -> Any:
    """The drug reviews of the conditions with at least MIN_PER_CONDITION of them, read by the
    data spec a team would give (text `review`, labels `condition`, sentiment `rating` in ORDER)
    from a copy written under `tmp`: a model_build.data.Dataset."""
    from model_build.dataspec import SpecArgs, load

    df = pd.read_csv(DATA, dtype=str, keep_default_na=False)
    counts = df["condition"].value_counts()
    df = df[df["condition"].isin(counts[counts >= MIN_PER_CONDITION].index)]
    path = tmp / "drug_reviews_top.csv"
    df.to_csv(path, index=False)
    return load(path, SpecArgs(text_column="review", labels_column="condition",
                               sentiment_column="rating", sentiment_order=ORDER))


def main() -> dict[str, Any]:
    from model_build import metrics
    from model_build.instant import Config, build
    from twolane.predictors.instant import InstantPredictor

    with tempfile.TemporaryDirectory() as tmp:
        ds = reviews(Path(tmp))
        t0 = time.perf_counter()
        bundle = build(ds, Path(tmp) / "bundles", Config())
        build_s = time.perf_counter() - t0
        pred = InstantPredictor.from_bundle(bundle)
        train, test = ds.train, ds.test
        got = pred.predict_texts(test.texts)
    L = len(ds.labels)
    col = {lab: j for j, lab in enumerate(ds.labels)}
    inst = np.zeros((len(got), L), np.uint8)
    for i, p in enumerate(got):
        for lab in p.labels:
            inst[i, col[lab]] = 1
    has = train.Y.sum(1) > 0
    lab_texts = [t for t, h in zip(train.texts, has, strict=True) if h]
    base = {tuned: onehot(baseline(lab_texts, train.Y[has].argmax(1), test.texts, tuned), L)
            for tuned in (False, True)}
    names = list(ORDER)
    s_inst = np.array([names.index(p.sentiment.label) if p.sentiment else -1 for p in got])
    ok = train.sentiment >= 0
    s_texts = [t for t, k in zip(train.texts, ok, strict=True) if k]
    s_base = {tuned: baseline(s_texts, train.sentiment[ok], test.texts, tuned) for tuned in (False, True)}

    def sent(pred_: np.ndarray) -> dict[str, float]:
        s = metrics.sentiment_scores(test.sentiment, pred_)
        return {"accuracy": round(s["accuracy"], 4), "macro_f1": round(s["macro_f1"], 4), "rows": s["rows"]}

    out = {
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": {"file": "data/drug-reviews/drug_reviews.csv", "rows": len(ds.ids),
                 "labels": L, "train_rows": len(train.ids), "test_rows": len(test.ids),
                 "filter": f"conditions with >= {MIN_PER_CONDITION} reviews",
                 "sentiment_classes": names, "split": "stratified by label, seed 42, 20 % test"},
        "labels": {"instant": scores(test.Y, inst), "baseline_tfidf_lr": scores(test.Y, base[False]),
                   "baseline_tfidf_lr_tuned": scores(test.Y, base[True])},
        "sentiment": {"instant": sent(s_inst), "baseline_tfidf_lr": sent(s_base[False]),
                      "baseline_tfidf_lr_tuned": sent(s_base[True])},
        "instant_build_seconds": round(build_s, 1),
        "cpus": os.cpu_count(),
    }
    RESULTS.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    write_md(out)
    return out


def verdict(r: dict[str, Any]) -> str:
    """Which baselines the instant lane beats, in words (labels on macro-F1, sentiment on accuracy)."""
    lab, sen = r["labels"], r["sentiment"]
    out = []
    for what, table, key in (("labels (macro-F1)", lab, "macro_f1"), ("sentiment (accuracy)", sen, "accuracy")):
        tuned = table["baseline_tfidf_lr_tuned"][key]
        word = "beats" if table["instant"][key] > tuned else "does not beat"
        out.append(f"{what}: the instant lane {word} the tuned baseline "
                   f"({table['instant'][key]:.3f} vs {tuned:.3f})")
    return "; ".join(out) + "."


def write_md(r: dict[str, Any]) -> None:
    lab, sen, d = r["labels"], r["sentiment"], r["data"]
    rows = "\n".join(
        f"| {name} | {lab[k]['macro_f1']:.3f} | {lab[k]['micro_f1']:.3f} | {lab[k]['accuracy']:.3f} | "
        f"{sen[k]['accuracy']:.3f} | {sen[k]['macro_f1']:.3f} |"
        for name, k in (("instant lane (twolane build instant)", "instant"),
                        ("TF-IDF + logistic regression (sklearn defaults, C=1)", "baseline_tfidf_lr"),
                        ("TF-IDF + logistic regression (C by 5-fold CV on train, balanced)",
                         "baseline_tfidf_lr_tuned")))
    section = f"""<!-- own_data:start -->
## A team's own data: drug reviews (bench/own_data.py)

UCI Drug Review data (CC BY 4.0, data/drug-reviews/README.md), {d['filter']}: {d['rows']} reviews,
{d['labels']} single-label conditions, three-class words sentiment; {d['split']} ({d['train_rows']}
train / {d['test_rows']} test rows). Both models trained on the same training rows, scored on
the same test rows by model_build.metrics. Instant build {r['instant_build_seconds']} s on
{r['cpus']} CPUs (shared); measured {r['measured']}.

| model | label macro-F1 | micro-F1 | accuracy | sentiment accuracy | sentiment macro-F1 |
|---|---|---|---|---|---|
{rows}

{verdict(r)} With {d['test_rows']} test rows one row is {100 / d['test_rows']:.1f} points of accuracy:
differences of a few points are within noise. The batch lane on the same data and split: the
next section (bench/own_data_batch.py).

Raw figures: `bench/results/own_data.json`.
<!-- own_data:end -->"""
    text = MD.read_text(encoding="utf-8")
    if "<!-- own_data:start -->" in text:
        text = re.sub(r"<!-- own_data:start -->.*?<!-- own_data:end -->", section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    MD.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--md-only"]:  # rewrite the RESULTS.md section from the saved figures
        write_md(json.loads(RESULTS.read_text(encoding="utf-8")))
    else:
        print(json.dumps(main(), indent=2))
