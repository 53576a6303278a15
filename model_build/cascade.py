"""The cascade's rule, learned on the validation fold: when the instant lane's answer is enough.

    python -m model_build.cascade [BUNDLE] [--escalate-share X] [--data CSV]

The batch build calls `learn` on the validation fold it tunes the ensemble on (never the test
split) and stores the result as the manifest's `ensemble.cascade` (twolane.bundle.Cascade);
this module's CLI computes it for an existing batch bundle without retraining and writes it into
that bundle's manifest (the model files are untouched; their hashes stay).

On the validation fold both lanes' outputs are as serving would give them: the instant lane's
probabilities from its models refitted on the fit rows only (as the ensemble's tuning gets them:
the shipped instant bundle saw the validation rows), decided by the instant bundle's rule; the
batch lane's from the transformer's validation probabilities ensembled with those. Every pair
of cut-offs on a grid of the two margins' quantiles (twolane.predictors.cascade) is scored by
the scoring rule (model_build.metrics); the curve keeps, per share escalated (1 % steps), the
pair whose worst gap to the batch lane (macro-F1, micro-F1, sentiment accuracy) is smallest.
The shipped point is the smallest share whose worst gap is within `TOLERANCE`, at most
`MAX_SHARE` (or the share `--escalate-share` names).

Every share is a share of ALL comments, as a job meets them. The validation fold holds no junk
text (twolane.rules.is_unlabellable: blanks, placeholders, lone numbers; about 22 % of the NHS
comments), because the transformer never trains on it; serving answers junk text by rule in both
lanes and never escalates it. So a share counted on the validation fold is scaled by the share
of the training split that is not junk (`non_junk_share`) to say what the rule escalates of a
job's comments. (Counted on the validation fold alone, the shipped rule's 34 % was 24 % of the
test split's comments: the cap stopped it a third early.) The quality figures stay those of the
validation rows: junk rows score alike in both lanes, so leaving them out can only widen a gap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_build.data import DEFAULT_DATA, Dataset, load_dataset
from model_build.dataspec import load, spec_args_of
from model_build.folds import BUILD_DIR, instant_out_of_fold, split
from model_build.metrics import multilabel_scores, sentiment_scores
from twolane.bundle import (
    BatchEnsemble,
    BundleError,
    Cascade,
    CascadePoint,
    DecideRule,
    Taxonomy,
    read_manifest,
    write_manifest,
)
from twolane.predictors.batch import BatchPredictor, combine, mix_sentiment
from twolane.predictors.cascade import margins
from twolane.predictors.decide import LabelDecider
from twolane.predictors.instant import InstantPredictor
from twolane.rules import is_unlabellable

TOLERANCE = 0.005  # the shipped point: within half a point of the batch lane on validation...
MAX_SHARE = 0.35  # ...sending at most this share of comments to the transformer
GRID_QUANTILES = np.linspace(0.0, 1.0, 41)  # cut-off candidates: quantiles of each margin
CURVE_STEP = 0.01  # the curve's share resolution
TUNED_ON = ("validation fold of the training split (model_build.folds.split); instant "
            "probabilities there from its models refitted on the fit rows only")


def non_junk_share(texts: list[str]) -> float:
    """The share (0..1) of these comments that is not junk text (twolane.rules.is_unlabellable):
    the comments a cascade may escalate. 1.0 for no comments."""
    if not texts:
        return 1.0
    return 1.0 - sum(is_unlabellable(t) for t in texts) / len(texts)


def tuned_on(non_junk: float) -> str:
    """The manifest's `tuned_on` line: where the rule was learned and how its shares are counted."""
    return (f"{TUNED_ON}; shares are of all comments: the fold's share times {non_junk:.3f}, the "
            "share of the training split that is not junk text (junk is answered by rule, never "
            "escalated)")


