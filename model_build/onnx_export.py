"""Export fitted TF-IDF pipelines to ONNX graphs that take raw strings.

The TF-IDF front (lowercase -> tokenise -> n-gram counts -> idf -> L2) comes from skl2onnx,
with the traps fixed (see `tfidf_model`). The heads are added here by hand:

- linear: all labels' logistic regressions folded into ONE MatMul + Add + Sigmoid;
- sentiment: multinomial logistic regression, MatMul + Add + Softmax;
- xgboost: every label's trees (converted by onnxmltools) merged into ONE
  TreeEnsembleRegressor with one target per label, + Sigmoid. Zeros are turned into NaN
  first, because XGBoost trained on sparse TF-IDF treats absent (zero) entries as missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
INPUT = "text"
OUTPUT = "probabilities"

# sklearn's default token_pattern `(?u)\b\w\w+\b` as RE2 (onnxruntime's Tokenizer): maximal runs
# of 2+ letters/digits/underscore. skl2onnx would otherwise use `[a-zA-Z0-9_]+`, which keeps
# one-letter words (breaking bigrams) and splits accented words.
TOKEN_RE2 = r"[\p{L}\p{N}_]{2,}"
# onnxruntime's StringNormalizer defaults to en_US.UTF-8, absent here and on AWS Lambda images.
LOCALE = "C.UTF-8"


class ExportError(RuntimeError):
    """The model cannot be exported as asked."""


def tfidf_model(vectorizer: Any) -> onnx.ModelProto:
    """ONNX graph: raw strings [N] -> TF-IDF rows [N, V] (dense), matching sklearn's transform."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType

    if getattr(vectorizer, "sublinear_tf", False):
        # skl2onnx converts it as log(tf + 1), sklearn computes 1 + log(tf): rows differ.
        raise ExportError("sublinear_tf=True does not convert faithfully; train without it")
    if vectorizer.token_pattern != r"(?u)\b\w\w+\b" or vectorizer.analyzer != "word":
        raise ExportError("only the default word analyzer and token_pattern are supported")
    if vectorizer.strip_accents or vectorizer.stop_words or vectorizer.preprocessor:
        raise ExportError("strip_accents/stop_words/preprocessor are not supported")
    options = {id(vectorizer): {"tokenexp": TOKEN_RE2, "locale": LOCALE}}
    model = convert_sklearn(
        vectorizer,
        initial_types=[(INPUT, StringTensorType([None]))],
        options=options,
        target_opset=TARGET_OPSET,
    )
    for node in model.graph.node:  # belt and braces: no node may keep the default locale
        if node.op_type == "StringNormalizer":
            for a in node.attribute:
                if a.name == "locale":
                    a.s = LOCALE.encode()
    return model


def _with_head(
    front: onnx.ModelProto,
    nodes: list[onnx.NodeProto],
    initializers: list[onnx.TensorProto],
    head_input: str,
    n_out: int,
    name: str,
    doc: str,
) -> onnx.ModelProto:
    """Append head nodes to the TF-IDF front; the front's output is renamed to `head_input`."""
    g = front.graph
    front_out = g.output[0].name
    front_nodes = []
    for n in g.node:
        n2 = onnx.NodeProto()
        n2.CopyFrom(n)
        for i, o in enumerate(n2.output):
            if o == front_out:
                n2.output[i] = head_input
        front_nodes.append(n2)
    graph = helper.make_graph(
        front_nodes + nodes,
        name,
        [helper.make_tensor_value_info(INPUT, TensorProto.STRING, [None])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [None, n_out])],
        initializer=list(g.initializer) + initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=list(front.opset_import),
        producer_name="twolane",
        doc_string=doc,
    )
    model.ir_version = front.ir_version
    onnx.checker.check_model(model)
    return model


def linear_model(vectorizer: Any, coef: np.ndarray, intercept: np.ndarray) -> onnx.ModelProto:
    """Strings -> sigmoid(tfidf @ W + b): one MatMul for all labels. coef is labels x V."""
    W = numpy_helper.from_array(np.ascontiguousarray(coef.T, dtype=np.float32), "linear_W")
    b = numpy_helper.from_array(intercept.astype(np.float32), "linear_b")
    nodes = [
        helper.make_node("MatMul", ["tfidf", "linear_W"], ["logits_mm"]),
        helper.make_node("Add", ["logits_mm", "linear_b"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], [OUTPUT]),
    ]
    return _with_head(tfidf_model(vectorizer), nodes, [W, b], "tfidf", coef.shape[0],
                      "tfidf_linear", "TF-IDF + one-vs-rest logistic regression (folded)")


