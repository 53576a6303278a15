"""The batch lane on a team's own data (issue 21 part 4): the transformer fine-tuned on the
drug-review spec, next to the instant lane and the two TF-IDF + logistic-regression baselines of
bench/own_data.py, all trained on the same rows and judged on the same held-out rows.

Data and spec exactly as bench/own_data.py (600 reviews of the 20 conditions with >= 10 reviews,
single-label `condition`, three-class words sentiment `rating`), read as
`twolane build batch --data ... --text-column review --labels-column condition
--sentiment-column rating --sentiment-order negative,neutral,positive` reads it.

- instant: `twolane build instant` (default Config), served by the InstantPredictor;
- batch, transformer alone: the packaged all-MiniLM-L6-v2 fine-tuned by model_build.batch
  (`--epochs`, bounded by `--max-minutes`), int8 ONNX, served by the BatchPredictor without the
  instant lane;
- batch, served: the bundle's default (the ensemble with the instant bundle of the same taxonomy
  when it beat the transformer alone on the validation fold, else the transformer alone);
- the two baselines of bench/own_data.py.

One scoring rule: model_build.metrics. Writes bench/results/own_data_batch.json and the
own_data_batch section of bench/RESULTS.md.

    python -m bench.own_data_batch [--epochs 6] [--max-minutes 6]   # ~8-10 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.batch import label_matrix
from bench.own_data import MIN_PER_CONDITION, ORDER, baseline, onehot, reviews, scores

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "own_data_batch.json"
MD = ROOT / "bench" / "RESULTS.md"


def sentiment_of(preds: list[Any]) -> np.ndarray:
    names = list(ORDER)
    return np.array([names.index(p.sentiment.label) if p.sentiment else -1 for p in preds])


def cascade_on_test(bundle: Path, test: Any) -> dict[str, Any] | None:
    """The batch bundle's cascade rule (learned on its validation fold, issue 31: single-label
    margin = top-two label gap) applied unchanged to the test split, both lanes as served:
    label accuracy (single-label), macro-F1 and sentiment accuracy of the instant lane, the
    batch lane and the cascade, and the share escalated. None without a rule."""
    from bench.cascade import lanes
    from model_build import metrics
    from model_build.cascade import merge
    from twolane.bundle import BatchEnsemble
    from twolane.predictors.batch import BatchPredictor
    from twolane.rules import is_unlabellable

    batch = BatchPredictor.from_bundle(bundle)
    ens = batch.manifest.ensemble
    if not isinstance(ens, BatchEnsemble) or ens.cascade is None or batch.instant is None:
        return None
    rule = ens.cascade
    inst, bat, m_t, m_s = lanes(batch, test.texts, test.question_types)
    y_sent = np.where([is_unlabellable(t) for t in test.texts], -1, test.sentiment)

    def at(D: np.ndarray, sent: np.ndarray) -> dict[str, float]:
        m = metrics.multilabel_scores(test.Y, D.astype(np.uint8))
        return {"accuracy": round(metrics.single_label_accuracy(test.Y, D.astype(np.uint8)), 4),
                "macro_f1": round(m["macro_f1"], 4),
                "sentiment_accuracy": round(metrics.sentiment_scores(y_sent, sent)["accuracy"], 4)}

    esc = (m_t < rule.theme_margin_below) | (m_s < rule.sentiment_margin_below)
    curve = []
    for p in rule.curve:
        e = (m_t < p.theme_margin_below) | (m_s < p.sentiment_margin_below)
        curve.append({"val_share": p.escalate_share, "share": round(float(e.mean()), 4), **at(*merge(e, inst, bat))})
    return {"rule": rule.model_dump(exclude={"curve"}), "instant": at(inst.D, inst.sent),
            "batch": at(bat.D, bat.sent), "cascade": {**at(*merge(esc, inst, bat)),
                                                      "share": round(float(esc.mean()), 4)},
            "curve": curve}


def main(epochs: int, max_minutes: float) -> dict[str, Any]:  # noqa: PLR0915 (one benchmark, top to bottom)
    from model_build import metrics
    from model_build.batch import build as batch_build
    from model_build.instant import Config
    from model_build.instant import build as instant_build
    from model_build.transformer.model import default_base_model
    from model_build.transformer.train import TrainConfig
    from twolane.bundle import read_manifest
    from twolane.predictors.batch import BatchPredictor
    from twolane.predictors.instant import InstantPredictor

    with tempfile.TemporaryDirectory() as tmp:
        ds = reviews(Path(tmp))
        t0 = time.perf_counter()
        inst_bundle = instant_build(ds, Path(tmp) / "bundles", Config())
        instant_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        cfg = TrainConfig(epochs=epochs, max_minutes=max_minutes)
        batch_bundle = batch_build(ds, Path(tmp) / "bundles", default_base_model(), cfg,
                                   instant_bundle=inst_bundle)
        batch_s = time.perf_counter() - t0
        train, test = ds.train, ds.test
        got = {"instant": InstantPredictor.from_bundle(inst_bundle).predict_texts(test.texts),
               "batch_transformer": BatchPredictor.from_bundle(batch_bundle, use_instant=False)
               .predict_texts(test.texts),
               "batch_served": BatchPredictor.from_bundle(batch_bundle).predict_texts(test.texts)}
        m = read_manifest(batch_bundle)
        cascade = cascade_on_test(batch_bundle, test)
        ts = m.build.get("train_summary")
        train_summary: dict[str, Any] = ts if isinstance(ts, dict) else {}
        served_model = m.default_model
    L = len(ds.labels)
    has = train.Y.sum(1) > 0
    lab_texts = [t for t, h in zip(train.texts, has, strict=True) if h]
    base = {tuned: onehot(baseline(lab_texts, train.Y[has].argmax(1), test.texts, tuned), L)
            for tuned in (False, True)}
    ok = train.sentiment >= 0
    s_texts = [t for t, k in zip(train.texts, ok, strict=True) if k]
    s_base = {tuned: baseline(s_texts, train.sentiment[ok], test.texts, tuned) for tuned in (False, True)}

    def sent(pred_: np.ndarray) -> dict[str, float]:
        s = metrics.sentiment_scores(test.sentiment, pred_)
        return {"accuracy": round(s["accuracy"], 4), "macro_f1": round(s["macro_f1"], 4), "rows": s["rows"]}

    labels = {k: scores(test.Y, label_matrix(v, ds.labels)) for k, v in got.items()}
    labels["baseline_tfidf_lr"] = scores(test.Y, base[False])
    labels["baseline_tfidf_lr_tuned"] = scores(test.Y, base[True])
    sentiment = {k: sent(sentiment_of(v)) for k, v in got.items()}
    sentiment["baseline_tfidf_lr"] = sent(s_base[False])
    sentiment["baseline_tfidf_lr_tuned"] = sent(s_base[True])
    out = {
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": {"file": "data/drug-reviews/drug_reviews.csv", "rows": len(ds.ids), "labels": L,
                 "train_rows": len(train.ids), "test_rows": len(test.ids),
                 "filter": f"conditions with >= {MIN_PER_CONDITION} reviews", "sentiment_classes": list(ORDER),
                 "split": "stratified by label, seed 42, 20 % test; batch validation fold: stratified "
                          "15 % of the training rows"},
        "batch": {"base_model": "all-MiniLM-L6-v2, packaged", "epochs_asked": epochs,
                  "max_minutes": max_minutes, "epochs_run": train_summary.get("epochs_run"),
                  "train_seconds": train_summary.get("seconds"), "served_model": served_model,
                  "build_seconds": round(batch_s, 1)},
        "labels": labels, "sentiment": sentiment, "cascade": cascade,
        "instant_build_seconds": round(instant_s, 1), "cpus": os.cpu_count(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }
    RESULTS.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    write_md(out)
    return out


ROWS = (("instant lane (twolane build instant)", "instant"),
        ("batch lane, transformer alone (int8 ONNX)", "batch_transformer"),
        ("batch lane as served (bundle default)", "batch_served"),
        ("TF-IDF + logistic regression (sklearn defaults, C=1)", "baseline_tfidf_lr"),
        ("TF-IDF + logistic regression (C by 5-fold CV on train, balanced)", "baseline_tfidf_lr_tuned"))


def _cascade_md(c: dict[str, Any] | None) -> str:
    if not c:
        return "\nNo cascade rule (the batch bundle serves the transformer alone).\n"
    rows = "\n".join(f"| {name} | {c[k].get('share', 0 if k == 'instant' else 1):.1%} | {c[k]['accuracy']:.3f} | "
                     f"{c[k]['macro_f1']:.3f} | {c[k]['sentiment_accuracy']:.3f} |"
                     for name, k in (("instant lane", "instant"), ("cascade (shipped rule)", "cascade"),
                                     ("batch lane", "batch")))
    gap = min(c["cascade"][k] - c["batch"][k] for k in ("accuracy", "sentiment_accuracy"))
    within = [p for p in c["curve"] if min(p[k] - c["batch"][k] for k in ("accuracy", "sentiment_accuracy"))
              >= -0.005]
    first = min(within, key=lambda p: p["share"]) if within else None
    r = c["rule"]
    return f"""
