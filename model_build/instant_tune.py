"""The instant build's training and tuning steps: the rows the models read (`rows_of`), the
models fitted with out-of-fold probabilities on the training split (`fit_models`, over
model_build.folds) and the per-model thresholds tuned on those only (`tune`), scored with the
served decide step (`decide`, model_build.decide)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from rich.progress import Progress

from model_build import choose, lexicon, metrics
from model_build.data import Dataset
from model_build.decide import decided, taxonomy_of
from model_build.errors import BuildError
from model_build.folds import out_of_fold, sentiment_out_of_fold
from model_build.instant_config import Config, inputs, ratio
from model_build.instant_fit import (
    Sentiment,
    fit_char_view,
    fit_linear,
    fit_sentiment,
    fit_vectorizer,
    fit_xgboost,
    frequent_columns,
    lexicon_terms,
)
from twolane.bundle import DecideRule
from twolane.rules import is_unlabellable


@dataclass
class Rows:
    """The training and test rows as the models read them."""

    train: Dataset
    test: Dataset
    tr_texts: list[str]  # labellable training comments, model inputs
    te_texts: list[str]  # every test comment, model inputs
    sentiment: np.ndarray  # of tr_texts, -1 = none
    lab_rows: np.ndarray  # bool over tr_texts: the label models' rows
    Ytr: np.ndarray  # labels of the label models' rows
    train_support: np.ndarray  # training positives per label
    low: list[str]  # labels too rare to trust (never a fallback)


@dataclass
class Fitted:
    """The fitted models and their out-of-fold probabilities on the label rows."""

    vec: Any
    view: Any
    Xte: Any
    linear: Any
    xgb: Any
    sent: Any  # None: the data has no sentiment
    oof: dict[str, np.ndarray]  # linear, xgboost, ensemble
    oof_sent: np.ndarray | None
    sentiment_rows: int
    sentiment_choice: Any = None  # model_build.choose.Choice; None: no sentiment or no choice made
    sentiment_other: Any = None  # the head not chosen (its test accuracy goes in the report)


def rows_of(ds: Dataset, cfg: Config) -> Rows:
    """Raises BuildError when the data is too small to train on."""
    train, test = ds.train, ds.test
    keep = np.array([not is_unlabellable(t) for t in train.texts])
    tr_texts = [inputs(t, q, cfg, ds.context)
                for t, q, k in zip(train.texts, train.question_types, keep, strict=False) if k]
    te_texts = [inputs(t, q, cfg, ds.context) for t, q in zip(test.texts, test.question_types, strict=False)]
    # the label models' rows: labellable and (by default) carrying at least one label
    lab_rows = train.Y[keep].sum(1) > 0 if cfg.labelled_rows_only else np.ones(int(keep.sum()), bool)
    Ytr = train.Y[keep][lab_rows]
    if len(tr_texts) < 20 or Ytr.sum() == 0:
        raise BuildError(f"too few labelled training rows ({len(tr_texts)}) in {ds.source}")
    if len(test.texts) == 0:
        raise BuildError("the test split is empty")
    train_support = train.Y[keep].sum(0)
    low = metrics.low_support_labels(list(ds.labels), train_support, cfg.min_support, ds.unlabellable)
    return Rows(train, test, tr_texts, te_texts, train.sentiment[keep], lab_rows, Ytr, train_support, low)


def fit_models(ds: Dataset, r: Rows, cfg: Config, prog: Progress) -> Fitted:
    """TF-IDF, the linear and XGBoost label models (with out-of-fold probabilities) and the
    sentiment head, with progress."""
    L = len(ds.labels)
    step = prog.add_task("TF-IDF", total=1)
    vec = fit_vectorizer(r.tr_texts, cfg)
    Xall = vec.transform(r.tr_texts)
    Xtr = Xall[np.flatnonzero(r.lab_rows)]
    Xte = vec.transform(r.te_texts)
    prog.advance(step)

    t = prog.add_task(f"linear: {cfg.folds}-fold thresholds + fit", total=L * (cfg.folds + 1))
    view = fit_char_view(vec, Xtr, cfg) if cfg.char_view else None
    oof_lin = out_of_fold(lambda X, Y: fit_linear(X, Y, cfg, lambda: prog.advance(t), view), Xtr, r.Ytr, cfg.folds)
    linear = fit_linear(Xtr, r.Ytr, cfg, lambda: prog.advance(t), view)

    tx = prog.add_task(f"xgboost: {cfg.folds}-fold thresholds + fit", total=L * (cfg.folds + 1))
    cols = frequent_columns(Xtr, cfg.xgb_features)
    oof_xgb = out_of_fold(lambda X, Y: fit_xgboost(X, Y, cfg, lambda: prog.advance(tx), cols), Xtr, r.Ytr,
                          cfg.folds)
    xgb = fit_xgboost(Xtr, r.Ytr, cfg, lambda: prog.advance(tx), cols)

    ts = prog.add_task("sentiment", total=1)
    has_sent = r.sentiment >= 0
    sent, oof_sent, k = None, None, len(ds.sentiment_classes)
    choice: Any = None  # model_build.choose.Choice
    other: Sentiment | None = None
    if k:  # the data spec has a sentiment column
        dirs = None
        if cfg.sentiment_lexicon:
            dirs = lexicon.directions(vec.vocabulary_, lexicon_terms(r.tr_texts, cfg))
        sview = view if cfg.sentiment_char_view else None
        # unordered classes (words without --sentiment-order): no ends for the polarity scaling
        scfg = cfg if ds.spec is None or ds.spec.sentiment_ordered else replace(cfg, sentiment_polarity_gamma=0.0)
        sent = fit_sentiment(Xall[np.flatnonzero(has_sent)], r.sentiment[has_sent], scfg, dirs, sview, k)
        # out-of-fold sentiment of the label rows: the fallback's sentiment rule in oof_scores
        oof_sent = sentiment_out_of_fold(lambda X, y: fit_sentiment(X, y, scfg, dirs, sview, k),
                                         Xall, r.sentiment, r.lab_rows, cfg.folds, k)
        # a team's scale: never below a plain TF-IDF + LR (model_build.choose). The NHS head keeps
        # its lexicon and polarity scaling: the plain one reads the polarity set (negations such
        # as "not good") wrong (.57 against >= .75 on the small test bundle)
        nhs = ds.spec is None or ds.spec.preset == "nhs"
        if cfg.sentiment_baseline and not nhs:
            sent, oof_sent, choice, other = _choose_sentiment(Xall, r, has_sent, sent, oof_sent, cfg, k)
    prog.advance(ts)
    w_lin, w_xgb = cfg.ensemble_weights
    oof = {"linear": oof_lin, "xgboost": oof_xgb, "ensemble": (w_lin * oof_lin + w_xgb * oof_xgb) / (w_lin + w_xgb)}
    return Fitted(vec, view, Xte, linear, xgb, sent, oof, oof_sent, int(has_sent.sum()), choice, other)


def _choose_sentiment(Xall: Any, r: Rows, has_sent: np.ndarray, tuned: Sentiment, oof_tuned: np.ndarray,
                      cfg: Config, k: int) -> tuple[Sentiment, np.ndarray, Any, Sentiment]:
    """(the head to serve, its out-of-fold probabilities, the model_build.choose.Choice, the
    other head): the tuned head or the plain baseline, by out-of-fold accuracy on the label
    rows (the same folds as `oof_tuned`)."""
    oof_plain = sentiment_out_of_fold(lambda X, y: choose.fit_plain(X, y, k, cfg.sentiment_baseline_C),
                                      Xall, r.sentiment, r.lab_rows, cfg.folds, k)
    plain = choose.fit_plain(Xall[np.flatnonzero(has_sent)], r.sentiment[has_sent], k, cfg.sentiment_baseline_C)
    choice = choose.choose(r.sentiment[r.lab_rows], {choose.TUNED: oof_tuned, choose.PLAIN: oof_plain}, cfg.folds)
    if choice.chosen == choose.PLAIN:
        return plain, oof_plain, choice, tuned
    return tuned, oof_tuned, choice, plain


def tune(ds: Dataset, r: Rows, f: Fitted, cfg: Config) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-model thresholds from out-of-fold probabilities of the training split only, and the
    out-of-fold scores they give with the served rules."""
    thresholds = {name: metrics.tune_thresholds(r.Ytr, P, cfg.threshold_prior_weight, cfg.threshold_prior)
                  for name, P in f.oof.items()}
    oof_scores = {
        name: metrics.multilabel_scores(
            r.Ytr, decide(ds, decide_rule(name, thresholds[name], r, cfg), P, f.oof_sent, np.zeros(len(r.Ytr), bool)))
        for name, P in f.oof.items()
    }
    return thresholds, oof_scores


def decide_rule(name: str, thresholds: np.ndarray, r: Rows, cfg: Config) -> DecideRule:
    """The bundle's rule for model `name` (the manifest's `DecideRule`, what serving reads):
    its thresholds (L), the top-label fallback, the second-label ratio (the ensemble's only) and
    the low-support labels the fallback never picks."""
    return DecideRule(thresholds=thresholds.tolist(), min_one_label=cfg.min_one_label,
                      label_ratio=ratio(name, cfg), never_fallback=r.low)


def decide(ds: Dataset, rule: DecideRule, P: np.ndarray, S: np.ndarray | None, unlabellable: np.ndarray
           ) -> np.ndarray:
    """The served decide step (model_build.decide: twolane.predictors.decide.LabelDecider) on
    probabilities P (n x L) by `rule`: a single-label taxonomy's top label, or the multilabel
    rule book with S (the rows' sentiment probabilities, or None) barring the fallback; rows
    `unlabellable` (bool n) get exactly the unlabellable label. uint8 n x L."""
    return decided(taxonomy_of(ds), rule, P, S, unlabellable)
