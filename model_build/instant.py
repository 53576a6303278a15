"""Build the instant-lane bundle: TF-IDF + linear and TF-IDF + XGBoost for the 32 labels, a
TF-IDF + multinomial sentiment model, exported together as ONE ONNX graph (raw strings in, one
tokeniser and bag of n-grams shared by every model; see MODEL_FILE).

Steps: load + split (model_build.data) -> fit TF-IDF on the training rows -> out-of-fold
probabilities on the TRAINING split to tune per-label thresholds (linear, XGBoost, their mean)
-> fit on all training rows -> export ONNX -> parity gate (ONNX vs in-memory labels on the test
split) -> test metrics -> bundle + manifest (twolane.bundle).

Training uses the comments that can be labelled; empty/placeholder comments are labelled
"Labelling not possible" by rule (twolane.rules), in the build's metrics and in the predictor.
"""

from __future__ import annotations

import json
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from model_build import metrics
from model_build.data import DEFAULT_DATA, SEED, SENTIMENT_CLASSES, TEST_SIZE, Context, Dataset, load_dataset
from model_build.dataspec import SpecArgs
from twolane.bundle import (
    DecideRule,
    InstantEnsemble,
    Manifest,
    ModelEntry,
    Serving,
    Taxonomy,
    new_version,
    write_manifest,
)
from twolane.rules import (
    KNOWN_OUTPUT,
    columns_of,
    context_input,
    decide_labels,
    fallback_barred,
    is_unlabellable,
    model_input,
    top_label,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bundles"
CONST_LOGIT = 20.0  # logit of a label that had one class only in training (prob ~ 0 or ~ 1)

# ONE ONNX file holds every model: the linear label heads, the sentiment head, the known-n-gram
# count and the XGBoost trees all read one binary bag of n-grams, so a comment is tokenised once.
MODEL_FILE = "instant.onnx"
SENTIMENT_OUTPUT = "sentiment"  # the sentiment head's output in MODEL_FILE
XGB_OUTPUT = "xgb_probabilities"  # the XGBoost trees' output in MODEL_FILE

console = Console(stderr=True)


class BuildError(RuntimeError):
    """The build cannot produce a trustworthy bundle (e.g. ONNX disagrees with the model)."""


@dataclass(frozen=True)
class Config:
    # Evidence for every choice below: 5-fold out-of-fold (OOF) on the TRAINING split, scored by
    # model_build.metrics (see /docs/quality.md). Vocabulary sets the dense work in ONNX (the
    # n-gram op emits [N, V], then one MatMul). 1-2-grams with min_df=2 give 10,090 n-grams;
    # linear OOF macro/micro: 6k .560/.765, 10k .568/.768 (1-3-grams 10k: .560/.768).
    max_features: int = 10_000
    min_df: int = 2
    ngram_max: int = 2
    # "svm": LinearSVC + Platt scaling (sigmoid fitted on 3-fold decision values) = one linear
    # model; "lr": logistic regression. OOF macro/micro/exact: lr C=30 .568/.768/.648,
    # svm C=1 .572/.772/.656, svm C=0.5 .567/.770/.650.
    linear_model: str = "svm"
    linear_C: float = 0.5  # with the char view below (OOF C=0.5; word-only models used C=1)
    linear_class_weight: str | None = "balanced"
    # Character view (`CharView`): the linear label model also reads the char_wb 2-5-grams of the
    # comment's vocabulary words (word pieces: "nurse" in "nurses", "nursing"), weighted by idf
    # and normalised by a norm that is linear in the word bag, so the whole view folds into the
    # same MatMul: serving reads the same word bag, no new text front. 5-fold OOF, linear alone
    # (thresholds tuned on other folds; macro, micro, exact, hamming): word only .546/.764/.648/
    # .0193, + char view .570/.778/.664/.0181 (true char_wb n-grams of the text, not exportable:
    # .568/.779/.666/.0181); ensemble with XGBoost + second-label rule: .554/.782/.684/.0171 ->
    # .577/.791/.693/.0164.
    char_view: bool = True
    char_ngrams: tuple[int, int] = (2, 5)
    char_min_df: int = 2
    # Train the label models on comments that carry at least one label (pxtextmining does the
    # same); comments the labellers left unlabelled are noise for them. OOF macro .545 -> .560.
    labelled_rows_only: bool = True
    # 5-fold CV accuracy on train (lexicon features on): C=1 .660, 4 .660. With the char view
    # (`sentiment_char_view`, the label model's view, needs char_view): C=2 .663, 1 .667,
    # .5 .668; polarity set .869/.869/.893 (without the view .893).
    sentiment_C: float = 0.5
    sentiment_char_view: bool = True
    # Sentiment reads a sentiment lexicon (VADER's, a build-time dependency) as two extra
    # features: the positive and negative valence the comment's n-grams carry (negations and
    # "un-" words flip it). Both are linear in the TF-IDF row, so they fold into the sentiment
    # head. Hand-written polarity set: .69 -> .93+ on the right side; OOF accuracy unchanged.
    sentiment_lexicon: bool = True
    lexicon_scale: float = 3.0
    # Negated pairs ("no respect") of the common negators and lexicon words the training text
    # holds, not only the pairs it holds (model_build.lexicon.terms): vocabulary 15,271 ->
    # 17,622 on the NHS data. The new pairs are in no training row: OOF unchanged (.6675) and
    # the label models unchanged (docs/quality.md).
    lexicon_negate_unseen: bool = True
    # Polarity-ratio scaling of the sentiment head's n-gram features (`polarity_scale`, after
    # NBSVM, Wang & Manning 2012): column j is multiplied by |r_j| ** gamma, r_j = the log ratio
    # of its document frequency in positive (1-2) vs negative (4-5) training comments, so the
    # penalty falls on n-grams that carry no polarity. Folds into the weights (W_j * f_j).
    # 5-fold OOF accuracy (C .5, alpha 1): off .668; gamma .25 .671, .5 .675, .75 .674, 1 .674;
    # gamma .5 with C .3 .671, .7 .675; alpha .5 .672, 2 .675 (docs/quality.md).
    sentiment_polarity_gamma: float = 0.5
    sentiment_polarity_alpha: float = 1.0
    # The sentiment head served is this tuned one or a plain TF-IDF + logistic regression
    # (C = sentiment_baseline_C, balanced), whichever has the better out-of-fold accuracy on
    # the training rows (model_build.choose; issue 31: on drug reviews the tuned head was
    # .712 against the plain one's .755). False: the tuned head, no choice.
    sentiment_baseline: bool = True
    sentiment_baseline_C: float = 10.0
    # XGBoost: 15 rounds at eta .8 (issue 10, speed). Trees are most of the ensemble's serving
    # time. Nested 5-fold OOF, ensemble .6/.4 with the char view and ratio .5 (macro, micro,
    # exact, hamming): 50 rounds at .3 .577/.791/.693/.0164; 30 at .45 .578/.792/.694/.0163;
    # 20 at .6 .576/.791/.693/.0164; 15 at .8 .582/.792/.694/.0164; 10 at .8 .582/.791/.691/
    # .0164; 10 at 1.0 .576/.789/.691/.0166; depth 3 (15 at .8) .580/.790/.691/.0165; depth 5
    # .580/.791/.693/.0165. Trees on the most frequent labels only (linear alone on the rest)
    # lose macro: 21 labels .579, 14 labels .578, 5 labels .573.
    xgb_rounds: int = 15
    xgb_depth: int = 4
    xgb_eta: float = 0.8
    xgb_max_bin: int = 32  # no effect: the trees read n-gram presence (one value)
    xgb_features: int = 3000  # XGBoost sees the most frequent TF-IDF columns only (speed)
    folds: int = 5
    threads: int = 1  # XGBoost threads: 2 OpenMP threads on a busy 2-core box run 10x slower
    # OOF, weights linear/xgboost (thresholds tuned on other folds, second-label rule, char
    # view): .6/.4 .577/.791/.693/.0164, .5/.5 .574/.790/.691/.0165 (macro, micro, exact, hamming).
    default_model: str = "ensemble"  # "linear", "xgboost" or "ensemble"
    ensemble_weights: tuple[float, float] = (0.6, 0.4)
    # A labellable comment no label clears its threshold for gets its most probable label
    # (pxtextmining serves the same). OOF ensemble: micro .760 -> .783, exact .650 -> .674.
    # It never gives a positive theme to a comment whose predicted sentiment is negative
    # (twolane.rules.fallback_barred; the build scores with OOF sentiment).
    min_one_label: bool = True
    # Second-label rule (twolane.rules.decide_labels min_ratio): a label other than a comment's
    # most probable one also needs >= label_ratio x that one's probability. Most comments carry
    # one label; the per-label-F1 thresholds add too many second labels. Evidence: 5-fold OOF
    # ensemble probabilities, thresholds tuned on 4/5 of the rows and scored on the 5th
    # (macro, micro, exact, hamming): ratio 0 .554/.774/.666/.0184, .3 (w .6) .560/.779/.672/
    # .0178, .45 .555/.782/.683/.0173, .5 .554/.782/.684/.0171, .55 .548/.782/.686/.0170,
    # .6 (w .6) .540/.780/.688/.0170. Tried and not better: per-label thresholds by coordinate
    # ascent on mean(macro, micro, exact) or on macro under the rule, a separate third-label
    # ratio, exempting rare labels, and a stacked per-label logistic regression over the two
    # members' probabilities, top-1 flag and best competing label (see docs/quality.md).
    # The rule is the ensemble's only: alone, linear and XGBoost lose macro-F1 with it (.546 ->
    # .529, .495 -> .487), and they serve without it.
    label_ratio: float = 0.5
    # Per-label thresholds shrunk toward threshold_prior with the weight of this many positives
    # (metrics.tune_thresholds): nested OOF (3 x 5-fold, thresholds tuned on 4/5), ensemble
    # .5521/.7441/.5991/.02148 -> .5580/.7449/.6000/.02138, linear .5465/.7334/.5683/.02319 ->
    # .5499/.7363/.5762/.02273, XGBoost .4587/.6884/.5291/.02746 -> .4519/.6933/.5368/.02671.
    # Weight 7/15 and prior .45/.55 within .0015 of this on the ensemble's macro-F1.
    threshold_prior_weight: float = 10.0
    threshold_prior: float = 0.5
    min_support: int = metrics.MIN_SUPPORT  # fewer training positives: flagged, never a fallback
    parity_min: float = 0.999  # share of test rows whose ONNX labels equal the in-memory ones
    chunk: int = 1000  # rows per ONNX call (the TF-IDF op emits dense rows)
    # Append " qt_<question type>" to each comment (twolane.rules.model_input): 5-fold OOF on
    # train, linear: macro-F1 .525 -> .531, micro-F1 .630 -> .669; sentiment accuracy .633 -> .646.
    use_question_type: bool = True
    # Words out of the vocabulary count as their nearest vocabulary word by sentence-encoder
    # embedding, cosine >= alias_min_cosine (model_build.aliases): strict OOF (vocabulary refitted
    # per fold), linear labels macro-AP .557 -> .577 at .6 (.574 at .7; encoder words only: .568
    # at .8, .573 at .7, .574 at .6, .570 at .5); sentiment accuracy unchanged.
    word_aliases: bool = True
    alias_min_cosine: float = 0.6


SMALL = Config(max_features=3000, xgb_rounds=25, xgb_features=1000, folds=3)
MIN_SUPPORT_NOTE = ("labels with fewer training positives than min_support: their F1 rests on "
                    "a handful of examples, do not rely on them")


# --------------------------------------------------------------------------- fitting
def ratio(model: str, cfg: Config) -> float:
    """The second-label rule's ratio for one of the bundle's models (the ensemble's only)."""
    return cfg.label_ratio if model == "ensemble" else 0.0


def inputs(text: str, question_type: str, cfg: Config, context: Context = "question_type") -> str:
    """The model input for one comment (the predictor builds the same with model_input, or
    context_input for a data spec's context column). context: the Dataset's."""
    if context == "column":
        return context_input(text, question_type)
    return model_input(text, question_type) if cfg.use_question_type and context == "question_type" else text


def fit_vectorizer(texts: list[str], cfg: Config) -> Any:
    """The TF-IDF vectorizer (model_build.aliases.AliasedTfidf) fitted on the training texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from model_build.aliases import AliasedTfidf, fit_aliases

    # sublinear_tf stays off: skl2onnx converts it as log(tf+1), not sklearn's 1+log(tf).
    # binary tf: as good on OOF macro-F1 (.525 vs .521) and lets the export fold idf + L2 norm
    # into one MatMul (see onnx_export.linear_model).
    vec = TfidfVectorizer(ngram_range=(1, cfg.ngram_max), min_df=cfg.min_df,
                          max_features=cfg.max_features, dtype=np.float32, binary=True)
    vec.fit(texts)
    vocab = sorted(vec.vocabulary_)
    if cfg.sentiment_lexicon:
        # The vocabulary also holds the lexicon's terms (model_build.lexicon), so a comment's
        # "rude" or "disgraceful" reaches the sentiment head even when training never saw it.
        vocab = sorted(set(vocab) | set(lexicon_terms(texts, cfg)))
    out = AliasedTfidf(ngram_range=(1, cfg.ngram_max), vocabulary=vocab, dtype=np.float32,
                       binary=True).fit(texts)
    if cfg.word_aliases:  # unknown words count as their nearest known word (model_build.aliases)
        from model_build import lexicon

        out.set_aliases(fit_aliases(out.vocabulary_, texts, cfg.alias_min_cosine,
                                    valence=lexicon.vader_lexicon(), keep_out=lexicon.NEGATORS))
    return out


def lexicon_terms(texts: list[str], cfg: Config) -> dict[str, float]:
    from model_build import lexicon

    return lexicon.terms(texts, negate_unseen=cfg.lexicon_negate_unseen)


def known_mask(vec: Any) -> np.ndarray:
    """1 for every vocabulary column except the question-type tokens (what 'knows a word' counts)."""
    mask = np.ones(len(vec.vocabulary_))
    for term, j in vec.vocabulary_.items():
        if term.startswith("qt_") or " qt_" in term:
            mask[j] = 0.0
    return mask


@dataclass
class CharView:
    """The char_wb n-grams of a comment's vocabulary words, read through the word bag.

    b = word presence over the vocabulary (1 x V, what the ONNX front emits); the view is
    (b @ M) / sqrt(b @ r): M (V x C) holds, per vocabulary unigram, its char_wb n-grams
    (binary) times their idf over the training comments, r the squared norm of each row of M.
    Both the numerator and the squared norm are linear in b, so a linear head over the view is
    a (V x k) matrix plus one norm column in the export's MatMul (onnx_export.linear_model).
    """

    M: Any  # scipy.sparse csr, V x C
    r: np.ndarray  # V

    def transform(self, X: Any) -> Any:
        from scipy.sparse import diags

        B = presence(X)
        norm = np.sqrt(np.asarray(B @ self.r).ravel())
        return diags(1 / np.maximum(norm, 1e-12)) @ (B @ self.M)

    def features(self, X: Any) -> Any:
        """[TF-IDF row | char view]: what the linear label model reads."""
        from scipy.sparse import hstack

        return hstack([X, self.transform(X)]).tocsr()


def view_heads(linear: LinearOVR, sent: Sentiment | None) -> dict[str, np.ndarray]:
    """The export's char-view blocks: output name -> weights folded onto the word bag (k x V)."""
    from model_build.onnx_export import OUTPUT

    out = {OUTPUT: linear.char_coef} if linear.char_coef is not None else {}
    if sent is not None and sent.char_coef is not None:
        out[SENTIMENT_OUTPUT] = sent.char_coef
    return out


def fit_char_view(vec: Any, X: Any, cfg: Config) -> CharView:
    """Build the view from the vectorizer's unigrams; idf over the rows of X (training TF-IDF)."""
    from scipy.sparse import csr_matrix, diags
    from sklearn.feature_extraction.text import CountVectorizer

    words = [(t, j) for t, j in vec.vocabulary_.items() if " " not in t and not t.startswith("qt_")]
    cv = CountVectorizer(analyzer="char_wb", ngram_range=tuple(cfg.char_ngrams), binary=True,
                         lowercase=False, dtype=np.float64)
    W = cv.fit_transform([t for t, _ in words]).tocoo()
    rows = np.array([j for _, j in words])[W.row]
    M = csr_matrix((W.data, (rows, W.col)), shape=(X.shape[1], W.shape[1]))
    df = np.asarray(((presence(X) @ M) > 0).sum(0)).ravel()
    keep = np.flatnonzero(df >= cfg.char_min_df)
    idf = np.log((1 + X.shape[0]) / (1 + df[keep])) + 1
    M = (M[:, keep] @ diags(idf)).tocsr()
    return CharView(M, np.asarray(M.multiply(M).sum(1)).ravel())


@dataclass
class LinearOVR:
    """Per-label linear models; `coef` (labels x V) and `intercept` feed the ONNX MatMul, and
    with a char view `char_coef` (labels x V) the view's part, folded onto the word bag."""

    estimators: list[Any]  # fitted model or None (single class in training)
    coef: np.ndarray
    intercept: np.ndarray
    view: CharView | None = None
    char_coef: np.ndarray | None = None

    def predict_proba(self, X: Any) -> np.ndarray:
        F = self.view.features(X) if self.view is not None else X
        cols = []
        for j, est in enumerate(self.estimators):
            if est is None:
                cols.append(np.full(X.shape[0], 1 / (1 + np.exp(-self.intercept[j]))))
            else:
                cols.append(est.predict_proba(F)[:, 1])
        return np.column_stack(cols)


def fit_linear(X: Any, Y: np.ndarray, cfg: Config, tick: Callable[[], None] = lambda: None,
               view: CharView | None = None) -> LinearOVR:
    """One linear model per label on the TF-IDF rows X (and the char view of them, if given)."""
    from sklearn.linear_model import LogisticRegression

    V = X.shape[1]
    if view is not None:
        X = view.features(X)
    ests: list[Any] = []
    coef = np.zeros((Y.shape[1], X.shape[1]))
    intercept = np.zeros(Y.shape[1])
    for j in range(Y.shape[1]):
        y = Y[:, j]
        if y.min() == y.max():
            ests.append(None)
            intercept[j] = CONST_LOGIT if y[0] else -CONST_LOGIT
        elif cfg.linear_model == "svm":
            est = PlattSVM.fit(X, y, cfg)
            ests.append(est)
            coef[j], intercept[j] = est.coef, est.intercept
        else:
            est = LogisticRegression(C=cfg.linear_C, class_weight=cfg.linear_class_weight,
                                     solver="liblinear", max_iter=1000)
            est.fit(X, y)
            ests.append(est)
            coef[j] = est.coef_[0]
            intercept[j] = est.intercept_[0]
        tick()
    if view is None:
        return LinearOVR(ests, coef, intercept)
    return LinearOVR(ests, coef[:, :V], intercept, view, np.asarray(view.M @ coef[:, V:].T).T)


@dataclass
class PlattSVM:
    """A linear SVM whose decision value goes through a fitted sigmoid: still one linear model,
    logit = a * (w . x + b) + c, so `coef` = a * w and `intercept` = a * b + c."""

    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, X: Any, y: np.ndarray, cfg: Config) -> PlattSVM:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_predict
        from sklearn.svm import LinearSVC

        svm = LinearSVC(C=cfg.linear_C, class_weight=cfg.linear_class_weight)
        with warnings.catch_warnings():  # liblinear's iteration cap; OOF scores are with it
            warnings.simplefilter("ignore", ConvergenceWarning)
            if y.sum() >= 3 and (len(y) - y.sum()) >= 3:
                d = cross_val_predict(svm, X, y, cv=3, method="decision_function")
            else:  # too few positives for inner folds: the sigmoid is fitted on training values
                d = svm.fit(X, y).decision_function(X)
            platt = LogisticRegression(C=1e4).fit(d[:, None], y)
            svm.fit(X, y)
        a, c = float(platt.coef_[0, 0]), float(platt.intercept_[0])
        return cls(a * svm.coef_[0].astype(np.float64), a * float(svm.intercept_[0]) + c)

    def predict_proba(self, X: Any) -> np.ndarray:
        z = np.asarray(X @ self.coef).ravel() + self.intercept
        p = 1 / (1 + np.exp(-z))
        return np.column_stack([1 - p, p])


