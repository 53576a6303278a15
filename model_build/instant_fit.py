"""The instant lane's models, fitted on TF-IDF rows: the vectorizer (with word aliases and the
lexicon's terms), the char view, the per-label linear (Platt-scaled SVM or LR) and XGBoost
models and the multinomial sentiment head (lexicon directions and polarity scaling folded into
its weights). What the export folds into one graph (model_build.instant_export) and what the
folds refit (model_build.folds)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from model_build import lexicon
from model_build.aliases import AliasedTfidf, fit_aliases
from model_build.data import SEED, SENTIMENT_CLASSES
from model_build.errors import BuildError
from model_build.instant_config import CONST_LOGIT, SENTIMENT_OUTPUT, Config
from model_build.onnx_export import OUTPUT


def fit_vectorizer(texts: list[str], cfg: Config) -> Any:
    """The TF-IDF vectorizer (model_build.aliases.AliasedTfidf) fitted on the training texts."""
    from sklearn.feature_extraction.text import TfidfVectorizer

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
        out.set_aliases(fit_aliases(out.vocabulary_, texts, cfg.alias_min_cosine,
                                    valence=lexicon.vader_lexicon(), keep_out=lexicon.NEGATORS))
    return out


def lexicon_terms(texts: list[str], cfg: Config) -> dict[str, float]:
    """The sentiment lexicon's terms for these texts (model_build.lexicon.terms)."""
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


def class_weights(est: Any, classes: int, V: int) -> tuple[np.ndarray, np.ndarray]:
    """A fitted logistic regression's (coef classes x V, intercept classes) over every class of
    the scale: a class absent from training gets logit -CONST_LOGIT; a binary model's one row
    is split as softmax([-z/2, z/2]) == sigmoid(z)."""
    coef = np.zeros((classes, V))
    intercept = np.full(classes, -CONST_LOGIT)
    cls = est.classes_
    if len(cls) == 2:
        coef[cls[0]], coef[cls[1]] = -est.coef_[0] / 2, est.coef_[0] / 2
        intercept[cls[0]], intercept[cls[1]] = -est.intercept_[0] / 2, est.intercept_[0] / 2
    else:
        coef[cls] = est.coef_
        intercept[cls] = est.intercept_
    return coef, intercept


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
    cls = est.classes_
    coef, intercept = class_weights(est, k, V)
    char_coef = None
    if view is not None and view_w is not None:
        char_coef = np.zeros((k, V))
        char_coef[cls] = np.asarray(view.M @ view_w.T).T
    return Sentiment(est, coef, intercept, char_coef)
