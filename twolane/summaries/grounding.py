"""Verbatim grounding of proposed quotes: a quote is kept only if it is a span of one sampled
comment of its theme (the redacted text the model was shown), compared with runs of whitespace
collapsed; otherwise it is dropped, never repaired."""

from __future__ import annotations

from collections.abc import Sequence

MIN_WORDS = 3  # shorter spans ("the staff") say nothing on their own


def _squash(text: str) -> str:
    return " ".join(text.split())


def ground(quote: str, cited: int, sample: Sequence[str]) -> int | None:
    """The index in `sample` of the comment holding `quote` verbatim (the cited one, 1-based
    `cited`, first; then the others), or None when no comment holds it or it is too short."""
    q = _squash(quote)
    if len(q.split()) < MIN_WORDS:
        return None
    order = ([cited - 1] if 0 < cited <= len(sample) else []) + list(range(len(sample)))
    for i in order:
        if q in _squash(sample[i]):
            return i
    return None
