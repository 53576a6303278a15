"""Batch lane build: fine-tune an encoder (the data's labels + sentiment), export ONNX, quantise,
gate, bundle.

    twolane build batch [--data FILE <data-spec flags>] [--out DIR] [--model ID_OR_PATH]
                        [--epochs N] [--rows N] [--max-minutes M] [--retune VERSION]

With no flag it trains on the NHS file (its preset); with a data spec (model_build.dataspec, the
same flags as `twolane build instant`) on any team's taxonomy: single- or multi-label, any
sentiment classes or none, a context column read as the instant lane reads it
(twolane.rules.context_input, appended to the transformer's input text). The validation fold of
a data spec is stratified as its test split is (model_build.dataspec.stratified_split). The
ensemble mixes in an instant bundle only of the same taxonomy; the cascade rule is learned for
NHS bundles only.

Steps: carve a validation fold from the TRAINING split only (the test split is never used for any
choice); fine-tune; export fp32 ONNX (dynamic batch and sequence axes), run onnxruntime's BERT
optimiser, quantise to int8 (CPU) and convert to fp16 (GPU); tune per-label thresholds, the
weight of the instant lane's probabilities in the ensemble and how they mix (probability or
log-odds: ENSEMBLE_COMBINES; by macro- plus micro-F1, ENSEMBLE_OBJECTIVE), and the instant lane's
share of sentiment (by accuracy), on the validation fold; gate int8 against fp32 on the test
split; write `bundles/batch/<version>/`.

The instant lane's probabilities on the validation fold come from the instant lane's own models
refitted on the fit rows only (its shipped bundle was trained on the whole training split, so its
probabilities there would be in-sample and would over-weight it).

The bundle holds what serving needs: `model.int8.onnx` (CPU), `model.fp16.onnx` (CUDA),
`tokenizer.json`, a copy of the instant bundle the ensemble was tuned with (`instant/`) and
`manifest.json`. The fp32 ONNX and the PyTorch weights stay out of it, under
`build/batch/<version>/`, with the validation probabilities (benchmarks and `--retune` use them).
`--retune VERSION` re-packages a saved training run (quantise, tune, gate) without retraining, e.g.
against a newer instant bundle, into a new bundle version.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from model_build.data import DEFAULT_DATA, ROOT, Dataset, load_dataset
from model_build.dataspec import SpecArgs
from model_build.metrics import low_support_labels
from twolane.bundle import (
    BatchEnsemble,
    Cascade,
    DecideRule,
    InstantEnsemble,
    Manifest,
    ModelEntry,
    SentimentMix,
    SentimentStack,
    Serving,
    Taxonomy,
    new_version,
    read_manifest,
    write_manifest,
)
from twolane.rules import (
    columns_of,
    decide_labels,
    fallback_barred,
    is_unlabellable,
    top_label,
)

VAL_SHARE = 0.15
VAL_SEED = 7
DEFAULT_EPOCHS = 8
DEFAULT_MAX_MINUTES = 35.0  # training wall-clock budget on the 2-core build machine
# a data spec's default budget: a team's few hundred to few thousand rows train in minutes
SPEC_MAX_MINUTES = 10.0
BUILD_DIR = ROOT / "build" / "batch"
# How the ensemble is tuned on the validation fold (model_build.transformer.train.tune_ensemble):
# the ways of mixing the two lanes' probabilities tried, and what is maximised. Evidence: 2-fold
# cross-fit within the validation fold (tune on one half, score the other, 4 seeds), MiniLM 4
# epochs + instant ensemble, macro/micro-F1: instant alone .422/.699, transformer alone .442/.692;
# probability mix tuned for macro .474/.727, for macro+micro .486/.746; log-odds mix .458/.721
# and .473/.738. Scoring the rule's rows only or all rows: within .003.
ENSEMBLE_COMBINES = ("probability",)
ENSEMBLE_OBJECTIVE = "macro+micro"
# Sentiment combines the instant lane's only if that gains at least this much nested validation
# accuracy (~730 rows: smaller gains are noise). On run 20261130T035655Z (733 rows, 5 x 5-fold,
# as the build runs it): transformer alone .7039, weighted mean (w tuned per fold) .7247, stack
# .7269 (a stratified re-run: stack C 1 .736, C .1 .733, C 10 .735).
SENTIMENT_MIX_MIN_GAIN = 0.01
SENTIMENT_NESTED = "5 x 5-fold"  # how tune_sentiment scores each way on the validation fold
SENTIMENT_MIX_WEIGHTS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)
Probs = tuple[np.ndarray, np.ndarray]  # (label probabilities, sentiment probabilities)
Log = Callable[[str], None]


class BatchBuildError(RuntimeError):
    """The batch build cannot produce a trustworthy bundle."""


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
    from model_build.dataspec import stratified_split

    train_all = labellable(ds.train)
    val_mask = (validation_mask(len(train_all.texts)) if is_nhs(ds)
                else stratified_split(train_all.Y, seed=VAL_SEED, test_size=VAL_SHARE))
    return train_all.subset(~val_mask), train_all.subset(val_mask), ds.test


def encoder_texts(ds: Dataset) -> list[str]:
    """What the transformer reads for each row (twolane.predictors.batch.encoder_inputs: the
    text, with the context token for a data spec's context column)."""
    from twolane.predictors.batch import encoder_inputs

    return encoder_inputs(ds.texts, ds.question_types, ds.context == "column")


def same_taxonomy(manifest: Manifest, ds: Dataset) -> bool:
    """Whether an instant bundle labels in the data's taxonomy (labels and sentiment classes)."""
    return (list(manifest.labels) == list(ds.labels)
            and list(manifest.sentiment_classes) == list(ds.sentiment_classes))


def served_labels(ds: Dataset, probs_ok: np.ndarray, thresholds, min_one_label: bool,
                  unknown_ok: np.ndarray | None = None, sentiment_ok: np.ndarray | None = None,
                  never_fallback: Sequence[int] = ()) -> np.ndarray:
    """Label matrix as serving returns it: the rule for unlabellable text, the model elsewhere
    (a labellable comment with no label gets "Labelling not possible", as in the instant lane).
    probs_ok: probabilities of the labellable rows, in order; unknown_ok: for those rows, True
    where the instant model knows no n-gram (served exactly "Labelling not possible");
    sentiment_ok: their served sentiment probabilities (n_ok x 5), which keep the top-label
    fallback off positive themes for negative rows (twolane.rules.fallback_barred);
    never_fallback: label columns the fallback never picks (the low-support labels)."""
    out = np.zeros((len(ds.texts), len(ds.labels)), dtype=np.uint8)
    ok = np.array([not is_unlabellable(t) for t in ds.texts], dtype=bool)
    lnp = ds.lnp
    if lnp is not None:
        out[~ok, lnp] = 1
    if ok.any():
        if not ds.multilabel:  # a single-label taxonomy: exactly the most probable label
            out[ok] = top_label(probs_ok, lnp)
        else:
            out[ok] = decide_labels(probs_ok, np.asarray(thresholds, np.float32), lnp,
                                    min_one_label=min_one_label,
                                    barred=fallback_barred(ds.labels, sentiment_ok),
                                    never_fallback=never_fallback)
        if unknown_ok is not None and unknown_ok.any():
            rows = np.flatnonzero(ok)[np.asarray(unknown_ok, bool)]
            out[rows] = 0
            if lnp is not None:
                out[rows, lnp] = 1
    return out


def quality(y: np.ndarray, pred: np.ndarray, multilabel: bool = True) -> dict[str, Any]:
    """The instant lane's scores (model_build.metrics: macro-F1 over labels present in the split),
    and for a single-label taxonomy (multilabel False) its accuracy."""
    from model_build.metrics import multilabel_scores, single_label_accuracy

    out = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in multilabel_scores(y, pred).items()}
    if not multilabel:
        out["accuracy"] = round(single_label_accuracy(y, pred), 4)
    return out


