"""A bounded, representative sample of one theme's comments for the LLM.

Representative = confident and diverse: candidates are the theme's comments ranked by the
classifier's probability for the theme (at most `POOL` of them, so 50,000 comments cost no more
than 500), then picked greedily by maximal marginal relevance: each pick maximises
`LAMBDA * probability - (1 - LAMBDA) * max word-set Jaccard similarity to the picks so far`.
Deterministic (ties by input order).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

POOL = 500
LAMBDA = 0.6
WORD = re.compile(r"[a-z']+")


def _words(text: str) -> frozenset[str]:
    return frozenset(WORD.findall(text.lower()))


def representative(texts: Sequence[str], confidence: Sequence[float], k: int) -> list[int]:
    """Indices into `texts` (at most `k`, in pick order): confident first, near-duplicates last.
    `confidence`: the classifier's probability of the theme for each text (0..1)."""
    if k <= 0 or not texts:
        return []
    order = sorted(range(len(texts)), key=lambda i: (-confidence[i], i))[:POOL]
    words = {i: _words(texts[i]) for i in order}
    picked: list[int] = []
    closest = dict.fromkeys(order, 0.0)  # max similarity to the picks so far
    while order and len(picked) < k:
        best = max(order, key=lambda i: (LAMBDA * confidence[i] - (1 - LAMBDA) * closest[i], -i))
        picked.append(best)
        order.remove(best)
        wb = words[best]
        for i in order:
            wi = words[i]
            union = len(wi | wb)
            sim = len(wi & wb) / union if union else 1.0
            if sim > closest[i]:
                closest[i] = sim
    return picked
