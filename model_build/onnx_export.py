"""Export fitted TF-IDF pipelines to ONNX graphs that take raw strings.

The TF-IDF front (lowercase -> tokenise -> n-gram lookup) comes from skl2onnx, with the traps
fixed (see `tfidf_model`), cut after the n-gram lookup (`bow_front`). The rest is added here:

- `linear_model`: the 32 one-vs-rest linear models AND the multinomial sentiment model as
  heads of ONE MatMul whose matrix also folds in the idf weights and the L2 norm (outputs
  `probabilities` [N, 32] and `sentiment` [N, 5]), and optionally the XGBoost trees as one more
  output of the same graph (the build's instant.onnx: the text is tokenised once);
- `tree_nodes` / `xgboost_model`: every label's trees (converted by onnxmltools) merged into ONE
  TreeEnsembleRegressor with one target per label, + Sigmoid. The trees read n-gram presence
  (exact in both runtimes) straight from the bag: each split is rewritten so that an absent
  n-gram (0) goes where XGBoost sends a missing value (it trained on sparse rows).
"""

from __future__ import annotations

import copy
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
    """ONNX graph: raw strings [N] -> TF-IDF rows [N, V] (dense), matching sklearn's transform.

    A `model_build.aliases.AliasedTfidf` exports with its aliases in the n-gram pool."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer

    if getattr(vectorizer, "sublinear_tf", False):
        # skl2onnx converts it as log(tf + 1), sklearn computes 1 + log(tf): rows differ.
        raise ExportError("sublinear_tf=True does not convert faithfully; train without it")
    if vectorizer.token_pattern != r"(?u)\b\w\w+\b" or vectorizer.analyzer != "word":
        raise ExportError("only the default word analyzer and token_pattern are supported")
    if vectorizer.strip_accents or vectorizer.stop_words or vectorizer.preprocessor:
        raise ExportError("strip_accents/stop_words/preprocessor are not supported")
    aliases = getattr(vectorizer, "aliases_", {})
    if type(vectorizer) is not TfidfVectorizer:  # skl2onnx converts registered classes only
        vectorizer = copy.copy(vectorizer)
        vectorizer.__class__ = TfidfVectorizer
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
        if node.op_type == "TfIdfVectorizer" and aliases:
            _add_aliases(node, aliases)
    return model


def _add_aliases(node: onnx.NodeProto, aliases: dict[str, int]) -> None:
    """Each alias word becomes one more unigram in the n-gram pool, mapped to its target's
    column (model_build.aliases): the bag keeps its width. onnxruntime reads `weights` per pool
    entry, so each alias takes its target's weight; a column set by both counts once."""
    at = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    pool, idx, counts = list(at["pool_strings"]), list(at["ngram_indexes"]), list(at["ngram_counts"])
    weights = list(at.get("weights", []))
    n_uni = counts[1] if len(counts) > 1 else len(pool)  # unigrams come first in the pool
    known = {p.decode() for p in pool[:n_uni]}
    words = [w for w in aliases if w not in known]
    pos = {j: p for p, j in enumerate(idx)}
    pool[n_uni:n_uni] = [w.encode() for w in words]
    idx[n_uni:n_uni] = [aliases[w] for w in words]
    if weights:
        weights[n_uni:n_uni] = [weights[pos[aliases[w]]] for w in words]
    counts = [counts[0]] + [c + len(words) for c in counts[1:]]
    new = {"pool_strings": pool, "ngram_indexes": idx, "ngram_counts": counts}
    if weights:
        new["weights"] = weights
    for a in list(node.attribute):
        if a.name in new:
            node.attribute.remove(a)
    node.attribute.extend(helper.make_attribute(k, v) for k, v in new.items())


