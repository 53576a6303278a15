"""The batch build's tuning step, on the validation fold of the training split only
(model_build.folds.split): per-label thresholds and the at-least-one-label rule
(`tune_ensemble`), the instant lane's weight in the ensemble and how the two lanes'
probabilities mix (`ensemble_with_instant`, with the instant lane refitted on the fit rows,
model_build.folds.instant_out_of_fold), how sentiment combines (`tune_sentiment`) and the
cascade's rule (model_build.cascade). Every candidate is decided by the served decide step
(model_build.decide) and scored by model_build.metrics.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model_build import cascade
from model_build.data import Dataset
from model_build.decide import decided, make_rule, served_labels, taxonomy_of, unnamed_taxonomy
from model_build.errors import BatchBuildError
from model_build.folds import instant_out_of_fold
from model_build.metrics import multilabel_scores, quality, sentiment_quality
from twolane.bundle import (
    BatchEnsemble,
    Cascade,
    DecideRule,
    Manifest,
    SentimentMix,
    SentimentStack,
    Taxonomy,
    read_manifest,
)
from twolane.predictors.batch import INSTANT_DIR, combine, mix_sentiment, stack_features
from twolane.predictors.instant import InstantPredictor

# How the ensemble is tuned on the validation fold (`tune_ensemble` below):
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


def same_taxonomy(manifest: Manifest, ds: Dataset) -> bool:
    """Whether an instant bundle labels in the data's taxonomy (labels and sentiment classes)."""
    return (list(manifest.labels) == list(ds.labels)
            and list(manifest.sentiment_classes) == list(ds.sentiment_classes))


def instant_test_proba(instant_bundle: Path, name: str, texts: list[str], qts: list[str]) -> np.ndarray:
    """The instant bundle's model `name` on these texts: label probabilities, float32 n x L."""
    pred = InstantPredictor.from_bundle(instant_bundle, model=name)
    return np.asarray(pred.predict_proba(texts, qts), np.float32)


# ----------------------------------------------------------------------------- sentiment, the ensemble, the cascade
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
class Tuning:
    """What the tuning steps of the packaging (model_build.batch_package.finish) share: the
    split, the scored test rows, the low-support labels and the test outputs of the exported
    encoder (int8, and fp32 when kept)."""

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


def _best_instant_mix(t: Tuning, oof: dict[str, np.ndarray], p_val: np.ndarray) -> dict[str, Any] | None:
    """The best ensemble of the transformer with each instant predictor, on validation."""
    best: dict[str, Any] | None = None
    for name, p_inst in oof.items():
        if name == "sentiment":
            continue
        cand = tune_ensemble(p_val, p_inst, t.val.Y, taxonomy=taxonomy_of(t.ds), combines=ENSEMBLE_COMBINES,
                             objective=ENSEMBLE_OBJECTIVE)
        cand["instant_model"] = name
        t.log(f"  with instant {name}: validation macro-F1 {cand['val_macro_f1']:.4f}, micro-F1 "
              f"{cand['val_micro_f1']:.4f} (transformer weight {cand['weight_transformer']}, "
              f"{cand['combine']} mix)")
        if best is None or cand["score"] > best["score"]:
            best = cand
    return best


def ensemble_with_instant(t: Tuning, bundle: Path, instant_bundle: Path, p_val: np.ndarray,
                           s_val: np.ndarray | None, alone: dict[str, Any]
                           ) -> tuple[BatchEnsemble | None, np.ndarray | None]:
    """Tune the ensemble with the instant bundle on validation; when it beats the transformer
    alone, score it on test (into t.metrics), copy the instant bundle inside and return it with
    the instant lane's test probabilities; else (None, None)."""
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
    cascade_rule = _cascade(t, inst, inst_rule, instant_bundle, best, sent_mix, oof, p_val, s_val)
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
        sentiment=sent_mix, cascade=cascade_rule)
    return ensemble, inst_test


