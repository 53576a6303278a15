"""The true baseline: pxtextmining's quick-API pipeline as it serves, trained on our training split.

    nice -n 10 .venv/bin/python -m bench.baseline        # prints its test scores (~3-6 min, 1 core)

(Beside twolane's instant models, into bench/RESULTS.md: bench/side_by_side.py.)

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


if __name__ == "__main__":
    print(json.dumps(test_scores(), indent=1))
