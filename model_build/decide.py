"""The build's decide step: every label matrix the build scores, tunes or gates on is decided by
the served one (`twolane.predictors.decide.LabelDecider`, with a `twolane.bundle.DecideRule`), so
a figure in a manifest is what serving would answer with that rule. Nothing here re-states the
rule book; it only builds the decider's inputs from the build's arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model_build.data import Dataset
from twolane.bundle import DecideRule, Taxonomy
from twolane.predictors.decide import LabelDecider
from twolane.rules import is_unlabellable


def taxonomy_of(ds: Dataset) -> Taxonomy:
    """The taxonomy a bundle built from `ds` serves in (labels, unlabellable label, sentiment
    classes, single- or multi-label)."""
    return Taxonomy(labels=list(ds.labels), unlabellable=ds.unlabellable if ds.lnp is not None else None,
                    sentiment_classes=list(ds.sentiment_classes), multilabel=ds.multilabel)


def unnamed_taxonomy(n_labels: int, lnp: int | None = None, multilabel: bool = True) -> Taxonomy:
    """A taxonomy of `n_labels` labels named by their column ("0", "1", ...), the unlabellable
    one at column `lnp` (None: none): for arrays tuned without a Dataset."""
    labels = [str(j) for j in range(n_labels)]
    return Taxonomy(labels=labels, unlabellable=None if lnp is None else labels[lnp], multilabel=multilabel)


def make_rule(thresholds: Sequence[float] | np.ndarray, min_one_label: bool = False, label_ratio: float = 0.0,
         never_fallback: Sequence[str] = ()) -> DecideRule:
    """A DecideRule from the build's arrays: thresholds (L floats), the top-label fallback, the
    second-label ratio (0 = off) and the label names the fallback never picks."""
    return DecideRule(thresholds=[float(t) for t in np.asarray(thresholds).ravel()], min_one_label=min_one_label,
                      label_ratio=label_ratio, never_fallback=list(never_fallback))


def decided(taxonomy: Taxonomy, decide_rule: DecideRule, P: np.ndarray, S: np.ndarray | None = None,
            unlabellable: np.ndarray | None = None) -> np.ndarray:
    """Labels as served: uint8 n x L from probabilities P (n x L) by `LabelDecider`. S: the rows'
    sentiment probabilities (n x classes, NaN rows: none; None: nothing bars the fallback);
    unlabellable: bool n, rows that get exactly the unlabellable label (None: no row)."""
    P = np.asarray(P)
    bad = np.zeros(len(P), bool) if unlabellable is None else np.asarray(unlabellable, bool)
    return LabelDecider(taxonomy, decide_rule).decide(P, S, bad).astype(np.uint8)


def served_labels(ds: Dataset, probs_ok: np.ndarray, thresholds: Sequence[float] | np.ndarray,
                  min_one_label: bool, unknown_ok: np.ndarray | None = None,
                  sentiment_ok: np.ndarray | None = None, never_fallback: Sequence[int] = ()) -> np.ndarray:
    """Label matrix (uint8 n x L, n = len(ds.texts)) as serving returns it: the rule for
    unlabellable text, the model elsewhere (a labellable comment with no label gets the
    unlabellable label, as in the instant lane).
    probs_ok: probabilities of the labellable rows, in order; unknown_ok: for those rows, True
    where the instant model knows no n-gram (served exactly the unlabellable label);
    sentiment_ok: their served sentiment probabilities (n_ok x classes), which keep the top-label
    fallback off positive themes for negative rows (twolane.rules.fallback_barred);
    never_fallback: label columns the fallback never picks (the low-support labels)."""
    ok = np.array([not is_unlabellable(t) for t in ds.texts], dtype=bool)
    P = np.zeros((len(ds.texts), len(ds.labels)), np.float32)
    P[ok] = probs_ok
    bad = ~ok
    if unknown_ok is not None:
        bad[np.flatnonzero(ok)[np.asarray(unknown_ok, bool)]] = True
    S = None
    if sentiment_ok is not None:
        S = np.full((len(ds.texts), np.shape(sentiment_ok)[1]), np.nan)
        S[ok] = sentiment_ok
    never = [ds.labels[j] for j in never_fallback]
    return decided(taxonomy_of(ds), make_rule(thresholds, min_one_label, never_fallback=never), P, S, bad)
