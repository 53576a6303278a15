"""Threshold tuning and the scores the instant lane reports, with one rule for every model.

Scoring rule (one rule for every model: the pxtextmining baseline in bench/, each twolane model,
and the build's gates; pxtextmining's own evaluation scores the same way):
- rows: the comments whose truth has at least one label ("Labelling not possible" counts as a
  label); rows the labellers gave no label at all are left out, as pxtextmining's data loader
  drops them before its split;
- labels: all 32, "Labelling not possible" a label like any other; macro-F1 is the mean of the
  32 per-label F1 (a label with no true and no predicted row scores 0, as sklearn's
  classification_report macro average with zero_division=0, which pxtextmining reports);
  micro-F1, exact match (subset accuracy) and hamming loss over the same rows and labels;
- predictions are whatever the served pipeline outputs: for twolane the rule book
  (twolane.rules.decide_labels: unlabellable text -> exactly "Labelling not possible"; top-label
  fallback), for the baseline pxtextmining's own post-processing (bench/baseline.py).
"""

# The text above from "Scoring rule" on is copied into every instant manifest (metrics.test.scoring):
# changing it changes built bundles. The build decides labels through model_build.decide, which
# serves with twolane.predictors.decide.LabelDecider (twolane.rules.decide_labels inside).

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, hamming_loss

GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)
MIN_SUPPORT = 20  # labels with fewer training positives are flagged as not to trust


def low_support_labels(labels: list[str], train_support: np.ndarray, min_support: int = MIN_SUPPORT,
                       ignore: str | None = None) -> list[str]:
    """Labels with fewer than `min_support` training positives (train_support: positives per
    label, in `labels` order), `ignore` (the rule-set label) excepted. Manifests list them;
    the build report flags them and the top-label fallback never picks them (twolane.rules)."""
    return [lab for lab, n in zip(labels, train_support, strict=True) if n < min_support and lab != ignore]


def tune_thresholds(Y: np.ndarray, P: np.ndarray, prior_weight: float = 0.0,
                    prior: float = 0.5) -> np.ndarray:
    """Per label, the threshold on the grid maximising F1 of out-of-fold probabilities P (n x L;
    Y the truth, n x L), shrunk toward `prior` as if `prior_weight` more positives had voted for
    it: t = (n_pos * t_F1 + prior_weight * prior) / (n_pos + prior_weight). A label with few
    positives gets a threshold tuned on a handful of rows ("Electronic entertainment", 9
    positives: .32, so "Dirty toilets" at .33 got it); the shrinkage keeps it near `prior`."""
    th = np.full(Y.shape[1], 0.5)
    for j in range(Y.shape[1]):
        y = Y[:, j].astype(bool)
        if not y.any():
            continue
        pred = P[:, j][:, None] >= GRID[None, :]  # n x grid
        tp = (pred & y[:, None]).sum(0)
        fp = (pred & ~y[:, None]).sum(0)
        fn = (~pred & y[:, None]).sum(0)
        f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
        th[j] = float(GRID[int(np.argmax(f1))])
    if prior_weight > 0:
        n = Y.sum(0).astype(float)
        th = np.where(n > 0, (n * th + prior_weight * prior) / (n + prior_weight), th)
    return th


def scored_rows(Y: np.ndarray) -> np.ndarray:
    """The rows the scoring rule scores: truth with at least one label."""
    return np.asarray(Y).sum(1) > 0


def multilabel_scores(Y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """The scoring rule (module docstring) on truth Y and predictions pred (both n x 32, 0/1)."""
    keep = scored_rows(Y)
    Y, pred = np.asarray(Y)[keep], np.asarray(pred)[keep]
    present = np.flatnonzero(Y.sum(0) > 0)
    every = np.arange(Y.shape[1])
    return {
        "macro_f1": float(f1_score(Y, pred, average="macro", labels=every, zero_division=0)),
        "macro_f1_labels_present": float(f1_score(Y, pred, average="macro", labels=present,
                                                  zero_division=0)),
        "micro_f1": float(f1_score(Y, pred, average="micro", zero_division=0)),
        "exact_accuracy": float(accuracy_score(Y, pred)),
        "hamming_loss": float(hamming_loss(Y, pred)),
        "rows": len(Y),
        "labels_scored": len(every),
        "labels_present": len(present),
    }


def per_label(Y: np.ndarray, pred: np.ndarray, labels: list[str]) -> dict[str, dict[str, Any]]:
    """Per label: test F1, precision, recall and support (true rows), on the scored rows."""
    from sklearn.metrics import precision_recall_fscore_support

    keep = scored_rows(Y)
    p, r, f, n = precision_recall_fscore_support(np.asarray(Y)[keep], np.asarray(pred)[keep],
                                                 labels=np.arange(len(labels)), zero_division=0)
    return {lab: {"f1": round(float(f[j]), 4), "precision": round(float(p[j]), 4),
                  "recall": round(float(r[j]), 4), "test_support": int(n[j])}
            for j, lab in enumerate(labels)}


def sentiment_scores(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Accuracy and macro-F1 over the rows that have a sentiment label (y >= 0)."""
    keep = y >= 0
    return {
        "accuracy": float(accuracy_score(y[keep], pred[keep])),
        "macro_f1": float(f1_score(y[keep], pred[keep], average="macro", zero_division=0)),
        "rows": int(keep.sum()),
    }


def single_label_accuracy(Y: np.ndarray, pred: np.ndarray) -> float:
    """Share of the scored rows (truth with a label) whose one predicted label is the true
    one (a single-label taxonomy: Y and pred n x L, one 1 a row at most)."""
    keep = scored_rows(Y)
    Y, pred = np.asarray(Y)[keep], np.asarray(pred)[keep]
    return float((Y.argmax(1) == pred.argmax(1)).mean()) if len(Y) else 0.0


def confusions(Y: np.ndarray, pred: np.ndarray, labels: list[str], top: int = 10) -> list[dict[str, Any]]:
    """A single-label taxonomy's most frequent confusions on the scored rows: up to `top`
    {"true", "predicted", "rows"}, most rows first (ties by label order)."""
    keep = scored_rows(Y) & (np.asarray(pred).sum(1) > 0)
    t, p = np.asarray(Y)[keep].argmax(1), np.asarray(pred)[keep].argmax(1)
    pairs: dict[tuple[int, int], int] = {}
    for a, b in zip(t.tolist(), p.tolist(), strict=True):
        if a != b:
            pairs[(a, b)] = pairs.get((a, b), 0) + 1
    ranked = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [{"true": labels[a], "predicted": labels[b], "rows": n} for (a, b), n in ranked]


def quality(y: np.ndarray, pred: np.ndarray, multilabel: bool = True) -> dict[str, Any]:
    """`multilabel_scores` rounded to 4 places (macro-F1 over labels present in the split), and
    for a single-label taxonomy (multilabel False) its accuracy: the batch build's figures."""
    out = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in multilabel_scores(y, pred).items()}
    if not multilabel:
        out["accuracy"] = round(single_label_accuracy(y, pred), 4)
    return out


def sentiment_quality(s_true: np.ndarray, s_probs: np.ndarray) -> dict[str, Any]:
    """`sentiment_scores` of the argmax of s_probs (n x classes) against s_true (n classes, -1
    none), rounded to 4 places; zeros when no row has a sentiment."""
    if not (s_true >= 0).any():
        return {"accuracy": 0.0, "macro_f1": 0.0, "rows": 0}
    return {k: (round(v, 4) if isinstance(v, float) else v)
            for k, v in sentiment_scores(s_true, s_probs.argmax(1)).items()}
