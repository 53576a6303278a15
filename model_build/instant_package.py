"""The instant build's packaging step: test figures from the ONNX outputs (what serves),
decided by the served rule and scored by model_build.metrics (`score_test`), and the bundle
folder with its manifest, drift reference and build report (`write_bundle`)."""

from __future__ import annotations

import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from model_build import metrics, onnx_export, report
from model_build.choice import PLAIN, TUNED
from model_build.choose import accuracy
from model_build.data import SEED, TEST_SIZE, Dataset
from model_build.drift_reference import write_reference
from model_build.instant_config import MIN_SUPPORT_NOTE, MODEL_FILE, SENTIMENT_OUTPUT, XGB_OUTPUT, Config
from model_build.instant_tune import Fitted, Rows, decide, decide_rule
from twolane.bundle import (
    DecideRule,
    InstantEnsemble,
    Manifest,
    ModelEntry,
    Serving,
    Taxonomy,
    new_version,
    write_manifest,
)
from twolane.rules import KNOWN_OUTPUT, is_unlabellable


def versions() -> dict[str, str]:
    import onnx
    import onnxmltools
    import onnxruntime
    import skl2onnx
    import sklearn
    import xgboost

    return {"python": platform.python_version(), "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "xgboost": xgboost.__version__,
            "skl2onnx": skl2onnx.__version__, "onnxmltools": onnxmltools.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def score_test(ds: Dataset, r: Rows, f: Fitted, onx: dict[str, np.ndarray], known: np.ndarray,
               thresholds: dict[str, np.ndarray], cfg: Config
               ) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """Test metrics from the ONNX outputs (what serves), with the shared scoring rule; per
    label, training support and test F1 of the default model (what to trust); and each
    model's test label matrix (uint8 n x L, the build report's confusion summary)."""
    test = r.test
    # unlabellable: the rule book's text rules, or no n-gram the model knows
    unl = np.array([is_unlabellable(x) for x in test.texts]) | ~known
    test_metrics: dict[str, Any] = {}
    preds = {}
    for name in ("linear", "xgboost", "ensemble"):
        preds[name] = decide(ds, decide_rule(name, thresholds[name], r, cfg), onx[name], onx.get("sentiment"), unl)
        test_metrics[name] = metrics.multilabel_scores(test.Y, preds[name])
        if not ds.multilabel:
            test_metrics[name]["accuracy"] = metrics.single_label_accuracy(test.Y, preds[name])
    test_metrics["unknown_text_rows"] = int((~known).sum())
    per = metrics.per_label(test.Y, preds[cfg.default_model], ds.labels)
    for j, lab in enumerate(ds.labels):
        per[lab]["train_support"] = int(r.train_support[j])
        per[lab]["low_support"] = lab in r.low
    if "sentiment" in onx:
        s_true = np.where(unl, -1, test.sentiment)  # unlabellable rows get no sentiment
        test_metrics["sentiment"] = metrics.sentiment_scores(s_true, onx["sentiment"].argmax(1))
        if f.sentiment_choice is not None:  # the other head on the same rows (report only)
            other = TUNED if f.sentiment_choice.chosen == PLAIN else PLAIN
            f.sentiment_choice.test_accuracy = {
                f.sentiment_choice.chosen: round(test_metrics["sentiment"]["accuracy"], 4),
                other: round(accuracy(s_true, f.sentiment_other.predict_proba(f.Xte)), 4)}
            test_metrics["sentiment_choice"] = f.sentiment_choice.as_dict()
    test_metrics["scoring"] = metrics.__doc__.split("Scoring rule", 1)[1].strip()
    return test_metrics, per, preds


def write_bundle(ds: Dataset, out: Path, cfg: Config, r: Rows, f: Fitted, blob: bytes,
                 thresholds: dict[str, np.ndarray], oof_scores: dict[str, Any], par: dict[str, Any],
                 scored: tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]], t0: float) -> Path:
    """Write `out/instant/<version>/`: the graph `blob`, the manifest (taxonomy, one DecideRule
    per model, test and out-of-fold figures, parity, the build's settings; `t0`: the build's
    start, time.perf_counter()), the drift reference and the build report (`scored`: what
    `score_test` returned). Written as `<version>.partial` and renamed when complete; returns
    the folder."""
    test_metrics, per, preds = scored
    L = len(ds.labels)
    nhs = ds.spec is None or ds.spec.preset == "nhs"

    version = new_version(ds.fingerprint)
    final = Path(out) / "instant" / version
    tmp = final.with_name(version + ".partial")
    tmp.mkdir(parents=True, exist_ok=False)
    (tmp / MODEL_FILE).write_bytes(blob)
    use_qt = cfg.use_question_type and ds.context == "question_type"
    io = {"inputs": {onnx_export.INPUT: "raw comment strings, shape [N]" + (
        ", each followed by ' qt_<question type>' (twolane.rules.model_input)" if use_qt else
        ", each followed by ' qt_<context token>' (twolane.rules.context_input)" if ds.context == "column"
        else "")}}
    k = len(ds.sentiment_classes)

    def rule(name: str) -> DecideRule:
        return decide_rule(name, thresholds[name], r, cfg)

    models = {
        "linear": ModelEntry(file=MODEL_FILE, task="multilabel", kind="tfidf-linear",
                             labels=ds.labels, rule=rule("linear"), **io,
                             outputs={onnx_export.OUTPUT: f"per-label probability, shape [N, {L}]"}),
        "xgboost": ModelEntry(file=MODEL_FILE, task="multilabel", kind="tfidf-xgboost",
                              labels=ds.labels, rule=rule("xgboost"), **io,
                              outputs={XGB_OUTPUT: f"per-label probability, shape [N, {L}]"}),
    }
    if f.sent is not None:
        models["sentiment"] = ModelEntry(
            file=MODEL_FILE, task="sentiment", kind="tfidf-linear", labels=ds.sentiment_classes, **io,
            outputs={SENTIMENT_OUTPUT: f"class probability, shape [N, {k}] ("
                     + ("1 very positive .. 5 very negative" if nhs else "the taxonomy's class order") + ")"})
    manifest = Manifest(
        lane="instant", version=version,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        taxonomy=Taxonomy(labels=ds.labels, unlabellable=ds.unlabellable,
                          sentiment_classes=ds.sentiment_classes, multilabel=ds.multilabel),
        models=models, default_model=cfg.default_model,
        ensemble=InstantEnsemble(members=["linear", "xgboost"], weights=list(cfg.ensemble_weights),
                                 rule=rule("ensemble")),
        serving=Serving(context="question_type" if use_qt else "column" if ds.context == "column" else "none",
                        known_output=KNOWN_OUTPUT),
        data_spec=ds.spec,
        data={"fingerprint": ds.fingerprint, "source": Path(ds.source).name,
              "rows": len(ds.ids), "train_rows": len(r.train.ids), "train_rows_used": len(r.tr_texts),
              "test_rows": len(r.test.ids), "split_seed": SEED, "test_size": TEST_SIZE,
              "sentiment_train_rows": f.sentiment_rows},
        metrics={"test": test_metrics, "train_out_of_fold": oof_scores, "per_label": per,
                 "low_support_labels": r.low, "min_support": cfg.min_support,
                 "low_support_note": MIN_SUPPORT_NOTE},
        parity=par, library_versions=versions(),
        build={**asdict(cfg), "vocabulary_size": len(f.vec.vocabulary_),
               # what the sentiment head was fitted with (model_build.batch refits the same)
               "sentiment_head": f.sentiment_choice.chosen if f.sentiment_choice else "tuned",
               "sentiment_polarity_gamma": cfg.sentiment_polarity_gamma
               if ds.spec is None or ds.spec.sentiment_ordered else 0.0,
               "word_aliases_count": len(f.vec.aliases_),
               "char_view_size": 0 if f.view is None else int(f.view.M.shape[1]),
               "question_type_token": " qt_<what_good|could_improve|nonspecific>" if use_qt else (
                   " qt_<context token>" if ds.context == "column" else ""),
               "chunk_rows": cfg.chunk,
               "build_seconds": round(time.perf_counter() - t0, 1)},
    )
    # twolane.drift's reference: the test split's question types, or its context values (ds.context "column")
    manifest.files[write_reference(tmp, manifest, r.test.texts, r.test.question_types, f.vec)] = ""
    for name in report.write(tmp, manifest, r.test.Y, preds[cfg.default_model], test_metrics, per):
        manifest.files[name] = ""
    write_manifest(tmp, manifest)  # hashes every file in manifest.files
    tmp.rename(final)
    return final