### Cascade on a team's own data (`"lane": "auto"`, issue 31)

The batch bundle's cascade rule, learned on its validation fold with the single-label margins
(theme: the gap between the two most probable labels; sentiment: between the two most probable
classes): escalate when theme margin < {r['theme_margin_below']:.3f} or sentiment margin <
{r['sentiment_margin_below']:.3f} ({r['escalate_share']:.1%} of comments on validation; {r['chosen_by']}).
Applied unchanged to the test split:

| lane | share to the transformer | label accuracy | label macro-F1 | sentiment accuracy |
|---|---|---|---|---|
{rows}

Shipped rule: worst gap to the batch lane (label and sentiment accuracy) {gap * 100:+.1f} pt at
{c['cascade']['share']:.1%} escalated. Read off the test curve (never used to choose): the smallest
share within 0.5 pt of the batch lane on both is {f"{first['share']:.1%}" if first else "none"}.
"""


def write_md(r: dict[str, Any]) -> None:
    lab, sen, d, b = r["labels"], r["sentiment"], r["data"], r["batch"]
    rows = "\n".join(
        f"| {name} | {lab[k]['macro_f1']:.3f} | {lab[k]['micro_f1']:.3f} | {lab[k]['accuracy']:.3f} | "
        f"{sen[k]['accuracy']:.3f} | {sen[k]['macro_f1']:.3f} |" for name, k in ROWS)
    tuned_l, tuned_s = lab["baseline_tfidf_lr_tuned"]["macro_f1"], sen["baseline_tfidf_lr_tuned"]["accuracy"]
    served_l, served_s = lab["batch_served"]["macro_f1"], sen["batch_served"]["accuracy"]
    la = r.get("load_average_1min_at_end") or r.get("load_average_note")
    load = f" (load average {la})" if la else ""
    section = f"""<!-- own_data_batch:start -->
