"""The instant lane never below a plain baseline: its sentiment head chosen by cross-validation.

A team's scale can be one the instant lane's tuned sentiment head (lexicon features, polarity
scaling, char view; tuned on the NHS data) fits worse than a plain TF-IDF + logistic regression
(issue 31: drug reviews, .712 against .755). So the build fits both on the training rows and
keeps the one with the better out-of-fold accuracy:

- `tuned`: model_build.instant.fit_sentiment (the NHS-tuned head);
- `plain`: logistic regression on the same TF-IDF rows (the bundle's vocabulary, binary tf),
  C = PLAIN_C, classes balanced: the baseline a team would try first.

Both are scored on the same folds (model_build.instant.sentiment_out_of_fold: the label rows,
each fold's model fitted on every other row with a sentiment), so the choice reads training
rows only; the test split only reports how the two compare (`Choice`, in the manifest's
`build.sentiment_choice` and the build report). A tie keeps `tuned`. Both heads are one weight
matrix over the word bag, so either exports into the same ONNX graph.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from model_build.choice import PLAIN, TUNED, Choice
from model_build.errors import BuildError
from model_build.instant_fit import Sentiment, class_weights

PLAIN_C = 10.0  # the baseline's C (issue 31's baseline: C=10, balanced)


def fit_plain(X: Any, y: np.ndarray, classes: int, C: float = PLAIN_C) -> Any:
    """The plain head: logistic regression (lbfgs, multinomial, balanced classes) on the TF-IDF
    rows X (n x V); y in 0..classes-1. A model_build.instant.Sentiment (coef classes x V)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = LogisticRegression(C=C, class_weight="balanced", max_iter=3000).fit(X, y)
    cls = est.classes_
    if len(cls) < 2:
        raise BuildError("sentiment needs at least two classes in the training rows")
    coef, intercept = class_weights(est, classes, X.shape[1])
    return Sentiment(est, coef, intercept, None)


def accuracy(y: np.ndarray, S: np.ndarray) -> float:
    """Share of rows with a sentiment (y >= 0) whose argmax of S (n x k) is y."""
    keep = y >= 0
    return float((S[keep].argmax(1) == y[keep]).mean()) if keep.any() else 0.0


def choose(y: np.ndarray, oof: dict[str, np.ndarray], folds: int) -> Choice:
    """The head with the best out-of-fold accuracy (y: n classes, -1 none; oof: candidate ->
    n x k probabilities on the same rows and folds); ties keep TUNED."""
    cv = {name: round(accuracy(y, S), 4) for name, S in oof.items()}
    chosen = PLAIN if cv.get(PLAIN, -1.0) > cv.get(TUNED, -1.0) else TUNED
    others = [v for k, v in cv.items() if k != chosen]
    margin = round(cv[chosen] - max(others), 4) if others else 0.0
    return Choice(chosen=chosen, cv_accuracy=cv, margin=margin, rows=int((y >= 0).sum()), folds=folds)


__all__ = ["PLAIN", "PLAIN_C", "TUNED", "Choice", "accuracy", "choose", "fit_plain"]
