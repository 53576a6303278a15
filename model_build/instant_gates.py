"""The instant build's gate: ONNX against the in-memory models on the test split (labels
identical on at least `Config.parity_min` of rows), and `onnx_proba`, how the build runs the graph."""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.progress import Progress

from model_build import onnx_export
from model_build.errors import BuildError
from model_build.instant_config import SENTIMENT_OUTPUT, XGB_OUTPUT, Config
from model_build.instant_tune import Fitted, Rows
from twolane.rules import KNOWN_OUTPUT


def onnx_proba(model_bytes: bytes, texts: list[str], chunk: int = 1000, output: str | None = None
               ) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    want = [output] if output else None
    outs = [sess.run(want, {name: np.array(texts[i:i + chunk], dtype=object)})[0]
            for i in range(0, len(texts), chunk)]
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def parity(name: str, onnx_P: np.ndarray, mem_P: np.ndarray, thresholds: np.ndarray | None,
           minimum: float) -> dict[str, Any]:
    """Share of rows whose ONNX labels equal the in-memory ones; raises BuildError below `minimum`.

    Multilabel: the thresholded label sets; sentiment (thresholds None): the argmax class.
    """
    if onnx_P.shape != mem_P.shape:
        raise BuildError(f"{name}: ONNX output shape {onnx_P.shape} != in-memory {mem_P.shape}")
    if thresholds is None:
        same = onnx_P.argmax(1) == mem_P.argmax(1)
    else:
        same = ((onnx_P >= thresholds) == (mem_P >= thresholds)).all(1)
    share = float(same.mean()) if len(same) else 1.0
    result = {"identical_rows": share, "rows": len(same),
              "max_abs_prob_diff": float(np.abs(onnx_P - mem_P).max()) if len(same) else 0.0}
    if share < minimum:
        raise BuildError(
            f"ONNX parity gate failed for {name}: labels identical on {share:.2%} of "
            f"{len(same)} test rows (need >= {minimum:.1%}); the export does not reproduce the model"
        )
    return result


def parity_gate(r: Rows, f: Fitted, blob: bytes, thresholds: dict[str, np.ndarray], cfg: Config, prog: Progress
                ) -> tuple[dict[str, np.ndarray], dict[str, Any], np.ndarray]:
    """The parity gate: the graph `blob` against the in-memory models on the test split; raises
    BuildError below `cfg.parity_min`. Returns (ONNX test probabilities per model, the parity
    record, the known-n-gram mask of the test rows)."""
    names = ("linear", "xgboost", "sentiment") if f.sent is not None else ("linear", "xgboost")
    t = prog.add_task("parity gate (ONNX vs in-memory, test split)", total=len(names))
    mem = {"linear": f.linear.predict_proba(f.Xte), "xgboost": f.xgb.predict_proba(f.Xte)}
    if f.sent is not None:
        mem["sentiment"] = f.sent.predict_proba(f.Xte)
    onx: dict[str, np.ndarray] = {}
    par: dict[str, Any] = {}
    where = {"linear": onnx_export.OUTPUT, "xgboost": XGB_OUTPUT, "sentiment": SENTIMENT_OUTPUT}
    for name in names:
        onx[name] = onnx_proba(blob, r.te_texts, cfg.chunk, where[name])
        par[name] = parity(name, onx[name], mem[name],
                           None if name == "sentiment" else thresholds[name], cfg.parity_min)
        prog.advance(t)
    w_lin, w_xgb = cfg.ensemble_weights
    onx["ensemble"] = (w_lin * onx["linear"] + w_xgb * onx["xgboost"]) / (w_lin + w_xgb)
    par["ensemble"] = parity("ensemble", onx["ensemble"],
                             (w_lin * mem["linear"] + w_xgb * mem["xgboost"]) / (w_lin + w_xgb),
                             thresholds["ensemble"], cfg.parity_min)
    known = onnx_proba(blob, r.te_texts, cfg.chunk, KNOWN_OUTPUT)[:, 0] > 0
    par["minimum"] = cfg.parity_min
    return onx, par, known
