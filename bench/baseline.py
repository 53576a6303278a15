"""The true baseline: pxtextmining's quick-API pipeline as it serves, trained on our training split.

    nice -n 10 .venv/bin/python -m bench.baseline        # prints its test scores (~3-6 min, 1 core)

What pxtextmining serves at POST /predict_multilabel (read from its public source: the API's
`predict_multilabel` and `factories/factory_predict_unlabelled_text.py`; none of its code is used):
- text preprocessing (`remove_punc_and_nums`): newlines to spaces, digits removed, "," "." "-" to
  spaces, other ASCII punctuation removed, lower case, whitespace collapsed; a comment that is
  blank, "nan", "null" or "n/a", or empty after that, is not predicted and answers
  "Labelling not possible";
- model: TfidfVectorizer() + one SVC(C=15, class_weight="balanced", probability=True) per label;
- post-processing: a label counts if the SVC predicts it OR its probability is over 0.5; a
  comment with no label gets its highest-probability label; a comment whose labels include
  "Labelling not possible" keeps only that label;
- training rows as pxtextmining's loader keeps them: comments with at least one label whose text
  is not empty after preprocessing.
Scored with model_build.metrics (the one scoring rule every model here uses).
"""

from __future__ import annotations

import json
import re
import string
import time
import warnings
from typing import Any

import numpy as np

from twolane.rules import LABELLING_NOT_POSSIBLE

SVC_C = 15.0


def clean(text: str) -> str:
    """pxtextmining's sklearn preprocessing (see the module docstring)."""
    text = re.sub(r"[\n\r]", " ", text)
    text = "".join(c for c in text if not c.isdigit())
    for p in string.punctuation:
        text = text.replace(p, " " if p in ",.-" else "")
    return " ".join(w.lower() for w in text.split(" ") if w).strip()


def not_predicted(text: str) -> bool:
    """Comments pxtextmining drops before predicting (they answer 'Labelling not possible')."""
    s = str(text).strip()
    return not s or re.fullmatch(r"(?i)nan|null|n/a", s) is not None or clean(s) == ""


def post_process(binary: np.ndarray, proba: np.ndarray, dropped: np.ndarray, lnp: int) -> np.ndarray:
    """pxtextmining's serving post-processing (module docstring) -> uint8 n x L."""
    D = binary.astype(np.uint8).copy()
    D[proba > 0.5] = 1
    empty = D.sum(1) == 0
    D[np.flatnonzero(empty), proba[empty].argmax(1)] = 1
    has_lnp = D[:, lnp] == 1
    D[has_lnp] = 0
    D[has_lnp, lnp] = 1
    D[dropped] = 0
    D[dropped, lnp] = 1
    return D