def bow_front(vectorizer: Any) -> tuple[onnx.ModelProto, str]:
    """The TF-IDF front cut after the n-gram lookup: strings [N] -> binary bag of n-grams [N, V].

    The vectorizer must use binary=True and norm="l2". The idf weighting and the L2 norm are then
    folded into the heads' matrix (see `linear_model`), which avoids three dense [N, V] passes
    (Mul by idf, the ai.onnx.ml Normalizer, and a copy): the dense work left is one MatMul.
    """
    if not vectorizer.binary or vectorizer.norm != "l2" or not vectorizer.use_idf:
        raise ExportError("the folded export needs TfidfVectorizer(binary=True, norm='l2', use_idf=True)")
    model = tfidf_model(vectorizer)
    g = model.graph
    tfidf = [n for n in g.node if n.op_type == "TfIdfVectorizer"]
    if len(tfidf) != 1:
        raise ExportError("expected one TfIdfVectorizer node from skl2onnx")
    node = tfidf[0]
    n_pool = len(helper.get_attribute_value(
        next(a for a in node.attribute if a.name == "ngram_indexes")))
    for a in list(node.attribute):
        if a.name in ("mode", "weights"):
            node.attribute.remove(a)
    # IDF mode with unit weights = 1 where the n-gram occurs, else 0 (binary term frequency);
    # one weight per pool entry (aliases included).
    node.attribute.extend([helper.make_attribute("mode", "IDF"),
                           helper.make_attribute("weights", [1.0] * n_pool)])
    bow = node.output[0]
    keep: list[onnx.NodeProto] = []
    for n in g.node:  # the nodes up to and including the n-gram lookup
        keep.append(n)
        if n is node:
            break
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in keep for i in n.input}
    kept_init = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept_init)
    return model, bow


def _assemble(front: onnx.ModelProto, nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto],
              outputs: list[tuple[str, int]], name: str, doc: str) -> onnx.ModelProto:
    g = front.graph
    graph = helper.make_graph(
        list(g.node) + nodes, name,
        [helper.make_tensor_value_info(INPUT, TensorProto.STRING, [None])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [None, k]) for o, k in outputs],
        initializer=list(g.initializer) + inits,
    )
    model = helper.make_model(graph, opset_imports=list(front.opset_import),
                              producer_name="twolane", doc_string=doc)
    model.ir_version = front.ir_version
    onnx.checker.check_model(model)
    return model


def _const(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(arr), name)


def _norm_nodes(sq: str) -> list[onnx.NodeProto]:
    """`sq` = squared L2 norm of the tf-idf row -> `inv_norm` = 1 / max(norm, tiny)."""
    return [
        helper.make_node("Sqrt", [sq], ["norm"]),
        helper.make_node("Max", ["norm", "tiny"], ["norm_safe"]),  # empty row: 0 / tiny = 0
        helper.make_node("Reciprocal", ["norm_safe"], ["inv_norm"]),
    ]


Head = tuple[str, np.ndarray, np.ndarray, str]  # output name, coef (k x V), intercept, activation


Trees = tuple[str, list[Any | float], np.ndarray]  # output name, members, columns (tree_nodes)