def _cascade(t: Tuning, inst: Manifest, inst_rule: DecideRule, instant_bundle: Path, best: dict[str, Any],
             sent_mix: SentimentMix, oof: dict[str, np.ndarray], p_val: np.ndarray, s_val: np.ndarray | None
             ) -> Cascade | None:
    """The "lane": "auto" rule (model_build.cascade), learned on the validation fold the ensemble
    was tuned on; None without sentiment on both lanes."""
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


# ----------------------------------------------------------------------------- thresholds
THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.025), 3)


def f1_per_threshold(p: np.ndarray, y: np.ndarray, grid: np.ndarray = THRESHOLD_GRID) -> np.ndarray:
    """F1 of one label at each threshold in grid."""
    pred = p[None, :] >= grid[:, None]
    tp = (pred & (y[None, :] == 1)).sum(1)
    fp = (pred & (y[None, :] == 0)).sum(1)
    fn = ((~pred) & (y[None, :] == 1)).sum(1)
    return np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)


def tune_thresholds(probs: np.ndarray, Y: np.ndarray, min_positives: int = 3) -> np.ndarray:
    """Per-label threshold maximising that label's F1 on the validation fold. Labels with fewer
    than min_positives there share one threshold tuned on all labels pooled."""
    pooled = f1_per_threshold(probs.ravel(), Y.ravel())
    shared = float(THRESHOLD_GRID[int(np.argmax(pooled))])
    thr = np.full(Y.shape[1], shared, dtype=np.float32)
    for j in range(Y.shape[1]):
        if Y[:, j].sum() >= min_positives:
            f = f1_per_threshold(probs[:, j], Y[:, j])
            best = np.flatnonzero(f >= f.max() - 1e-9)
            thr[j] = float(THRESHOLD_GRID[best[len(best) // 2]])  # middle of the best plateau
    return thr
OBJECTIVES = ("macro", "macro+micro")


def tune_ensemble(p_transformer: np.ndarray, p_instant: np.ndarray | None, Y: np.ndarray,
                  weights: Sequence[float] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1),
                  taxonomy: Taxonomy | None = None, combines: Sequence[str] = ("probability",),
                  objective: str = "macro", scored_rows_only: bool = True) -> dict:
    """Choose the transformer weight, how probabilities mix (twolane.predictors.batch.combine),
    per-label thresholds and the at-least-one-label rule on a validation fold (weight 1.0 =
    transformer alone). objective: "macro" (macro-F1) or "macro+micro" (their sum), scored by
    model_build.metrics; scored_rows_only: tune and score on the rows the scoring rule keeps
    (truth with at least one label). Every candidate is decided by the served decide step
    (model_build.decide) in `taxonomy` (None: `unnamed_taxonomy`, multilabel, no unlabellable
    label); a single-label taxonomy is decided by its top label (the thresholds are recorded,
    never read, and min_one_label is False). Returns weight_transformer, combine, thresholds
    (list of floats), min_one_label and val_macro_f1 / val_micro_f1."""
    taxonomy = taxonomy or unnamed_taxonomy(Y.shape[1])
    multilabel = taxonomy.multilabel
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, not {objective!r}")
    keep = Y.sum(1) > 0 if scored_rows_only else np.ones(len(Y), bool)
    if not keep.any():
        keep = np.ones(len(Y), bool)
    candidates = [(w, c) for w in weights for c in combines] if p_instant is not None else [(1.0, "probability")]
    best: dict | None = None
    for w, how in candidates:
        p = p_transformer if p_instant is None else combine(w, how, p_transformer, p_instant)
        thr = tune_thresholds(p[keep], Y[keep])
        for min_one in (False, True) if multilabel else (False,):
            pred = decided(taxonomy, make_rule(thr, min_one), p)
            sc = multilabel_scores(Y[keep], pred[keep])
            score = sc["macro_f1"] + (sc["micro_f1"] if objective == "macro+micro" else 0.0)
            if best is None or score > best["score"] + 1e-9:
                best = {"weight_transformer": float(w), "combine": how, "thresholds": [float(t) for t in thr],
                        "min_one_label": min_one, "score": float(score), "val_macro_f1": sc["macro_f1"],
                        "val_micro_f1": sc["micro_f1"], "objective": objective}
    assert best is not None
    return best
