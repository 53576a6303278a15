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

Also (issue 31): the instant build's sentiment-head choice (model_build.choose) on this split,
and a second public set of another shape (`second_set`: NHS patient feedback, multi-label, five
ordered classes, a seeded 3,000 rows) against plain baselines.

    python -m bench.own_data            # ~5-10 min on 2 shared cores
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
SECOND_ROWS = 3000  # rows of the second set (speed on 2 shared cores)


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


def choice_of(bundle: Path) -> dict[str, Any] | None:
    """The build's sentiment-head choice (model_build.choose), as its manifest records it."""
    from twolane.bundle import read_manifest

    test = read_manifest(bundle).metrics.get("test", {})
    choice = test.get("sentiment_choice") if isinstance(test, dict) else None
    return choice if isinstance(choice, dict) else None


def multilabel_baseline(train_texts: list[str], Y: np.ndarray, test_texts: list[str]) -> np.ndarray:
    """TF-IDF (1-2-grams, min_df 2) + one logistic regression per label (C=10, balanced),
    label on at probability >= 0.5, and at least the most probable label (as the instant
    lane's fallback): n x L."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    X, Xt = vec.fit_transform(train_texts), vec.transform(test_texts)
    P = np.zeros((len(test_texts), Y.shape[1]))
    for j in range(Y.shape[1]):
        if 0 < Y[:, j].sum() < len(Y):
            P[:, j] = LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000).fit(
                X, Y[:, j]).predict_proba(Xt)[:, 1]
    out = (P >= 0.5).astype(np.uint8)
    out[np.arange(len(P)), P.argmax(1)] = 1
    return out


def second_set(tmp: Path, rows: int = SECOND_ROWS) -> dict[str, Any]:
    """The instant lane against plain baselines on a second public set of another shape: the
    NHS patient feedback (pxtextmining's public data, data/nhs-patient-feedback/): multi-label
    (32 labels), five ordered sentiment classes; a seeded random `rows` of it (speed), its own
    split (model_build.data)."""
    from model_build import metrics
    from model_build.data import DEFAULT_DATA, load_dataset
    from model_build.instant import Config, build
    from twolane.predictors.instant import InstantPredictor

    full = load_dataset(DEFAULT_DATA)
    keep = np.zeros(len(full.ids), bool)
    keep[np.random.default_rng(2026).choice(len(full.ids), min(rows, len(full.ids)), replace=False)] = True
    ds = full.subset(keep)
    t0 = time.perf_counter()
    bundle = build(ds, tmp / "nhs-bundles", Config())
    build_s = time.perf_counter() - t0
    train, test = ds.train, ds.test
    got = InstantPredictor.from_bundle(bundle).predict_texts(test.texts, test.question_types)
    from bench.batch import label_matrix

    inst = label_matrix(got, ds.labels)
    has = train.Y.sum(1) > 0
    lab_texts = [t for t, h in zip(train.texts, has, strict=True) if h]
    base = multilabel_baseline(lab_texts, train.Y[has], test.texts)
    ok = train.sentiment >= 0
    s_texts = [t for t, k in zip(train.texts, ok, strict=True) if k]
    s_base = {tuned: baseline(s_texts, train.sentiment[ok], test.texts, tuned) for tuned in (False, True)}
    from model_build.data import SENTIMENT_CLASSES

    names = list(SENTIMENT_CLASSES)
    s_inst = np.array([names.index(str(p.sentiment.score)) if p.sentiment else -1 for p in got])
    from twolane.rules import is_unlabellable

    # scored on labellable text (junk: no sentiment by rule in the lane), as bench/cascade.py
    y_sent = np.where([is_unlabellable(t) for t in test.texts], -1, test.sentiment)

    def sent(pred_: np.ndarray) -> dict[str, float]:
        s = metrics.sentiment_scores(y_sent, pred_)
        return {"accuracy": round(s["accuracy"], 4), "macro_f1": round(s["macro_f1"], 4), "rows": s["rows"]}

    def lab(pred_: np.ndarray) -> dict[str, float]:
        m = metrics.multilabel_scores(test.Y, pred_)
        return {"macro_f1": round(m["macro_f1"], 4), "micro_f1": round(m["micro_f1"], 4),
                "exact_accuracy": round(m["exact_accuracy"], 4), "rows": m["rows"]}

    return {
        "data": {"file": "data/nhs-patient-feedback/v6framework_230831.csv", "rows": len(ds.ids),
                 "labels": len(ds.labels), "multilabel": True, "sentiment_classes": names,
                 "train_rows": len(train.ids), "test_rows": len(test.ids),
                 "filter": f"a seeded random {len(ds.ids)} rows (seed 2026)"},
        "labels": {"instant": lab(inst), "baseline_tfidf_lr_per_label": lab(base)},
        "sentiment": {"instant": sent(s_inst), "baseline_tfidf_lr": sent(s_base[False]),
                      "baseline_tfidf_lr_tuned": sent(s_base[True])},
        "sentiment_choice": choice_of(bundle), "instant_build_seconds": round(build_s, 1),
    }


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
        choice = choice_of(bundle)
        second = second_set(Path(tmp))
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
        "sentiment_choice": choice,
        "second_set": second,
        "cpus": os.cpu_count(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
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


def _choice_md(c: dict[str, Any] | None) -> str:
    if not c:
        return ""
    other = "plain" if c["chosen"] == "tuned" else "tuned"
    return (f"\nThe instant build's sentiment head (model_build.choose, issue 31): **{c['chosen']}**, by "
            f"{c['folds']}-fold cross-validated accuracy on {c['rows']} training rows "
            f"({c['cv_accuracy'][c['chosen']]:.3f} vs {other} {c['cv_accuracy'][other]:.3f}, "
            f"{c['margin'] * 100:+.1f} pt); on the test split {c['test_accuracy'][c['chosen']]:.3f} vs "
            f"{c['test_accuracy'][other]:.3f}. (tuned: lexicon, polarity scaling, char view; plain: "
            "logistic regression, C=10, balanced, on the same TF-IDF rows.)\n")


def _second_md(s: dict[str, Any] | None) -> str:
    if not s:
        return ""
    d, lab, sen = s["data"], s["labels"], s["sentiment"]
    c = s.get("sentiment_choice")
    choice = ""
    if c:
        other = "plain" if c["chosen"] == "tuned" else "tuned"
        choice = (f" Sentiment head chosen: **{c['chosen']}** (CV {c['cv_accuracy'][c['chosen']]:.3f} vs "
                  f"{other} {c['cv_accuracy'][other]:.3f}; test {c['test_accuracy'][c['chosen']]:.3f} vs "
                  f"{c['test_accuracy'][other]:.3f}).")
    def cells(lk: str | None, sk: str) -> str:
        ls = [f"{lab[lk][k]:.3f}" for k in ("macro_f1", "micro_f1", "exact_accuracy")] if lk else ["", "", ""]
        return " | ".join([*ls, f"{sen[sk]['accuracy']:.3f}", f"{sen[sk]['macro_f1']:.3f}"])

    rows = "\n".join(f"| {name} | {cells(lk, sk)} |" for name, lk, sk in (
        ("instant lane", "instant", "instant"),
        ("TF-IDF + LR per label (C=10, balanced); sentiment: sklearn defaults, C=1",
         "baseline_tfidf_lr_per_label", "baseline_tfidf_lr"),
        ("TF-IDF + LR, sentiment C by 5-fold CV, balanced", None, "baseline_tfidf_lr_tuned")))
    return f"""
### A second public set of another shape: NHS patient feedback, multi-label

{d['file']} (pxtextmining's public data), {d['filter']}: {d['labels']} labels, multi-label, five
ordered sentiment classes; {d['train_rows']} train / {d['test_rows']} test rows; instant build
{s['instant_build_seconds']} s.{choice}

| model | label macro-F1 | micro-F1 | exact match | sentiment accuracy | sentiment macro-F1 |
|---|---|---|---|---|---|
{rows}

Sentiment is scored on the test rows with a true sentiment and labellable text (junk text,
"n/a" or blank, gets no sentiment by rule), as bench/cascade.py scores it.
"""


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
{_choice_md(r.get('sentiment_choice'))}{_second_md(r.get('second_set'))}

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