@dataclass
class XGBoostOVR:
    members: list[Any]  # fitted XGBClassifier, or a float logit for a single-class label
    columns: np.ndarray  # the TF-IDF columns the trees see (tree feature k = column columns[k])

    def predict_proba(self, X: Any) -> np.ndarray:
        Xs = presence(X[:, self.columns])
        cols = []
        for m in self.members:
            if isinstance(m, float):
                cols.append(np.full(X.shape[0], 1 / (1 + np.exp(-m))))
            else:
                cols.append(m.predict_proba(Xs)[:, 1])
        return np.column_stack(cols)


def presence(X: Any) -> Any:
    """1.0 where an n-gram occurs, absent (= missing to XGBoost) elsewhere.

    The trees see n-gram presence, not tf-idf values: a tf-idf value that lands exactly on a
    split point (common for repeated short comments) would otherwise flip on the last float bit
    between sklearn and onnxruntime. Presence is exact in both.
    """
    X = X.tocsr(copy=True).astype(np.float32)
    X.data[:] = 1.0
    return X


def frequent_columns(X: Any, k: int) -> np.ndarray:
    """The k columns with the highest document frequency, in column order."""
    df = np.asarray((X > 0).sum(0)).ravel()
    if k >= X.shape[1]:
        return np.arange(X.shape[1])
    return np.sort(np.argsort(-df, kind="stable")[:k])


