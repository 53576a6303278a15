"""Sentence embeddings for a theme's points: the packaged all-MiniLM-L6-v2, exported to ONNX at
build time (`model_build.encoder`, `twolane build encoder`), served with onnxruntime +
tokenizers (no torch).

Where the encoder is: `TWOLANE_SENTENCE_ENCODER` (a folder holding model.onnx and
tokenizer.json; on AWS the API Lambda's asset), else the newest folder under
`<bundles>/encoder/`. Without one, `words_vectors` (TF-IDF of the comments' own words) stands in,
and answers say so (`points_by`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

BATCH = 64
ENCODER_FOLDER = "encoder"  # under the bundles root


def find_encoder(configured: Path | None, bundles: Path) -> Path | None:
    """The encoder folder: `configured` if it holds one, else the last (by name) under
    `bundles/encoder/`; None when there is none."""
    def ok(p: Path) -> bool:
        return (p / "model.onnx").is_file() and (p / "tokenizer.json").is_file()

    if configured is not None:
        return configured if ok(configured) else None
    root = bundles / ENCODER_FOLDER
    found = sorted(p for p in root.iterdir() if p.is_dir() and ok(p)) if root.is_dir() else []
    return found[-1] if found else None


class SentenceEncoder:
    """`encode(texts) -> float32 array (len(texts), 384)`, L2-normalised rows. Loaded once per
    process (`load_encoder`); `threads` onnxruntime intra-op threads (0: its default)."""

    def __init__(self, folder: Path, threads: int = 0) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(folder / "model.onnx"), opts,
                                            providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.name = folder.name

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        # sort by length so each batch pads little; rows go back to input order
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for s in range(0, len(order), BATCH):
            idx = order[s:s + BATCH]
            enc = self.tokenizer.encode_batch([texts[i] or " " for i in idx])
            width = max(len(e.ids) for e in enc)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for r, e in enumerate(enc):
                ids[r, :len(e.ids)] = e.ids
                mask[r, :len(e.ids)] = 1
            (emb,) = self.session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})
            out[idx] = emb
        return out


@lru_cache(maxsize=2)
def load_encoder(folder: Path, threads: int = 0) -> SentenceEncoder:
    """The process's encoder for `folder`, loaded on first use."""
    return SentenceEncoder(folder, threads)


TOKEN = re.compile(r"[a-z][a-z']+")


def words_vectors(texts: Sequence[str]) -> np.ndarray:
    """Stand-in embeddings without the encoder: L2-normalised TF-IDF of each text's words
    (len(texts) x vocabulary of these texts), deterministic."""
    docs = [set(TOKEN.findall(t.lower())) for t in texts]
    vocab = sorted(set().union(*docs)) if docs else []
    col = {w: j for j, w in enumerate(vocab)}
    m = np.zeros((len(texts), max(len(vocab), 1)), dtype=np.float32)
    for i, d in enumerate(docs):
        for w in d:
            m[i, col[w]] = 1.0
    m *= np.log((1 + len(texts)) / (1 + m.sum(0))) + 1.0
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms == 0, 1.0, norms)