def sentiment_quality(s_true: np.ndarray, s_probs: np.ndarray) -> dict[str, Any]:
    from model_build.metrics import sentiment_scores

    if not (s_true >= 0).any():
        return {"accuracy": 0.0, "macro_f1": 0.0, "rows": 0}
    return {k: (round(v, 4) if isinstance(v, float) else v)
            for k, v in sentiment_scores(s_true, s_probs.argmax(1)).items()}


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
    from dataclasses import fields

    from model_build import instant

    known = {f.name for f in fields(instant.Config)}
    saved: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v)
                             for k, v in manifest.build.items() if k in known}
    # bundles from before the polarity scaling and the unseen negated pairs lack the keys
    saved.setdefault("sentiment_polarity_gamma", 0.0)
    saved.setdefault("lexicon_negate_unseen", False)
    cfg = instant.Config(**saved)
    fit_texts = [instant.inputs(t, q, cfg, fit.context) for t, q in zip(fit.texts, fit.question_types, strict=True)]
    val_texts = [instant.inputs(t, q, cfg, val.context) for t, q in zip(val.texts, val.question_types, strict=True)]
    vec = instant.fit_vectorizer(fit_texts, cfg)
    Xf, Xv = vec.transform(fit_texts), vec.transform(val_texts)
    rows = np.flatnonzero(fit.Y.sum(1) > 0) if cfg.labelled_rows_only else np.arange(len(fit_texts))
    Xl, Yl = Xf[rows], fit.Y[rows]
    member_probs: dict[str, np.ndarray] = {}
    need = {m for ms in instant_models(manifest).values() for m in ms}
    view = instant.fit_char_view(vec, Xl, cfg) if cfg.char_view else None
    if "linear" in need:
        member_probs["linear"] = instant.fit_linear(Xl, Yl, cfg, view=view).predict_proba(Xv)
    if "xgboost" in need:
        cols = instant.frequent_columns(Xl, cfg.xgb_features)
        member_probs["xgboost"] = instant.fit_xgboost(Xl, Yl, cfg, columns=cols).predict_proba(Xv)
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
            from model_build import lexicon

            dirs = lexicon.directions(vec.vocabulary_, instant.lexicon_terms(fit_texts, cfg))
        if manifest.build.get("sentiment_head") == "plain":  # model_build.choose chose the baseline
            from model_build.choose import fit_plain

            sent = fit_plain(Xf[np.flatnonzero(has)], fit.sentiment[has], k, cfg.sentiment_baseline_C)
        else:
            sent = instant.fit_sentiment(Xf[np.flatnonzero(has)], fit.sentiment[has], cfg, dirs,
                                         view if cfg.sentiment_char_view else None, k)
        out["sentiment"] = sent.predict_proba(Xv).astype(np.float32)
    return out


def instant_test_proba(instant_bundle: Path, name: str, texts: list[str], qts: list[str]) -> np.ndarray:
    from twolane.predictors.instant import InstantPredictor

    pred = InstantPredictor.from_bundle(instant_bundle, model=name)
    return np.asarray(pred.predict_proba(texts, qts), np.float32)