def fit_xgboost(X: Any, Y: np.ndarray, cfg: Config, tick: Callable[[], None] = lambda: None,
                columns: np.ndarray | None = None) -> XGBoostOVR:
    from xgboost import XGBClassifier

    columns = frequent_columns(X, cfg.xgb_features) if columns is None else columns
    X = presence(X[:, columns])
    members: list[Any] = []
    for j in range(Y.shape[1]):
        y = Y[:, j]
        if y.min() == y.max():
            members.append(CONST_LOGIT if y[0] else -CONST_LOGIT)
        else:
            clf = XGBClassifier(
                n_estimators=cfg.xgb_rounds, max_depth=cfg.xgb_depth, learning_rate=cfg.xgb_eta,
                tree_method="hist", max_bin=cfg.xgb_max_bin, n_jobs=cfg.threads,
                random_state=SEED, objective="binary:logistic", base_score=0.5,
            )
            clf.fit(X, y)  # sparse: absent (zero) entries are "missing" (the ONNX graph agrees)
            members.append(clf)
        tick()
    return XGBoostOVR(members, columns)


class _Folded:
    """A fitted multinomial LR with its lexicon features folded into the n-gram weights (and
    its char-view weights `view_coef` kept apart: they read the view, not the TF-IDF row)."""

    def __init__(self, est: Any, coef: np.ndarray, view: CharView | None = None,
                 view_coef: np.ndarray | None = None) -> None:
        self.coef_, self.intercept_, self.classes_ = coef, est.intercept_, est.classes_
        self.view, self.view_coef = view, view_coef

    def predict_proba(self, X: Any) -> np.ndarray:
        z = np.asarray(X @ self.coef_.T) + self.intercept_
        if self.view is not None and self.view_coef is not None:
            z = z + np.asarray(self.view.transform(X) @ self.view_coef.T)
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)