def fit_predict(train_texts: list[str], Y: np.ndarray, texts: list[str], labels: list[str],
                jobs: int = 1) -> np.ndarray:
    """Train the pipeline on (train_texts, Y) and return its served labels for `texts`."""
    from joblib import Parallel, delayed
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import SVC

    lnp = labels.index(LABELLING_NOT_POSSIBLE)
    keep = np.array([Y[i].sum() > 0 and not not_predicted(t) for i, t in enumerate(train_texts)])
    tr = [clean(t) for t, k in zip(train_texts, keep, strict=True) if k]
    Yk = Y[keep]
    dropped = np.array([not_predicted(t) for t in texts])
    te = [clean(t) if not d else "" for t, d in zip(texts, dropped, strict=True)]
    vec = TfidfVectorizer().fit(tr)
    X, Xte = vec.transform(tr), vec.transform(te)

    def one(j: int) -> tuple[np.ndarray, np.ndarray]:
        y = Yk[:, j]
        if y.min() == y.max():
            return np.full(len(te), y[0], np.uint8), np.full(len(te), float(y[0]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SVC(probability=True) is deprecated in sklearn 1.9
            svc = SVC(C=SVC_C, class_weight="balanced", probability=True, random_state=42).fit(X, y)
            return svc.predict(Xte).astype(np.uint8), svc.predict_proba(Xte)[:, 1]

    cols = Parallel(n_jobs=jobs)(delayed(one)(j) for j in range(Y.shape[1]))
    B = np.column_stack([c[0] for c in cols])
    P = np.column_stack([c[1] for c in cols])
    return post_process(B, P, dropped, lnp)


def test_scores(jobs: int = 1) -> dict[str, Any]:
    """The baseline trained on our training split, scored on our test split."""
    from model_build import metrics
    from model_build.data import DEFAULT_DATA, load_dataset

    ds = load_dataset(DEFAULT_DATA)
    t0 = time.perf_counter()
    D = fit_predict(ds.train.texts, ds.train.Y, ds.test.texts, ds.labels, jobs)
    out = metrics.multilabel_scores(ds.test.Y, D)
    out["per_label_f1"] = {k: v["f1"] for k, v in metrics.per_label(ds.test.Y, D, ds.labels).items()}
    out["train_and_predict_s"] = round(time.perf_counter() - t0, 1)
    return out


START, END = "<!-- quality:start -->", "<!-- quality:end -->"


def side_by_side(bundle: Any) -> dict[str, Any]:
    """The baseline and every twolane instant model on the test split (bench.instant.quality)."""
    from bench.instant import quality
    from twolane.bundle import read_manifest, resolve_bundle

    b = resolve_bundle(bundle, "instant")
    q = quality(b, baseline=True)
    m = read_manifest(b)
    q["bundle"] = b.name
    q["default_model"] = m.default_model
    per = json.loads(json.dumps(m.metrics["per_label"]))  # a record for people: plain JSON
    q["low_support_labels"] = {lab: per[lab]["train_support"] for lab in m.rule_of(m.default_model).never_fallback}
    return q


def markdown(q: dict[str, Any]) -> str:
    rows = [("pxtextmining quick API as served (baseline)", q["pxtextmining_svc"]),
            ("twolane linear (SVM + Platt, ONNX)", q["linear"]),
            ("twolane XGBoost (ONNX)", q["xgboost"]),
            (f"twolane ensemble (ONNX){' - default' if q['default_model'] == 'ensemble' else ''}",
             q["ensemble"])]
    lines = [START, "## Quality side by side: pxtextmining baseline vs twolane (bench/baseline.py)", "",
             f"Test split ({q['linear']['rows']:,} comments with a label of the 1,582), instant bundle "
             f"`{q['bundle']}`. Scoring rule (model_build/metrics.py, the same for every model and "
             "for the build's gates): rows whose truth has at least one label; all 32 labels, "
             "'Labelling not possible' a label like any other; macro-F1 = mean of 32 per-label F1 "
             "(zero_division=0); each model's labels as it serves them.", "",
             "| model | macro-F1 | micro-F1 | exact match | hamming loss |", "|---|---|---|---|---|"]
    for name, m in rows:
        lines.append(f"| {name} | {m['macro_f1']:.4f} | {m['micro_f1']:.4f} | "
                     f"{m['exact_accuracy']:.4f} | {m['hamming_loss']:.5f} |")
    s = q["sentiment"]
    lines += ["", f"Sentiment (default instant model): test accuracy {s['accuracy']:.4f} "
              f"({s['rows']} comments), macro-F1 {s['macro_f1']:.4f}; hand-written polarity set "
              f"{q['polarity_set']['right_side']:.1%} of {q['polarity_set']['cases']} on the right side.",
              "", "Labels under the minimum training support (do not rely on them): " + (", ".join(
                  f"{k} ({v})" for k, v in q["low_support_labels"].items()) or "none") + ".",
              "", "Raw figures: `bench/results/quality.json`.", END]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse
    import json
    from pathlib import Path

    from bench.results_md import write_section

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", type=Path, default=None,
                    help="also score this instant bundle's models side by side and write RESULTS.md")
    args = ap.parse_args()
    if args.bundle is None:
        print(json.dumps(test_scores(), indent=1))
    else:
        root = Path(__file__).resolve().parent
        q = side_by_side(args.bundle)
        (root / "results" / "quality.json").write_text(json.dumps(q, indent=1, default=str))
        md = markdown(q)
        write_section(START, END, md, root / "RESULTS.md")
        print(md)
