"""Batch-lane predictor: a fine-tuned encoder as ONNX (int8 on CPU, fp16 on CUDA).

Serving imports only onnxruntime, tokenizers and numpy (cold start matters on a scale-to-zero
endpoint). A batch is sorted by token length, padded per mini-batch and put back in input order;
the int8 model runs one comment at a time (`batch_size_for`), so a comment's answer never depends
on the comments sent with it.
Multilabel probabilities are the manifest's weighted ensemble of the transformer and the instant
lane when an instant bundle is available, the transformer alone otherwise; sentiment is the
transformer's, combined with the instant lane's by the manifest's ensemble (`mix_sentiment`):
a stacked multinomial logistic regression (`sentiment_stack`) or a weighted mean
(`sentiment_weight_transformer` under 1).

Everything about the taxonomy comes from the manifest: its labels (single- or multi-label), its
unlabellable label (or none), its sentiment classes (or none) and whether a context column
conditions the model (`serving.context` "column": the transformer reads the text with the context
token appended, `encoder_inputs`, and the embedded instant model reads it as it does alone).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from twolane.bundle import BatchEnsemble, BundleError, Manifest, SentimentMix, read_manifest, resolve_bundle
from twolane.contract import CommentIn, JobTarget, Prediction, restrict
from twolane.predictors.decide import LabelDecider, predictions
from twolane.predictors.instant import InstantPredictor
from twolane.rules import (
    QUESTION_TYPES,
    context_input,
    labellable,
    normalise,
    question_type_of,
    sentiment_names,
)

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
INSTANT_DIR = "instant"  # the instant bundle the ensemble was tuned with, copied inside
CPU_MODEL = "int8"
GPU_MODEL = "fp16"
DEFAULT_BATCH_SIZE = 32
# The int8 model is dynamically quantised: onnxruntime picks each run's activation scale from the
# whole input tensor, so in a mini-batch a comment's probabilities move with its batch mates (on
# the NHS test split up to 0.15, two thirds of comments by more than 0.01, 1-2 % changed labels or
# sentiment). One comment per run makes the answer a function of the comment alone, at about 70 %
# of the batched throughput (bench/batch_determinism.py).
QUANTISED_SUFFIX = ".int8.onnx"


def batch_size_for(model_path: Path) -> int:
    """Comments per onnxruntime run for this model file: 1 for a dynamically quantised (int8)
    model (see QUANTISED_SUFFIX), DEFAULT_BATCH_SIZE otherwise (fp32, fp16 on CUDA)."""
    return 1 if Path(model_path).name.endswith(QUANTISED_SUFFIX) else DEFAULT_BATCH_SIZE


def _session(path: Path, providers: Sequence[str], threads: int = 0) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))


def load_tokenizer(path: Path, max_length: int):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


class OnnxEncoder:
    """One exported encoder file + its tokenizer: texts in, (label probs, sentiment probs) out."""

    def __init__(self, model_path: Path, tokenizer: Any,
                 providers: Sequence[str] = ("CPUExecutionProvider",),
                 batch_size: int | None = None, threads: int = 0):
        """batch_size: comments per onnxruntime run; None: `batch_size_for(model_path)`."""
        self.session = _session(model_path, providers, threads)
        self.tokenizer = tokenizer
        self.batch_size = batch_size or batch_size_for(model_path)
        self.pad_id = tokenizer.token_to_id("[PAD]") or 0
        self.input_names = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def proba(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Sorted by length, padded per mini-batch, returned in input order."""
        ids = self.encode(texts)
        order = np.argsort([len(x) for x in ids], kind="stable")
        out_l: list[np.ndarray] = []
        out_s: list[np.ndarray] = []
        for start in range(0, len(order), self.batch_size):
            chunk = [ids[i] for i in order[start:start + self.batch_size]]
            width = max(len(x) for x in chunk)
            inp = np.full((len(chunk), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for r, x in enumerate(chunk):
                inp[r, :len(x)] = x
                mask[r, :len(x)] = 1
            feeds = {"input_ids": inp, "attention_mask": mask}
            if "token_type_ids" in self.input_names:
                feeds["token_type_ids"] = np.zeros_like(inp)
            lp, sp = self.session.run(["label_probs", "sentiment_probs"], feeds)
            out_l.append(lp.astype(np.float32))
            out_s.append(sp.astype(np.float32))
        n = len(ids)
        if n == 0:
            return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
        lab = np.concatenate(out_l)
        sen = np.concatenate(out_s)
        res_l = np.empty_like(lab)
        res_s = np.empty_like(sen)
        res_l[order] = lab
        res_s[order] = sen
        return res_l, res_s


def encoder_inputs(texts: Sequence[str], contexts: Sequence[object] | None, use_context: bool) -> list[str]:
    """What the transformer reads: the texts, each with its context token appended
    (twolane.rules.context_input, the instant lane's rule) when the bundle has a context column;
    the build trains on exactly this."""
    if not use_context:
        return list(texts)
    ctx = contexts if contexts is not None else [None] * len(texts)
    return [context_input(t, c) for t, c in zip(texts, ctx, strict=True)]


def combine(w: float, how: str, p_transformer: np.ndarray, p_instant: np.ndarray) -> np.ndarray:
    """The ensemble of label probabilities (both n x labels, float32 out), as a manifest's
    `BatchEnsemble` says: `how` "probability" mixes probabilities, w * p_t + (1 - w) * p_i;
    "logit" mixes log-odds, sigmoid(w * logit(p_t) + (1 - w) * logit(p_i)) (probabilities
    clipped to [1e-6, 1 - 1e-6] first). w = `weight_transformer`. Raises ValueError for
    another `how`."""
    if how == "probability":
        return (w * p_transformer + (1.0 - w) * p_instant).astype(np.float32)
    if how != "logit":
        raise ValueError(f"unknown ensemble combine {how!r} (probability or logit)")
    a = np.clip(p_transformer.astype(np.float64), 1e-6, 1 - 1e-6)
    b = np.clip(p_instant.astype(np.float64), 1e-6, 1 - 1e-6)
    z = w * np.log(a / (1 - a)) + (1.0 - w) * np.log(b / (1 - b))
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def stack_features(s_transformer: np.ndarray, s_instant: np.ndarray,
                   contexts: Sequence[object] | None) -> np.ndarray:
    """The sentiment stacker's input: [log p_transformer | log p_instant | question type one-hot
    (QUESTION_TYPES order)], n x (2 * classes + 3); probabilities clipped to >= 1e-6 first."""
    n = len(s_transformer)
    qts = [question_type_of(q) for q in contexts] if contexts is not None else [None] * n
    onehot = np.array([[float(q == k) for k in QUESTION_TYPES] for q in qts], np.float64).reshape(n, -1)
    return np.hstack([np.log(np.clip(s_transformer, 1e-6, 1.0)), np.log(np.clip(s_instant, 1e-6, 1.0)),
                      onehot])


def mix_sentiment(mix: SentimentMix, s_transformer: np.ndarray, s_instant: np.ndarray,
                  contexts: Sequence[object] | None = None) -> np.ndarray:
    """The batch lane's sentiment probabilities (n x classes, float32) from the transformer's and
    the instant lane's (NaN rows: the instant model knows no word; those keep the transformer's).

    `mix.method` "stack": softmax of a multinomial logistic regression over `stack_features`
    (`mix.stack`: coef classes x features, intercept classes; fitted on the validation fold by
    the build); else w * p_t + (1 - w) * p_i with w = `mix.weight_transformer` (1 = the
    transformer alone)."""
    s_t = np.asarray(s_transformer, np.float64)
    nan = np.isnan(s_instant).any(1) if len(s_instant) else np.zeros(0, bool)
    s_i = np.nan_to_num(np.asarray(s_instant, np.float64))
    stack = mix.stack if mix.method == "stack" else None
    if stack is not None:
        z = stack_features(s_t, s_i, contexts) @ np.asarray(stack.coef, np.float64).T
        z = z + np.asarray(stack.intercept, np.float64)
        e = np.exp(z - z.max(1, keepdims=True))
        mixed = e / e.sum(1, keepdims=True)
    else:
        w = mix.weight_transformer if mix.method == "mix" else 1.0
        mixed = w * s_t + (1.0 - w) * s_i
    return np.where(nan[:, None], s_t, mixed).astype(np.float32)


def _cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


class BatchPredictor:
    """Loads a batch bundle once; `predict` labels comments (and scores sentiment)."""

    def __init__(self, bundle_dir: Path, manifest: Manifest, encoder: OnnxEncoder, model_name: str,
                 instant: InstantPredictor | None = None):
        self.bundle_dir = bundle_dir
        self.manifest = manifest
        self.encoder = encoder
        self.model_name = model_name
        self.instant = instant
        self.labels: list[str] = list(manifest.labels)
        ens = manifest.ensemble
        self.ensemble = ens if instant is not None and isinstance(ens, BatchEnsemble) else None
        self.mode = "ensemble" if self.ensemble is not None else "transformer"
        self.decider = LabelDecider(manifest.taxonomy,
                                    self.ensemble.rule if self.ensemble else manifest.rule_of(model_name))
        self.thresholds = self.decider.thresholds
        self._lnp = self.decider.lnp  # None: the taxonomy has no unlabellable label
        tax = manifest.taxonomy
        self._serving = manifest.serving
        self._has_sentiment = bool(tax.sentiment_classes)
        self._n_sent = max(1, len(tax.sentiment_classes))  # the encoder's sentiment head width
        self._sentiment_names = sentiment_names(tax.sentiment_classes, tax.sentiment_names)

    @property
    def version(self) -> str:
        return self.manifest.version

    @classmethod
    def from_bundle(cls, path: str | Path, providers: Sequence[str] | None = None,
                    instant_bundle: str | Path | None = None, batch_size: int | None = None,
                    use_instant: bool = True, threads: int = 0) -> BatchPredictor:
        """`path`: a batch bundle folder or a bundles root (the newest batch bundle under it).

        providers: onnxruntime providers; default CUDA (fp16 model) when available, else CPU (int8).
        instant_bundle: the instant bundle for the ensemble; default the copy inside the bundle.
        threads: onnxruntime intra-op threads (0 = onnxruntime's default).
        batch_size: comments per onnxruntime run; None: `batch_size_for` the model file.
        Raises BundleError for a missing, old or malformed bundle.
        """
        bundle_dir = resolve_bundle(path, "batch")
        manifest = read_manifest(bundle_dir, verify=False)
        if manifest.lane != "batch":
            raise BundleError(f"{bundle_dir} is a {manifest.lane} bundle, not a batch bundle")
        if providers is None:
            providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if _cuda_available()
                         else ["CPUExecutionProvider"])
        gpu = "CUDAExecutionProvider" in providers
        name = GPU_MODEL if gpu and GPU_MODEL in manifest.models else CPU_MODEL
        entry = manifest.models[name]
        tok = load_tokenizer(bundle_dir / (manifest.serving.tokenizer or TOKENIZER_FILE),
                             manifest.serving.max_length or 128)
        encoder = OnnxEncoder(bundle_dir / entry.file, tok, providers, batch_size, threads=threads)
        instant = None
        ens = manifest.ensemble
        if use_instant and isinstance(ens, BatchEnsemble):
            inst_path = Path(instant_bundle) if instant_bundle else bundle_dir / ens.instant_dir
            if (inst_path / "manifest.json").is_file() or instant_bundle:
                # the instant model the ensemble was tuned with
                instant = InstantPredictor.from_bundle(inst_path, model=ens.instant_model)
                if instant.version != ens.instant_version:
                    log.warning("instant bundle %s differs from the one the ensemble was tuned "
                                "with (%s)", instant.version, ens.instant_version)
                if (list(instant.labels) != list(manifest.labels)
                        or instant.manifest.sentiment_classes != manifest.sentiment_classes):
                    raise BundleError("instant bundle taxonomy (labels or sentiment classes) differs "
                                      "from the batch bundle's")
        return cls(bundle_dir, manifest, encoder, name, instant)

    def probabilities(self, texts: Sequence[str], contexts: Sequence[str | None] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(multilabel probabilities as served n x L, sentiment probabilities n x classes,
        unknown bool n) for labellable texts; `unknown` marks comments with no n-gram the
        embedded instant model knows (the rule book's unknown-text rule; all False without an
        instant bundle). contexts: the NHS question types, or the context values of a
        bundle with a context column."""
        lab, sen = self.encoder.proba(encoder_inputs(texts, contexts, self._serving.context == "column"))
        unknown = np.zeros(len(texts), bool)
        if self.instant is not None and self.ensemble is not None and len(texts):
            inst, inst_sen = self.instant.predict_arrays(list(texts), contexts)
            inst = np.asarray(inst, dtype=np.float32)
            # the instant predictor's rule verdict (no unlabellable label: a row of zeros)
            unknown = np.asarray(inst[:, self._lnp] >= 1.0 if self._lnp is not None else ~inst.any(1), bool)
            lab = combine(self.ensemble.weight_transformer, self.ensemble.combine, lab, inst)
            sen = mix_sentiment(self.ensemble.sentiment, sen, inst_sen, contexts)
        return lab, sen, unknown

    def predict(self, items: Sequence[CommentIn], *, target: JobTarget = "ms",
                include_probabilities: bool = False) -> list[Prediction]:
        """The Predictor interface: one Prediction per item, in input order (see predict_texts)."""
        return self.predict_texts([i.comment_text for i in items],
                                  self._serving.contexts(items),
                                  target=target, ids=[i.comment_id for i in items],
                                  include_probabilities=include_probabilities)

    def predict_arrays(self, texts: Sequence[object],
                       contexts: Sequence[str | None] | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(label probabilities n x L, sentiment probabilities n x classes, labellable bool n)
        for all texts: unlabellable and unknown rows get P = 1.0 in the unlabellable column (all
        0 when the taxonomy has none) and NaN sentiment, as the instant predictor's arrays."""
        clean = [normalise(t) for t in texts]
        if contexts is not None and len(contexts) != len(clean):
            raise ValueError("contexts and texts differ in length")
        n = len(clean)
        ok = np.fromiter((labellable(t) for t in clean), bool, n)
        P = np.zeros((n, len(self.labels)), np.float32)
        S = np.full((n, self._n_sent), np.nan, np.float32)
        idx = np.flatnonzero(ok)
        if len(idx):
            qts = [contexts[int(i)] for i in idx] if contexts is not None else None
            lab, sen, unknown = self.probabilities([clean[i] for i in idx], qts)
            P[idx], S[idx] = lab, sen
            ok[idx[unknown]] = False
        P[~ok] = 0.0
        if self._lnp is not None:
            P[~ok, self._lnp] = 1.0
        S[~ok] = np.nan
        return P, S, ok

    def predict_texts(self, texts: Sequence[object],
                      contexts: Sequence[str | None] | None = None,
                      target: str = "ms", ids: Sequence[str] | None = None,
                      include_probabilities: bool = False) -> list[Prediction]:
        """target: "m" labels only, "s" sentiment only, "ms" both. Output in input order.

        One vectorised decide step for the whole batch (twolane.predictors.decide)."""
        if target not in ("m", "s", "ms"):
            raise ValueError(f"target must be m, s or ms, not {target!r}")
        ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(texts))]
        if len(ids) != len(texts):
            raise ValueError("ids and texts differ in length")
        P, S, ok = self.predict_arrays(texts, contexts)
        D = self.decider.decide(P, S, ~ok)
        out = predictions(ids, self.labels, D, S if self._has_sentiment else None, ok,
                          P if include_probabilities else None, digits=4,
                          sentiment_names=self._sentiment_names)
        return [restrict(p, target) for p in out]
