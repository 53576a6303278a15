"""The instant-lane predictor: an instant bundle's ONNX models, loaded once per process.

Only onnxruntime and numpy here (this runs on AWS Lambda): no scikit-learn, xgboost, torch or
pandas. Each ONNX file is a whole pipeline (raw strings -> probabilities); the TF-IDF op emits
dense rows, so big batches are cut into chunks.

Rules (twolane.rules): unlabellable text, and a comment with no n-gram the model knows (the
linear model's `known_ngrams` output), gets exactly ["Labelling not possible"] and no sentiment;
a comment no label clears its threshold for gets its most probable label when the bundle says
`min_one_label` (else "Labelling not possible"); with the ensemble's `label_ratio`, a label
other than the most probable one also needs that share of its probability. Output order = input order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from twolane.bundle import BundleError, InstantEnsemble, Manifest, read_manifest, resolve_bundle
from twolane.contract import CommentIn, JobTarget, Prediction, restrict
from twolane.predictors.decide import LabelDecider, predictions
from twolane.rules import context_input, labellable, model_input, normalise, sentiment_names

CHUNK = 1000  # rows per ONNX call: the TF-IDF op emits dense rows (memory grows with the chunk)


def _session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class InstantPredictor:
    """Labels and sentiment for comments from an instant bundle (see `from_bundle`)."""

    def __init__(self, bundle_dir: Path, manifest: Manifest, threads: int = 0,
                 model: str | None = None, chunk: int = CHUNK) -> None:
        self.bundle_dir = Path(bundle_dir)
        self._manifest = manifest
        self.model = model or manifest.default_model
        self.chunk = chunk
        ens = manifest.ensemble
        if self.model == "ensemble" and isinstance(ens, InstantEnsemble):
            members, weights = list(ens.members), list(ens.weights)
        elif self.model in manifest.models and manifest.models[self.model].task == "multilabel":
            members, weights = [self.model], [1.0]
        else:
            raise BundleError(f"bundle {bundle_dir} has no multilabel model {self.model!r}")
        self.decider = LabelDecider(manifest.taxonomy, manifest.rule_of(self.model))
        self.thresholds = self.decider.thresholds
        self._weights = np.asarray(weights, dtype=np.float32)
        sent = [n for n, e in manifest.models.items() if e.task == "sentiment"]
        self._has_sentiment = bool(sent)
        # What to ask of which file: one session per file, and one run per file and chunk
        # (the linear file also holds the sentiment head: labels + sentiment in one pass).
        self._wanted: dict[str, list[str]] = {}
        self._member_out = [self._add(manifest.models[m].file, self._output(manifest, m))
                            for m in members]
        self._sent_out = self._add(manifest.models[sent[0]].file, self._output(manifest, sent[0])) \
            if sent else None
        self._known_out = None
        if manifest.serving.known_output:
            self._known_out = self._add(manifest.models[members[0]].file, manifest.serving.known_output)
        self._sessions = {f: _session(self.bundle_dir / f, threads) for f in self._wanted}
        self._labels = list(manifest.labels)
        self._lnp = self.decider.lnp  # None: the taxonomy has no unlabellable label
        self._serving = manifest.serving
        tax = manifest.taxonomy
        self._sentiment_names = sentiment_names(tax.sentiment_classes, tax.sentiment_names)
        self._n_sent = max(1, len(tax.sentiment_classes))

    @staticmethod
    def _output(manifest: Manifest, name: str) -> str:
        outs = list(manifest.models[name].outputs)
        if not outs:
            raise BundleError(f"model {name!r} names no ONNX output in the manifest")
        return outs[0]

    def _add(self, file: str, output: str) -> tuple[str, str]:
        self._wanted.setdefault(file, [])
        if output not in self._wanted[file]:
            self._wanted[file].append(output)
        return file, output

    @classmethod
    def from_bundle(cls, path: str | Path, threads: int = 0, model: str | None = None,
                    verify: bool = True) -> InstantPredictor:
        """Load an instant bundle folder (or the newest under a bundles root) once.

        verify=True checks every file against the manifest's sha256 before loading.
        """
        bundle = resolve_bundle(path, "instant")
        manifest = read_manifest(bundle, verify=verify)
        if manifest.lane != "instant":
            raise BundleError(f"{bundle} is a {manifest.lane} bundle, not an instant one")
        return cls(bundle, manifest, threads=threads, model=model)

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def version(self) -> str:
        return self._manifest.version

    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    # ------------------------------------------------------------------ arrays
    def _run(self, texts: list[str], sentiment: bool
             ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Label probabilities (default model, weighted over members), sentiment and whether
        each comment holds an n-gram the model knows; chunked."""
        P_parts, S_parts, K_parts = [], [], []
        for i in range(0, len(texts), self.chunk):
            feed = {"text": np.array(texts[i:i + self.chunk], dtype=object)}
            got: dict[tuple[str, str], np.ndarray] = {}
            for file, outs in self._wanted.items():
                if not sentiment and all((file, o) == self._sent_out for o in outs):
                    continue
                for o, arr in zip(outs, self._sessions[file].run(outs, feed), strict=False):
                    got[(file, o)] = arr
            acc = sum(w * got[k] for w, k in zip(self._weights, self._member_out, strict=False))
            P_parts.append(acc / float(self._weights.sum()))
            if sentiment and self._sent_out:
                S_parts.append(got[self._sent_out])
            if self._known_out:
                K_parts.append(got[self._known_out][:, 0] > 0)
        known = np.concatenate(K_parts) if K_parts else np.ones(len(texts), bool)
        return np.concatenate(P_parts), (np.concatenate(S_parts) if S_parts else None), known

    def _texts(self, texts: Sequence[object], contexts: Sequence[str | None] | None
               ) -> tuple[list[str], np.ndarray]:
        """Model inputs and the mask of labellable rows. contexts: the NHS question types,
        or, for a bundle with a context column (serving.context "column"), the context values."""
        clean = [normalise(t) for t in texts]
        ok = np.fromiter((labellable(t) for t in clean), bool, len(clean))
        if contexts is not None and len(contexts) != len(clean):
            raise ValueError(f"{len(contexts)} context values for {len(clean)} texts")
        if self._serving.context != "none":
            qts = contexts if contexts is not None else [None] * len(clean)
            make = context_input if self._serving.context == "column" else model_input
            clean = [make(t, q) for t, q in zip(clean, qts, strict=False)]
        return clean, ok

    def _both(self, clean: list[str], ok: np.ndarray, sentiment: bool = True
              ) -> tuple[np.ndarray, np.ndarray]:
        """(P, S); `ok` is updated in place: a comment with no known n-gram is unlabellable."""
        n = len(clean)
        P = np.zeros((n, len(self._labels)), dtype=np.float32)
        S = np.full((n, self._n_sent), np.nan, dtype=np.float32)
        idx = np.flatnonzero(ok)
        if len(idx):
            p, s, known = self._run([clean[i] for i in idx], sentiment)
            if self._lnp is not None:
                p[:, self._lnp] = 0.0  # set by rule, never by the model
            P[idx] = p
            if s is not None:
                S[idx] = s
            ok[idx[~known]] = False
            S[idx[~known]] = np.nan
        P[~ok] = 0.0
        if self._lnp is not None:
            P[~ok, self._lnp] = 1.0
        return P, S

    def predict_proba(self, texts: Sequence[object], contexts: Sequence[str | None] | None = None
                      ) -> np.ndarray:
        """Per-label probabilities, n x len(labels), of the bundle's default model.

        Unlabellable rows: 1.0 for "Labelling not possible", 0 elsewhere. `contexts`
        (what_good / could_improve / nonspecific; None = nonspecific) is a model feature.
        """
        clean, ok = self._texts(texts, contexts)
        return self._both(clean, ok, sentiment=False)[0]

    def sentiment_proba(self, texts: Sequence[object],
                        contexts: Sequence[str | None] | None = None) -> np.ndarray:
        """Sentiment class probabilities, n x classes (the taxonomy's order; NHS: 1 very
        positive .. 5 very negative).

        Unlabellable rows are all NaN (they get no sentiment).
        """
        clean, ok = self._texts(texts, contexts)
        return self._both(clean, ok)[1]

    def predict_arrays(self, texts: Sequence[object],
                       contexts: Sequence[str | None] | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
        """(label probabilities n x labels, sentiment probabilities n x classes) in one pass."""
        clean, ok = self._texts(texts, contexts)
        return self._both(clean, ok)

    def decide(self, P: np.ndarray, S: np.ndarray | None = None,
               unlabellable: np.ndarray | None = None) -> np.ndarray:
        """Label matrix (bool, n x L) by the rule book (twolane.predictors.decide): thresholds,
        then the unlabellable label for unlabellable rows (P = 1.0 there, see predict_proba) and
        rows with no label. S: the rows' sentiment probabilities (n x classes, NaN rows
        allowed); unlabellable: bool n (default: read from P's unlabellable column; a taxonomy
        without one: rows of P all 0)."""
        bad = unlabellable if unlabellable is not None else (
            P[:, self._lnp] >= 1.0 if self._lnp is not None else ~P.any(1))
        return self.decider.decide(P, S, np.asarray(bad, dtype=bool))

    # ------------------------------------------------------------------ predictions
    def predict(self, items: Sequence[CommentIn], *, target: JobTarget = "ms",
                include_probabilities: bool = False) -> list[Prediction]:
        """The Predictor interface: one Prediction per item, in input order (see predict_texts).

        target: "m" labels only (sentiment None), "s" sentiment only (labels []), "ms" both.
        """
        preds = self.predict_texts([i.comment_text for i in items],
                                   self._serving.contexts(items),
                                   include_probabilities=include_probabilities,
                                   ids=[i.comment_id for i in items])
        return [restrict(p, target) for p in preds]

    def predict_texts(self, texts: Sequence[object],
                      contexts: Sequence[str | None] | None = None,
                      include_probabilities: bool = False, ids: Sequence[str] | None = None
                      ) -> list[Prediction]:
        """One Prediction per text, in input order. ids default to "0", "1", ..."""
        n = len(texts)
        if ids is not None and len(ids) != n:
            raise ValueError(f"{len(ids)} ids for {n} texts")
        clean, ok = self._texts(texts, contexts)
        P, S = self._both(clean, ok)
        D = self.decide(P, S, ~ok)
        ids = [str(i) for i in ids] if ids is not None else [str(i) for i in range(n)]
        return predictions(ids, self._labels, D, S if self._has_sentiment else None, ok,
                           P if include_probabilities else None, sentiment_names=self._sentiment_names)