@dataclass
class LaneOut:
    """One lane's served answer on a set of comments: probabilities, label matrix (bool n x L)
    and sentiment class (argmax, int n; -1 where it gives none)."""

    P: np.ndarray
    S: np.ndarray
    D: np.ndarray
    sent: np.ndarray


def lane_out(taxonomy: Taxonomy, rule: DecideRule, P: np.ndarray, S: np.ndarray,
             unknown: np.ndarray) -> LaneOut:
    """Decide P (n x L) and S (n x k, NaN rows: no sentiment) as the serving predictors do;
    `unknown` rows get exactly the unlabellable label."""
    D = LabelDecider(taxonomy, rule).decide(np.asarray(P, np.float32), S, np.asarray(unknown, bool))
    has = ~np.isnan(S).any(1)
    sent = np.where(has, np.nan_to_num(S, nan=0.0).argmax(1), -1)
    return LaneOut(np.asarray(P), np.asarray(S), D, sent)


def merge(esc: np.ndarray, instant: LaneOut, batch: LaneOut) -> tuple[np.ndarray, np.ndarray]:
    """The cascade's (label matrix, sentiment class): the batch lane's rows where `esc`."""
    return (np.where(esc[:, None], batch.D, instant.D), np.where(esc, batch.sent, instant.sent))


def scores(Y: np.ndarray, y_sent: np.ndarray, D: np.ndarray, sent: np.ndarray) -> dict[str, float]:
    """macro-F1, micro-F1, exact match (model_build.metrics.multilabel_scores) and sentiment
    accuracy (sentiment_scores) of one answer."""
    m = multilabel_scores(Y, D.astype(np.uint8))
    s = sentiment_scores(y_sent, sent) if (y_sent >= 0).any() else {"accuracy": 0.0}
    return {"macro_f1": m["macro_f1"], "micro_f1": m["micro_f1"],
            "exact_accuracy": m["exact_accuracy"], "sentiment_accuracy": s["accuracy"]}


def worst_gap(got: dict[str, float], batch: dict[str, float]) -> float:
    """The cascade's worst shortfall against the batch lane (negative: below it), over the goal's
    metrics: macro-F1, micro-F1, sentiment accuracy."""
    return min(got[k] - batch[k] for k in ("macro_f1", "micro_f1", "sentiment_accuracy"))


def _candidates(m: np.ndarray) -> list[float]:
    finite = m[np.isfinite(m)]
    if not len(finite):
        return [0.0]
    qs = np.quantile(finite, GRID_QUANTILES)
    return sorted({0.0, *(float(x) for x in qs), float(finite.max()) + 1e-3})


