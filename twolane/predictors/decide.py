"""The one decide step both lanes serve with: probabilities -> labels, sentiment -> predictions.

Vectorised over the whole batch: `LabelDecider.decide` turns an n x L probability matrix into
an n x L label matrix by the rule book (twolane.rules.decide_labels, with the bundle's
`DecideRule`), and `predictions` turns the matrices into one `Prediction` per comment in input
order. The instant predictor and the batch predictor differ only in how they get the
probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from twolane.bundle import DecideRule, Taxonomy
from twolane.contract import Prediction, Sentiment
from twolane.rules import SENTIMENT_NAMES, columns_of, decide_labels, fallback_barred, top_label


class LabelDecider:
    """A bundle's rule for one scorer, ready to decide whole batches.

    labels: the taxonomy in output order; thresholds: float32, one per label; lnp: the column of
    the taxonomy's unlabellable label (None when it has none); never_fallback: label columns the
    top-label fallback never picks; multilabel: False for a single-label taxonomy, where every
    labellable comment gets exactly its most probable label (twolane.rules.top_label) and the
    thresholds are not read.
    """

    def __init__(self, taxonomy: Taxonomy, rule: DecideRule) -> None:
        self.labels = list(taxonomy.labels)
        self.thresholds = np.asarray(rule.thresholds, dtype=np.float32)
        self.lnp = self.labels.index(taxonomy.unlabellable) if taxonomy.unlabellable else None
        self.min_one_label = rule.min_one_label
        self.label_ratio = rule.label_ratio
        self.never_fallback = columns_of(self.labels, rule.never_fallback)
        self.multilabel = taxonomy.multilabel

    def decide(self, P: np.ndarray, S: np.ndarray | None, unlabellable: np.ndarray) -> np.ndarray:
        """Label matrix, bool n x L.

        P: label probabilities n x L; S: sentiment probabilities n x classes (NaN rows: no
        sentiment), which (NHS scale only) bar the fallback from giving a praising theme to a
        negative comment; unlabellable: bool n, rows that get exactly the unlabellable label
        (or no label, when the taxonomy has none).
        """
        if not self.multilabel:
            return top_label(P, self.lnp, unlabellable).astype(bool)
        return decide_labels(P, self.thresholds, self.lnp, unlabellable,
                             min_one_label=self.min_one_label, min_ratio=self.label_ratio,
                             barred=fallback_barred(self.labels, S),
                             never_fallback=self.never_fallback).astype(bool)


def predictions(ids: Sequence[str], labels: Sequence[str], D: np.ndarray, S: np.ndarray | None,
                answered: np.ndarray, P: np.ndarray | None = None, digits: int = 6,
                sentiment_names: Sequence[str] | None = None) -> list[Prediction]:
    """One Prediction per row of D, in row order.

    ids: n comment ids; labels: the L label names; D: bool n x L (from `LabelDecider.decide`);
    S: sentiment probabilities n x k (None: the bundle scores none); answered: bool n, rows that
    get a sentiment (labellable, known text); P: label probabilities n x L to return, rounded to
    `digits`, or None. sentiment_names: the k class names clients see (twolane.rules.
    sentiment_names; None: the NHS scale's); a sentiment's score is its class's 1-based position.
    """
    names = list(sentiment_names) if sentiment_names is not None else list(SENTIMENT_NAMES.values())
    n = len(ids)
    label_lists: list[list[str]] = [[] for _ in range(n)]
    rows, cols = np.nonzero(D)
    for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
        label_lists[r].append(labels[c])
    scores = (np.argmax(np.nan_to_num(S, nan=0.0), axis=1) + 1).tolist() if S is not None else [0] * n
    has = (np.asarray(answered, bool) & (S is not None)).tolist()
    probs = np.round(P.astype(np.float64), digits).tolist() if P is not None else None
    out: list[Prediction] = []
    for i in range(n):
        sentiment = None
        if has[i]:
            sentiment = Sentiment.model_construct(score=scores[i], label=names[scores[i] - 1])
        p = dict(zip(labels, probs[i], strict=True)) if probs is not None else None
        # model_construct: the values are built right here, validation would only cost time
        out.append(Prediction.model_construct(comment_id=str(ids[i]), labels=label_lists[i],
                                              sentiment=sentiment, probabilities=p))
    return out
