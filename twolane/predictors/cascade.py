"""The cascade between the lanes: which comments the instant lane is unsure of.

A `"lane": "auto"` job is labelled by the instant lane first; the comments it is unsure of go to
the batch lane. "Unsure" is the batch manifest's `Cascade` rule (learned on the validation fold
by model_build/cascade.py), read from the instant lane's own arrays (`predict_arrays`):

- theme margin, multi-label taxonomy (the NHS one): min over labels of |logit p - logit t| (p
  the label probability, t the label's threshold in the instant lane's decide rule; the
  unlabellable label left out), in log-odds;
- theme margin, single-label taxonomy (every comment gets its most probable label, thresholds
  play no part): top minus second label probability (0..1; the unlabellable label left out);
- sentiment margin: top minus second sentiment probability (0..1), on any scale.

A comment is escalated when either margin is under its cut-off. Rows with no sentiment (NaN:
unlabellable or unknown text) are never escalated: both lanes answer them by rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from twolane.bundle import Cascade
from twolane.contract import CommentIn, JobTarget, Prediction, restrict
from twolane.predictors.decide import predictions
from twolane.predictors.instant import InstantPredictor
from twolane.rules import sentiment_names

EPS = 1e-6
NEVER = np.inf  # the margin of a row that is never escalated


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, np.float64), EPS, 1.0 - EPS)
    return np.log(q / (1.0 - q))


def _top_two_gap(X: np.ndarray) -> np.ndarray:
    """Top minus second value of each row (n x k, k >= 2; NaN read as 0)."""
    top2 = np.sort(np.nan_to_num(X, nan=0.0), axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def margins(P: np.ndarray, S: np.ndarray, thresholds: np.ndarray, lnp: int | None,
            multilabel: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(theme margin, sentiment margin), float64 n each, from the instant lane's label
    probabilities P (n x L), sentiment probabilities S (n x k, NaN rows: no sentiment) and its
    thresholds (L); `multilabel` False: the single-label margin (module docstring). Rows with
    NaN sentiment get `NEVER` in both."""
    P = np.asarray(P, np.float64)
    n = len(P)
    cols = [j for j in range(P.shape[1]) if j != lnp] if P.ndim == 2 else []
    if n == 0 or not cols:
        return np.full(n, NEVER), np.full(n, NEVER)
    if multilabel or len(cols) < 2:
        d = np.abs(_logit(P[:, cols]) - _logit(np.asarray(thresholds, np.float64)[cols])[None, :])
        theme = d.min(axis=1)
    else:
        theme = _top_two_gap(P[:, cols])
    S = np.asarray(S, np.float64)
    answered = ~np.isnan(S).any(axis=1)
    sentiment = _top_two_gap(S)
    theme = np.where(answered, theme, NEVER)
    sentiment = np.where(answered, sentiment, NEVER)
    return theme, sentiment


def escalate(rule: Cascade, P: np.ndarray, S: np.ndarray, thresholds: np.ndarray,
             lnp: int | None, target: str = "ms", multilabel: bool = True) -> np.ndarray:
    """bool n: the comments a `"lane": "auto"` job sends to the batch lane, by `rule`.
    target "m" (themes only) reads the theme margin alone, "s" the sentiment margin alone,
    "ms" both; `multilabel`: the taxonomy's (`margins`)."""
    theme, sentiment = margins(P, S, thresholds, lnp, multilabel)
    out = np.zeros(len(theme), bool)
    if target in ("m", "ms"):
        out |= theme < rule.theme_margin_below
    if target in ("s", "ms"):
        out |= sentiment < rule.sentiment_margin_below
    return out


def split_lanes(predictor: InstantPredictor, rule: Cascade, items: Sequence[CommentIn],
                target: JobTarget = "ms") -> tuple[list[Prediction], np.ndarray]:
    """The instant lane's answer for every comment (exactly what `predictor.predict(items,
    target=target)`, and so /v1/predict, gives) and which of them go to the batch lane (bool n,
    `escalate`), from one pass of the model."""
    manifest = predictor.manifest
    texts = [i.comment_text for i in items]
    P, S = predictor.predict_arrays(texts, predictor.manifest.serving.contexts(items))
    lnp = predictor.decider.lnp
    # unlabellable rows: P's unlabellable column at 1, or (a taxonomy without one) P all 0
    answered = np.asarray(P[:, lnp] < 1.0 if lnp is not None else P.any(1), bool)
    D = predictor.decide(P, S)
    has_sentiment = any(e.task == "sentiment" for e in manifest.models.values())
    tax = manifest.taxonomy
    preds = predictions([i.comment_id for i in items], predictor.labels, D,
                        S if has_sentiment else None, answered,
                        sentiment_names=sentiment_names(tax.sentiment_classes, tax.sentiment_names))
    esc = escalate(rule, P, S, predictor.thresholds, lnp, target, predictor.manifest.taxonomy.multilabel)
    return [restrict(p, target) for p in preds], esc