def learn(Y: np.ndarray, y_sent: np.ndarray, instant: LaneOut, batch: LaneOut,
          thresholds: np.ndarray, lnp: int | None, instant_version: str,
          escalate_share: float | None = None, tolerance: float = TOLERANCE,
          max_share: float = MAX_SHARE, non_junk: float = 1.0, multilabel: bool = True) -> Cascade:
    """The cascade rule from both lanes' outputs on the validation fold (Y: n x L truth, y_sent:
    n sentiment classes, -1 none; thresholds: the instant lane's, L). `escalate_share` (0..1 of
    all comments): ship the best pair escalating at most that share; None: the smallest share
    within `tolerance` of the batch lane on every goal metric, at most `max_share`. `non_junk`
    (0..1, `non_junk_share` of the training split): the fold's shares times it are the shares
    of all comments (module docstring). `multilabel`: the taxonomy's (which theme margin,
    twolane.predictors.cascade.margins)."""
    m_t, m_s = margins(instant.P, instant.S, thresholds, lnp, multilabel)
    ref = scores(Y, y_sent, batch.D, batch.sent)
    grid: list[tuple[float, float, float, dict[str, float]]] = []
    for ct in _candidates(m_t):
        for cs in _candidates(m_s):
            esc = (m_t < ct) | (m_s < cs)
            got = scores(Y, y_sent, *merge(esc, instant, batch))
            grid.append((ct, cs, float(esc.mean()) * non_junk, got))
    curve: list[CascadePoint] = []
    steps = int(round(1.0 / CURVE_STEP))
    for k in range(steps + 1):
        cap = k * CURVE_STEP + 1e-9
        fits = [g for g in grid if g[2] <= cap]
        ct, cs, share, got = max(fits, key=lambda g: (worst_gap(g[3], ref), -g[2]))
        if curve and curve[-1].theme_margin_below == ct and curve[-1].sentiment_margin_below == cs:
            continue
        # the cut-offs exactly as scored: a rounded one can cross a tie of margins
        curve.append(CascadePoint(theme_margin_below=ct, sentiment_margin_below=cs,
                                  escalate_share=round(share, 4),
                                  **{key: round(v, 4) for key, v in got.items()}))
    if escalate_share is not None:
        chosen = [p for p in curve if p.escalate_share <= escalate_share + 1e-9][-1]
        how = f"--escalate-share {escalate_share}: the best cut-offs escalating at most that share"
    else:
        ref4 = {k: round(v, 4) for k, v in ref.items()}
        within = [p for p in curve if p.escalate_share <= max_share + 1e-9
                  and worst_gap(p.model_dump(), ref4) >= -tolerance]
        capped = [p for p in curve if p.escalate_share <= max_share + 1e-9]
        chosen = within[0] if within else capped[-1]
        how = (f"the smallest share within {tolerance * 100:.1f} pt of the batch lane on validation "
               f"(macro-F1, micro-F1, sentiment accuracy), at most {max_share:.0%}"
               + ("" if within else ": none was, so the cap"))
    return Cascade(theme_margin_below=chosen.theme_margin_below,
                   sentiment_margin_below=chosen.sentiment_margin_below,
                   escalate_share=chosen.escalate_share, chosen_by=how,
                   instant_version=instant_version, tuned_on=tuned_on(non_junk), validation_rows=len(Y),
                   curve=curve)


# ----------------------------------------------------------------------------- an existing bundle
def validation_outputs(bundle: Path, data: Path | None = None
                       ) -> tuple[Dataset, LaneOut, LaneOut, np.ndarray, int | None, str, float]:
    """Both lanes' outputs on the validation fold of an existing batch bundle (see module
    docstring): (validation Dataset, instant, batch, instant thresholds, lnp column, instant
    version, `non_junk_share` of the training split). The transformer's validation
    probabilities come from the build's side folder when it is still there
    (build/batch/<side_folder>/), else from the bundle's int8 model."""
    manifest = read_manifest(bundle)
    ens = manifest.ensemble
    if not isinstance(ens, BatchEnsemble):
        raise BundleError(f"bundle {bundle} has no ensemble with the instant lane: no cascade")
    if manifest.data_spec is None or manifest.data_spec.preset == "nhs":
        ds = load_dataset(data or DEFAULT_DATA)
    elif data is None:
        raise BundleError(f"bundle {bundle.name} was built from a team's file: give that file with --data")
    else:  # read as the bundle's build read it
        ds = load(data, spec_args_of(manifest.data_spec))
    if manifest.data.get("rows") not in (None, len(ds.texts)):
        ds = ds.head(int(str(manifest.data["rows"])))
    fit, val, _test = split(ds)
    inst_dir = bundle / ens.instant_dir
    inst_manifest = read_manifest(inst_dir)
    side = BUILD_DIR / str(manifest.build.get("side_folder", ""))
    if (side / "val_transformer_probs.npy").is_file() and (side / "val_sentiment_probs.npy").is_file():
        p_val, s_val = np.load(side / "val_transformer_probs.npy"), np.load(side / "val_sentiment_probs.npy")
    else:
        p_val, s_val = BatchPredictor.from_bundle(bundle, use_instant=False).encoder.proba(val.texts)
    oof = instant_out_of_fold(inst_manifest, fit, val)
    served = InstantPredictor.from_bundle(inst_dir, model=ens.instant_model)
    return (val, *both_lanes(manifest.taxonomy, inst_manifest.rule_of(ens.instant_model), ens, served,
                             val.texts, val.question_types, oof[ens.instant_model], oof["sentiment"],
                             p_val, s_val), inst_manifest.version, non_junk_share(ds.train.texts))