@dataclass
class Sentiment:
    est: Any
    coef: np.ndarray  # k x V (k classes; NHS 5)
    intercept: np.ndarray
    char_coef: np.ndarray | None = None  # k x V: the char view's part, folded onto the word bag

    def predict_proba(self, X: Any) -> np.ndarray:
        P = np.zeros((X.shape[0], len(self.intercept)))
        P[:, self.est.classes_] = self.est.predict_proba(X)
        return P


def polarity_scale(X: Any, y: np.ndarray, gamma: float, alpha: float = 1.0,
                   classes: int = len(SENTIMENT_CLASSES)) -> np.ndarray:
    """Per column of X (n x V), |r_j| ** gamma divided by its mean over the columns that occur.

    r_j = log((alpha + positive rows holding j) / sum over j of the same) - the same for the
    negative rows; of k ordered classes, one end = the first k // 2 classes, the other end =
    the last k // 2 (NHS, k = 5: classes 0, 1 (very positive, positive) against 3, 4).
    Shape [V]; every value >= 0.
    """
    B = presence(X)
    half = classes // 2
    pos, neg = y < half, y >= classes - half
    p = alpha + np.asarray(B[np.flatnonzero(pos)].sum(0)).ravel()
    q = alpha + np.asarray(B[np.flatnonzero(neg)].sum(0)).ravel()
    f = np.abs(np.log(p / p.sum()) - np.log(q / q.sum())) ** gamma
    seen = np.asarray(B.sum(0)).ravel() > 0
    mean = float(f[seen].mean()) if seen.any() and f[seen].mean() > 0 else 1.0
    return f / mean


def fit_sentiment(X: Any, y: np.ndarray, cfg: Config, directions: np.ndarray | None = None,
                  view: CharView | None = None, classes: int = len(SENTIMENT_CLASSES)) -> Sentiment:
    """Multinomial LR on the TF-IDF rows, plus `directions` (d x V: lexicon valence per n-gram)
    as d extra features X @ directions.T * lexicon_scale, folded back into the V weights, plus
    the char view of the rows (`view`), whose weights fold onto the word bag (`char_coef`).
    With `cfg.sentiment_polarity_gamma` > 0 the n-gram columns are scaled by `polarity_scale`
    for the fit and the scale is folded into their weights (serving reads the same rows).
    classes: k, the number of sentiment classes (y in 0..k-1); with only two classes in y the
    fit reads the TF-IDF rows alone (no lexicon, view or scaling)."""
    from scipy.sparse import csr_matrix, diags, hstack
    from sklearn.linear_model import LogisticRegression

    V = X.shape[1]
    if len(np.unique(y)) == 2:  # binary LR: one weight row, which the folding below cannot split
        directions, view, cfg = None, None, replace(cfg, sentiment_polarity_gamma=0.0)
    scale = (polarity_scale(X, y, cfg.sentiment_polarity_gamma, cfg.sentiment_polarity_alpha, classes)
             if cfg.sentiment_polarity_gamma > 0 else None)
    parts = [X if scale is None else (X @ diags(scale)).tocsr()]
    d = 0 if directions is None else len(directions)
    if directions is not None and d:
        parts.append(csr_matrix(np.asarray(X @ directions.T) * cfg.lexicon_scale))
    if view is not None:
        parts.append(view.transform(X))
    F = hstack(parts).tocsr() if len(parts) > 1 else parts[0]
    est = LogisticRegression(C=cfg.sentiment_C, max_iter=3000).fit(F, y)
    if len(est.classes_) < 2:
        raise BuildError("sentiment needs at least two classes in the training rows")
    if len(est.classes_) == 2 and F is not X:
        raise BuildError("sentiment with lexicon, char view or polarity scaling needs at least "
                         "three classes")
    view_w = est.coef_[:, V + d:] if view is not None else None
    if F is not X:
        w = est.coef_[:, :V] if scale is None else est.coef_[:, :V] * scale[None, :]
        if directions is not None and d:
            w = w + cfg.lexicon_scale * est.coef_[:, V:V + d] @ directions
        est = _Folded(est, w, view, view_w)
    k = classes
    coef = np.zeros((k, V))
    intercept = np.full(k, -CONST_LOGIT)
    cls = est.classes_
    if len(cls) == 2:  # binary LR: softmax([-z/2, z/2]) == sigmoid(z)
        coef[cls[0]], coef[cls[1]] = -est.coef_[0] / 2, est.coef_[0] / 2
        intercept[cls[0]], intercept[cls[1]] = -est.intercept_[0] / 2, est.intercept_[0] / 2
    else:
        coef[cls] = est.coef_
        intercept[cls] = est.intercept_
    char_coef = None
    if view is not None and view_w is not None:
        char_coef = np.zeros((k, V))
        char_coef[cls] = np.asarray(view.M @ view_w.T).T
    return Sentiment(est, coef, intercept, char_coef)