def linear_model(vectorizer: Any, heads: list[Head],
                 view: tuple[dict[str, np.ndarray], np.ndarray] | None = None,
                 trees: Trees | None = None) -> onnx.ModelProto:
    """Strings -> one output per linear head, from ONE MatMul over the binary bag of n-grams.

    logits_h = (b * idf / ||b * idf||) @ W_h + c_h = (b @ (idf * W_h)) / sqrt(b @ idf^2) + c_h,
    so the matrix is [idf * W_1 | idf * W_2 | ... | idf^2] and everything after the MatMul is
    on [N, k] only. Activation "sigmoid" (one-vs-rest labels), "softmax" (multinomial) or
    "identity" (the normalised linear value itself, e.g. a count that is > 0 or not).

    `view` = ({head name: R_h (k x V)}, r (V)) adds, to the named heads' logits,
    (b @ R_h.T) / sqrt(b @ r): a second linear view of the same bag with its own norm (the
    build's char view, model_build.instant_fit.CharView); its blocks join the same MatMul.

    `trees` = (output name, members, columns) adds the per-label XGBoost trees (`tree_nodes`)
    as one more output read from the same bag: the text is tokenised once for both models.
    """
    front, bow = bow_front(vectorizer)
    idf = vectorizer.idf_.astype(np.float64)
    blocks = [idf[:, None] * coef.T for _, coef, _, _ in heads] + [(idf ** 2)[:, None]]
    n_main = sum(b.shape[1] for b in blocks)  # the idf^2 column is the last of these
    raw = view[0] if view else {}
    for out, *_ in heads:  # in the heads' order (the loop below slices them in it)
        if out in raw:
            blocks.append(np.asarray(raw[out], dtype=np.float64).T)
    if view:
        blocks.append(np.asarray(view[1], dtype=np.float64)[:, None])
    K = np.hstack(blocks).astype(np.float32)
    total = K.shape[1]
    nodes = [
        helper.make_node("MatMul", [bow, "heads_W"], ["z"]),
        helper.make_node("Slice", ["z", "sq_start", "sq_end", "axis1"], ["sq"]),
        *_norm_nodes("sq"),
        helper.make_node("Mul", ["z", "inv_norm"], ["zn"]),
    ]
    inits = [_const("heads_W", K), _const("sq_start", np.array([n_main - 1], np.int64)),
             _const("sq_end", np.array([n_main], np.int64)), _const("axis1", np.array([1], np.int64)),
             _const("tiny", np.array([1e-12], np.float32))]
    if view:
        nodes += [
            helper.make_node("Slice", ["z", "vsq_start", "vsq_end", "axis1"], ["vsq"]),
            helper.make_node("Sqrt", ["vsq"], ["vnorm"]),
            helper.make_node("Max", ["vnorm", "tiny"], ["vnorm_safe"]),
            helper.make_node("Reciprocal", ["vnorm_safe"], ["inv_vnorm"]),
            helper.make_node("Mul", ["z", "inv_vnorm"], ["zv"]),
        ]
        inits += [_const("vsq_start", np.array([total - 1], np.int64)),
                  _const("vsq_end", np.array([total], np.int64))]
    start = 0
    vstart = n_main
    outputs = []
    for out, coef, intercept, act in heads:
        k = coef.shape[0]
        nodes.append(helper.make_node("Slice", ["zn", f"{out}_s", f"{out}_e", "axis1"], [f"{out}_zs"]))
        summed = f"{out}_zs"
        if out in raw:
            nodes += [helper.make_node("Slice", ["zv", f"{out}_vs", f"{out}_ve", "axis1"], [f"{out}_zv"]),
                      helper.make_node("Add", [f"{out}_zs", f"{out}_zv"], [f"{out}_zsum"])]
            inits += [_const(f"{out}_vs", np.array([vstart], np.int64)),
                      _const(f"{out}_ve", np.array([vstart + k], np.int64))]
            summed = f"{out}_zsum"
            vstart += k
        nodes += [
            helper.make_node("Add", [summed, f"{out}_b"], [f"{out}_logits"]),
            helper.make_node("Sigmoid", [f"{out}_logits"], [out]) if act == "sigmoid"
            else helper.make_node("Softmax", [f"{out}_logits"], [out], axis=1) if act == "softmax"
            else helper.make_node("Identity", [f"{out}_logits"], [out]),
        ]
        inits += [_const(f"{out}_s", np.array([start], np.int64)),
                  _const(f"{out}_e", np.array([start + k], np.int64)),
                  _const(f"{out}_b", intercept.astype(np.float32))]
        outputs.append((out, k))
        start += k
    if trees is not None:
        t_nodes, t_inits = tree_nodes(trees[1], trees[2], bow, trees[0])
        nodes += t_nodes
        inits += t_inits
        outputs.append((trees[0], len(trees[1])))
    return _assemble(front, nodes, inits, outputs, "tfidf_linear",
                     "TF-IDF (binary tf, idf, l2) + linear heads folded into one MatMul")


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


