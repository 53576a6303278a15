"""The folds every build step learns from: out-of-fold probabilities on the instant lane's
training rows, the batch lane's split (fit, validation, test) and the instant lane refitted on
its fit rows to predict the validation fold. The instant build tunes its thresholds on the first;
the batch build and the cascade (model_build.cascade) tune on the validation fold.

The validation fold is carved from the labellable training rows only (the test split is never
used for a choice): the NHS preset a seeded random `VAL_SHARE`, a data spec stratified by each
row's rarest label, as its test split (model_build.dataspec.stratified_split). The batch build
keeps each training run, with the validation fold's probabilities, under `BUILD_DIR`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

import numpy as np

from model_build import choose, lexicon
from model_build.data import ROOT, SEED, SENTIMENT_CLASSES, Dataset
from model_build.dataspec import stratified_split
from model_build.instant_config import Config, inputs
from model_build.instant_fit import (
    fit_char_view,
    fit_linear,
    fit_sentiment,
    fit_vectorizer,
    fit_xgboost,
    frequent_columns,
    lexicon_terms,
)
from twolane.bundle import InstantEnsemble, Manifest
from twolane.predictors.batch import encoder_inputs
from twolane.rules import is_unlabellable

BUILD_DIR = ROOT / "build" / "batch"
VAL_SHARE = 0.15
VAL_SEED = 7


def validation_mask(n: int, seed: int = VAL_SEED, share: float = VAL_SHARE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: int(round(n * share))]] = True
    return mask


def labellable(ds: Dataset) -> Dataset:
    """Rows the model sees: unlabellable text never reaches it at serving time."""
    return ds.subset(np.array([not is_unlabellable(t) for t in ds.texts], dtype=bool))


def is_nhs(ds: Dataset) -> bool:
    """Whether the data was read by the NHS preset (or before data specs existed)."""
    return ds.spec is None or ds.spec.preset == "nhs"


def split(ds: Dataset) -> tuple[Dataset, Dataset, Dataset]:
    """(fit, validation, test): validation is carved from the labellable training rows only
    (the NHS preset: a seeded random 15 %; a data spec: stratified by each row's rarest label,
    as its test split, model_build.dataspec.stratified_split)."""
    train_all = labellable(ds.train)
    val_mask = (validation_mask(len(train_all.texts)) if is_nhs(ds)
                else stratified_split(train_all.Y, seed=VAL_SEED, test_size=VAL_SHARE))
    return train_all.subset(~val_mask), train_all.subset(val_mask), ds.test


def encoder_texts(ds: Dataset) -> list[str]:
    """What the transformer reads for each row (twolane.predictors.batch.encoder_inputs: the
    text, with the context token for a data spec's context column)."""
    return encoder_inputs(ds.texts, ds.question_types, ds.context == "column")


# ----------------------------------------------------------------------------- instant lane
def instant_models(manifest: Manifest) -> dict[str, list[str]]:
    """Instant-lane predictors the ensemble may use: name -> member models."""
    out = {}
    if "linear" in manifest.models:
        out["linear"] = ["linear"]
    if isinstance(manifest.ensemble, InstantEnsemble):
        out["ensemble"] = list(manifest.ensemble.members)
    return out


def instant_out_of_fold(manifest: Manifest, fit: Dataset, val: Dataset) -> dict[str, np.ndarray]:
    """The instant lane's models refitted on the fit rows as its build fits them (model inputs
    with the question-type token, label models on comments with at least one label, XGBoost on
    the frequent columns, the lexicon-aware sentiment head), predicting the validation fold.
    Returns name -> validation probabilities (n x labels) for each predictor of instant_models,
    and "sentiment" (n x classes)."""
    known = {f.name for f in fields(Config)}
    saved: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v)
                             for k, v in manifest.build.items() if k in known}
    # bundles from before the polarity scaling and the unseen negated pairs lack the keys
    saved.setdefault("sentiment_polarity_gamma", 0.0)
    saved.setdefault("lexicon_negate_unseen", False)
    cfg = Config(**saved)
    fit_texts = [inputs(t, q, cfg, fit.context) for t, q in zip(fit.texts, fit.question_types, strict=True)]
    val_texts = [inputs(t, q, cfg, val.context) for t, q in zip(val.texts, val.question_types, strict=True)]
    vec = fit_vectorizer(fit_texts, cfg)
    Xf, Xv = vec.transform(fit_texts), vec.transform(val_texts)
    rows = np.flatnonzero(fit.Y.sum(1) > 0) if cfg.labelled_rows_only else np.arange(len(fit_texts))
    Xl, Yl = Xf[rows], fit.Y[rows]
    member_probs: dict[str, np.ndarray] = {}
    need = {m for ms in instant_models(manifest).values() for m in ms}
    view = fit_char_view(vec, Xl, cfg) if cfg.char_view else None
    if "linear" in need:
        member_probs["linear"] = fit_linear(Xl, Yl, cfg, view=view).predict_proba(Xv)
    if "xgboost" in need:
        cols = frequent_columns(Xl, cfg.xgb_features)
        member_probs["xgboost"] = fit_xgboost(Xl, Yl, cfg, columns=cols).predict_proba(Xv)
    lnp = fit.lnp
    out: dict[str, np.ndarray] = {}
    for name, members in instant_models(manifest).items():
        if not all(m in member_probs for m in members):
            continue
        ens = manifest.ensemble
        w = np.asarray(ens.weights if name == "ensemble" and isinstance(ens, InstantEnsemble)
                       else [1.0] * len(members), dtype=float)
        p = sum(wi * member_probs[m] for wi, m in zip(w, members, strict=False)) / w.sum()
        if lnp is not None:
            p[:, lnp] = 0.0  # the instant predictor sets it by rule only
        out[name] = p.astype(np.float32)
    has = fit.sentiment >= 0
    k = len(fit.sentiment_classes)
    if k and has.sum() >= 2 and len(set(fit.sentiment[has].tolist())) >= 2:
        dirs = None
        if cfg.sentiment_lexicon:
            dirs = lexicon.directions(vec.vocabulary_, lexicon_terms(fit_texts, cfg))
        if manifest.build.get("sentiment_head") == "plain":  # model_build.choose chose the baseline
            sent = choose.fit_plain(Xf[np.flatnonzero(has)], fit.sentiment[has], k, cfg.sentiment_baseline_C)
        else:
            sent = fit_sentiment(Xf[np.flatnonzero(has)], fit.sentiment[has], cfg, dirs,
                                 view if cfg.sentiment_char_view else None, k)
        out["sentiment"] = sent.predict_proba(Xv).astype(np.float32)
    return out