def out_of_fold(fit: Callable[[Any, np.ndarray], Any], X: Any, Y: np.ndarray, folds: int) -> np.ndarray:
    """Out-of-fold probabilities on the training rows (thresholds are tuned on these only)."""
    from sklearn.model_selection import KFold

    P = np.zeros(Y.shape, dtype=np.float64)
    for tr, va in KFold(folds, shuffle=True, random_state=SEED).split(X):
        P[va] = fit(X[tr], Y[tr]).predict_proba(X[va])
    return P


def sentiment_out_of_fold(fit: Callable[[Any, np.ndarray], Any], X: Any, y: np.ndarray,
                          rows: np.ndarray, folds: int, classes: int = len(SENTIMENT_CLASSES)) -> np.ndarray:
    """Out-of-fold sentiment probabilities (len(rows) x classes) for X[rows], the label models' rows.

    The folds are `out_of_fold`'s over those rows; each fold's model is fitted on every row of
    X with a sentiment (y >= 0) outside the held-out fold. What the build scores the
    fallback's sentiment rule with (twolane.rules.fallback_barred) on the training split.
    """
    from sklearn.model_selection import KFold

    idx = np.flatnonzero(rows)
    S = np.zeros((len(idx), classes))
    for _, va in KFold(folds, shuffle=True, random_state=SEED).split(idx):
        held = np.zeros(len(y), bool)
        held[idx[va]] = True
        fit_rows = np.flatnonzero((y >= 0) & ~held)
        S[va] = fit(X[fit_rows], y[fit_rows]).predict_proba(X[idx[va]])
    return S


# --------------------------------------------------------------------------- parity
def onnx_proba(model_bytes: bytes, texts: list[str], chunk: int = 1000, output: str | None = None
               ) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    want = [output] if output else None
    outs = [sess.run(want, {name: np.array(texts[i:i + chunk], dtype=object)})[0]
            for i in range(0, len(texts), chunk)]
    return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)


def parity(name: str, onnx_P: np.ndarray, mem_P: np.ndarray, thresholds: np.ndarray | None,
           minimum: float) -> dict[str, Any]:
    """Share of rows whose ONNX labels equal the in-memory ones; raises BuildError below `minimum`.

    Multilabel: the thresholded label sets; sentiment (thresholds None): the argmax class.
    """
    if onnx_P.shape != mem_P.shape:
        raise BuildError(f"{name}: ONNX output shape {onnx_P.shape} != in-memory {mem_P.shape}")
    if thresholds is None:
        same = onnx_P.argmax(1) == mem_P.argmax(1)
    else:
        same = ((onnx_P >= thresholds) == (mem_P >= thresholds)).all(1)
    share = float(same.mean()) if len(same) else 1.0
    result = {"identical_rows": share, "rows": len(same),
              "max_abs_prob_diff": float(np.abs(onnx_P - mem_P).max()) if len(same) else 0.0}
    if share < minimum:
        raise BuildError(
            f"ONNX parity gate failed for {name}: labels identical on {share:.2%} of "
            f"{len(same)} test rows (need >= {minimum:.1%}); the export does not reproduce the model"
        )
    return result