# ----------------------------------------------------------------------------- tuning, gates, manifest
def tune_sentiment(s_transformer: np.ndarray, s_instant: np.ndarray, y: np.ndarray,
                   question_types: list[str], min_gain: float = SENTIMENT_MIX_MIN_GAIN,
                   weights: tuple[float, ...] = SENTIMENT_MIX_WEIGHTS, repeats: int = 5,
                   folds: int = 5) -> SentimentMix:
    """How the batch lane combines the two lanes' sentiment (n x classes each; y: classes, -1 =
    none), chosen on the validation fold by nested cross-validation (`repeats` x `folds`: tune
    or fit on 4/5, score the 5th), so the choice is scored on rows it was not fitted on:

    - "transformer": the transformer alone;
    - "mix": w * p_t + (1 - w) * p_i, w tuned for accuracy over `weights`;
    - "stack": a multinomial logistic regression (C = 1) over `stack_features` (both lanes'
      log-probabilities and the question type; twolane.predictors.batch).

    A combination must beat the transformer alone by `min_gain` (nested accuracy). Returns the
    ensemble's manifest fields: `sentiment_weight_transformer`, `sentiment_stack` (coef,
    intercept; only for "stack", fitted on all validation rows), `sentiment_method` and
    `sentiment_nested_accuracy` per method."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold

    from twolane.predictors.batch import stack_features

    keep = (y >= 0) & ~np.isnan(s_instant).any(1)
    st, si, yy = s_transformer[keep], s_instant[keep], y[keep]
    F = stack_features(st, si, [q for q, k in zip(question_types, keep, strict=True) if k])

    def mix_acc(w: float, rows: np.ndarray) -> float:
        return float(((w * st[rows] + (1 - w) * si[rows]).argmax(1) == yy[rows]).mean())

    def stack_fit(rows: np.ndarray) -> Any:
        return LogisticRegression(C=1.0, max_iter=2000).fit(F[rows], yy[rows])

    scores: dict[str, list[float]] = {"transformer": [], "mix": [], "stack": []}
    can_stack = len(yy) >= 2 * folds and len(set(yy.tolist())) >= 2
    if can_stack:
        for r in range(repeats):
            for a, b in KFold(folds, shuffle=True, random_state=r).split(F):
                scores["transformer"].append(mix_acc(1.0, b))
                w = max(weights, key=lambda w: (mix_acc(w, a), w))  # ties: the higher weight
                scores["mix"].append(mix_acc(w, b))
                if len(set(yy[a].tolist())) >= 2:
                    scores["stack"].append(float((stack_fit(a).predict(F[b]) == yy[b]).mean()))
    nested = {k: round(float(np.mean(v)), 4) for k, v in scores.items() if v}
    best = max(nested, key=lambda k: nested[k]) if nested else "transformer"
    if best != "transformer" and nested[best] - nested["transformer"] < min_gain:
        best = "transformer"
    if best == "mix":
        all_rows = np.arange(len(yy))
        w = float(max(weights, key=lambda w: (mix_acc(w, all_rows), w)))
        return SentimentMix(method="mix", weight_transformer=w, nested_accuracy=nested)
    if best == "stack":
        m = stack_fit(np.arange(len(yy)))
        classes = m.classes_.tolist()
        coef = np.zeros((s_transformer.shape[1], F.shape[1]))
        intercept = np.full(s_transformer.shape[1], -30.0)  # a class the fold lacks: never chosen
        coef[classes] = m.coef_ if len(classes) > 2 else np.vstack([-m.coef_[0], m.coef_[0]])
        intercept[classes] = m.intercept_ if len(classes) > 2 else [-m.intercept_[0], m.intercept_[0]]
        stack = SentimentStack(coef=coef.round(6).tolist(), intercept=intercept.round(6).tolist(), C=1.0,
                               features="log p_transformer | log p_instant | question type one-hot "
                                        "(QUESTION_TYPES)")
        return SentimentMix(method="stack", stack=stack, nested_accuracy=nested)
    return SentimentMix(method="transformer", nested_accuracy=nested)


@dataclass
class _Tuning:
    """What the tuning steps of `finish` share: the split, the scored test rows, the low-support
    labels and the test outputs of the exported encoder (int8, and fp32 when kept)."""

    ds: Dataset
    fit: Dataset
    val: Dataset
    test: Dataset
    test_ok: Dataset
    lnp: int | None
    low: list[str]
    never: list[int]
    outs: dict[str, Probs]
    metrics: dict[str, Any]
    log: Log
    escalate_share: float | None = None  # the cascade's shipped share (None: model_build.cascade's rule)
    served: dict[str, np.ndarray] = field(default_factory=dict)  # metrics key -> test labels as served


def _best_instant_mix(t: _Tuning, oof: dict[str, np.ndarray], p_val: np.ndarray) -> dict[str, Any] | None:
    """The best ensemble of the transformer with each instant predictor, on validation."""
    from model_build.transformer.train import tune_ensemble

    best: dict[str, Any] | None = None
    for name, p_inst in oof.items():
        if name == "sentiment":
            continue
        cand = tune_ensemble(p_val, p_inst, t.val.Y, empty_label=t.lnp, combines=ENSEMBLE_COMBINES,
                             objective=ENSEMBLE_OBJECTIVE, multilabel=t.ds.multilabel)
        cand["instant_model"] = name
        t.log(f"  with instant {name}: validation macro-F1 {cand['val_macro_f1']:.4f}, micro-F1 "
              f"{cand['val_micro_f1']:.4f} (transformer weight {cand['weight_transformer']}, "
              f"{cand['combine']} mix)")
        if best is None or cand["score"] > best["score"]:
            best = cand
    return best


def _ensemble_with_instant(t: _Tuning, bundle: Path, instant_bundle: Path, p_val: np.ndarray,
                           s_val: np.ndarray | None, alone: dict[str, Any]
                           ) -> tuple[BatchEnsemble | None, np.ndarray | None]:
    """Tune the ensemble with the instant bundle on validation; when it beats the transformer
    alone, score it on test (into t.metrics), copy the instant bundle inside and return it with
    the instant lane's test probabilities; else (None, None)."""
    from twolane.predictors.batch import INSTANT_DIR, combine, mix_sentiment
    from twolane.predictors.instant import InstantPredictor

    test, test_ok, lnp = t.test, t.test_ok, t.lnp
    inst = read_manifest(instant_bundle, verify=True)
    if not same_taxonomy(inst, t.ds):
        raise BatchBuildError(f"instant bundle {instant_bundle} has another taxonomy (labels or "
                              "sentiment classes) than the data")
    t0 = time.monotonic()
    oof = instant_out_of_fold(inst, t.fit, t.val)
    t.log(f"instant lane refitted on the fit rows for validation probabilities "
          f"({', '.join(k for k in oof if k != 'sentiment')}; {time.monotonic() - t0:.0f} s)")
    best = _best_instant_mix(t, oof, p_val)
    if best is None or best["weight_transformer"] >= 1.0 or best["score"] <= alone["score"]:
        t.log("the ensemble does not beat the transformer alone on validation: transformer only")
        return None, None
    inst_test = instant_test_proba(instant_bundle, best["instant_model"], test_ok.texts, test_ok.question_types)
    # the unknown-text rule: the instant predictor's verdict (a taxonomy without an
    # unlabellable label: its row of probabilities is all 0)
    unknown = np.asarray(inst_test[:, lnp] >= 1.0 if lnp is not None else ~inst_test.any(1), bool)
    sent_mix = SentimentMix()
    if s_val is not None and "sentiment" in oof:
        sent_mix = tune_sentiment(s_val, oof["sentiment"], t.val.sentiment, t.val.question_types)
        t.log(f"  sentiment: validation accuracy, nested {SENTIMENT_NESTED}: "
              f"{sent_mix.nested_accuracy}; chosen {sent_mix.method} "
              f"(must gain >= {SENTIMENT_MIX_MIN_GAIN * 100:.0f} pt over the transformer alone)")
    # the instant lane's own sentiment (NaN on unknown rows): mixed in, and what the
    # instant lane alone serves (its fallback's sentiment rule reads it)
    s_inst = InstantPredictor.from_bundle(instant_bundle).sentiment_proba(test_ok.texts, test_ok.question_types)
    for kind, out in t.outs.items():
        served_sent = out[1]
        if sent_mix.method != "transformer":
            served_sent = mix_sentiment(sent_mix, out[1], s_inst, test_ok.question_types)
            t.metrics[f"sentiment_ensemble_{kind}"] = sentiment_quality(test_ok.sentiment, served_sent)
        p = combine(best["weight_transformer"], best["combine"], out[0], inst_test)
        t.served[f"ensemble_{kind}"] = served_labels(test, p, best["thresholds"], best["min_one_label"], unknown,
                                                     served_sent, t.never)
        t.metrics[f"ensemble_{kind}"] = quality(test.Y, t.served[f"ensemble_{kind}"], t.ds.multilabel)
    inst_rule = inst.rule_of(best["instant_model"])
    cascade = _cascade(t, inst, inst_rule, instant_bundle, best, sent_mix, oof, p_val, s_val)
    t.metrics["instant_alone"] = quality(test.Y, served_labels(
        test, inst_test, inst_rule.thresholds, inst_rule.min_one_label, unknown, s_inst, t.never), t.ds.multilabel)
    if (bundle / INSTANT_DIR).exists():
        shutil.rmtree(bundle / INSTANT_DIR)
    shutil.copytree(instant_bundle, bundle / INSTANT_DIR)
    ensemble = BatchEnsemble(
        members=["transformer", "instant"], weight_transformer=best["weight_transformer"],
        combine=best["combine"], objective=best["objective"], instant_model=best["instant_model"],
        rule=DecideRule(thresholds=list(best["thresholds"]), min_one_label=best["min_one_label"],
                        never_fallback=t.low),
        instant_version=inst.version, instant_dir=INSTANT_DIR,
        tuned_on="validation fold of the training split; instant probabilities there from "
                 "its models refitted on the fit rows only",
        val_macro_f1=round(best["val_macro_f1"], 4), val_micro_f1=round(best["val_micro_f1"], 4),
        sentiment=sent_mix, cascade=cascade)
    return ensemble, inst_test


