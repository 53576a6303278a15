"""Text rules both lanes share: what counts as a comment that cannot be labelled."""

from __future__ import annotations

import math
import re
import unicodedata

LABELLING_NOT_POSSIBLE = "Labelling not possible"

# Answers that carry no content. Compared after lowercasing and stripping punctuation/space.
PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "", "na", "n a", "n/a", "nan", "null", "none", "nil", "no comment", "no comments",
        "did not answer", "not answered", "no answer", "-", ".", "?",
    }
)

_PUNCT_SPACE = re.compile(r"[\s\W_]+", re.UNICODE)


def normalise(text: object) -> str:
    """Return the text as a string; None and float NaN (as pandas reads blanks) become ''."""
    if text is None:
        return ""
    if isinstance(text, float) and math.isnan(text):
        return ""
    return str(text)


def has_letters_or_digits(text: str) -> bool:
    return any(unicodedata.category(ch)[0] in ("L", "N") for ch in text)


def is_unlabellable(text: object) -> bool:
    """True for empty, blank, placeholder ('n/a', 'Did not answer') or emoji/punctuation-only text."""
    s = normalise(text).strip()
    if not s or not has_letters_or_digits(s):
        return True
    key = _PUNCT_SPACE.sub(" ", s.lower()).strip()
    return key in PLACEHOLDERS or s.lower() in PLACEHOLDERS