def softmax_model(vectorizer: Any, coef: np.ndarray, intercept: np.ndarray) -> onnx.ModelProto:
    """Strings -> softmax(tfidf @ W + b): multinomial logistic regression. coef is classes x V."""
    W = numpy_helper.from_array(np.ascontiguousarray(coef.T, dtype=np.float32), "sent_W")
    b = numpy_helper.from_array(intercept.astype(np.float32), "sent_b")
    nodes = [
        helper.make_node("MatMul", ["tfidf", "sent_W"], ["logits_mm"]),
        helper.make_node("Add", ["logits_mm", "sent_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [OUTPUT], axis=1),
    ]
    return _with_head(tfidf_model(vectorizer), nodes, [W, b], "tfidf", coef.shape[0],
                      "tfidf_sentiment", "TF-IDF + multinomial logistic regression")


def _tree_attrs(clf: Any, n_features: int) -> dict[str, Any]:
    """The TreeEnsembleClassifier attributes onnxmltools makes for one binary XGBClassifier."""
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    m = convert_xgboost(clf, initial_types=[("x", FloatTensorType([None, n_features]))],
                        target_opset=15)  # only the tree attributes are kept
    nodes = [n for n in m.graph.node if n.op_type == "TreeEnsembleClassifier"]
    if len(nodes) != 1:
        raise ExportError("onnxmltools did not produce one TreeEnsembleClassifier")
    return {a.name: helper.get_attribute_value(a) for a in nodes[0].attribute}


def xgboost_model(vectorizer: Any, members: list[Any | float], columns: np.ndarray) -> onnx.ModelProto:
    """Strings -> per-label probabilities from one TreeEnsembleRegressor (one target per label).

    `members[j]` is a fitted binary XGBClassifier, or a float logit for a label that had a
    single class in training (no trees; constant output). The classifiers were trained on the
    TF-IDF columns `columns` (feature k = column columns[k]); the ensemble reads the full row.
    """
    n_features = len(columns)
    keys = ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
            "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
            "nodes_hitrates")
    acc: dict[str, list[Any]] = {k: [] for k in keys}
    tgt: dict[str, list[Any]] = {"target_treeids": [], "target_nodeids": [], "target_ids": [],
                                 "target_weights": []}
    base: list[float] = []
    offset = 0
    for j, clf in enumerate(members):
        if isinstance(clf, float):
            # One single-leaf tree (onnxruntime ignores base_values of a target without trees).
            base.append(0.0)
            for k, v in (("nodes_treeids", offset), ("nodes_nodeids", 0), ("nodes_featureids", 0),
                         ("nodes_values", 0.0), ("nodes_modes", b"LEAF"), ("nodes_truenodeids", 0),
                         ("nodes_falsenodeids", 0), ("nodes_missing_value_tracks_true", 0)):
                acc[k].append(v)
            tgt["target_treeids"].append(offset)
            tgt["target_nodeids"].append(0)
            tgt["target_ids"].append(j)
            tgt["target_weights"].append(clf)
            offset += 1
            continue
        a = _tree_attrs(clf, n_features)
        if a.get("post_transform", b"NONE") not in (b"LOGISTIC", "LOGISTIC"):
            raise ExportError(f"label {j}: expected a logistic XGBoost classifier")
        bv = list(a.get("base_values", [0.0]))
        base.append(float(bv[0]) if bv else 0.0)
        for k in keys:
            vals = list(a.get(k, []))
            if k == "nodes_treeids":
                vals = [v + offset for v in vals]
            if k == "nodes_featureids":
                vals = [int(columns[v]) for v in vals]
            if k == "nodes_hitrates" and not vals:
                continue
            acc[k].extend(vals)
        tgt["target_treeids"].extend(v + offset for v in a["class_treeids"])
        tgt["target_nodeids"].extend(a["class_nodeids"])
        tgt["target_ids"].extend(j for _ in a["class_treeids"])
        tgt["target_weights"].extend(a["class_weights"])
        offset = max(acc["nodes_treeids"]) + 1
    if not acc["nodes_hitrates"]:
        del acc["nodes_hitrates"]
    nan = numpy_helper.from_array(np.array([np.nan], dtype=np.float32), "xgb_nan")
    zero = numpy_helper.from_array(np.array([0.0], dtype=np.float32), "xgb_zero")
    nodes = [
        # XGBoost saw sparse rows: an absent (zero) entry is "missing", so feed it as NaN.
        helper.make_node("Equal", ["tfidf", "xgb_zero"], ["is_zero"]),
        helper.make_node("Where", ["is_zero", "xgb_nan", "tfidf"], ["tfidf_nan"]),
        helper.make_node(
            "TreeEnsembleRegressor", ["tfidf_nan"], ["margins"], domain="ai.onnx.ml",
            n_targets=len(members), base_values=base, post_transform="NONE", **acc, **tgt,
        ),
        helper.make_node("Sigmoid", ["margins"], [OUTPUT]),
    ]
    return _with_head(tfidf_model(vectorizer), nodes, [nan, zero], "tfidf", len(members),
                      "tfidf_xgboost", "TF-IDF + per-label XGBoost, merged into one ensemble")


def session(model: onnx.ModelProto | bytes | str, threads: int = 0) -> Any:
    """An onnxruntime session (for the build's parity check)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
