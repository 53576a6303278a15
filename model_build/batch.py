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

The recipe (`build`, then `package`), one step a module:

    data and split     model_build.data / model_build.dataspec; model_build.folds carves a
                       validation fold from the TRAINING split only (the test split is never
                       used for any choice)
    train, export      here: fine-tune (model_build.transformer.train), export fp32 ONNX (dynamic
                       batch and sequence axes) and run onnxruntime's BERT optimiser
                       (model_build.transformer.export)
    package            model_build.batch_package: quantise to int8 (CPU), convert to fp16 (GPU),
                       then tune, gate and write `bundles/batch/<version>/`
    tuning             model_build.batch_tune: per-label thresholds, the weight of the instant
                       lane's probabilities in the ensemble and how they mix (probability or
                       log-odds: ENSEMBLE_COMBINES; by macro- plus micro-F1, ENSEMBLE_OBJECTIVE),
                       the instant lane's share of sentiment (by accuracy) and the cascade's rule,
                       on the validation fold
    gate               model_build.batch_gates: int8 against fp32 on the test split

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from model_build import dataspec, report
from model_build.batch_package import package
from model_build.batch_tune import Log, same_taxonomy, tune_ensemble
from model_build.data import DEFAULT_DATA, Dataset, load_dataset
from model_build.dataspec import SpecArgs
from model_build.decide import taxonomy_of
from model_build.errors import BatchBuildError
from model_build.folds import BUILD_DIR, encoder_texts, is_nhs, labellable, split
from model_build.metrics import sentiment_quality
from model_build.transformer import export as ex
from model_build.transformer.model import (
    MAX_LENGTH,
    EncoderClassifier,
    default_base_model,
    load_encoder,
    load_tokenizer,
    tiny_encoder,
)
from model_build.transformer.train import TrainConfig, predict, train
from twolane.bundle import BundleError, latest_bundle, new_version, read_manifest, resolve_bundle
from twolane.predictors.batch import OnnxEncoder
from twolane.settings import get_settings

DEFAULT_EPOCHS = 8
DEFAULT_MAX_MINUTES = 35.0  # training wall-clock budget on the 2-core build machine


# a data spec's default budget: a team's few hundred to few thousand rows train in minutes
SPEC_MAX_MINUTES = 10.0


def _progress() -> Progress:
    """Rich progress bar with ETA (on a terminal)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn())


def _versions() -> dict[str, str]:
    import onnxruntime
    import tokenizers
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__, "tokenizers": tokenizers.__version__,
            "python": platform.python_version()}


def build(  # noqa: PLR0915 (train, export, package: one script, read top to bottom)
        ds: Dataset, out_root: Path, base_model: str, cfg: TrainConfig, *, tiny: bool = False,
        instant_bundle: Path | None = None, enforce_gates: bool = True, side_dir: Path | None = None,
        max_steps: int | None = None, log: Log = print, escalate_share: float | None = None) -> Path:
    """Train and export fp32 ONNX into the side folder, then `package` it. Returns the bundle."""
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
                tuned = tune_ensemble(p_l[scored], None, val.Y[scored], taxonomy=taxonomy_of(ds))
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
    return package(side, ds, Path(out_root or get_settings().bundles), instant_bundle, True, log,
                   escalate_share=escalate_share)


def instant_of_taxonomy(ds: Dataset, named: Path | None, roots: Sequence[Path], log: Log) -> Path | None:
    """The instant bundle the ensemble mixes in: `named` (TWOLANE_INSTANT_BUNDLE: a bundle or a
    bundles root) when it labels in the data's taxonomy (`same_taxonomy`), else the newest
    instant bundle of that taxonomy under `roots`; None (the transformer alone) when there is
    none."""
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
    def log(msg: str) -> None:
        print(msg, flush=True)

    s = get_settings()
    root = Path(out) if out else s.bundles
    if retune_from is not None:  # a saved NHS training run
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
    report.print_summary(bundle, Console())  # a data spec's build has a report (NHS: none, nothing printed)
    return bundle


def build_tiny_bundle(out: Path, instant_bundle: Path | None = None, rows: int = 300,
                      ds: Dataset | None = None) -> Path:
    """A tiny randomly initialised encoder (2 layers, hidden 64, the real MiniLM tokenizer), trained
    a few steps on a small real slice (the first `rows` NHS rows, or `ds`, e.g. a data spec's
    file) and exported exactly like the real build (gates recorded, not enforced: a random
    model sits on its thresholds). For tests."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ds = ds if ds is not None else load_dataset(DEFAULT_DATA).head(rows)
    cfg = TrainConfig(epochs=1, batch_size=32, encoder_lr=1e-3, head_lr=3e-3)
    return build(ds, Path(out), default_base_model(), cfg, tiny=True, instant_bundle=instant_bundle,
                 enforce_gates=False, max_steps=8, log=lambda s: None)


__all__ = ["BatchBuildError", "build", "build_tiny_bundle", "load_data", "retune", "run"]