## A team's own data, both lanes: drug reviews (bench/own_data_batch.py)

The data and split of bench/own_data.py's section ({d['rows']} reviews, {d['labels']} single-label
conditions, three-class words sentiment; {d['train_rows']} train / {d['test_rows']} test rows), one
run: the instant lane, the batch lane ({b['base_model']}, fine-tuned on the spec by
`twolane build batch --data`; {b['epochs_run']} of {b['epochs_asked']} epochs in {b['train_seconds']} s,
budget {b['max_minutes']} min; whole batch build {b['build_seconds']} s; instant build
{r['instant_build_seconds']} s; {r['cpus']} CPUs, shared) and the two baselines, all trained on
the same training rows and scored on the same test rows by model_build.metrics. The batch
bundle serves `{b['served_model']}`. Measured {r['measured']}.

| model | label macro-F1 | micro-F1 | accuracy | sentiment accuracy | sentiment macro-F1 |
|---|---|---|---|---|---|
{rows}

The batch lane as served: labels macro-F1 {served_l:.3f} vs the tuned baseline's {tuned_l:.3f}
({'beats' if served_l > tuned_l else 'does not beat'} it); sentiment accuracy {served_s:.3f} vs
{tuned_s:.3f} ({'beats' if served_s > tuned_s else 'does not beat'} it). The served sentiment is the mix the build
chose on the validation fold ({sen['batch_served']['accuracy']:.3f}; the transformer alone
{sen['batch_transformer']['accuracy']:.3f} on test). With {d['test_rows']} test rows one row is
{100 / d['test_rows']:.1f} points of accuracy: differences of a few points are within noise. Times
are on a machine shared with other jobs{load}: on an idle one they are shorter.

{_cascade_md(r.get('cascade'))}
Raw figures: `bench/results/own_data_batch.json`.
<!-- own_data_batch:end -->"""
    text = MD.read_text(encoding="utf-8")
    if "<!-- own_data_batch:start -->" in text:
        text = re.sub(r"<!-- own_data_batch:start -->.*?<!-- own_data_batch:end -->", section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    MD.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--max-minutes", type=float, default=6.0)
    ap.add_argument("--md-only", action="store_true", help="rewrite the RESULTS.md section from the saved figures")
    a = ap.parse_args()
    if a.md_only:
        write_md(json.loads(RESULTS.read_text(encoding="utf-8")))
    else:
        print(json.dumps(main(a.epochs, a.max_minutes), indent=2))