def both_lanes(taxonomy: Taxonomy, instant_rule: DecideRule, ens: BatchEnsemble, served: Any,
               texts: list[str], qts: list[str], p_inst: np.ndarray, s_inst: np.ndarray,
               p_val: np.ndarray, s_val: np.ndarray
               ) -> tuple[LaneOut, LaneOut, np.ndarray, int | None]:
    """(instant, batch, instant thresholds, lnp) on validation rows from the refitted instant
    lane's probabilities (p_inst, s_inst) and the transformer's (p_val, s_val); `served` (the
    shipped InstantPredictor) says which rows hold no known n-gram (both lanes: the rule)."""
    lnp = taxonomy.labels.index(taxonomy.unlabellable) if taxonomy.unlabellable else None
    P_served, _ = served.predict_arrays(texts, qts)
    unknown = P_served[:, lnp] >= 1.0 if lnp is not None else np.zeros(len(texts), bool)
    P_i = np.asarray(p_inst, np.float32).copy()
    S_i = np.asarray(s_inst, np.float32).copy()
    if lnp is not None:
        P_i[:, lnp] = 0.0
        P_i[unknown] = 0.0
        P_i[unknown, lnp] = 1.0
    S_i[unknown] = np.nan
    P_b = combine(ens.weight_transformer, ens.combine, np.asarray(p_val, np.float32), P_i)
    S_b = mix_sentiment(ens.sentiment, s_val, S_i, qts)
    S_b[unknown] = np.nan
    instant = lane_out(taxonomy, instant_rule, P_i, S_i, unknown)
    batch = lane_out(taxonomy, ens.rule, P_b, S_b, unknown)
    return instant, batch, np.asarray(instant_rule.thresholds, np.float32), lnp


def for_bundle(bundle: Path, data: Path | None = None, escalate_share: float | None = None,
               write: bool = True) -> Cascade:
    """The cascade rule of an existing batch bundle (validation fold only), written into its
    manifest's `ensemble.cascade` when `write`. Raises BundleError for a bundle without an
    ensemble with the instant lane."""
    val, instant, batch, thresholds, lnp, version, non_junk = validation_outputs(bundle, data)
    rule = learn(val.Y, val.sentiment, instant, batch, thresholds, lnp, version, escalate_share,
                 non_junk=non_junk, multilabel=read_manifest(bundle).taxonomy.multilabel)
    if write:
        manifest = read_manifest(bundle)
        assert isinstance(manifest.ensemble, BatchEnsemble)
        manifest.ensemble.cascade = rule
        write_manifest(bundle, manifest)
    return rule


def main(argv: list[str] | None = None) -> None:
    import argparse

    from twolane.bundle import resolve_bundle
    from twolane.settings import get_settings

    ap = argparse.ArgumentParser(description="Learn the cascade rule of a batch bundle on its "
                                             "validation fold and write it into its manifest.")
    ap.add_argument("bundle", nargs="?", help="batch bundle folder or bundles root (default: settings)")
    ap.add_argument("--escalate-share", type=float, default=None, help="share of comments (0..1)")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--dry-run", action="store_true", help="print the rule, write nothing")
    a = ap.parse_args(argv)
    bundle = resolve_bundle(a.bundle or get_settings().bundles, "batch")
    rule = for_bundle(bundle, a.data, a.escalate_share, write=not a.dry_run)
    print(json.dumps(rule.model_dump(exclude={"curve"}), indent=1))
    print(f"curve: {len(rule.curve)} points; {'not written (dry run)' if a.dry_run else 'written to ' + str(bundle)}")


if __name__ == "__main__":
    main()