def _cascade(t: _Tuning, inst: Manifest, inst_rule: DecideRule, instant_bundle: Path, best: dict[str, Any],
             sent_mix: SentimentMix, oof: dict[str, np.ndarray], p_val: np.ndarray, s_val: np.ndarray | None
             ) -> Cascade | None:
    """The "lane": "auto" rule (model_build.cascade), learned on the validation fold the ensemble
    was tuned on; None without sentiment on both lanes."""
    from model_build import cascade
    from twolane.predictors.instant import InstantPredictor

    if s_val is None or "sentiment" not in oof:
        return None
    probe = BatchEnsemble(members=["transformer", "instant"], weight_transformer=best["weight_transformer"],
                          combine=best["combine"], instant_model=best["instant_model"],
                          instant_version=inst.version, instant_dir="", sentiment=sent_mix,
                          rule=DecideRule(thresholds=list(best["thresholds"]), min_one_label=best["min_one_label"],
                                          never_fallback=t.low))
    served = InstantPredictor.from_bundle(instant_bundle, model=best["instant_model"])
    instant, batch, thresholds, lnp = cascade.both_lanes(
        inst.taxonomy, inst_rule, probe, served, t.val.texts, t.val.question_types,
        oof[best["instant_model"]], oof["sentiment"], p_val, s_val)
    rule = cascade.learn(t.val.Y, t.val.sentiment, instant, batch, thresholds, lnp, inst.version,
                         t.escalate_share, non_junk=cascade.non_junk_share(t.ds.train.texts),
                         multilabel=inst.taxonomy.multilabel)
    t.log(f"cascade: escalate {rule.escalate_share:.1%} of comments "
          f"(theme margin < {rule.theme_margin_below:.3f}, sentiment margin < {rule.sentiment_margin_below:.3f}); "
          f"{rule.chosen_by}")
    return rule


def _gate_int8(t: _Tuning, int8_out: Probs, fp32_out: Probs | None, alone: dict[str, Any],
               ensemble: BatchEnsemble | None, inst_test: np.ndarray | None, enforce_gates: bool
               ) -> dict[str, Any]:
    """The int8 gate on the model the bundle serves by default: the ensemble when there is one
    (the transformer alone is then recorded, not enforced), else the transformer alone.
    Returns the parity record ({} without fp32 outputs); raises when an enforced gate fails."""
    from model_build.transformer import export as ex
    from twolane.predictors.batch import combine

    if fp32_out is None:
        return {}
    lnp, test_ok = t.lnp, t.test_ok
    ml = t.ds.multilabel
    alone_parity: dict[str, Any] = ex.gate_int8(fp32_out, int8_out, test_ok.Y, np.array(alone["thresholds"]),
                                                alone["min_one_label"], lnp,
                                                enforce=enforce_gates and not ensemble, multilabel=ml)
    if ensemble is not None and inst_test is not None:
        ens_probs = {k: combine(ensemble.weight_transformer, ensemble.combine, out[0], inst_test)
                     for k, out in t.outs.items()}
        parity: dict[str, Any] = dict(ex.gate_int8(
            (ens_probs["fp32"], fp32_out[1]), (ens_probs["int8"], int8_out[1]), test_ok.Y,
                                   np.array(ensemble.rule.thresholds), ensemble.rule.min_one_label, lnp,
                                   enforce=enforce_gates, multilabel=ml))
        parity["transformer_alone"] = alone_parity
    else:
        parity = dict(alone_parity)
    parity["gated_model"] = "ensemble" if ensemble else "transformer alone"
    t.log(f"int8 gate ({parity['gated_model']}): {parity['label_rows_identical']:.2%} label sets identical "
          f"to fp32 (>= {ex.MIN_ROW_AGREEMENT:.0%} required), macro-F1 {parity['macro_f1_fp32']:.4f} -> "
          f"{parity['macro_f1_int8']:.4f} (drop <= {ex.MAX_MACRO_F1_DROP * 100:.0f} pt required): "
          f"{'passed' if parity['passed'] else 'FAILED (not enforced)'}"
          + (f"; transformer alone: drop {alone_parity['macro_f1_drop'] * 100:.2f} pt, "
             f"{alone_parity['label_rows_identical']:.2%} identical" if ensemble else ""))
    return parity


