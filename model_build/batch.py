"""Batch lane build: fine-tune an encoder (32 labels + sentiment), export ONNX, quantise, gate, bundle.

    twolane build batch [--data CSV] [--out DIR] [--model ID_OR_PATH] [--epochs N] [--rows N]
                        [--max-minutes M]

Steps: carve a validation fold from the TRAINING split only (the test split is never used for any
choice); fine-tune; tune per-label thresholds, and the weight of the instant lane's probabilities in
the ensemble, on the validation fold; export fp32 ONNX (dynamic batch and sequence axes), run
onnxruntime's BERT optimiser, quantise to int8 (CPU) and convert to fp16 (GPU); gate int8 against
fp32 on the test split; write `bundles/batch/<version>/`.

The bundle holds what serving needs: `model.int8.onnx` (CPU), `model.fp16.onnx` (CUDA),
`tokenizer.json`, a copy of the instant bundle the ensemble was tuned with (`instant/`) and
`manifest.json`. The fp32 ONNX and the PyTorch weights stay out of it, under
`build/batch/<version>/` (benchmarks and re-quantising use them).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from model_build.data import DEFAULT_DATA, ROOT, SENTIMENT_CLASSES, Dataset, load_dataset
from twolane.bundle import Manifest, ModelEntry, new_version, read_manifest, write_manifest
from twolane.text import LABELLING_NOT_POSSIBLE, is_unlabellable

VAL_SHARE = 0.15
VAL_SEED = 7
DEFAULT_EPOCHS = 6
DEFAULT_MAX_MINUTES = 35.0  # training wall-clock budget on the 2-core build machine
BUILD_DIR = ROOT / "build" / "batch"


def validation_mask(n: int, seed: int = VAL_SEED, share: float = VAL_SHARE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: int(round(n * share))]] = True
    return mask


def labellable(ds: Dataset) -> Dataset:
    """Rows the model sees: unlabellable text never reaches it at serving time."""
    return ds.subset(np.array([not is_unlabellable(t) for t in ds.texts], dtype=bool))


def served_labels(ds: Dataset, probs_ok: np.ndarray, thresholds, min_one_label: bool) -> np.ndarray:
    """Label matrix as serving returns it: the rule for unlabellable text, the model elsewhere."""
    from twolane.batch.predictor import decide

    out = np.zeros((len(ds.texts), len(ds.labels)), dtype=np.uint8)
    ok = np.array([not is_unlabellable(t) for t in ds.texts], dtype=bool)
    lnp = ds.labels.index(LABELLING_NOT_POSSIBLE) if LABELLING_NOT_POSSIBLE in ds.labels else None
    if lnp is not None:
        out[~ok, lnp] = 1
    if ok.any():
        out[ok] = decide(probs_ok, np.asarray(thresholds, np.float32), min_one_label)
    return out


def quality(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from model_build.transformer.export import macro_f1

    tp = int((y & pred).sum())
    fp = int(((1 - y) & pred).sum())
    fn = int((y & (1 - pred)).sum())
    return {"macro_f1": round(macro_f1(y, pred), 4),
            "micro_f1": round(2 * tp / max(2 * tp + fp + fn, 1), 4),
            "exact_match": round(float((y == pred).all(1).mean()), 4)}


def sentiment_quality(s_true: np.ndarray, s_probs: np.ndarray) -> dict[str, float]:
    keep = s_true >= 0
    if not keep.any():
        return {"accuracy": 0.0, "macro_f1": 0.0, "rows": 0}
    t, p = s_true[keep], s_probs[keep].argmax(1)
    f1s = []
    for c in range(s_probs.shape[1]):
        tp = int(((t == c) & (p == c)).sum())
        d = int((t == c).sum() + (p == c).sum())
        if (t == c).any() or (p == c).any():
            f1s.append(2 * tp / max(d, 1))
    return {"accuracy": round(float((t == p).mean()), 4), "macro_f1": round(float(np.mean(f1s)), 4),
            "rows": int(keep.sum())}


def instant_proba(instant_bundle: Path | None, texts: list[str], qts: list[str]) -> np.ndarray | None:
    if instant_bundle is None:
        return None
    from twolane.predictor import InstantPredictor

    return np.asarray(InstantPredictor.from_bundle(instant_bundle).predict_proba(texts, qts), np.float32)


def _progress():
    """Rich progress bar with ETA (on a terminal)."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn())


