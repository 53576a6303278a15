"""The instant build's export step: every fitted model folded into one ONNX graph
(model_build.onnx_export), the text tokenised once (instant_config.MODEL_FILE)."""

from __future__ import annotations

import numpy as np
from rich.progress import Progress

from model_build import onnx_export
from model_build.instant_config import SENTIMENT_OUTPUT, XGB_OUTPUT
from model_build.instant_fit import known_mask, view_heads
from model_build.instant_tune import Fitted
from twolane.rules import KNOWN_OUTPUT


def export_graph(f: Fitted, prog: Progress) -> bytes:
    """One ONNX graph (serialised) for every model of `f`: the linear label heads, the sentiment
    head, the known-n-gram count and the XGBoost trees over one bag of n-grams (MODEL_FILE)."""
    t = prog.add_task("export ONNX", total=1)
    idf = f.vec.idf_.astype(np.float64)
    heads = [(onnx_export.OUTPUT, f.linear.coef, f.linear.intercept, "sigmoid")]
    if f.sent is not None:
        heads.append((SENTIMENT_OUTPUT, f.sent.coef, f.sent.intercept, "softmax"))
    # > 0 iff the comment holds a known n-gram (weights 1/idf undo the idf folding)
    heads.append((KNOWN_OUTPUT, (known_mask(f.vec) / idf)[None, :], np.zeros(1), "identity"))
    model = onnx_export.linear_model(f.vec, heads,
                                     view=None if f.view is None else (view_heads(f.linear, f.sent), f.view.r),
                                     trees=(XGB_OUTPUT, f.xgb.members, f.xgb.columns))
    prog.advance(t)
    return model.SerializeToString()
