"""The batch build's packaging step: from a training run's side folder (fp32 ONNX + validation
probabilities) quantise int8 and convert fp16 (model_build.transformer.export), add the
tokenizer, tune on the validation fold (model_build.batch_tune), gate int8 on the test split
(model_build.batch_gates) and write `bundles/batch/<version>/` with its manifest (`package`,
`finish`). Deterministic, so a bundle can be re-made from the same training (`--retune`)."""

from __future__ import annotations

import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from model_build import report
from model_build.batch_gates import gate_served
from model_build.batch_tune import (
    ENSEMBLE_OBJECTIVE,
    Log,
    Probs,
    Tuning,
    ensemble_with_instant,
    tune_ensemble,
)
from model_build.data import Dataset
from model_build.decide import served_labels, taxonomy_of
from model_build.errors import BatchBuildError
from model_build.folds import encoder_texts, is_nhs, labellable, split
from model_build.metrics import low_support_labels, per_label, quality, sentiment_quality
from model_build.transformer import export as ex
from model_build.transformer.export import INPUTS, OUTPUTS
from model_build.transformer.model import load_tokenizer
from twolane.bundle import (
    DecideRule,
    Manifest,
    ModelEntry,
    Serving,
    Taxonomy,
    new_version,
    read_manifest,
    write_manifest,
)
from twolane.predictors.batch import OnnxEncoder
from twolane.predictors.batch import load_tokenizer as serve_tokenizer
from twolane.rules import columns_of


def package(side: Path, ds: Dataset, out_root: Path, instant_bundle: Path | None, enforce_gates: bool = True,
            log: Log = print, version: str | None = None, escalate_share: float | None = None) -> Path:
    """From a side folder (fp32 ONNX + validation probabilities): quantise int8, convert fp16, add the
    tokenizer, tune, gate and write `out_root/batch/<version>/`. Deterministic, so a bundle can be
    re-made from the same training (`--retune`), e.g. against a newer instant bundle."""
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


def finish(bundle: Path, ds: Dataset, p_val: np.ndarray, int8_out: Probs, fp32_out: Probs | None,
           base: dict[str, Any], instant_bundle: Path | None, enforce_gates: bool, log: Log,
           s_val: np.ndarray | None = None, escalate_share: float | None = None) -> Path:
    """Tune thresholds (and the ensemble) on validation, gate int8 on test, write the manifest.
    s_val: the transformer's validation sentiment probabilities (None: sentiment is not mixed)."""
    fit, val, test = split(ds)
    test_ok = labellable(test)
    lnp = ds.lnp
    if len(p_val) != len(val.texts):
        raise BatchBuildError(f"{len(p_val)} validation probabilities for {len(val.texts)} validation rows: "
                              "the data or the split changed since training")
    alone = tune_ensemble(p_val, None, val.Y, taxonomy=taxonomy_of(ds), objective=ENSEMBLE_OBJECTIVE)
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

    t = Tuning(ds, fit, val, test, test_ok, lnp, low, never, outs, metrics, log, escalate_share, served)
    ensemble, inst_test = (None, None) if instant_bundle is None else \
        ensemble_with_instant(t, bundle, Path(instant_bundle), p_val, s_val, alone)
    parity = gate_served(t, int8_out, fp32_out, alone, ensemble, inst_test, enforce_gates)
    parity.update(base.get("parity_extra", {}))
    log("test: " + json.dumps({k: {m: v[m] for m in ("macro_f1", "micro_f1", "accuracy") if m in v}
                               for k, v in metrics.items() if isinstance(v, dict)}))

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
        serving=Serving(context="column" if ds.context == "column" else "none",
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


def _report(bundle: Path, manifest: Manifest, t: Tuning, train_support: np.ndarray) -> list[str]:
    """report.json + report.html beside the model (model_build.report): the served model's
    (int8, the ensemble when there is one) test figures, per label with its training support
    (fit + validation rows) and low-support flag; returns the file names."""
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