def build(ds: Dataset, out_root: Path, base_model: str, cfg, *, tiny: bool = False,
          instant_bundle: Path | None = None, enforce_gates: bool = True, side_dir: Path | None = None,
          max_steps: int | None = None, log: Callable[[str], None] = print) -> Path:
    """Train, tune, export, gate and write one batch bundle. Returns the bundle folder."""
    import onnxruntime
    import tokenizers
    import torch
    import transformers

    from model_build.transformer import export as ex
    from model_build.transformer.model import (EncoderClassifier, MAX_LENGTH, load_encoder,
                                               load_tokenizer, tiny_encoder)
    from model_build.transformer.train import predict, train, tune_ensemble
    from twolane.batch.predictor import INSTANT_DIR, OnnxEncoder, load_tokenizer as serve_tokenizer

    t_start = time.monotonic()
    torch.manual_seed(cfg.seed)
    version = new_version(ds.fingerprint)
    bundle = Path(out_root) / "batch" / version
    tmp = Path(tempfile.mkdtemp(prefix="twolane-batch-"))
    side = Path(side_dir) / version if side_dir else None
    inst_manifest = read_manifest(Path(instant_bundle)) if instant_bundle else None
    if inst_manifest is not None and list(inst_manifest.labels) != list(ds.labels):
        raise ValueError(f"instant bundle {instant_bundle} has other labels than the data")
    try:
        tok = load_tokenizer(base_model, MAX_LENGTH)
        pad_id = tok.token_to_id("[PAD]") or 0
        train_all = labellable(ds.train)
        val_mask = validation_mask(len(train_all.texts))
        fit, val = train_all.subset(~val_mask), train_all.subset(val_mask)
        test = ds.test
        enc = (lambda texts: [e.ids for e in tok.encode_batch(texts)])
        log(f"data: {len(fit.texts)} fit, {len(val.texts)} validation (from the training split), "
            f"{len(test.texts)} test; base model {base_model}{' (tiny random config)' if tiny else ''}")

        encoder = tiny_encoder(base_model, tok.get_vocab_size(), cfg.seed) if tiny else load_encoder(base_model)
        model = EncoderClassifier(encoder, len(ds.labels), len(SENTIMENT_CLASSES))
        fit_ids = enc(fit.texts)
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

            summary = train(model, fit_ids, fit.Y, fit.sentiment, cfg, pad_id, on_step, max_steps)
        log(f"trained {summary['epochs_run']} epoch(s), {summary['steps']} steps in {summary['seconds']} s "
            f"on {summary['device']}; epoch losses {[round(x, 4) for x in summary['epoch_losses']]}"
            + (f" ({summary['budget_note']})" if summary["budget_note"] else ""))

        # Tune on the validation fold (fp32 PyTorch probabilities).
        p_val, _ = predict(model, enc(val.texts), pad_id)
        alone = tune_ensemble(p_val, None, val.Y)
        inst_val = instant_proba(instant_bundle, val.texts, val.question_types)
        ens = tune_ensemble(p_val, inst_val, val.Y) if inst_val is not None else None
        log(f"validation macro-F1: transformer {alone['val_macro_f1']:.4f}"
            + (f", ensemble {ens['val_macro_f1']:.4f} (transformer weight {ens['weight_transformer']})"
               if ens else ""))

        # Export.
        model.cpu().eval()
        ids_example = tok.encode("The staff were kind and the ward was clean.").ids
        fp32_raw = ex.export_onnx(model, tmp / "model.fp32.raw.onnx", ids_example)
        cfg_enc = model.encoder.config
        fused = ex.optimise(fp32_raw, tmp / "model.fp32.onnx", cfg_enc.num_attention_heads, cfg_enc.hidden_size)
        bundle.mkdir(parents=True, exist_ok=False)
        ex.quantise_int8(tmp / "model.fp32.onnx", bundle / "model.int8.onnx")
        ex.to_fp16(tmp / "model.fp32.onnx", bundle / "model.fp16.onnx")
        tok_path = bundle / "tokenizer.json"
        tok.save(str(tok_path))
        log(f"exported: fused {fused}")
        if side is not None:  # kept before the gates, so a failed gate never loses the training
            side.mkdir(parents=True, exist_ok=True)
            shutil.copy2(tmp / "model.fp32.onnx", side / "model.fp32.onnx")
            torch.save(model.state_dict(), side / "model.pt")
            (side / "encoder_config.json").write_text(model.encoder.config.to_json_string())
            np.save(side / "val_transformer_probs.npy", p_val)
            (side / "val_ids.json").write_text(json.dumps(val.ids))
            (side / "tuning.json").write_text(json.dumps({"alone": alone, "ensemble": ens}))

        # Test split: fp32 and int8 ONNX, exactly as served (serving tokenizer from the bundle file).
        stok = serve_tokenizer(tok_path, MAX_LENGTH)
        if [e.ids for e in stok.encode_batch(val.texts[:50])] != enc(val.texts[:50]):
            raise RuntimeError("the bundled tokenizer.json tokenises differently from training")
        test_ok = labellable(test)
        fp32_out = OnnxEncoder(tmp / "model.fp32.onnx", stok).proba(test_ok.texts)
        int8_out = OnnxEncoder(bundle / "model.int8.onnx", stok).proba(test_ok.texts)
        torch_out = predict(model, enc(test_ok.texts), pad_id)
        onnx_vs_torch = float(np.abs(fp32_out[0] - torch_out[0]).max()) if len(test_ok.texts) else 0.0
        if onnx_vs_torch > 1e-3:
            raise RuntimeError(f"fp32 ONNX differs from PyTorch by {onnx_vs_torch:.2e} (> 1e-3)")
        gate = ex.gate_int8(fp32_out, int8_out, test_ok.Y, np.array(alone["thresholds"]),
                            alone["min_one_label"], enforce=enforce_gates)
        gate["fp32_onnx_vs_torch_max_abs"] = onnx_vs_torch
        sub = test_ok.texts[:200]  # fp16 is for CUDA; on CPU onnxruntime runs it slowly, so a slice
        fp16_out = OnnxEncoder(bundle / "model.fp16.onnx", stok).proba(sub)
        a32 = (fp32_out[0][:len(sub)], fp32_out[1][:len(sub)])
        fp16_gate = ex.gate_int8(a32, fp16_out, test_ok.Y[:len(sub)], np.array(alone["thresholds"]),
                                 alone["min_one_label"], enforce=False)
        gate["fp16_on_cpu"] = {k: fp16_gate[k] for k in ("rows", "label_rows_identical", "sentiment_identical",
                                                         "max_abs_prob_diff")}
        log(f"int8 gate: {gate['label_rows_identical']:.1%} label sets identical to fp32, macro-F1 "
            f"{gate['macro_f1_fp32']:.4f} -> {gate['macro_f1_int8']:.4f}: "
            f"{'passed' if gate['passed'] else 'FAILED (not enforced)'}")

        metrics: dict = {"rows": len(test.texts), "labellable_rows": len(test_ok.texts)}
        metrics["transformer_fp32"] = quality(test.Y, served_labels(test, fp32_out[0], alone["thresholds"],
                                                                   alone["min_one_label"]))
        metrics["transformer_int8"] = quality(test.Y, served_labels(test, int8_out[0], alone["thresholds"],
                                                                   alone["min_one_label"]))
        metrics["sentiment_int8"] = sentiment_quality(test_ok.sentiment, int8_out[1])
        metrics["sentiment_fp32"] = sentiment_quality(test_ok.sentiment, fp32_out[1])
        ensemble: dict = {}
        if ens is not None and inst_manifest is not None:
            inst_test = instant_proba(instant_bundle, test_ok.texts, test_ok.question_types)
            w = ens["weight_transformer"]
            for name, out in (("ensemble_int8", int8_out), ("ensemble_fp32", fp32_out)):
                p = w * out[0] + (1 - w) * inst_test if len(test_ok.texts) else out[0]
                metrics[name] = quality(test.Y, served_labels(test, p, ens["thresholds"], ens["min_one_label"]))
            shutil.copytree(instant_bundle, bundle / INSTANT_DIR)
            ensemble = {"members": ["transformer", "instant"], "weight_transformer": w,
                        "thresholds": ens["thresholds"], "min_one_label": ens["min_one_label"],
                        "instant_version": inst_manifest.version, "instant_dir": INSTANT_DIR,
                        "tuned_on": "validation fold of the training split",
                        "val_macro_f1": round(ens["val_macro_f1"], 4)}
        log("test: " + json.dumps({k: v for k, v in metrics.items() if isinstance(v, dict)}))

        common = dict(task="multilabel", labels=list(ds.labels), thresholds=alone["thresholds"],
                      inputs=ex.INPUTS, outputs=ex.OUTPUTS)
        models = {
            "int8": ModelEntry(file="model.int8.onnx", kind="encoder-int8", **common,
                               extra={"provider": "CPUExecutionProvider", "min_one_label": alone["min_one_label"],
                                      "quantisation": "dynamic int8, per-channel, reduced range"}),
            "fp16": ModelEntry(file="model.fp16.onnx", kind="encoder-fp16", **common,
                               extra={"provider": "CUDAExecutionProvider", "min_one_label": alone["min_one_label"],
                                      "note": "fp16 weights, float32 inputs/outputs; not run on CPU"}),
        }
        extra_files = {"tokenizer.json": ""}
        if ensemble:
            for f in sorted((bundle / INSTANT_DIR).rglob("*")):
                if f.is_file():
                    extra_files[str(f.relative_to(bundle))] = ""
        manifest = Manifest(
            lane="batch", version=version, created_at=datetime.now(timezone.utc).isoformat(),
            labels=list(ds.labels), sentiment_classes=list(SENTIMENT_CLASSES), models=models,
            default_model="ensemble" if ensemble else "int8", ensemble=ensemble, files=extra_files,
            data={"source": ds.source, "fingerprint": ds.fingerprint, "rows": len(ds.texts),
                  "fit_rows": len(fit.texts), "validation_rows": len(val.texts), "test_rows": len(test.texts),
                  "split": "test = seeded 20 % (model_build.data); validation = seeded 15 % of the "
                           "labellable training rows; unlabellable text is excluded from training"},
            metrics=metrics, parity=gate,
            library_versions={"torch": torch.__version__, "transformers": transformers.__version__,
                              "onnxruntime": onnxruntime.__version__, "tokenizers": tokenizers.__version__,
                              "python": platform.python_version()},
            config={"base_model": base_model, "tiny": tiny, "max_length": MAX_LENGTH, "tokenizer": "tokenizer.json",
                    "pooling": "attention-masked mean", "train": cfg.as_dict(), "train_summary":
                    {k: v for k, v in summary.items() if k != "losses"}, "fused_ops": fused,
                    "val_macro_f1_transformer": round(alone["val_macro_f1"], 4),
                    "fp32_onnx": "kept out of the bundle" + (f": {side}" if side else ""),
                    "build_seconds": round(time.monotonic() - t_start, 1)},
        )
        write_manifest(bundle, manifest)
        log(f"bundle: {bundle} ({time.monotonic() - t_start:.0f} s)")
        return bundle
    except BaseException:
        if bundle.exists():
            shutil.rmtree(bundle, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(data: Path | None = None, out: Path | None = None, model: str | None = None,
        epochs: int | None = None, rows: int | None = None, max_minutes: float | None = None) -> Path:
    """The full build (CLI `twolane build batch`). Uses a GPU when torch sees one."""
    from model_build.transformer.model import default_base_model
    from model_build.transformer.train import TrainConfig
    from twolane.bundle import latest_bundle
    from twolane.settings import get_settings

    ds = load_dataset(data or DEFAULT_DATA)
    if rows:
        ds = ds.head(rows)
    cfg = TrainConfig(epochs=epochs or DEFAULT_EPOCHS,
                      max_minutes=DEFAULT_MAX_MINUTES if max_minutes is None else (max_minutes or None))
    s = get_settings()
    root = Path(out) if out else s.bundles
    inst = s.instant_bundle or latest_bundle(s.bundles, "instant") or latest_bundle(root, "instant")
    if inst is None:
        print("no instant bundle found: building the transformer alone (no ensemble)")
    return build(ds, root, model or default_base_model(), cfg, instant_bundle=inst, side_dir=BUILD_DIR,
                 log=lambda msg: print(msg, flush=True))


def build_tiny_bundle(out: Path, instant_bundle: Path | None = None, rows: int = 300) -> Path:
    """A tiny randomly initialised encoder (2 layers, hidden 64, the real MiniLM tokenizer), trained
    a few steps on a small real slice and exported exactly like the real build. For tests."""
    from model_build.transformer.model import default_base_model
    from model_build.transformer.train import TrainConfig

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ds = load_dataset(DEFAULT_DATA).head(rows)
    cfg = TrainConfig(epochs=1, batch_size=32, encoder_lr=1e-3, head_lr=3e-3)
    return build(ds, Path(out), default_base_model(), cfg, tiny=True, instant_bundle=instant_bundle,
                 enforce_gates=False, max_steps=8, log=lambda s: None)
