"""Batch-lane build: tiny real models on slices of the NHS data (no full training here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from twolane.bundle import BatchEnsemble, read_manifest


def test_tiny_bundle_manifest_and_files(batch_bundle: Path, instant_bundle: Path) -> None:
    m = read_manifest(batch_bundle, verify=True)  # every file matches its sha256
    assert m.lane == "batch"
    assert len(m.labels) == 32 and m.sentiment_classes == ["1", "2", "3", "4", "5"]
    assert {"int8", "fp16"} <= set(m.models)
    assert m.models["int8"].kind == "encoder-int8" and m.models["fp16"].kind == "encoder-fp16"
    assert len(m.rule_of("int8").thresholds) == 32
    assert "tokenizer.json" in m.files and not (batch_bundle / "model.fp32.onnx").exists()
    assert m.build["tiny"] is True and m.serving.max_length == 128
    for key in ("label_rows_identical", "macro_f1_drop", "passed", "fp16_vs_fp32_on_cpu"):
        assert key in m.parity
    assert m.parity["fp32_onnx_vs_torch_max_abs"] < 1e-3
    assert {"transformer_int8", "transformer_fp32", "sentiment_int8"} <= set(m.metrics)
    if isinstance(m.ensemble, BatchEnsemble):  # tuned against the instant bundle, which is copied inside
        assert m.ensemble.instant_version == read_manifest(instant_bundle).version
        assert (batch_bundle / "instant" / "manifest.json").is_file()
        assert 0.0 < m.ensemble.weight_transformer < 1.0 and len(m.ensemble.rule.thresholds) == 32
        assert m.default_model == "ensemble"


def test_tokenizer_guard_rejects_unknown_vocabulary() -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece
    from tokenizers.pre_tokenizers import Whitespace

    from model_build.transformer.model import check_tokenizer, default_base_model, load_tokenizer

    tok = Tokenizer(WordPiece({"[UNK]": 0, "[CLS]": 1, "[SEP]": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    with pytest.raises(RuntimeError, match="UNK"):
        check_tokenizer(tok)
    real = load_tokenizer(default_base_model())
    check_tokenizer(real)
    assert real.padding is None and real.truncation["max_length"] == 128


def test_int8_gate_fails_on_a_broken_model(batch_bundle: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    from model_build.batch_gates import GateError, gate_int8
    from model_build.data import load_dataset
    from model_build.folds import labellable
    from twolane.predictors.batch import OnnxEncoder, load_tokenizer

    m = read_manifest(batch_bundle)
    # Break the model: negate the label head's weights (kept fp32 by the quantiser).
    model = onnx.load(str(batch_bundle / "model.int8.onnx"))
    gemm = [n for n in model.graph.node if "label_head" in n.name and n.op_type in ("Gemm", "MatMul")]
    weight_names = {i for n in gemm for i in n.input}
    broken = 0
    for init in model.graph.initializer:
        if init.name in weight_names and len(init.dims) == 2:
            init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
            broken += 1
    assert broken == 1
    onnx.save(model, str(tmp_path / "broken.onnx"))

    test = labellable(load_dataset().head(300).test)
    tok = load_tokenizer(batch_bundle / "tokenizer.json", 128)
    good = OnnxEncoder(batch_bundle / "model.int8.onnx", tok).proba(test.texts)
    bad = OnnxEncoder(tmp_path / "broken.onnx", tok).proba(test.texts)
    rule = m.rule_of("int8")  # decided as served (model_build.decide)
    assert gate_int8(good, good, test.Y, m.taxonomy, rule)["passed"]  # a model agrees with itself
    with pytest.raises(GateError, match="int8 gate failed"):
        gate_int8(good, bad, test.Y, m.taxonomy, rule)


def test_a_few_training_steps_reduce_the_loss() -> None:
    from model_build.data import load_dataset
    from model_build.folds import labellable
    from model_build.transformer.model import (
        EncoderClassifier,
        default_base_model,
        load_tokenizer,
        tiny_encoder,
    )
    from model_build.transformer.train import TrainConfig, train

    ds = labellable(load_dataset().head(200).train)
    ds = ds.subset(np.arange(len(ds.texts)) < 64)
    tok = load_tokenizer(default_base_model())
    ids = [e.ids for e in tok.encode_batch(ds.texts)]
    model = EncoderClassifier(tiny_encoder(default_base_model(), tok.get_vocab_size()), 32, 5)
    cfg = TrainConfig(epochs=8, batch_size=16, encoder_lr=1e-3, head_lr=1e-2, warmup=0.0)
    summary = train(model, ids, ds.Y, ds.sentiment, cfg, pad_id=tok.token_to_id("[PAD]"))
    losses = summary["epoch_losses"]
    assert summary["steps"] == 32 and len(losses) == 8
    assert losses[-1] < 0.8 * losses[0], losses


def test_package_is_deterministic_from_a_saved_training_run(tmp_path: Path) -> None:
    """build() keeps fp32 ONNX + validation probabilities aside; `--retune` re-packages them."""
    from model_build.batch import build, retune
    from model_build.data import load_dataset
    from model_build.transformer.model import default_base_model
    from model_build.transformer.train import TrainConfig

    ds = load_dataset().head(200)
    side = tmp_path / "side"
    first = build(ds, tmp_path / "bundles", default_base_model(), TrainConfig(epochs=1), tiny=True,
                  enforce_gates=False, side_dir=side, max_steps=2, log=lambda s: None)
    saved = side / first.name
    assert {p.name for p in saved.iterdir()} >= {"model.fp32.onnx", "model.pt", "val_transformer_probs.npy",
                                                   "build_info.json"}
    m1 = read_manifest(first)
    shutil.rmtree(first)
    try:
        second = retune(saved, None, out_root=tmp_path / "again", log=lambda s: None)
    except Exception as e:  # the gate is enforced on re-packaging; a 2-step random model may fail it
        assert "int8 gate failed" in str(e)
        return
    m2 = read_manifest(second, verify=True)
    assert m2.rule_of("int8").thresholds == m1.rule_of("int8").thresholds
    assert m2.build["side_folder"] == first.name


def test_ordinal_targets_and_sentiment_loss() -> None:
    import torch

    from model_build.transformer.train import ordinal_targets, sentiment_loss

    t = ordinal_targets(5, 0.1)
    assert torch.allclose(t.sum(1), torch.ones(5))
    assert t[0, 0] == pytest.approx(0.9) and t[0, 1] == pytest.approx(0.1) and t[0, 2] == 0
    assert t[2, 1] == pytest.approx(0.05) and t[2, 3] == pytest.approx(0.05) and t[2, 0] == 0
    logits = torch.zeros(3, 5)
    assert sentiment_loss(logits, torch.tensor([-1, -1, -1]), t) is None  # no sentiment: no term
    loss = sentiment_loss(logits, torch.tensor([0, -1, 4]), t)
    assert loss is not None and float(loss) == pytest.approx(float(np.log(5)), rel=1e-5)


def test_tune_ensemble_objectives_and_sentiment_mix() -> None:
    """On a validation-like fold where one source is right about a frequent label and the other
    about a rare one, the tuned mix uses both; the sentiment mix keeps the transformer on ties."""
    from model_build.batch_tune import tune_ensemble, tune_sentiment

    rng = np.random.default_rng(0)
    n = 400
    Y = np.zeros((n, 3), np.uint8)
    Y[:, 0] = rng.random(n) < 0.5
    Y[:, 1] = rng.random(n) < 0.1
    Y[::7, 2] = 0  # label 2 never true
    noise = rng.random((n, 3)) * 0.3
    p_t = np.clip(np.column_stack([Y[:, 0] * 0.7 + noise[:, 0], noise[:, 1] + 0.35, noise[:, 2]]), 0, 1)
    p_i = np.clip(np.column_stack([rng.random(n), Y[:, 1] * 0.7 + noise[:, 1], noise[:, 2]]), 0, 1)
    alone = tune_ensemble(p_t, None, Y)
    assert alone["weight_transformer"] == 1.0 and len(alone["thresholds"]) == 3
    for objective in ("macro", "macro+micro"):
        best = tune_ensemble(p_t, p_i, Y, combines=("probability", "logit"), objective=objective)
        assert 0.0 < best["weight_transformer"] < 1.0 and best["combine"] in ("probability", "logit")
        assert best["val_macro_f1"] > alone["val_macro_f1"]
    with pytest.raises(ValueError, match="objective"):
        tune_ensemble(p_t, p_i, Y, objective="accuracy")
    y = rng.integers(0, 5, n)
    s_t = np.eye(5)[y] * 0.6 + 0.08
    qts = ["what_good"] * n
    kept = tune_sentiment(s_t, np.full((n, 5), 0.2), y, qts)  # the instant lane adds nothing
    assert kept.method == "transformer" and kept.stack is None


def test_tune_sentiment_stacks_when_lanes_err_apart() -> None:
    """The transformer is right on what_good comments and the instant lane on the others: no
    weighted mean can choose per row, the stacker (which reads the question type) can; the
    served mix (twolane.predictors.batch.mix_sentiment) then gets them right."""
    from model_build.batch_tune import tune_sentiment
    from twolane.predictors.batch import mix_sentiment

    rng = np.random.default_rng(1)
    n = 500
    y = rng.integers(0, 5, n)
    qts = [("what_good", "could_improve")[i % 2] for i in range(n)]
    wrong = (y + 1) % 5
    good = np.array([q == "what_good" for q in qts])
    s_t = np.eye(5)[np.where(good, y, wrong)] * 0.5 + 0.1
    s_i = np.eye(5)[np.where(good, wrong, y)] * 0.5 + 0.1
    s_i[:3] = np.nan  # unknown to the instant model: those rows keep the transformer's
    out = tune_sentiment(s_t, s_i, y, qts)
    assert out.method == "stack", out.nested_accuracy
    assert out.nested_accuracy["stack"] > 0.95 > out.nested_accuracy["mix"]
    served = mix_sentiment(out, s_t, s_i, qts)
    assert (served.argmax(1)[3:] == y[3:]).mean() > 0.95
    np.testing.assert_allclose(served[:3], s_t[:3], atol=1e-6)