# --------------------------------------------------------------------------- build
def _versions() -> dict[str, str]:
    import onnx
    import onnxmltools
    import onnxruntime
    import skl2onnx
    import sklearn
    import xgboost

    return {"python": platform.python_version(), "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "xgboost": xgboost.__version__,
            "skl2onnx": skl2onnx.__version__, "onnxmltools": onnxmltools.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


@dataclass
class _Rows:
    """The training and test rows as the models read them."""

    train: Dataset
    test: Dataset
    tr_texts: list[str]  # labellable training comments, model inputs
    te_texts: list[str]  # every test comment, model inputs
    sentiment: np.ndarray  # of tr_texts, -1 = none
    lab_rows: np.ndarray  # bool over tr_texts: the label models' rows
    Ytr: np.ndarray  # labels of the label models' rows
    train_support: np.ndarray  # training positives per label
    low: list[str]  # labels too rare to trust (never a fallback)
    never: list[int]  # their columns


@dataclass
class _Fitted:
    """The fitted models and their out-of-fold probabilities on the label rows."""

    vec: Any
    view: Any
    Xte: Any
    linear: Any
    xgb: Any
    sent: Any  # None: the data has no sentiment
    oof: dict[str, np.ndarray]  # linear, xgboost, ensemble
    oof_sent: np.ndarray | None
    sentiment_rows: int
    sentiment_choice: Any = None  # model_build.choose.Choice; None: no sentiment or no choice made
    sentiment_other: Any = None  # the head not chosen (its test accuracy goes in the report)


def _rows(ds: Dataset, cfg: Config) -> _Rows:
    """Raises BuildError when the data is too small to train on."""
    train, test = ds.train, ds.test
    keep = np.array([not is_unlabellable(t) for t in train.texts])
    tr_texts = [inputs(t, q, cfg, ds.context)
                for t, q, k in zip(train.texts, train.question_types, keep, strict=False) if k]
    te_texts = [inputs(t, q, cfg, ds.context) for t, q in zip(test.texts, test.question_types, strict=False)]
    # the label models' rows: labellable and (by default) carrying at least one label
    lab_rows = train.Y[keep].sum(1) > 0 if cfg.labelled_rows_only else np.ones(int(keep.sum()), bool)
    Ytr = train.Y[keep][lab_rows]
    if len(tr_texts) < 20 or Ytr.sum() == 0:
        raise BuildError(f"too few labelled training rows ({len(tr_texts)}) in {ds.source}")
    if len(test.texts) == 0:
        raise BuildError("the test split is empty")
    train_support = train.Y[keep].sum(0)
    low = metrics.low_support_labels(list(ds.labels), train_support, cfg.min_support, ds.unlabellable)
    return _Rows(train, test, tr_texts, te_texts, train.sentiment[keep], lab_rows, Ytr, train_support, low,
                 columns_of(ds.labels, low))


def _fit(ds: Dataset, r: _Rows, cfg: Config, prog: Progress) -> _Fitted:
    """TF-IDF, the linear and XGBoost label models (with out-of-fold probabilities) and the
    sentiment head, with progress."""
    L = len(ds.labels)
    step = prog.add_task("TF-IDF", total=1)
    vec = fit_vectorizer(r.tr_texts, cfg)
    Xall = vec.transform(r.tr_texts)
    Xtr = Xall[np.flatnonzero(r.lab_rows)]
    Xte = vec.transform(r.te_texts)
    prog.advance(step)

    t = prog.add_task(f"linear: {cfg.folds}-fold thresholds + fit", total=L * (cfg.folds + 1))
    view = fit_char_view(vec, Xtr, cfg) if cfg.char_view else None
    oof_lin = out_of_fold(lambda X, Y: fit_linear(X, Y, cfg, lambda: prog.advance(t), view), Xtr, r.Ytr, cfg.folds)
    linear = fit_linear(Xtr, r.Ytr, cfg, lambda: prog.advance(t), view)

    tx = prog.add_task(f"xgboost: {cfg.folds}-fold thresholds + fit", total=L * (cfg.folds + 1))
    cols = frequent_columns(Xtr, cfg.xgb_features)
    oof_xgb = out_of_fold(lambda X, Y: fit_xgboost(X, Y, cfg, lambda: prog.advance(tx), cols), Xtr, r.Ytr,
                          cfg.folds)
    xgb = fit_xgboost(Xtr, r.Ytr, cfg, lambda: prog.advance(tx), cols)

    ts = prog.add_task("sentiment", total=1)
    has_sent = r.sentiment >= 0
    sent, oof_sent, k = None, None, len(ds.sentiment_classes)
    choice: Any = None  # model_build.choose.Choice
    other: Sentiment | None = None
    if k:  # the data spec has a sentiment column
        dirs = None
        if cfg.sentiment_lexicon:
            from model_build import lexicon

            dirs = lexicon.directions(vec.vocabulary_, lexicon_terms(r.tr_texts, cfg))
        sview = view if cfg.sentiment_char_view else None
        # unordered classes (words without --sentiment-order): no ends for the polarity scaling
        scfg = cfg if ds.spec is None or ds.spec.sentiment_ordered else replace(cfg, sentiment_polarity_gamma=0.0)
        sent = fit_sentiment(Xall[np.flatnonzero(has_sent)], r.sentiment[has_sent], scfg, dirs, sview, k)
        # out-of-fold sentiment of the label rows: the fallback's sentiment rule in oof_scores
        oof_sent = sentiment_out_of_fold(lambda X, y: fit_sentiment(X, y, scfg, dirs, sview, k),
                                         Xall, r.sentiment, r.lab_rows, cfg.folds, k)
        if cfg.sentiment_baseline:  # never below a plain TF-IDF + LR (model_build.choose)
            sent, oof_sent, choice, other = _choose_sentiment(Xall, r, has_sent, sent, oof_sent, cfg, k)
    prog.advance(ts)
    w_lin, w_xgb = cfg.ensemble_weights
    oof = {"linear": oof_lin, "xgboost": oof_xgb, "ensemble": (w_lin * oof_lin + w_xgb * oof_xgb) / (w_lin + w_xgb)}
    return _Fitted(vec, view, Xte, linear, xgb, sent, oof, oof_sent, int(has_sent.sum()), choice, other)


def _choose_sentiment(Xall: Any, r: _Rows, has_sent: np.ndarray, tuned: Sentiment, oof_tuned: np.ndarray,
                      cfg: Config, k: int) -> tuple[Sentiment, np.ndarray, Any, Sentiment]:
    """(the head to serve, its out-of-fold probabilities, the model_build.choose.Choice, the
    other head): the tuned head or the plain baseline, by out-of-fold accuracy on the label
    rows (the same folds as `oof_tuned`)."""
    from model_build import choose

    oof_plain = sentiment_out_of_fold(lambda X, y: choose.fit_plain(X, y, k, cfg.sentiment_baseline_C),
                                      Xall, r.sentiment, r.lab_rows, cfg.folds, k)
    plain = choose.fit_plain(Xall[np.flatnonzero(has_sent)], r.sentiment[has_sent], k, cfg.sentiment_baseline_C)
    choice = choose.choose(r.sentiment[r.lab_rows], {choose.TUNED: oof_tuned, choose.PLAIN: oof_plain}, cfg.folds)
    if choice.chosen == choose.PLAIN:
        return plain, oof_plain, choice, tuned
    return tuned, oof_tuned, choice, plain


def _tune(ds: Dataset, r: _Rows, f: _Fitted, cfg: Config) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-model thresholds from out-of-fold probabilities of the training split only, and the
    out-of-fold scores they give with the served rules."""
    thresholds = {name: metrics.tune_thresholds(r.Ytr, P, cfg.threshold_prior_weight, cfg.threshold_prior)
                  for name, P in f.oof.items()}
    oof_scores = {
        name: metrics.multilabel_scores(
            r.Ytr, decide(ds, name, P, thresholds[name], np.zeros(len(r.Ytr), bool), f.oof_sent, r.never, cfg))
        for name, P in f.oof.items()
    }
    return thresholds, oof_scores


def decide(ds: Dataset, name: str, P: np.ndarray, thresholds: np.ndarray, unlabellable: np.ndarray,
           S: np.ndarray | None, never: list[int], cfg: Config) -> np.ndarray:
    """The served rule (twolane.predictors.decide.LabelDecider) on probabilities P (n x L) of
    model `name`: a single-label taxonomy's top label, or the multilabel rule book with S (the
    rows' sentiment probabilities, or None) barring the fallback. uint8 n x L."""
    if not ds.multilabel:
        return top_label(P, ds.lnp, unlabellable)
    return decide_labels(P, thresholds, ds.lnp, unlabellable, min_one_label=cfg.min_one_label,
                         min_ratio=ratio(name, cfg), barred=fallback_barred(ds.labels, S),
                         never_fallback=never)


def _export_and_gate(r: _Rows, f: _Fitted, thresholds: dict[str, np.ndarray], cfg: Config, prog: Progress
                     ) -> tuple[bytes, dict[str, np.ndarray], dict[str, Any], np.ndarray]:
    """One ONNX graph for every model; the parity gate (ONNX vs in-memory on the test split).
    Returns (the graph, ONNX test probabilities per model, parity, known-n-gram mask of test rows)."""
    from model_build import onnx_export

    t = prog.add_task("export ONNX", total=1)
    idf = f.vec.idf_.astype(np.float64)
    heads = [(onnx_export.OUTPUT, f.linear.coef, f.linear.intercept, "sigmoid")]
    if f.sent is not None:
        heads.append((SENTIMENT_OUTPUT, f.sent.coef, f.sent.intercept, "softmax"))
    # > 0 iff the comment holds a known n-gram (weights 1/idf undo the idf folding)
    heads.append((KNOWN_OUTPUT, (known_mask(f.vec) / idf)[None, :], np.zeros(1), "identity"))
    model = onnx_export.linear_model(f.vec, heads,
                                     view=None if f.view is None else (view_heads(f.linear, f.sent), f.view.r),
                                     trees=(XGB_OUTPUT, f.xgb.members, f.xgb.columns))
    prog.advance(t)
    blob = model.SerializeToString()

    names = ("linear", "xgboost", "sentiment") if f.sent is not None else ("linear", "xgboost")
    t = prog.add_task("parity gate (ONNX vs in-memory, test split)", total=len(names))
    mem = {"linear": f.linear.predict_proba(f.Xte), "xgboost": f.xgb.predict_proba(f.Xte)}
    if f.sent is not None:
        mem["sentiment"] = f.sent.predict_proba(f.Xte)
    onx: dict[str, np.ndarray] = {}
    par: dict[str, Any] = {}
    where = {"linear": onnx_export.OUTPUT, "xgboost": XGB_OUTPUT, "sentiment": SENTIMENT_OUTPUT}
    for name in names:
        onx[name] = onnx_proba(blob, r.te_texts, cfg.chunk, where[name])
        par[name] = parity(name, onx[name], mem[name],
                           None if name == "sentiment" else thresholds[name], cfg.parity_min)
        prog.advance(t)
    w_lin, w_xgb = cfg.ensemble_weights
    onx["ensemble"] = (w_lin * onx["linear"] + w_xgb * onx["xgboost"]) / (w_lin + w_xgb)
    par["ensemble"] = parity("ensemble", onx["ensemble"],
                             (w_lin * mem["linear"] + w_xgb * mem["xgboost"]) / (w_lin + w_xgb),
                             thresholds["ensemble"], cfg.parity_min)
    known = onnx_proba(blob, r.te_texts, cfg.chunk, KNOWN_OUTPUT)[:, 0] > 0
    par["minimum"] = cfg.parity_min
    return blob, onx, par, known


def _test_metrics(ds: Dataset, r: _Rows, f: _Fitted, onx: dict[str, np.ndarray], known: np.ndarray,
                  thresholds: dict[str, np.ndarray], cfg: Config
                  ) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """Test metrics from the ONNX outputs (what serves), with the shared scoring rule; per
    label, training support and test F1 of the default model (what to trust); and each
    model's test label matrix (uint8 n x L, the build report's confusion summary)."""
    test = r.test
    # unlabellable: the rule book's text rules, or no n-gram the model knows
    unl = np.array([is_unlabellable(x) for x in test.texts]) | ~known
    test_metrics: dict[str, Any] = {}
    preds = {}
    for name in ("linear", "xgboost", "ensemble"):
        preds[name] = decide(ds, name, onx[name], thresholds[name], unl, onx.get("sentiment"), r.never, cfg)
        test_metrics[name] = metrics.multilabel_scores(test.Y, preds[name])
        if not ds.multilabel:
            test_metrics[name]["accuracy"] = metrics.single_label_accuracy(test.Y, preds[name])
    test_metrics["unknown_text_rows"] = int((~known).sum())
    per = metrics.per_label(test.Y, preds[cfg.default_model], ds.labels)
    for j, lab in enumerate(ds.labels):
        per[lab]["train_support"] = int(r.train_support[j])
        per[lab]["low_support"] = lab in r.low
    if "sentiment" in onx:
        s_true = np.where(unl, -1, test.sentiment)  # unlabellable rows get no sentiment
        test_metrics["sentiment"] = metrics.sentiment_scores(s_true, onx["sentiment"].argmax(1))
        if f.sentiment_choice is not None:  # the other head on the same rows (report only)
            from model_build.choose import PLAIN, TUNED, accuracy

            other = TUNED if f.sentiment_choice.chosen == PLAIN else PLAIN
            f.sentiment_choice.test_accuracy = {
                f.sentiment_choice.chosen: round(test_metrics["sentiment"]["accuracy"], 4),
                other: round(accuracy(s_true, f.sentiment_other.predict_proba(f.Xte)), 4)}
            test_metrics["sentiment_choice"] = f.sentiment_choice.as_dict()
    test_metrics["scoring"] = metrics.__doc__.split("Scoring rule", 1)[1].strip()
    return test_metrics, per, preds


def build(ds: Dataset, out: Path, cfg: Config = Config()) -> Path:
    """Train, export, gate and write `out/instant/<version>/`; returns that folder.

    Raises BuildError when the data is too small, and the parity gate's error when ONNX and the
    in-memory models disagree."""
    from model_build import onnx_export

    t0 = time.perf_counter()
    L = len(ds.labels)
    r = _rows(ds, cfg)
    with _progress() as prog:
        f = _fit(ds, r, cfg, prog)
        thresholds, oof_scores = _tune(ds, r, f, cfg)
        blob, onx, par, known = _export_and_gate(r, f, thresholds, cfg, prog)
    test_metrics, per, preds = _test_metrics(ds, r, f, onx, known, thresholds, cfg)
    nhs = ds.spec is None or ds.spec.preset == "nhs"

    version = new_version(ds.fingerprint)
    final = Path(out) / "instant" / version
    tmp = final.with_name(version + ".partial")
    tmp.mkdir(parents=True, exist_ok=False)
    (tmp / MODEL_FILE).write_bytes(blob)
    use_qt = cfg.use_question_type and ds.context == "question_type"
    io = {"inputs": {onnx_export.INPUT: "raw comment strings, shape [N]" + (
        ", each followed by ' qt_<question type>' (twolane.rules.model_input)" if use_qt else
        ", each followed by ' qt_<context token>' (twolane.rules.context_input)" if ds.context == "column"
        else "")}}
    k = len(ds.sentiment_classes)

    def rule(name: str) -> DecideRule:
        return DecideRule(thresholds=thresholds[name].tolist(), min_one_label=cfg.min_one_label,
                          label_ratio=ratio(name, cfg), never_fallback=r.low)

    models = {
        "linear": ModelEntry(file=MODEL_FILE, task="multilabel", kind="tfidf-linear",
                             labels=ds.labels, rule=rule("linear"), **io,
                             outputs={onnx_export.OUTPUT: f"per-label probability, shape [N, {L}]"}),
        "xgboost": ModelEntry(file=MODEL_FILE, task="multilabel", kind="tfidf-xgboost",
                              labels=ds.labels, rule=rule("xgboost"), **io,
                              outputs={XGB_OUTPUT: f"per-label probability, shape [N, {L}]"}),
    }
    if f.sent is not None:
        models["sentiment"] = ModelEntry(
            file=MODEL_FILE, task="sentiment", kind="tfidf-linear", labels=ds.sentiment_classes, **io,
            outputs={SENTIMENT_OUTPUT: f"class probability, shape [N, {k}] ("
                     + ("1 very positive .. 5 very negative" if nhs else "the taxonomy's class order") + ")"})
    manifest = Manifest(
        lane="instant", version=version,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        taxonomy=Taxonomy(labels=ds.labels, unlabellable=ds.unlabellable,
                          sentiment_classes=ds.sentiment_classes, multilabel=ds.multilabel),
        models=models, default_model=cfg.default_model,
        ensemble=InstantEnsemble(members=["linear", "xgboost"], weights=list(cfg.ensemble_weights),
                                 rule=rule("ensemble")),
        serving=Serving(use_question_type=use_qt, use_context=ds.context == "column",
                        known_output=KNOWN_OUTPUT),
        data_spec=ds.spec,
        data={"fingerprint": ds.fingerprint, "source": Path(ds.source).name,
              "rows": len(ds.ids), "train_rows": len(r.train.ids), "train_rows_used": len(r.tr_texts),
              "test_rows": len(r.test.ids), "split_seed": SEED, "test_size": TEST_SIZE,
              "sentiment_train_rows": f.sentiment_rows},
        metrics={"test": test_metrics, "train_out_of_fold": oof_scores, "per_label": per,
                 "low_support_labels": r.low, "min_support": cfg.min_support,
                 "low_support_note": MIN_SUPPORT_NOTE},
        parity=par, library_versions=_versions(),
        build={**asdict(cfg), "vocabulary_size": len(f.vec.vocabulary_),
               # what the sentiment head was fitted with (model_build.batch refits the same)
               "sentiment_head": f.sentiment_choice.chosen if f.sentiment_choice else "tuned",
               "sentiment_polarity_gamma": cfg.sentiment_polarity_gamma
               if ds.spec is None or ds.spec.sentiment_ordered else 0.0,
               "word_aliases_count": len(f.vec.aliases_),
               "char_view_size": 0 if f.view is None else int(f.view.M.shape[1]),
               "question_type_token": " qt_<what_good|could_improve|nonspecific>" if use_qt else (
                   " qt_<context token>" if ds.context == "column" else ""),
               "chunk_rows": cfg.chunk,
               "build_seconds": round(time.perf_counter() - t0, 1)},
    )
    from model_build.drift_reference import write_reference  # twolane.drift's reference

    # the test split's question types, or its context values (ds.context "column")
    manifest.files[write_reference(tmp, manifest, r.test.texts, r.test.question_types, f.vec)] = ""
    from model_build import report

    for name in report.write(tmp, manifest, r.test.Y, preds[cfg.default_model], test_metrics, per):
        manifest.files[name] = ""
    write_manifest(tmp, manifest)  # hashes every file in manifest.files
    tmp.rename(final)
    return final


def run(data: Path | None = None, out: Path | None = None, rows: int | None = None,
        cfg: Config | None = None, spec: SpecArgs | None = None) -> Path:
    """`twolane build instant`: build from `data` read by `spec` (model_build.dataspec; default:
    the NHS CSV by its preset) into `out` (default bundles/).

    Raises DataError (one line naming the column or value) for data the build cannot learn
    from, BuildError when the build cannot make a trustworthy bundle."""
    from model_build import dataspec

    cfg = cfg or Config()
    t0 = time.perf_counter()
    spec = spec or dataspec.SpecArgs()
    if data is None and spec.empty:
        ds = load_dataset(DEFAULT_DATA)
    else:
        ds = dataspec.load(Path(data) if data else DEFAULT_DATA, spec)
    if rows:
        ds = ds.head(rows)
    if ds.spec is not None and not ds.spec.sentiment_ordered and ds.spec.sentiment_column:
        from model_build.dataspec import unordered_note

        console.print(unordered_note(ds.spec.sentiment_column, ds.sentiment_classes))
    console.print(f"instant build: {len(ds.ids)} rows from {Path(ds.source).name}, "
                  f"{int((~ds.is_test).sum())} train / {int(ds.is_test.sum())} test, "
                  f"{len(ds.labels)} labels ({'multi' if ds.multilabel else 'single'}-label), "
                  f"sentiment: {', '.join(ds.sentiment_classes) or 'none'}")
    bundle = build(ds, Path(out) if out else DEFAULT_OUT, cfg)
    summarise(json.loads((bundle / "manifest.json").read_text(encoding="utf-8")))
    from model_build import report

    report.print_summary(bundle, console)
    console.print(f"bundle: {bundle}  ({time.perf_counter() - t0:.0f} s); report: {bundle / report.REPORT_HTML}")
    return bundle


def summarise(m: dict[str, Any]) -> None:
    """Print a built bundle's test figures (m: its manifest as JSON)."""
    metrics, par = m["metrics"], m["parity"]
    for name in ("linear", "xgboost", "ensemble"):
        s = metrics["test"][name]
        console.print(f"  {name:9s} test macro-F1 {s['macro_f1']:.3f}  micro-F1 {s['micro_f1']:.3f}  "
                      f"parity {par[name]['identical_rows']:.2%}")
    low = metrics.get("low_support_labels") or []
    if low:
        more = f" and {len(low) - 20} more (report.html)" if len(low) > 20 else ""
        console.print(f"  [yellow]low support[/] (< {metrics['min_support']} training positives, "
                      f"do not rely on them): " + ", ".join(
                          f"{lab} ({metrics['per_label'][lab]['train_support']})" for lab in low[:20]) + more)
    s = metrics["test"].get("sentiment")
    if s is not None:
        console.print(f"  sentiment test accuracy {s['accuracy']:.3f}  macro-F1 {s['macro_f1']:.3f}  "
                      f"parity {par['sentiment']['identical_rows']:.2%}")
    c = metrics["test"].get("sentiment_choice")
    if c is not None:
        from model_build.choose import Choice

        console.print("  " + Choice(**c).line())


def build_small_bundle(out: Path, rows: int = 800) -> Path:
    """A real, small instant bundle for tests (first `rows` rows, small vocabulary, few trees)."""
    ds = load_dataset(DEFAULT_DATA).head(rows)
    return build(ds, Path(out), replace(SMALL))


__all__ = ["SMALL", "BuildError", "Config", "build", "build_small_bundle", "run"]
