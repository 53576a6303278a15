"""A theme's points without any LLM: groups of its comments that say the same thing.

    sample_of(n, k)          which of a theme's n comments the points are found in (at most k,
                             a seeded uniform draw: counts scale to the theme without bias)
    find_points(vectors, texts, confidence, max_points) -> list[Group]

Groups come from spherical k-means on the comments' sentence embeddings (unit rows, cosine),
k from 2 to `max_points` chosen by the mean silhouette, each k started by k-means++ with a fixed
seed: the same comments in the same order give the same points. A group smaller than
MIN_SHARE of the sample (and than MIN_GROUP comments) is left out (the theme's `other`).
A group's label is its most distinctive words (c-TF-IDF: the share of the group's comments
holding a word or two-word phrase, times the phrase's inverse frequency in the theme's sample),
its quote the comment with the best cosine to its centroid plus half the classifier's
probability of the theme (a quote must carry the theme), over-long comments last (a
short-quote preference cost quote precision: .845 -> .776 on the test split).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SEED = 0
MIN_GROUP = 2  # comments
MIN_SHARE = 0.05  # of the sample
ITERATIONS = 25
LONG_WORDS = 60  # a quote longer than this many words is chosen only when no shorter one fits
LABEL_TERMS = 3

STOP = frozenset("""
a about above after again against all also am an and any are as at be because been before being
below between both but by can could did do does doing done down during each even ever every few for
from further get got had has have having he her here hers him his how i if in into is it its itself
just me more most my myself no nor not now of off on once only or other our ours out over own quite
really same she should so some such than that the their theirs them then there these they this those
through to too under until up us very was we were what when where which while who whom why will with
would you your yours yourself also lot lots much many get got one two thing things still well
""".split())
TOKEN = re.compile(r"[a-z][a-z'’-]*[a-z]|[a-z]")
TAG = re.compile(r"\[[a-z ]+\]")  # redaction tags ("[email]") are no words of the comment


def words(text: str) -> list[str]:
    """Lower-case word tokens of `text` (letters, inner apostrophes and hyphens)."""
    return TOKEN.findall(text.lower())


def terms(text: str) -> set[str]:
    """The content words and two-word phrases of `text` (no stop word inside a phrase's ends)."""
    toks = [w for w in words(TAG.sub(" ", text)) if len(w) > 2 or w not in STOP]
    out = {w for w in toks if w not in STOP and len(w) > 2}
    out |= {f"{a} {b}" for a, b in zip(toks, toks[1:], strict=False)
            if a not in STOP and b not in STOP and len(a) > 2 and len(b) > 2}
    return out


@dataclass(frozen=True)
class Group:
    """One point found in a theme's sample: `members` and `central` index the sample."""

    label: str
    members: tuple[int, ...]
    central: int


def sample_of(n: int, k: int) -> list[int]:
    """Indices (ascending) of at most `k` of `n` comments: all when n <= k, else a uniform draw
    with a fixed seed (the same n and k give the same draw)."""
    if n <= k:
        return list(range(n))
    return sorted(int(i) for i in np.random.default_rng(SEED).choice(n, size=k, replace=False))


def _kmeans(x: np.ndarray, k: int) -> np.ndarray:
    """Cluster of each row (spherical k-means, k-means++ start with SEED)."""
    rng = np.random.default_rng(SEED)
    n = len(x)
    centres = [x[int(rng.integers(n))]]
    for _ in range(1, k):
        d = np.clip(1.0 - np.max(x @ np.array(centres).T, axis=1), 0.0, None)
        total = float(d.sum())
        pick = int(rng.choice(n, p=d / total)) if total > 0 else int(rng.integers(n))
        centres.append(x[pick])
    c = np.array(centres)
    assign = np.full(n, -1)
    for _ in range(ITERATIONS):
        new = np.argmax(x @ c.T, axis=1)
        if np.array_equal(new, assign):
            break
        assign = new
        for j in range(k):
            m = x[assign == j]
            if len(m):
                v = m.sum(0)
                c[j] = v / (np.linalg.norm(v) or 1.0)
    return assign


def _silhouette(x: np.ndarray, assign: np.ndarray) -> float:
    labels = np.unique(assign)
    if len(labels) < 2:
        return -1.0
    dist = 1.0 - x @ x.T
    s = np.zeros(len(x))
    for i in range(len(x)):
        own = assign == assign[i]
        if own.sum() <= 1:
            continue
        a = dist[i, own].sum() / (own.sum() - 1)
        b = min(dist[i, assign == j].mean() for j in labels if j != assign[i])
        s[i] = (b - a) / max(a, b, 1e-9)
    return float(s.mean())


def _label(members: Sequence[int], term_sets: Sequence[set[str]], df: Counter[str],
           n: int, exclude: set[str]) -> str:
    counts = Counter(t for i in members for t in term_sets[i] if t not in exclude)
    need = 2 if len(members) >= 4 else 1
    scored = sorted(((c / len(members)) * math.log(1 + n / df[t]) * (1.2 if " " in t else 1.0), t)
                    for t, c in counts.items() if c >= need)
    chosen: list[str] = []
    for _, t in reversed(scored):
        if any(t in c.split() or c in t.split() or t in c for c in chosen):
            continue
        chosen.append(t)
        if len(chosen) == LABEL_TERMS:
            break
    return ", ".join(chosen) if chosen else "mixed comments"


def _central(x: np.ndarray, members: Sequence[int], texts: Sequence[str],
             confidence: Sequence[float]) -> int:
    centre = x[list(members)].sum(0)
    centre = centre / (np.linalg.norm(centre) or 1.0)

    def score(i: int) -> tuple[bool, float, int]:
        return (len(words(texts[i])) <= LONG_WORDS, float(x[i] @ centre) + 0.5 * confidence[i], -i)

    return max(members, key=score)


def find_points(vectors: np.ndarray, texts: Sequence[str], confidence: Sequence[float],
                max_points: int, theme: str = "") -> list[Group]:
    """The points of one theme's sample, biggest first (ties: earliest member first).
    `vectors`: unit rows, one per text; `confidence`: the classifier's probability of the
    theme per text (0..1); words of `theme` never label a point. Empty for no texts."""
    n = len(texts)
    if n == 0 or max_points <= 0:
        return []
    x = np.asarray(vectors, dtype=np.float64)
    best = np.zeros(n, dtype=int)
    if n >= 6 and max_points >= 2:
        best_s = -2.0
        for k in range(2, min(max_points, n // 3) + 1):
            assign = _kmeans(x, k)
            s = _silhouette(x, assign)
            if s > best_s + 1e-9:
                best, best_s = assign, s
    term_sets = [terms(t) for t in texts]
    df: Counter[str] = Counter(t for ts in term_sets for t in ts)
    exclude = set(words(theme)) | {w.rstrip("s") for w in words(theme)}
    floor = max(MIN_GROUP, math.ceil(MIN_SHARE * n)) if n >= 2 * MIN_GROUP else 1
    groups = []
    for j in np.unique(best):
        members = tuple(int(i) for i in np.flatnonzero(best == j))
        if len(members) < floor:
            continue
        groups.append(Group(label=_label(members, term_sets, df, n, exclude), members=members,
                            central=_central(x, members, texts, confidence)))
    groups.sort(key=lambda g: (-len(g.members), g.members[0]))
    return groups