def _read_bag(a: dict[str, Any], columns: np.ndarray, absent_is_missing: bool) -> None:
    """Rewrite one classifier's tree attributes in place to read the binary bag directly.

    XGBoost trained on sparse n-gram presence: a present n-gram is 1.0, an absent one "missing"
    (it goes the node's default way, `nodes_missing_value_tracks_true`). Each branch `x < v`
    becomes `x < 0.5` on bag column columns[feature]: absent (0) takes the true branch, so
    true -> where missing went, false -> where 1.0 went (1.0 < v ? true : false). No NaN
    rewrite and no column gather are needed (both cost more than the trees on dense [N, V]).
    `absent_is_missing=False` keeps `x < v` with absent = 0.0: the naive, wrong export (only
    for the parity-gate test).
    """
    modes = a["nodes_modes"]
    feats, vals = list(a["nodes_featureids"]), list(a["nodes_values"])
    t_ids, f_ids = list(a["nodes_truenodeids"]), list(a["nodes_falsenodeids"])
    miss = list(a.get("nodes_missing_value_tracks_true", [0] * len(modes)))
    for i, mode in enumerate(modes):
        if mode in (b"LEAF", "LEAF"):
            continue
        if mode not in (b"BRANCH_LT", "BRANCH_LT"):
            raise ExportError(f"unexpected tree node mode {mode!r} (expected BRANCH_LT)")
        feats[i] = int(columns[feats[i]])
        if absent_is_missing:
            one_true = 1.0 < vals[i]
            t_ids[i], f_ids[i] = (t_ids[i] if miss[i] else f_ids[i],
                                  t_ids[i] if one_true else f_ids[i])
            vals[i] = 0.5
        miss[i] = 0
    a.update(nodes_featureids=feats, nodes_values=vals, nodes_truenodeids=t_ids,
             nodes_falsenodeids=f_ids, nodes_missing_value_tracks_true=miss)


def tree_nodes(members: list[Any | float], columns: np.ndarray, bow: str, output: str,
               absent_is_missing: bool = True) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes: binary bag of n-grams `bow` [N, V] -> `output` [N, labels], per-label probabilities
    from ONE TreeEnsembleRegressor (one target per label), + Sigmoid.

    `members[j]` is a fitted binary XGBClassifier, or a float logit for a label that had a
    single class in training (no trees; constant output). The classifiers were trained on the
    n-gram presence of the columns `columns` (feature k = column columns[k]); the nodes gather
    those columns of the bag (see `_read_bag`: the trees read the bag [N, V] as it is).
    """
    n_features = len(columns)
    keys = ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
            "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
            "nodes_hitrates")
    acc: dict[str, Any] = {k: [] for k in keys}
    tgt: dict[str, Any] = {"target_treeids": [], "target_nodeids": [], "target_ids": [],
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
        _read_bag(a, columns, absent_is_missing)
        if a.get("post_transform", b"NONE") not in (b"LOGISTIC", "LOGISTIC"):
            raise ExportError(f"label {j}: expected a logistic XGBoost classifier")
        bv = list(a.get("base_values", [0.0]))
        base.append(float(bv[0]) if bv else 0.0)
        for k in keys:
            vals = list(a.get(k, []))
            if k == "nodes_treeids":
                vals = [v + offset for v in vals]
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
    inits: list[onnx.TensorProto] = []
    nodes = [
        helper.make_node(
            "TreeEnsembleRegressor", [bow], ["xgb_margins"], domain="ai.onnx.ml",
            n_targets=len(members), base_values=base, post_transform="NONE", **acc, **tgt,
        ),
        helper.make_node("Sigmoid", ["xgb_margins"], [output]),
    ]
    return nodes, inits


def xgboost_model(vectorizer: Any, members: list[Any | float], columns: np.ndarray,
                  output: str = OUTPUT, absent_is_missing: bool = True) -> onnx.ModelProto:
    """Strings -> per-label probabilities [N, labels] from the trees alone (see `tree_nodes`)."""
    front, bow = bow_front(vectorizer)
    nodes, inits = tree_nodes(members, columns, bow, output, absent_is_missing)
    return _assemble(front, nodes, inits, [(output, len(members))], "tfidf_xgboost",
                     "TF-IDF + per-label XGBoost, merged into one tree ensemble")


def session(model: onnx.ModelProto | bytes | str, threads: int = 0) -> Any:
    """An onnxruntime session (for the build's parity check)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
