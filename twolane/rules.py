"""The rule book: every rule about comments and labels that the build and both lanes share.

One place for: what counts as a comment that cannot be labelled, the question types and how
any spelling of one is read, the question-type token the models read, the sentiment scale, and
how probabilities become labels ("Labelling not possible" for unlabellable text and for a
comment no label clears its threshold for; the top-label fallback, which never gives a
praising theme to a comment whose predicted sentiment is negative). The build scores a model with exactly the rules it
is served with, because both import them from here.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np

LABELLING_NOT_POSSIBLE = "Labelling not possible"

# ----------------------------------------------------------------------------- question types
QuestionType = Literal["what_good", "could_improve", "nonspecific"]
QUESTION_TYPES: tuple[QuestionType, ...] = get_args(QuestionType)
DEFAULT_QUESTION_TYPE: QuestionType = "nonspecific"

# The FFT question wordings that name a question type (matched at the start, lower case).
_QUESTION_WORDINGS: tuple[tuple[str, QuestionType], ...] = (
    ("what was good", "what_good"),
    ("how could we improve", "could_improve"),
    ("what could we do better", "could_improve"),
)


def question_type_of(value: object) -> QuestionType:
    """Any spelling of a question type -> what_good / could_improve / nonspecific.

    Accepts the names in any case ("Nonspecific"), the FFT question wordings ("What was good
    about your visit?"); anything else, None and NaN included, is nonspecific.
    """
    q = " ".join(normalise(value).lower().split())
    for name in QUESTION_TYPES:
        if q == name:
            return name
    for start, name in _QUESTION_WORDINGS:
        if q.startswith(start):
            return name
    return DEFAULT_QUESTION_TYPE


def model_input(text: str, question_type: object) -> str:
    """What a TF-IDF model reads: the comment plus a question-type token (" qt_could_improve")."""
    return f"{text} qt_{question_type_of(question_type)}"


# ----------------------------------------------------------------------------- sentiment
# 1 very positive .. 5 very negative, as the NHS labellers scored it.
SENTIMENT_NAMES: dict[int, str] = {
    1: "very positive",
    2: "positive",
    3: "neutral or mixed",
    4: "negative",
    5: "very negative",
}
# The scores that count as a negative comment (negative, very negative).
NEGATIVE_SCORES: tuple[int, ...] = (4, 5)
NHS_SENTIMENT_CLASSES: tuple[str, ...] = tuple(str(k) for k in SENTIMENT_NAMES)  # "1".."5"


def sentiment_names(classes: Sequence[str], names: Sequence[str] = ()) -> list[str]:
    """What clients are shown for each sentiment class, in class order: `names` when given
    (a bundle's taxonomy.sentiment_names), the NHS scale's names for its classes "1".."5",
    else the class names themselves."""
    if names:
        return list(names)
    if tuple(classes) == NHS_SENTIMENT_CLASSES:
        return list(SENTIMENT_NAMES.values())
    return list(classes)


# ----------------------------------------------------------------------------- context column
# A team's own context column (a bundle's data_spec.context_column: ward, product, channel ...)
# conditions the instant model the way the NHS question type does: one ` qt_<token>` word
# appended to the comment. The token is the value folded to ASCII letters, digits and "_"
# (what sklearn's and the ONNX tokeniser's \w+ read as one word).
_NOT_TOKEN = re.compile(r"[^a-z0-9]+")
MAX_CONTEXT_CHARS = 200  # characters of a context value a client may send


def context_token(value: object) -> str:
    """A context value as one token: "Birth Control" -> "birth_control"; blank -> "none";
    a value with no ASCII letter or digit -> "x" + a short hex digest of it."""
    v = normalise(value).strip().lower()
    tok = _NOT_TOKEN.sub("_", unicodedata.normalize("NFKD", v).encode("ascii", "ignore").decode()).strip("_")
    if not v:
        return "none"
    if not tok:
        import hashlib

        return "x" + hashlib.sha256(v.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return tok


def context_input(text: str, context: object) -> str:
    """What a TF-IDF model with a context column reads: the comment plus " qt_<context_token>"."""
    return f"{text} qt_{context_token(context)}"

# ----------------------------------------------------------------------------- input text
# The one input boundary: every comment text that enters (API, drop folder, jobs, container)
# passes `clean_text` (the contract's validators call it), so no predictor ever sees it raw.
# Lone UTF-16 surrogates (valid JSON escapes such as "\\ud800", never encodable as UTF-8) and
# NUL become U+FFFD; every other character is kept as it came.
REPLACEMENT = "\ufffd"
_UNENCODABLE = re.compile("[\ud800-\udfff\x00]")


def clean_text(text: str) -> str:
    """`text` with lone surrogates and NUL replaced by U+FFFD (same length; a copy only when
    something changed). Never raises."""
    return _UNENCODABLE.sub(REPLACEMENT, text) if _UNENCODABLE.search(text) else text


def is_clean(text: str) -> bool:
    """True when `text` has nothing `clean_text` would replace (an identifier must be, since
    replacing part of it would change which comment it names)."""
    return _UNENCODABLE.search(text) is None


# ----------------------------------------------------------------------------- unlabellable text
# Answers that carry no content. Compared after lowercasing and stripping punctuation/space.
PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "", "na", "n a", "n/a", "nan", "nat", "null", "none", "nil", "no comment", "no comments",
        "did not answer", "not answered", "no answer", "-", ".", "?", "not applicable",
        "n a not applicable", "not known", "unknown", "blank", "test",
    }
)

_PUNCT_SPACE = re.compile(r"[\s\W_]+", re.UNICODE)
# Spreadsheet junk: error values (#REF!, #VALUE!, #N/A, #DIV/0!, #NAME?, #NULL!, #NUM!,
# #SPILL!, #CALC!, #GETTING_DATA), a lone number or date (0, 1, 3.5, 12/03/2023, 1,000) and
# a lone letter ("x", "Y."). Matched on the stripped text.
_JUNK = re.compile(
    r"(?i)#(?:ref!|value!|n/?a|div/0!|name\?|null!|num!|spill!|calc!|getting_data)"
    r"|[-+]?[\d.,:/\s%£$]*\d[\d.,:/\s%£$]*"
    r"|[^\W\d_][\W_]*"
)
# A text with more letters/digits than the longest placeholder is labellable: a fast path past
# is_unlabellable (its regex over the whole text costs ~6 us a comment).
_LONGER_THAN_PLACEHOLDERS = re.compile(
    r"[^\W_](?:[\W_]*[^\W_]){" + str(max(len(p) for p in PLACEHOLDERS)) + "}")


def normalise(text: object) -> str:
    """Return the text as a string; None and float NaN (as pandas reads blanks) become ''."""
    if text is None:
        return ""
    if isinstance(text, float) and math.isnan(text):
        return ""
    return str(text)


def is_blank(text: object) -> bool:
    """True for missing, null, NaN, empty or whitespace-only text: the only texts pxtextmining
    gives sentiment "Labelling not possible" (a subset of `is_unlabellable`)."""
    return not normalise(text).strip()


# pxtextmining's shapes need a sentiment number for every text that is not blank. A
# placeholder or content-free answer ("N/A", "Did not answer", emoji only) carries no opinion:
# it gets this score ("neutral or mixed") there, and labels ["Labelling not possible"].
CONTENT_FREE_SENTIMENT = 3


def has_letters_or_digits(text: str) -> bool:
    return any(unicodedata.category(ch)[0] in ("L", "N") for ch in text)


def is_unlabellable(text: object) -> bool:
    """True for text that carries nothing to label, whatever the model.

    Empty or blank text, placeholders ('n/a', 'Did not answer', 'Not applicable', 'NaT'),
    emoji/punctuation only, spreadsheet error values ('#REF!', '#VALUE!'), a lone number or
    date ('0', '12/03/2023') and a lone letter ('x'). A model adds one more case when it serves:
    a comment with no word (n-gram) its vocabulary knows (see `KNOWN_OUTPUT`).
    """
    s = normalise(text).strip()
    if not s or not has_letters_or_digits(s):
        return True
    key = _PUNCT_SPACE.sub(" ", s.lower()).strip()
    if key in PLACEHOLDERS or s.lower() in PLACEHOLDERS:
        return True
    return _JUNK.fullmatch(s) is not None


def labellable(text: str) -> bool:
    """not is_unlabellable(text), faster for ordinary comments (same answer, see the tests)."""
    return bool(_LONGER_THAN_PLACEHOLDERS.search(text)) or not is_unlabellable(text)


# The instant lane's linear model also outputs, per comment, how many n-grams of its vocabulary
# the comment holds (the question-type token not counted): 0 means the model knows no word of it,
# and the comment is unlabellable like the cases above (exactly "Labelling not possible", no
# sentiment) in both lanes (the batch lane asks the instant bundle it embeds).
KNOWN_OUTPUT = "known_ngrams"


# ----------------------------------------------------------------------------- labels
def lnp_index(labels: list[str]) -> int | None:
    """Position of "Labelling not possible" in a label list, or None when it has none."""
    return labels.index(LABELLING_NOT_POSSIBLE) if LABELLING_NOT_POSSIBLE in labels else None


def apply_rules(chosen: np.ndarray, unlabellable: np.ndarray, lnp: int | None) -> np.ndarray:
    """The "Labelling not possible" rule on a chosen-label matrix (n x L, 0/1 or bool).

    "Labelling not possible" is never a model's choice: unlabellable rows get exactly it, and so
    does any row left with no label. Returns a new uint8 matrix.
    """
    out = np.asarray(chosen).astype(np.uint8)  # a copy
    if lnp is None:  # a taxonomy without such a label: unlabellable rows get no label at all
        out[np.asarray(unlabellable, dtype=bool)] = 0
        return out
    out[:, lnp] = 0
    out[np.asarray(unlabellable, dtype=bool)] = 0
    out[out.sum(1) == 0, lnp] = 1
    return out


# Themes that praise: the top-label fallback never gives one to a comment whose own predicted
# sentiment is negative (see `fallback_barred`).
POSITIVE_THEMES: tuple[str, ...] = ("Positive experience & gratitude",)


def fallback_barred(labels: Sequence[str], sentiment: np.ndarray | None) -> np.ndarray | None:
    """The labels the top-label fallback may not pick, per row: bool n x len(labels).

    `sentiment`: the rows' sentiment probabilities, n x 5, columns scores 1 (very positive) ..
    5 (very negative); a row of NaN (no sentiment) bars nothing. A row whose most probable
    score is in NEGATIVE_SCORES may not get a POSITIVE_THEMES label from the fallback. None
    when `sentiment` is None or no positive theme is in `labels` (nothing barred).
    Raises ValueError when `sentiment` is not n x 5.
    """
    cols = [j for j, lab in enumerate(labels) if lab in POSITIVE_THEMES]
    if sentiment is None or not cols:
        return None
    S = np.asarray(sentiment, dtype=np.float64)
    if S.ndim != 2 or S.shape[1] != len(SENTIMENT_NAMES):
        raise ValueError(f"sentiment probabilities must be n x {len(SENTIMENT_NAMES)}, not {S.shape}")
    known = ~np.isnan(S).any(1)
    score = np.argmax(np.nan_to_num(S, nan=-np.inf), axis=1) + 1
    negative = known & np.isin(score, NEGATIVE_SCORES)
    barred = np.zeros((len(S), len(labels)), dtype=bool)
    barred[np.ix_(negative, np.asarray(cols, dtype=np.intp))] = True
    return barred


def columns_of(labels: Sequence[str], names: Sequence[str]) -> list[int]:
    """The columns of `names` among `labels` (names not among them are skipped)."""
    return [labels.index(n) for n in names if n in labels]


def top_label(probs: np.ndarray, lnp: int | None, unlabellable: np.ndarray | None = None) -> np.ndarray:
    """A single-label taxonomy's rule: every labellable row gets exactly its most probable label
    (the unlabellable label's column never competes), unlabellable rows get exactly the
    unlabellable label (or none when the taxonomy has none). probs: n x L; returns uint8 n x L."""
    probs = np.asarray(probs, dtype=np.float32)
    n = len(probs)
    bad = np.zeros(n, bool) if unlabellable is None else np.asarray(unlabellable, dtype=bool)
    rel = probs.copy()
    if lnp is not None and n:
        rel[:, lnp] = -np.inf
    chosen = np.zeros(probs.shape, bool)
    if n and probs.shape[1]:
        chosen[np.arange(n), np.argmax(rel, axis=1)] = True
    return apply_rules(chosen, bad, lnp)


def decide_labels(probs: np.ndarray, thresholds: np.ndarray, lnp: int | None,
                  unlabellable: np.ndarray | None = None, min_one_label: bool = False,
                  min_ratio: float = 0.0, barred: np.ndarray | None = None,
                  never_fallback: Sequence[int] = ()) -> np.ndarray:
    """Labels from probabilities (n x L) and per-label thresholds (L): uint8 n x L.

    A label is chosen when its probability reaches its threshold and, with `min_ratio` > 0, at
    least `min_ratio` x the row's highest probability ("second-label rule": a second or third
    label must be nearly as likely as the first; 5-fold out-of-fold on the training split, rule
    tuned on other folds, ensemble: ratio 0.5 left macro-F1 as it was and raised micro-F1 .774
    -> .782, exact match .666 -> .684, hamming .0184 -> .0171). With `min_one_label`, a
    labellable row with none gets its most probable label ("top-label fallback", as pxtextmining
    serves; out-of-fold this beat "highest relative to its threshold": macro-F1 .5845 vs .5805,
    micro .7831 vs .7813). `barred` (bool n x L, from `fallback_barred`): labels the fallback
    may not pick for a row; it takes the most probable label not barred instead. This stops
    "Dirty toilets" (negative) getting "Positive experience & gratitude" as its fallback; a
    positive theme that clears its threshold on a negative row is kept. Evidence: 5-fold
    out-of-fold on the training split, ensemble with OOF sentiment (macro, micro, exact,
    hamming): without .5577/.7502/.6082/.02088; fallback barred .5589/.7503/.6085/.02087 (75 of
    4,462 rows change); barring thresholded positive labels too .5562/.7459/.6038/.02122 (worse,
    not done). Then `apply_rules` (unlabellable rows and rows still empty:
    "Labelling not possible"). "Labelling not possible"'s own column is never read.
    `never_fallback`: label columns the fallback never picks for any row, the labels with too
    few training examples to trust (a manifest's `low_support_labels`): "Dirty toilets" got
    "Electronic entertainment" (9 training positives) as its best guess. Out of fold (nested,
    as above) .5525/.7445/.5986/.02146 -> .5529/.7445/.5986/.02146: no cost.
    Raises ValueError when `barred` is not the shape of `probs`.
    """
    probs = np.asarray(probs, dtype=np.float32)
    thr = np.asarray(thresholds, dtype=np.float32)
    n = len(probs)
    bad = np.zeros(n, bool) if unlabellable is None else np.asarray(unlabellable, dtype=bool)
    chosen = probs >= thr
    if lnp is not None and n:
        chosen[:, lnp] = False
    if (min_one_label or min_ratio > 0) and n:
        rel = probs.copy()
        if lnp is not None:
            rel[:, lnp] = -np.inf
        top = np.argmax(rel, axis=1)
        if min_ratio > 0:
            best = rel[np.arange(n), top]
            chosen &= rel >= np.float32(min_ratio) * best[:, None]
        if min_one_label:
            empty = ~chosen.any(1) & ~bad
            if barred is not None or len(never_fallback):
                bar = np.zeros(probs.shape, bool) if barred is None else np.asarray(barred, dtype=bool)
                if bar.shape != probs.shape:
                    raise ValueError(f"barred is {bar.shape}, probabilities {probs.shape}")
                free = np.where(bar, -np.inf, rel)
                free[:, np.asarray(never_fallback, dtype=np.intp)] = -np.inf
                top = np.argmax(free, axis=1)
                empty &= np.isfinite(free[np.arange(n), top])  # every label barred: none
            chosen[np.flatnonzero(empty), top[empty]] = True
    return apply_rules(chosen, bad, lnp)
