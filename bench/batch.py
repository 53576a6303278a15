"""Batch lane: quality (test split) and CPU speed of the transformer, side by side in one run.

    nice -n 10 .venv/bin/python -m bench.batch [--bundle bundles/batch/<version>] [--repeats 3]

Quality on the instant lane's test split with its scoring rule (model_build.metrics): the
transformer alone (fp32 and int8 ONNX), the ensemble with the instant lane, and the instant lane
alone. Speed on 2 CPU threads, the test split's real comments, all engines given the same
length-sorted mini-batches (32) and the same tokenizer: PyTorch fp32, ONNX fp32 (optimised) and
ONNX int8. The machine is shared: each figure is the best of `--repeats` interleaved runs.
Writes bench/results/batch.json and the batch section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.results_md import write_section

ROOT = Path(__file__).resolve().parent.parent
THREADS = 2
TARGETS = {"ensemble_gain_pts": 3.0, "ensemble_micro_gain_pts": 2.0, "int8_vs_fp32_pts": 1.0,
           "sentiment_accuracy": 0.76, "polarity": 0.95, "int8_per_s": 400.0, "int8_vs_torch_x": 2.5,
           "single_ms": 3.0, "cold_start_s": 0.6}


def best_rate(fn, n: int, repeats: int) -> tuple[float, list[float]]:
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - t))
    return max(rates), [round(r, 1) for r in rates]


def label_matrix(preds: list, labels: list[str]) -> np.ndarray:
    """Served predictions -> 0/1 matrix, n x labels."""
    col = {lab: j for j, lab in enumerate(labels)}
    out = np.zeros((len(preds), len(labels)), np.uint8)
    for i, p in enumerate(preds):
        for lab in p.labels:
            out[i, col[lab]] = 1
    return out


def served_scores(preds: list, test, labels: list[str]) -> dict[str, Any]:
    """A lane's served predictions on the test split: the scoring rule (model_build.metrics) for
    labels; sentiment accuracy over the comments with a true sentiment that the lane scored."""
    from model_build.metrics import quality, sentiment_scores

    out = quality(test.Y, label_matrix(preds, labels))
    pred_s = np.array([p.sentiment.score - 1 if p.sentiment else -1 for p in preds])
    keep = (test.sentiment >= 0) & (pred_s >= 0)
    out["sentiment"] = {k: (round(v, 4) if isinstance(v, float) else v)
                        for k, v in sentiment_scores(test.sentiment[keep], pred_s[keep]).items()}
    return out


def polarity(predictor) -> float:
    """Share of the hand-written polarity set (data/polarity/) on the right side."""
    from model_build.data import polarity_cases, polarity_right

    cases = polarity_cases()
    preds = predictor.predict_texts([c[0] for c in cases], [c[1] for c in cases])
    return round(float(np.mean([polarity_right(c[2], p.sentiment.score if p.sentiment else None)
                                for c, p in zip(cases, preds, strict=True)])), 4)


def quality_side_by_side(bundle: Path, m, side: Path, test, ok) -> dict[str, Any]:
    """Test-split quality, one scoring rule (model_build.metrics), for: the instant lane as served
    (the bundle's embedded copy, its default model), the batch lane as served (BatchPredictor,
    int8 ensemble: unknown-text rule included), and from arrays the transformer alone (fp32,
    int8) and the ensemble with the fp32 encoder, to show what int8 costs."""
    from model_build.decide import served_labels
    from model_build.metrics import quality, sentiment_quality
    from twolane.bundle import BatchEnsemble
    from twolane.predictors.batch import BatchPredictor, OnnxEncoder, combine, load_tokenizer, mix_sentiment
    from twolane.predictors.instant import InstantPredictor
    from twolane.rules import LABELLING_NOT_POSSIBLE, columns_of, is_unlabellable

    q: dict[str, Any] = {}
    alone = m.rule_of("int8")
    never = columns_of(m.labels, alone.never_fallback)  # the fallback skips them
    tok = load_tokenizer(bundle / "tokenizer.json", m.serving.max_length or 128)
    outs = {"int8": OnnxEncoder(bundle / "model.int8.onnx", tok).proba(ok.texts),
            "fp32": OnnxEncoder(side / "model.fp32.onnx", tok).proba(ok.texts)}
    thr, mol = alone.thresholds, alone.min_one_label
    for k, (lab, sen) in outs.items():
        q[f"transformer_{k}"] = quality(test.Y, served_labels(test, lab, thr, mol, sentiment_ok=sen,
                                                              never_fallback=never))
        q[f"sentiment_{k}"] = sentiment_quality(ok.sentiment, sen)
    batch = BatchPredictor.from_bundle(bundle, providers=["CPUExecutionProvider"])
    q["batch_served"] = served_scores(batch.predict_texts(test.texts, test.question_types), test, m.labels)
    q["batch_served"]["model"] = f"{batch.mode} (int8)"
    q["batch_served"]["polarity_right_side"] = polarity(batch)
    inst_dir = bundle / "instant"
    e = m.ensemble
    if isinstance(e, BatchEnsemble) and inst_dir.is_dir():
        inst = InstantPredictor.from_bundle(inst_dir)
        q["instant_served"] = served_scores(inst.predict_texts(test.texts, test.question_types), test, m.labels)
        q["instant_served"]["model"] = f"{inst.manifest.default_model} ({inst.version})"
        q["instant_served"]["polarity_right_side"] = polarity(inst)
        q["ensemble_int8_served"] = {k: v for k, v in q["batch_served"].items() if k != "sentiment"}
        p_inst = np.asarray(InstantPredictor.from_bundle(inst_dir, model=e.instant_model)
                            .predict_proba(ok.texts, ok.question_types), np.float32)
        w = e.weight_transformer
        lnp = m.labels.index(LABELLING_NOT_POSSIBLE)
        ok_rows = np.array([i for i, t in enumerate(test.texts) if not is_unlabellable(t)], dtype=int)
        unknown = ok_rows[p_inst[:, lnp] >= 1.0]  # no n-gram the instant model knows: the rule
        sw, method = e.sentiment.weight_transformer, e.sentiment.method
        s_inst = inst.sentiment_proba(ok.texts, ok.question_types)
        for k, (lab, sen) in outs.items():
            # what the batch lane serves: the fallback's sentiment rule reads it
            served_sent = mix_sentiment(e.sentiment, sen, s_inst, ok.question_types)
            if method != "transformer":
                q[f"sentiment_ensemble_{k}"] = sentiment_quality(ok.sentiment, served_sent)
            pred = served_labels(test, combine(w, e.combine, lab, p_inst), e.rule.thresholds, e.rule.min_one_label,
                                 sentiment_ok=served_sent, never_fallback=never)
            pred[unknown] = 0
            pred[unknown, lnp] = 1
            q[f"ensemble_{k}"] = quality(test.Y, pred)
        q["ensemble"] = {"weight_transformer": w, "instant_model": e.instant_model,
                         "instant_version": e.instant_version, "combine": e.combine,
                         "sentiment_weight_transformer": sw,
                         "sentiment_method": method}
    return q


def _latency_ms(predict: Any, text: str) -> dict[str, float]:
    """p50, min and p90 milliseconds of `predict([text])` over 200 calls after 20 warm-ups."""
    for _ in range(20):
        predict([text])
    lat = []
    for _ in range(200):
        t0 = time.perf_counter()
        predict([text])
        lat.append((time.perf_counter() - t0) * 1000)
    return {"p50": round(float(np.percentile(lat, 50)), 3), "min": round(min(lat), 3),
            "p90": round(float(np.percentile(lat, 90)), 3)}


def single_comment_ms(bundle: Path, texts: list[str], tok: Any) -> dict[str, Any]:
    """Single-comment latency of a typical (median-length) comment, int8, through the predictor
    (tokenise + run + labels): the transformer alone and the ensemble."""
    from twolane.predictors.batch import BatchPredictor

    lens = np.array([len(t) for t in texts])
    typical = texts[int(np.argsort(lens)[len(lens) // 2])]
    return {"text_chars": len(typical), "tokens": len(tok.encode(typical).ids),
            "transformer_int8": _latency_ms(BatchPredictor.from_bundle(bundle, use_instant=False)
                                            .predict_texts, typical),
            "ensemble_int8": _latency_ms(BatchPredictor.from_bundle(bundle).predict_texts, typical)}


def targets(q: dict[str, Any], speed: dict[str, Any]) -> dict[str, Any]:
    """Each target (bench/RESULTS.md) with its measured value and whether it is met."""
    t: dict[str, Any] = {}
    inst_q, ens_q = q.get("instant_served"), q.get("ensemble_int8_served")
    if inst_q and ens_q:
        for key, name in (("macro_f1", "ensemble_vs_instant_macro_f1"), ("micro_f1", "ensemble_vs_instant_micro_f1")):
            gain = (ens_q[key] - inst_q[key]) * 100
            need = TARGETS["ensemble_gain_pts" if key == "macro_f1" else "ensemble_micro_gain_pts"]
            t[name] = {"value_pts": round(gain, 2), "target": f">= +{need} pts", "met": gain >= need}
    for kind in ("ensemble", "transformer"):  # the served model (gated by the build), then the encoder alone
        if f"{kind}_int8" in q:
            drop = (q[f"{kind}_fp32"]["macro_f1"] - q[f"{kind}_int8"]["macro_f1"]) * 100
            t[f"int8_vs_fp32_macro_f1_{kind}"] = {"value_pts": round(drop, 2), "target": "<= 1 pt drop",
                                                  "met": drop <= TARGETS["int8_vs_fp32_pts"]}
    sa = q["batch_served"]["sentiment"]["accuracy"]
    t["batch_sentiment_accuracy"] = {"value": sa, "target": f">= {TARGETS['sentiment_accuracy']}",
                                     "met": sa >= TARGETS["sentiment_accuracy"]}
    for lane in ("batch", "instant"):
        pol = q[f"{lane}_served"]["polarity_right_side"]
        t[f"{lane}_polarity_set"] = {"value": pol, "target": f">= {TARGETS['polarity']:.0%}",
                                     "met": pol >= TARGETS["polarity"]}
    r = speed["onnx_int8"]["comments_per_s"]
    t["int8_comments_per_s"] = {"value": r, "target": ">= 400", "met": r >= TARGETS["int8_per_s"]}
    t["int8_vs_pytorch"] = {"value": speed["int8_vs_pytorch_x"], "target": ">= 2.5x",
                            "met": speed["int8_vs_pytorch_x"] >= TARGETS["int8_vs_torch_x"]}
    s = speed["single_comment_ms"]["transformer_int8"]["p50"]
    t["single_comment_ms"] = {"value": s, "target": "<= 3 ms (p50, transformer int8)", "met": s <= TARGETS["single_ms"]}
    c = speed["cold_start_s"]["best"]
    t["cold_start_s"] = {"value": c, "target": "<= 0.6 s", "met": c <= TARGETS["cold_start_s"]}
    return t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.environ["TWOLANE_INTRA_OP_THREADS"] = str(THREADS)

    import torch

    from model_build.data import load_dataset
    from model_build.folds import BUILD_DIR, labellable
    from model_build.transformer.model import EncoderClassifier
    from model_build.transformer.train import collate
    from twolane.bundle import read_manifest, resolve_bundle
    from twolane.predictors.batch import OnnxEncoder, load_tokenizer

    torch.set_num_threads(THREADS)
    bundle = resolve_bundle(args.bundle or ROOT / "bundles", "batch")
    m = read_manifest(bundle, verify=True)
    side = BUILD_DIR / str(m.build.get("side_folder", m.version))
    ds = load_dataset()
    test = ds.test
    ok = labellable(test)
    texts = ok.texts
    train_summary = json.loads(json.dumps(m.build["train_summary"]))  # a record for people: plain JSON
    tok = load_tokenizer(bundle / "tokenizer.json", m.serving.max_length or 128)
    enc = {"onnx_int8": OnnxEncoder(bundle / "model.int8.onnx", tok),
           "onnx_fp32": OnnxEncoder(side / "model.fp32.onnx", tok)}

    # ---- quality
    res: dict = {"bundle": m.version, "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                 "machine": {"cpus": os.cpu_count(), "threads": THREADS, "python": platform.python_version(),
                             "load_1min_start": round(os.getloadavg()[0], 2)},
                 "test_rows": len(test.texts), "labellable_rows": len(texts),
                 "training_minutes": round(train_summary["seconds"] / 60, 1),
                 "epochs_run": train_summary["epochs_run"]}
    q = res["quality"] = quality_side_by_side(bundle, m, side, test, ok)

    # ---- speed: same length-sorted batches of 32 for every engine
    state = torch.load(side / "model.pt", map_location="cpu")
    from transformers import AutoConfig, AutoModel

    cfg = AutoConfig.from_pretrained(side / "encoder_config.json")
    model = EncoderClassifier(AutoModel.from_config(cfg), len(m.labels), len(m.sentiment_classes))
    model.load_state_dict(state)
    model.eval()
    pad = tok.token_to_id("[PAD]") or 0

    def torch_run() -> None:
        ids = [e.ids for e in tok.encode_batch(texts)]
        order = np.argsort([len(x) for x in ids], kind="stable")
        with torch.inference_mode():
            for i in range(0, len(order), 32):
                inp, mask = collate([ids[j] for j in order[i:i + 32]], pad)
                model(inp, mask)

    engines = {"pytorch_fp32": torch_run, "onnx_fp32": lambda: enc["onnx_fp32"].proba(texts),
               "onnx_int8": lambda: enc["onnx_int8"].proba(texts)}
    for fn in engines.values():  # warm up
        fn()
    runs: dict[str, list[float]] = {k: [] for k in engines}
    for _ in range(args.repeats):  # interleaved, so load changes hit all engines alike
        for k, fn in engines.items():
            runs[k] += best_rate(fn, len(texts), 1)[1]
    speed: dict[str, Any] = {k: {"comments_per_s": max(v), "runs": v} for k, v in runs.items()}
    speed["int8_vs_pytorch_x"] = round(
        speed["onnx_int8"]["comments_per_s"] / speed["pytorch_fp32"]["comments_per_s"], 2)
    enc_cfg: Any = model.encoder.config
    speed["attention"] = f"PyTorch: {enc_cfg._attn_implementation}; ONNX: fused Attention op"

    speed["single_comment_ms"] = single_comment_ms(bundle, texts, tok)
    # cold start: a fresh process imports the predictor, loads the bundle (with the instant copy), labels one
    code = ("import time; t=time.perf_counter()\nfrom twolane.predictors.batch import BatchPredictor\n"
            f"p=BatchPredictor.from_bundle({str(bundle)!r}); p.predict_texts(['The nurse was kind'])\n"
            "print(time.perf_counter()-t)")
    colds = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                  env={**os.environ}).stdout.strip()) for _ in range(3)]
    speed["cold_start_s"] = {"best": round(min(colds), 3), "runs": [round(c, 3) for c in colds]}
    res["speed"] = speed
    res["machine"]["load_1min_end"] = round(os.getloadavg()[0], 2)

    res["targets"] = targets(q, speed)
    out = ROOT / "bench" / "results" / "batch.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    write_markdown(res, m)
    print(json.dumps(res["targets"], indent=1))


def write_markdown(res: dict, m) -> None:
    q, s, t = res["quality"], res["speed"], res["targets"]
    rows = [("transformer alone, ONNX fp32", "transformer_fp32"),
            ("transformer alone, ONNX int8", "transformer_int8"),
            ("ensemble (transformer + instant), fp32", "ensemble_fp32"),
            ("ensemble (transformer + instant), int8", "ensemble_int8"),
            ("batch lane as served (BatchPredictor, int8)", "batch_served")]
    if "instant_served" in q:
        rows.insert(0, ("instant lane as served: " + q["instant_served"]["model"], "instant_served"))
    ens = q.get("ensemble", {})
    lines = ["<!-- batch:start -->", "## Batch lane: transformer quality and CPU speed (bench/batch.py)", "",
             f"Bundle `{res['bundle']}` (fine-tuned all-MiniLM-L6-v2, {res['epochs_run']} epochs, "
             f"{res['training_minutes']} min training on 2 shared CPU cores"
             + (f"; ensemble with instant `{ens.get('instant_model')}` {ens.get('instant_version')}, "
                f"transformer weight {ens.get('weight_transformer')}, {ens.get('combine')} mix" if ens else "")
             + f"). Measured {res['measured_at']} on {res['machine']['cpus']} CPUs, {THREADS} threads, 1-min load "
             f"{res['machine']['load_1min_start']} -> {res['machine']['load_1min_end']} (shared machine: "
             f"each speed figure is the best of {len(s['onnx_int8']['runs'])} interleaved runs).", "",
             f"Quality on the test split ({res['test_rows']} comments, {res['labellable_rows']} labellable), "
             "one scoring rule (model_build.metrics: rows with at least one true label, all 32 labels). "
             "Sentiment: accuracy over the comments with a true sentiment that the model scores; polarity: "
             "the hand-written set (data/polarity/, 84 cases) on the right side:", "",
             "| model | macro-F1 | micro-F1 | exact match | hamming loss | sentiment acc | polarity |",
             "|---|---|---|---|---|---|---|"]
    for name, key in rows:
        if key not in q:
            continue
        v = q[key]
        kind = key.split("_")[-1]
        sent = (v.get("sentiment") or (q.get(f"sentiment_ensemble_{kind}") if key.startswith("ensemble_") else None)
                or q.get(f"sentiment_{kind}") or {})
        acc = f"{sent['accuracy']:.4f}" if "accuracy" in sent else ""
        pol = f"{v['polarity_right_side']:.1%}" if "polarity_right_side" in v else ""
        lines.append(f"| {name} | {v['macro_f1']:.4f} | {v['micro_f1']:.4f} | {v['exact_accuracy']:.4f} | "
                     f"{v['hamming_loss']:.4f} | {acc} | {pol} |")
    lines += [
              "", f"Speed, {res['labellable_rows']} test comments (real lengths), same length-sorted batches of 32, "
              "tokenisation included:", "", "| engine | comments/s (best) | runs |", "|---|---|---|"]
    for k in ("pytorch_fp32", "onnx_fp32", "onnx_int8"):
        lines.append(f"| {k} | {s[k]['comments_per_s']:.1f} | {s[k]['runs']} |")
    sc = s["single_comment_ms"]
    lines += ["", f"Single comment ({sc['text_chars']} chars, {sc['tokens']} tokens; median test comment), "
              f"BatchPredictor.predict: transformer int8 p50 {sc['transformer_int8']['p50']} ms "
              f"(min {sc['transformer_int8']['min']}, p90 {sc['transformer_int8']['p90']}); with the instant "
              f"ensemble p50 {sc['ensemble_int8']['p50']} ms. Cold start (new process: import, load bundle, "
              f"one prediction): best {s['cold_start_s']['best']} s of {s['cold_start_s']['runs']}.", "",
              "| target | measured | met |", "|---|---|---|"]
    for k, v in t.items():
        val = v.get("value_pts", v.get("value"))
        lines.append(f"| {k} {v['target']} | {val} | {'yes' if v['met'] else 'NO'} |")
    lines += ["", "The 1-min load above is the machine's state during the run: the higher it is, the more "
              "the absolute comments/s, latency and cold start understate a quiet 2-core machine; the "
              "ratios between engines, interleaved, are the comparable part.",
              "", "Raw figures: `bench/results/batch.json`.", "<!-- batch:end -->"]
    block = "\n".join(lines)
    write_section("<!-- batch:start -->", "<!-- batch:end -->", block)


if __name__ == "__main__":
    main()