def finish(bundle: Path, ds: Dataset, p_val: np.ndarray, int8_out: Probs, fp32_out: Probs | None,
           base: dict[str, Any], instant_bundle: Path | None, enforce_gates: bool, log: Log,
           s_val: np.ndarray | None = None, escalate_share: float | None = None) -> Path:
    """Tune thresholds (and the ensemble) on validation, gate int8 on test, write the manifest.
    s_val: the transformer's validation sentiment probabilities (None: sentiment is not mixed)."""
    from model_build.transformer.train import tune_ensemble

    fit, val, test = split(ds)
    test_ok = labellable(test)
    lnp = ds.lnp
    if len(p_val) != len(val.texts):
        raise BatchBuildError(f"{len(p_val)} validation probabilities for {len(val.texts)} validation rows: "
                              "the data or the split changed since training")
    alone = tune_ensemble(p_val, None, val.Y, empty_label=lnp, objective=ENSEMBLE_OBJECTIVE,
                          multilabel=ds.multilabel)
    log(f"validation, transformer alone: macro-F1 {alone['val_macro_f1']:.4f}, micro-F1 {alone['val_micro_f1']:.4f}")

    # labels too rare in training (fit + validation rows) to trust: flagged, never a fallback
    low = low_support_labels(list(ds.labels), fit.Y.sum(0) + val.Y.sum(0), ignore=ds.unlabellable)
    never = columns_of(ds.labels, low)
    metrics: dict[str, Any] = {"rows": len(test.texts), "labellable_rows": len(test_ok.texts),
                               "scoring": "model_build.metrics (the instant lane's rule)",
                               "low_support_labels": low}
    outs = {"int8": int8_out, **({"fp32": fp32_out} if fp32_out is not None else {})}
    served: dict[str, np.ndarray] = {}
    for kind, out in outs.items():
        served[f"transformer_{kind}"] = served_labels(test, out[0], alone["thresholds"], alone["min_one_label"],
                                                      sentiment_ok=out[1], never_fallback=never)
        metrics[f"transformer_{kind}"] = quality(test.Y, served[f"transformer_{kind}"], ds.multilabel)
        metrics[f"sentiment_{kind}"] = sentiment_quality(test_ok.sentiment, out[1])

    t = _Tuning(ds, fit, val, test, test_ok, lnp, low, never, outs, metrics, log, escalate_share, served)
    ensemble, inst_test = (None, None) if instant_bundle is None else \
        _ensemble_with_instant(t, bundle, Path(instant_bundle), p_val, s_val, alone)
    parity = _gate_int8(t, int8_out, fp32_out, alone, ensemble, inst_test, enforce_gates)
    parity.update(base.get("parity_extra", {}))
    log("test: " + json.dumps({k: {m: v[m] for m in ("macro_f1", "micro_f1", "accuracy") if m in v}
                               for k, v in metrics.items() if isinstance(v, dict)}))

    from model_build.transformer.export import INPUTS, OUTPUTS

    alone_rule = DecideRule(thresholds=list(alone["thresholds"]), min_one_label=alone["min_one_label"],
                            never_fallback=low)
    models = {
        "int8": ModelEntry(file="model.int8.onnx", kind="encoder-int8", task="multilabel", labels=list(ds.labels),
                           rule=alone_rule, inputs=INPUTS, outputs=OUTPUTS, provider="CPUExecutionProvider",
                           note="dynamic int8, per-channel, reduced range; heads fp32"),
        "fp16": ModelEntry(file="model.fp16.onnx", kind="encoder-fp16", task="multilabel", labels=list(ds.labels),
                           rule=alone_rule, inputs=INPUTS, outputs=OUTPUTS, provider="CUDAExecutionProvider",
                           note="fp16 weights and activations, int64/float32 inputs and outputs"),
    }
    files = {"tokenizer.json": ""}
    if ensemble:
        for f in sorted((bundle / ensemble.instant_dir).rglob("*")):
            if f.is_file():
                files[str(f.relative_to(bundle))] = ""
    fit_rows, val_rows = len(fit.texts), len(val.texts)
    config = dict(base["config"])
    config["val_macro_f1_transformer"] = round(alone["val_macro_f1"], 4)
    config["val_micro_f1_transformer"] = round(alone["val_micro_f1"], 4)
    manifest = Manifest(
        lane="batch", version=bundle.name, created_at=datetime.now(UTC).isoformat(),
        taxonomy=Taxonomy(labels=list(ds.labels), unlabellable=ds.unlabellable,
                          sentiment_classes=list(ds.sentiment_classes), multilabel=ds.multilabel),
        models=models, default_model="ensemble" if ensemble else "int8", ensemble=ensemble, files=files,
        serving=Serving(use_context=ds.context == "column",
                        tokenizer=str(config.get("tokenizer", "tokenizer.json")),
                        max_length=int(config["max_length"])),
        data_spec=ds.spec,
        data={"source": Path(ds.source).name, "fingerprint": ds.fingerprint, "rows": len(ds.texts),
              "fit_rows": fit_rows, "validation_rows": val_rows, "test_rows": len(test.texts),
              "split": "test = seeded 20 % (model_build.data); validation = seeded 15 % of the "
                       "labellable training rows; unlabellable text is excluded from training"},
        metrics=metrics, parity=parity, library_versions=base["library_versions"], build=config,
    )
    if not is_nhs(ds):  # a data spec's build report, as the instant build writes one
        for name in _report(bundle, manifest, t, fit.Y.sum(0) + val.Y.sum(0)):
            manifest.files[name] = ""
    write_manifest(bundle, manifest)
    return bundle


