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
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PLAIN_C = 10.0  # the baseline's C (issue 31's baseline: C=10, balanced)
TUNED, PLAIN = "tuned", "plain"


@dataclass
class Choice:
    """Which head won and by how much: `cv_accuracy` per candidate (out-of-fold, training
    rows), `margin` = the winner's minus the other's (accuracy, 0..1), `rows` scored;
    `test_accuracy` per candidate on the build's test split (report only, never read by the
    choice)."""

    chosen: str
    cv_accuracy: dict[str, float]
    margin: float
    rows: int
    folds: int
    test_accuracy: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line for the build output: the winner, both CV accuracies, the test split's."""
        other = PLAIN if self.chosen == TUNED else TUNED
        out = (f"sentiment head: {self.chosen} (cross-validated accuracy on {self.rows} training "
               f"rows {self.cv_accuracy[self.chosen]:.3f} vs {other} {self.cv_accuracy[other]:.3f}, "
               f"{self.margin * 100:+.1f} pt)")
        if self.test_accuracy:
            out += (f"; test split {self.test_accuracy[self.chosen]:.3f} vs "
                    f"{self.test_accuracy[other]:.3f}")
        return out


def fit_plain(X: Any, y: np.ndarray, classes: int, C: float = PLAIN_C) -> Any:
    """The plain head: logistic regression (lbfgs, multinomial, balanced classes) on the TF-IDF
    rows X (n x V); y in 0..classes-1. A model_build.instant.Sentiment (coef classes x V)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from model_build.instant import CONST_LOGIT, BuildError, Sentiment

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = LogisticRegression(C=C, class_weight="balanced", max_iter=3000).fit(X, y)
    cls = est.classes_
    if len(cls) < 2:
        raise BuildError("sentiment needs at least two classes in the training rows")
    V = X.shape[1]
    coef = np.zeros((classes, V))
    intercept = np.full(classes, -CONST_LOGIT)
    if len(cls) == 2:  # binary LR: softmax([-z/2, z/2]) == sigmoid(z)
        coef[cls[0]], coef[cls[1]] = -est.coef_[0] / 2, est.coef_[0] / 2
        intercept[cls[0]], intercept[cls[1]] = -est.intercept_[0] / 2, est.intercept_[0] / 2
    else:
        coef[cls] = est.coef_
        intercept[cls] = est.intercept_
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