def out_of_fold(fit: Callable[[Any, np.ndarray], Any], X: Any, Y: np.ndarray, folds: int) -> np.ndarray:
    """Out-of-fold probabilities on the training rows (thresholds are tuned on these only)."""
    from sklearn.model_selection import KFold

    P = np.zeros(Y.shape, dtype=np.float64)
    for tr, va in KFold(folds, shuffle=True, random_state=SEED).split(X):
        P[va] = fit(X[tr], Y[tr]).predict_proba(X[va])
    return P


def sentiment_out_of_fold(fit: Callable[[Any, np.ndarray], Any], X: Any, y: np.ndarray,
                          rows: np.ndarray, folds: int, classes: int = len(SENTIMENT_CLASSES)) -> np.ndarray:
    """Out-of-fold sentiment probabilities (len(rows) x classes) for X[rows], the label models' rows.

    The folds are `out_of_fold`'s over those rows; each fold's model is fitted on every row of
    X with a sentiment (y >= 0) outside the held-out fold. What the build scores the
    fallback's sentiment rule with (twolane.rules.fallback_barred) on the training split.
    """
    from sklearn.model_selection import KFold

    idx = np.flatnonzero(rows)
    S = np.zeros((len(idx), classes))
    for _, va in KFold(folds, shuffle=True, random_state=SEED).split(idx):
        held = np.zeros(len(y), bool)
        held[idx[va]] = True
        fit_rows = np.flatnonzero((y >= 0) & ~held)
        S[va] = fit(X[fit_rows], y[fit_rows]).predict_proba(X[idx[va]])
    return S