def _report(bundle: Path, manifest: Manifest, t: _Tuning, train_support: np.ndarray) -> list[str]:
    """report.json + report.html beside the model (model_build.report): the served model's
    (int8, the ensemble when there is one) test figures, per label with its training support
    (fit + validation rows) and low-support flag; returns the file names."""
    from model_build import report
    from model_build.metrics import per_label

    key = "ensemble_int8" if manifest.default_model == "ensemble" else "transformer_int8"
    pred = t.served[key]
    per = per_label(t.test.Y, pred, list(t.ds.labels))
    for j, lab in enumerate(t.ds.labels):
        per[lab]["train_support"] = int(train_support[j])
        per[lab]["low_support"] = lab in t.low
    test_metrics: dict[str, Any] = {manifest.default_model: t.metrics[key]}
    sent = t.metrics.get("sentiment_ensemble_int8", t.metrics.get("sentiment_int8"))
    if t.ds.sentiment_classes and sent:
        test_metrics["sentiment"] = sent
    return report.write(bundle, manifest, t.test.Y, pred, test_metrics, per)


def instant_thresholds(manifest: Manifest, name: str) -> list[float]:
    return list(manifest.rule_of(name).thresholds)


def _progress():
    """Rich progress bar with ETA (on a terminal)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn())


def _versions() -> dict[str, str]:
    import onnxruntime
    import tokenizers
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__, "tokenizers": tokenizers.__version__,
            "python": platform.python_version()}


# ----------------------------------------------------------------------------- build
SIDE_FILES = ("model.fp32.onnx", "model.pt", "encoder_config.json", "val_transformer_probs.npy",
              "val_sentiment_probs.npy", "val_ids.json", "build_info.json")


def build(  # noqa: PLR0915 (train, export, package: one script, read top to bottom)
        ds: Dataset, out_root: Path, base_model: str, cfg, *, tiny: bool = False,
        instant_bundle: Path | None = None, enforce_gates: bool = True, side_dir: Path | None = None,
        max_steps: int | None = None, log: Log = print, escalate_share: float | None = None) -> Path:
    """Train and export fp32 ONNX into the side folder, then `package` it. Returns the bundle."""
    import torch

    from model_build.transformer import export as ex
    from model_build.transformer.model import (
        MAX_LENGTH,
        EncoderClassifier,
        load_encoder,
        load_tokenizer,
        tiny_encoder,
    )
    from model_build.transformer.train import predict, train, tune_ensemble
    from twolane.predictors.batch import OnnxEncoder

    t_start = time.monotonic()
    torch.manual_seed(cfg.seed)
    version = new_version(ds.fingerprint)
    tmp = Path(tempfile.mkdtemp(prefix="twolane-batch-"))
    side = (Path(side_dir) if side_dir else tmp) / version
    try:
        tok = load_tokenizer(base_model, MAX_LENGTH)
        pad_id = tok.token_to_id("[PAD]") or 0
        fit, val, test = split(ds)
        if len(fit.texts) < 20 or len(val.texts) < 5:
            raise BatchBuildError(f"too few labelled training rows ({len(fit.texts)} fit, {len(val.texts)} "
                                  f"validation) in {ds.source}")

        def enc(texts: list[str]) -> list[list[int]]:
            return [e.ids for e in tok.encode_batch(texts)]

        log(f"data: {len(fit.texts)} fit, {len(val.texts)} validation (from the training split), "
            f"{len(test.texts)} test; base model {base_model}{' (tiny random config)' if tiny else ''}")
        encoder = tiny_encoder(base_model, tok.get_vocab_size(), cfg.seed) if tiny else load_encoder(base_model)
        # a data spec without sentiment: a one-class head, never trained (no row has a class)
        # and never served (the taxonomy has no sentiment classes)
        model = EncoderClassifier(encoder, len(ds.labels), max(1, len(ds.sentiment_classes)))
        fit_ids = enc(encoder_texts(fit))
        t_train = time.monotonic()
        with _progress() as prog:
            task = prog.add_task("train", total=None, info="")
            plain = not prog.console.is_terminal  # a log file: a line every 50 steps instead

            def on_step(step: int, total: int, loss: float) -> None:
                prog.update(task, completed=step, total=total, info=f"loss {loss:.3f}")
                if plain and (step % 50 == 0 or step == total):
                    el = time.monotonic() - t_train
                    log(f"  step {step}/{total} loss {loss:.3f} elapsed {el / 60:.1f} min "
                        f"ETA {el / step * (total - step) / 60:.1f} min")

            val_ids = enc(encoder_texts(val))

            def on_epoch(epoch: int) -> None:  # progress with evidence: validation after each epoch
                if tiny:
                    return
                t0 = time.monotonic()
                p_l, p_s = predict(model, val_ids, pad_id)
                scored = val.Y.sum(1) > 0
                tuned = tune_ensemble(p_l[scored], None, val.Y[scored], empty_label=ds.lnp,
                                      multilabel=ds.multilabel)
                acc = sentiment_quality(val.sentiment, p_s)["accuracy"]
                log(f"  epoch {epoch}: validation macro-F1 {tuned['val_macro_f1']:.4f} (tuned thresholds), "
                    f"sentiment accuracy {acc:.4f} ({time.monotonic() - t0:.0f} s)")

            summary = train(model, fit_ids, fit.Y, fit.sentiment, cfg, pad_id, on_step, max_steps, on_epoch,
                            multilabel=ds.multilabel)
        log(f"trained {summary['epochs_run']} epoch(s), {summary['steps']} steps in {summary['seconds']} s "
            f"on {summary['device']}; epoch losses {[round(x, 4) for x in summary['epoch_losses']]}"
            + (f" ({summary['budget_note']})" if summary["budget_note"] else ""))

        p_val, s_val = predict(model, val_ids, pad_id)
        model.cpu().eval()
        side.mkdir(parents=True, exist_ok=True)
        fp32_raw = ex.export_onnx(model, tmp / "model.fp32.raw.onnx",
                                  tok.encode("The staff were kind and the ward was clean.").ids)
        cfg_enc: Any = model.encoder.config
        fused = ex.optimise(fp32_raw, side / "model.fp32.onnx", cfg_enc.num_attention_heads, cfg_enc.hidden_size)
        log(f"exported fp32 ONNX: fused {fused}")
        test_ok = encoder_texts(labellable(test))
        fp32_test = OnnxEncoder(side / "model.fp32.onnx", tok).proba(test_ok)[0]
        torch_test = predict(model, enc(test_ok), pad_id)[0]
        onnx_vs_torch = float(np.abs(fp32_test - torch_test).max()) if test_ok else 0.0
        if onnx_vs_torch > 1e-3:
            raise BatchBuildError(f"fp32 ONNX differs from PyTorch by {onnx_vs_torch:.2e} (> 1e-3)")
        torch.save(model.state_dict(), side / "model.pt")
        (side / "encoder_config.json").write_text(cfg_enc.to_json_string())
        np.save(side / "val_transformer_probs.npy", p_val)
        np.save(side / "val_sentiment_probs.npy", s_val)
        (side / "val_ids.json").write_text(json.dumps(val.ids))
        info = {"library_versions": _versions(), "parity_extra": {"fp32_onnx_vs_torch_max_abs": onnx_vs_torch},
                "rows": len(ds.texts), "fingerprint": ds.fingerprint, "config": {
                    "base_model": base_model, "tiny": tiny, "max_length": MAX_LENGTH,
                    "tokenizer": "tokenizer.json", "pooling": "attention-masked mean",
                    "heads": ("linear multilabel (BCE with pos_weight, on comments with at least one label) "
                              if ds.multilabel else "linear single-label (softmax cross-entropy) ")
                             + "+ linear sentiment (CE with ordinal label smoothing, rows without a sentiment "
                             "excluded), one shared encoder", "train": cfg.as_dict(),
                    "train_summary": {k: v for k, v in summary.items() if k != "losses"}, "fused_ops": fused,
                    "fp32_onnx": "kept out of the bundle" + (f": {side}" if side_dir else ""),
                    "train_export_seconds": round(time.monotonic() - t_start, 1)}}
        (side / "build_info.json").write_text(json.dumps(info, indent=1))
        return package(side, ds, Path(out_root), instant_bundle, enforce_gates, log, version=version,
                       escalate_share=escalate_share)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def package(side: Path, ds: Dataset, out_root: Path, instant_bundle: Path | None, enforce_gates: bool = True,
            log: Log = print, version: str | None = None, escalate_share: float | None = None) -> Path:
    """From a side folder (fp32 ONNX + validation probabilities): quantise int8, convert fp16, add the
    tokenizer, tune, gate and write `out_root/batch/<version>/`. Deterministic, so a bundle can be
    re-made from the same training (`--retune`), e.g. against a newer instant bundle."""
    from model_build.transformer import export as ex
    from model_build.transformer.model import load_tokenizer
    from twolane.predictors.batch import OnnxEncoder
    from twolane.predictors.batch import load_tokenizer as serve_tokenizer

    t0 = time.monotonic()
    info = json.loads((side / "build_info.json").read_text())
    if info.get("fingerprint") not in (None, ds.fingerprint) or info.get("rows") not in (None, len(ds.texts)):
        raise BatchBuildError(f"{side} was trained on {info.get('rows')} rows, not {len(ds.texts)}")
    fit, val, test = split(ds)
    if json.loads((side / "val_ids.json").read_text()) != val.ids:
        raise BatchBuildError("the validation fold differs from the one saved at training time")
    version = version or new_version(ds.fingerprint)
    bundle = Path(out_root) / "batch" / version
    bundle.mkdir(parents=True, exist_ok=False)
    try:
        cfg = info["config"]
        ex.quantise_int8(side / "model.fp32.onnx", bundle / "model.int8.onnx")
        ex.to_fp16(side / "model.fp32.onnx", bundle / "model.fp16.onnx")
        tok = load_tokenizer(cfg["base_model"], cfg["max_length"])
        tok.save(str(bundle / "tokenizer.json"))
        stok = serve_tokenizer(bundle / "tokenizer.json", cfg["max_length"])
        val_in = encoder_texts(val)[:50]
        if [e.ids for e in stok.encode_batch(val_in)] != [e.ids for e in tok.encode_batch(val_in)]:
            raise BatchBuildError("the bundled tokenizer.json tokenises differently from training")
        test_ok = encoder_texts(labellable(test))
        fp32_out = OnnxEncoder(side / "model.fp32.onnx", stok).proba(test_ok)
        int8_out = OnnxEncoder(bundle / "model.int8.onnx", stok).proba(test_ok)
        sub = test_ok[:200]  # fp16 is for CUDA; onnxruntime runs it on CPU too, slowly: a slice
        fp16_out = OnnxEncoder(bundle / "model.fp16.onnx", stok).proba(sub)
        parity_extra = dict(info.get("parity_extra", {}))
        parity_extra["fp16_vs_fp32_on_cpu"] = {
            "rows": len(sub),
            "max_abs_prob_diff": float(np.abs(fp16_out[0] - fp32_out[0][:len(sub)]).max()) if sub else 0.0,
            "sentiment_identical": float((fp16_out[1].argmax(1) == fp32_out[1][:len(sub)].argmax(1)).mean())
            if sub else 1.0}
        parity_extra["int8_fp32_nodes"] = len(ex.fp32_nodes(side / "model.fp32.onnx"))
        base = {"library_versions": info["library_versions"], "parity_extra": parity_extra,
                "config": dict(cfg, side_folder=side.name)}
        s_val_file = side / "val_sentiment_probs.npy"
        finish(bundle, ds, np.load(side / "val_transformer_probs.npy"), int8_out, fp32_out, base,
               instant_bundle, enforce_gates, log, np.load(s_val_file) if s_val_file.is_file() else None,
               escalate_share)
        m = read_manifest(bundle)
        m.build["package_seconds"] = round(time.monotonic() - t0, 1)
        write_manifest(bundle, m)
        log(f"bundle: {bundle}")
        return bundle
    except BaseException:
        shutil.rmtree(bundle, ignore_errors=True)
        raise


def retune(side_or_version: Path | str, instant_bundle: Path | None, data: Path | None = None,
           out_root: Path | None = None, log: Log = print, escalate_share: float | None = None) -> Path:
    """Re-package an earlier training run (side folder or its version name under build/batch/)."""
    side = Path(side_or_version)
    if not (side / "build_info.json").is_file():
        side = BUILD_DIR / str(side_or_version).rstrip("/").split("/")[-1]
    if not (side / "build_info.json").is_file():
        raise BatchBuildError(f"no saved training run at {side_or_version} (looked in {BUILD_DIR})")
    info = json.loads((side / "build_info.json").read_text())
    ds = load_dataset(data or DEFAULT_DATA)
    if info.get("rows") and info["rows"] != len(ds.texts):
        ds = ds.head(int(info["rows"]))
    from twolane.settings import get_settings

    return package(side, ds, Path(out_root or get_settings().bundles), instant_bundle, True, log,
                   escalate_share=escalate_share)


def instant_of_taxonomy(ds: Dataset, named: Path | None, roots: Sequence[Path], log: Log) -> Path | None:
    """The instant bundle the ensemble mixes in: `named` (TWOLANE_INSTANT_BUNDLE: a bundle or a
    bundles root) when it labels in the data's taxonomy (`same_taxonomy`), else the newest
    instant bundle of that taxonomy under `roots`; None (the transformer alone) when there is
    none."""
    from twolane.bundle import BundleError, resolve_bundle

    def fits(path: Path) -> bool:
        try:
            return same_taxonomy(read_manifest(path), ds)
        except BundleError:
            return False

    if named is not None:
        try:
            path = resolve_bundle(named, "instant")
        except BundleError:
            path = None
        if path is not None and fits(path):
            return path
        log(f"instant bundle {named} is not of this data's taxonomy: not mixed in")
    for root in roots:
        lane = Path(root) / "instant"
        found = sorted((p for p in lane.iterdir() if fits(p)), key=lambda p: p.name) if lane.is_dir() else []
        if found:
            return found[-1]
    return None


def load_data(data: Path | None, spec: SpecArgs | None) -> Dataset:
    """The training data as `twolane build instant` reads it: the NHS file by its preset with no
    flag and no file, else `data` read by the spec (model_build.dataspec). Raises DataError."""
    from model_build import dataspec

    spec = spec or SpecArgs()
    if data is None and spec.empty:
        return load_dataset(DEFAULT_DATA)
    return dataspec.load(Path(data) if data else DEFAULT_DATA, spec)


def run(data: Path | None = None, out: Path | None = None, model: str | None = None,
        epochs: int | None = None, rows: int | None = None, max_minutes: float | None = None,
        retune_from: Path | None = None, escalate_share: float | None = None,
        spec: SpecArgs | None = None) -> Path:
    """The full build (CLI `twolane build batch`). Uses a GPU when torch sees one.

    `data` read by `spec` (load_data); raises DataError (one line) for data it cannot learn from."""
    from model_build.transformer.model import default_base_model
    from model_build.transformer.train import TrainConfig
    from twolane.settings import get_settings

    def log(msg: str) -> None:
        print(msg, flush=True)

    s = get_settings()
    root = Path(out) if out else s.bundles
    if retune_from is not None:  # a saved NHS training run
        from twolane.bundle import latest_bundle

        inst = s.instant_bundle or latest_bundle(s.bundles, "instant") or latest_bundle(root, "instant")
        return retune(retune_from, inst, data=data, out_root=root, log=log, escalate_share=escalate_share)
    ds = load_data(data, spec)
    if rows:
        ds = ds.head(rows)
    log(f"batch build: {len(ds.ids)} rows from {Path(ds.source).name}, {len(ds.labels)} labels "
        f"({'multi' if ds.multilabel else 'single'}-label), sentiment: {', '.join(ds.sentiment_classes) or 'none'}"
        + (f", context column {ds.spec.context_column!r}" if ds.context == "column" and ds.spec else ""))
    inst = instant_of_taxonomy(ds, s.instant_bundle, [s.bundles, root], log)
    if inst is None:
        log("no instant bundle of this taxonomy found: building the transformer alone (no ensemble)")
    cfg = TrainConfig(epochs=epochs or DEFAULT_EPOCHS,
                      max_minutes=(DEFAULT_MAX_MINUTES if is_nhs(ds) else SPEC_MAX_MINUTES) if max_minutes is None
                      else (max_minutes or None))
    bundle = build(ds, root, model or default_base_model(), cfg, instant_bundle=inst, side_dir=BUILD_DIR, log=log,
                   escalate_share=escalate_share)
    from rich.console import Console

    from model_build import report

    report.print_summary(bundle, Console())  # a data spec's build has a report (NHS: none, nothing printed)
    return bundle


def build_tiny_bundle(out: Path, instant_bundle: Path | None = None, rows: int = 300,
                      ds: Dataset | None = None) -> Path:
    """A tiny randomly initialised encoder (2 layers, hidden 64, the real MiniLM tokenizer), trained
    a few steps on a small real slice (the first `rows` NHS rows, or `ds`, e.g. a data spec's
    file) and exported exactly like the real build (gates recorded, not enforced: a random
    model sits on its thresholds). For tests."""
    from model_build.transformer.model import default_base_model
    from model_build.transformer.train import TrainConfig

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ds = ds if ds is not None else load_dataset(DEFAULT_DATA).head(rows)
    cfg = TrainConfig(epochs=1, batch_size=32, encoder_lr=1e-3, head_lr=3e-3)
    return build(ds, Path(out), default_base_model(), cfg, tiny=True, instant_bundle=instant_bundle,
                 enforce_gates=False, max_steps=8, log=lambda s: None)
