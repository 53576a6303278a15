"""A sentiment lexicon as directions over the TF-IDF vocabulary (build time only).

The NHS data is mostly praise: words such as "rude" or "filthy" occur a handful of times, so a
bag-of-words sentiment model learns little about them and reads "The nurse was very rude" as
very positive. VADER's lexicon (vaderSentiment, MIT licence; a human-rated valence for ~7,500
English words) gives every such word a valence. The build turns it into two directions over the
vocabulary (positive valence, negative valence) that the sentiment model reads as two extra
features; both are linear in the TF-IDF row, so they fold into the exported weights and serving
needs nothing new.

Terms: the lexicon's words (|valence| >= 1); "un" + a positive word ("unhelpful") where the
training text holds it; and negator + lexicon word pairs ("not helpful", "no respect", "didn
listen" as sklearn tokenises "didn't") with VADER's own negation factor: every pair the training
text holds, and also, whether it holds them or not, the pairs of a common negator
(UNSEEN_NEGATORS) and a lexicon word in at least UNSEEN_MIN_DF training comments. The NHS
training data is mostly praise, so "no respect" may first appear at serving time. On the NHS
data the unseen pairs are 2,351 more vocabulary columns; they occur in no training row, so the
label models train exactly as without them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

MIN_VALENCE = 1.0
NEGATION = -0.74  # VADER's factor for a negated word
NEGATORS = ("not", "no", "never", "didn", "don", "wasn", "isn", "nobody", "nothing", "without")
# Negated pairs the training text does not hold are made for these negators only (97.6 % of the
# negator + lexicon-word pairs in the NHS training text) and for lexicon words in at least
# UNSEEN_MIN_DF training comments: each pair is a vocabulary column, and the dense bag's width
# costs serving time and memory (all 10 negators x every seen word: +6,446 columns, -14 %
# comments/s, +58 MB peak RSS on a 10,000-comment call).
UNSEEN_NEGATORS = ("not", "no", "nothing", "don", "didn", "wasn")
UNSEEN_MIN_DF = 2
_WORD = re.compile(r"(?u)\b\w\w+\b")


def vader_lexicon() -> dict[str, float]:
    """word -> mean human valence (-4 .. 4), alphabetic entries of 2+ letters only."""
    import vaderSentiment

    path = Path(vaderSentiment.__file__).with_name("vader_lexicon.txt")
    out: dict[str, float] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and re.fullmatch(r"[a-z]{2,}", parts[0]):
            out[parts[0]] = float(parts[1])
    return out


def terms(texts: Iterable[str], lexicon: dict[str, float] | None = None,
          negate_unseen: bool = True) -> dict[str, float]:
    """term (unigram or bigram, lower case) -> valence contribution.

    A negated bigram's value is chosen so that it plus its word's own value nets NEGATION x the
    word's valence (the unigram is counted too). `negate_unseen=False`: only the negated pairs
    the texts hold (the rule of bundles built before it).
    """
    lex = {w: v for w, v in (lexicon or vader_lexicon()).items() if abs(v) >= MIN_VALENCE}
    df: Counter[str] = Counter()
    seen_bi: set[str] = set()
    for t in texts:
        toks = _WORD.findall(t.lower())
        df.update(set(toks))
        seen_bi.update(f"{a} {b}" for a, b in zip(toks, toks[1:], strict=False) if a in NEGATORS)
    out = dict(lex)
    for w, v in lex.items():
        if v > 0 and df["un" + w] and "un" + w not in out:
            out["un" + w] = -v
    for w in sorted(w for w in out if df[w]):
        for negator in NEGATORS:
            pair = f"{negator} {w}"
            if pair in seen_bi or (negate_unseen and negator in UNSEEN_NEGATORS
                                   and df[w] >= UNSEEN_MIN_DF):
                out[pair] = (NEGATION - 1.0) * out[w]
    return out


def directions(vocabulary: dict[str, int], valences: dict[str, float]) -> np.ndarray:
    """2 x V: positive valence per column, negative valence per column (0 elsewhere)."""
    d = np.zeros((2, len(vocabulary)))
    for term, v in valences.items():
        j = vocabulary.get(term)
        if j is not None:
            d[0 if v > 0 else 1, j] = v
    return d
