"""Threshold tuning and the scores the instant lane reports, with one rule for every model.

Scoring rule (used for all models, including the pxtextmining baseline in bench/):
- labels are decided by the rule book (twolane.rules.decide_labels): a comment whose text is
  unlabellable is predicted as exactly {"Labelling not possible"}; a comment the model gives no
  label also gets it;
- the truth is the labelled table as is (32 labels, "Labelling not possible" among them);
- macro-F1 averages over the labels that occur in the scored split (labels absent from it
  have no defined F1 and are left out, for every model alike).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, hamming_loss

GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)


def tune_thresholds(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Per label, the threshold on the grid maximising F1 of out-of-fold probabilities P."""
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
    return th


def multilabel_scores(Y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    present = np.flatnonzero(Y.sum(0) > 0)
    return {
        "macro_f1": float(f1_score(Y, pred, average="macro", labels=present, zero_division=0)),
        "micro_f1": float(f1_score(Y, pred, average="micro", zero_division=0)),
        "exact_accuracy": float(accuracy_score(Y, pred)),
        "hamming_loss": float(hamming_loss(Y, pred)),
        "rows": len(Y),
        "labels_scored": len(present),
    }


def sentiment_scores(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Accuracy and macro-F1 over the rows that have a sentiment label (y >= 0)."""
    keep = y >= 0
    return {
        "accuracy": float(accuracy_score(y[keep], pred[keep])),
        "macro_f1": float(f1_score(y[keep], pred[keep], average="macro", zero_division=0)),
        "rows": int(keep.sum()),
    }
