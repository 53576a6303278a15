"""Drift: does a file of comments look like the data the instant bundle was built on?

An instant bundle holds `drift_reference.json` (written by model_build.drift_reference): for
each signal below, a histogram of the build's held-out test split (rows the models never
trained on; predictions on training rows are more confident and know every n-gram, so they
would not be a fair reference for new comments). A file is compared signal by signal:

| signal | per comment | kind |
| --- | --- | --- |
| known_share | share of its distinct 1..ngram_max-grams the model's vocabulary knows | binned |
| length | characters of the normalised text | binned |
| context | question type (NHS), or the context column's token (context_token) | categories |
| top_label | most probable label (unlabellable: the taxonomy's unlabellable label, or "none") | categories |
| sentiment | predicted sentiment class, by the name clients see ("none" when unlabellable) | categories |
| label_confidence | highest label probability (labellable comments) | binned |
| sentiment_confidence | highest sentiment probability (comments with a sentiment) | binned |
| junk_share | "junk" (blank, placeholder, punctuation only: twolane.rules.is_unlabellable) or "text" | categories |

Blank and junk answers are a signal of their own, and only that one: every other signal reads
the labellable comments alone (references of format 2, FORMAT), so an export with its blank
rows removed (as many are) is compared on its comments, not on how many blanks it kept. And
junk_share alarms one way only: a file with MORE junk than the reference (a broken export, a
form field that stopped saving) is drift; one with fewer (a cleaned export) is not. A reference
of format 1 (bundles built before this) holds every row in every signal and no junk_share: it
is compared as it was built, every row kept.

context is skipped when the file gives none (or the bundle reads neither), the sentiment
signals for a bundle that scores no sentiment. Every category is read from the bundle's
manifest (its taxonomy, sentiment classes and serving.context), never from the NHS rule
book, so a bundle built from a team's own data spec (docs/own_data.md) is checked in its own
labels, scale and context column.

Binned signals use the reference's deciles as bin edges. Each signal gets a chi-square test of
homogeneity of the two samples (reference counts vs file counts, cells with an expected count
under MIN_EXPECTED merged), so its threshold grows with the noise of small files, and the
population stability index (PSI) as its effect size. A signal has drifted when its
Holm-adjusted p-value is below ALPHA (family-wise over the signals: at most ALPHA of honest
files get any alarm) AND its PSI is at least MIN_PSI (a shift large enough to matter: a
large file never alarms on a trivially small difference). numpy and the standard library only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel

from twolane.bundle import Manifest
from twolane.contract import CommentIn
from twolane.rules import context_token, is_unlabellable, normalise, question_type_of, sentiment_names

REFERENCE_FILE = "drift_reference.json"  # in an instant bundle, listed (hashed) in manifest.files
ALPHA = 0.01  # family-wise false-alarm level per file (Holm over the signals)
MIN_PSI = 0.10  # smallest population stability index that counts as drift (a "moderate" shift)
MIN_EXPECTED = 5.0  # chi-square cells with a smaller expected count are merged
MIN_COUNT = 30  # a signal with fewer observations in the file (or reference) is not tested
DECILES = np.linspace(0.1, 0.9, 9)
TOKEN = re.compile(r"(?u)\b\w\w+\b")  # sklearn's default token_pattern (the TF-IDF tokeniser)
NO_SENTIMENT = "none"
NO_LABEL = "none"  # top_label of an unlabellable comment in a taxonomy without an unlabellable label
OTHER = "(other)"  # a category the reference never saw
JUNK, TEXT = "junk", "text"  # junk_share's categories
FORMAT = 2  # references written now: junk_share, the other signals on labellable text only

Kind = Literal["bins", "categories"]
SIGNALS: dict[str, Kind] = {
    "known_share": "bins", "length": "bins", "context": "categories", "top_label": "categories",
    "sentiment": "categories", "label_confidence": "bins", "sentiment_confidence": "bins",
    "junk_share": "categories",
}
ONE_SIDED = {"junk_share": JUNK}  # alarms only when the file holds MORE of this category
# CloudWatch (EMF): namespace twolane, dimension service=drift, for drop-folder files and jobs
METRIC_NAMESPACE = "twolane"
METRIC_SERVICE = "drift"
METRIC_NAMES = {name: "DriftPsi_" + name for name in SIGNALS}  # one per signal: its PSI
DRIFTED_METRIC = "DriftedFiles"  # per file (or job): 1 when its comments drifted, else 0
MAX_SAMPLE = 5000  # a larger file or job is checked on a seeded random sample of this many


class DriftError(ValueError):
    """The bundle has no usable drift reference."""


class Histogram(BaseModel):
    """One signal of the reference: `counts[i]` comments in bin i (bins: `edges` are the
    inner edges, bin i holds edges[i-1] <= x < edges[i]) or in category `categories[i]`."""

    kind: Kind
    edges: list[float] = []
    categories: list[str] = []
    counts: list[int]

    @property
    def n(self) -> int:
        return int(sum(self.counts))


class Reference(BaseModel):
    """drift_reference.json: what the bundle's held-out comments looked like."""

    format: int = 1  # 1: every row in every signal, no junk_share; FORMAT: see the module docstring
    source: str  # which rows, e.g. "build test split"
    rows: int
    ngram_max: int
    known_terms: list[str]  # the vocabulary's n-grams (and alias words), question-type tokens out
    signals: dict[str, Histogram]


class SignalResult(BaseModel):
    """One signal of a file against the reference. psi / p-values are None when not tested."""

    n: int  # comments in the file this signal applies to
    reference_n: int
    psi: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None  # Holm over the tested signals
    threshold: str = f"p_adjusted < {ALPHA} and psi >= {MIN_PSI}"
    drifted: bool = False
    note: str = ""  # why it was not tested


class DriftReport(BaseModel):
    """`{"drifted": bool, "signals": {name: SignalResult}}` plus the levels used."""

    drifted: bool
    comments: int
    alpha: float = ALPHA
    min_psi: float = MIN_PSI
    signals: dict[str, SignalResult]


class DriftRequest(BaseModel):
    """POST /v1/drift: the comments of one file (or a random sample of it)."""

    model_config = {"extra": "forbid"}

    items: list[CommentIn]


class ArrayPredictor(Protocol):
    """What drift needs of a predictor (twolane.predictors.instant.InstantPredictor)."""

    bundle_dir: Path

    @property
    def labels(self) -> list[str]: ...

    @property
    def manifest(self) -> Manifest: ...

    def predict_arrays(self, texts: Sequence[object],
                       contexts: Sequence[str | None] | None = None
                       ) -> tuple[np.ndarray, np.ndarray]: ...


# --------------------------------------------------------------------------- observations
def ngrams(text: str, n_max: int) -> set[str]:
    """The distinct 1..n_max-grams of a text as the TF-IDF tokeniser sees it (lower case)."""
    tokens = TOKEN.findall(text.lower())
    out = set(tokens)
    for n in range(2, n_max + 1):
        out.update(" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    return out


def contexts_of(manifest: Manifest, contexts: Sequence[str | None] | None) -> np.ndarray | None:
    """The context signal's categories: NHS bundles read question types (question_type_of),
    a bundle with its own context column (serving.context "column") the values' tokens as its model
    reads them (context_token); None when no comment gives one or the bundle has neither."""
    if contexts is None or not any(c is not None for c in contexts):
        return None
    if manifest.serving.context == "column":
        return np.array([context_token(c) for c in contexts], dtype=object)
    if manifest.is_nhs:
        return np.array([question_type_of(c) for c in contexts], dtype=object)
    return None


def observe(predictor: ArrayPredictor, texts: Sequence[object],
            contexts: Sequence[str | None] | None, known: frozenset[str], ngram_max: int,
            labellable_only: bool = True) -> dict[str, np.ndarray | None]:
    """Per-comment values of every signal (see the module table), arrays of length len(texts);
    float arrays hold NaN, category arrays None, where a signal does not apply.
    `contexts`: the comments' context values (`Serving.contexts`: the NHS question types, or a
    bundle's own context column). context is None when no comment has one (or the bundle reads none);
    sentiment and sentiment_confidence are None for a bundle that scores no sentiment.
    labellable_only (references of FORMAT): junk_share for every comment, every other signal
    for the labellable ones only; False (format 1): every signal for every comment, no
    junk_share."""
    obs = _observe_all(predictor, texts, contexts, known, ngram_max)
    return labellable_view(obs, texts) if labellable_only else obs


def labellable_view(obs: dict[str, np.ndarray | None], texts: Sequence[object]
                    ) -> dict[str, np.ndarray | None]:
    """Format-1 observations of `texts` (every signal, every comment) as FORMAT reads them:
    junk_share added, junk comments' values of every other signal NaN (floats) or None."""
    junk = np.array([is_unlabellable(t) for t in texts], dtype=bool)
    out: dict[str, np.ndarray | None] = {}
    for name, v in obs.items():
        if v is None:
            out[name] = None
        elif v.dtype.kind == "f":
            out[name] = np.where(junk, np.nan, v)
        else:
            w = v.copy()
            w[junk] = None
            out[name] = w
    out["junk_share"] = np.where(junk, JUNK, TEXT).astype(object)
    return out


def _observe_all(predictor: ArrayPredictor, texts: Sequence[object],
                 contexts: Sequence[str | None] | None, known: frozenset[str], ngram_max: int
                 ) -> dict[str, np.ndarray | None]:
    manifest = predictor.manifest
    tax = manifest.taxonomy
    clean = [normalise(t) for t in texts]
    share = np.full(len(clean), np.nan)
    for i, t in enumerate(clean):
        grams = ngrams(t, ngram_max)
        if grams:
            share[i] = len(grams & known) / len(grams)
    length = np.array([len(t) for t in clean], dtype=float)
    context = contexts_of(manifest, contexts)
    P, S = predictor.predict_arrays(list(texts), contexts)
    labels = predictor.labels
    if tax.unlabellable is not None:
        unl = np.asarray(P[:, labels.index(tax.unlabellable)] >= 1.0)
    else:  # the predictor gives an unlabellable comment no probability at all
        unl = np.asarray(~P.any(1))
    top = np.array([labels[j] for j in P.argmax(1)], dtype=object)
    top[unl] = tax.unlabellable or NO_LABEL
    conf = np.where(unl, np.nan, P.max(1))
    obs: dict[str, np.ndarray | None] = {
        "known_share": share, "length": length, "context": context, "top_label": top,
        "sentiment": None, "label_confidence": conf, "sentiment_confidence": None}
    if tax.sentiment_classes:
        names = sentiment_names(tax.sentiment_classes, tax.sentiment_names)
        has_s = ~np.isnan(S).any(1)
        sent = np.array([names[k] for k in np.nan_to_num(S, nan=0.0).argmax(1)], dtype=object)
        sent[~has_s] = NO_SENTIMENT
        obs["sentiment"] = sent
        obs["sentiment_confidence"] = np.where(has_s, np.nan_to_num(S, nan=0.0).max(1), np.nan)
    return obs


def _present(values: np.ndarray) -> np.ndarray:
    """The values where the signal applies (not NaN, not None)."""
    if values.dtype.kind == "f":
        return values[~np.isnan(values)]
    return values[np.array([v is not None for v in values], dtype=bool)] if len(values) else values


def histogram(values: np.ndarray, kind: Kind) -> Histogram:
    """The reference histogram of one signal (decile edges, or its categories)."""
    v = _present(values)
    if kind == "bins":
        edges = np.unique(np.quantile(v, DECILES)) if len(v) else np.array([])
        counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
        return Histogram(kind=kind, edges=edges.tolist(), counts=counts.tolist())
    cats, counts = np.unique(v.astype(str), return_counts=True)
    return Histogram(kind=kind, categories=cats.tolist(), counts=counts.tolist())


def counts_like(ref: Histogram, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(reference counts, file counts) over the same cells; file categories the reference
    never saw form one more cell, OTHER, with a reference count of 0."""
    v = _present(values)
    R = np.asarray(ref.counts, dtype=float)
    if ref.kind == "bins":
        edges = np.asarray(ref.edges, dtype=float)
        bins = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
        return R, bins.astype(float)
    index = {c: i for i, c in enumerate(ref.categories)}
    N = np.zeros(len(R) + 1)
    for c in v.astype(str):
        N[index.get(c, len(R))] += 1
    return np.append(R, 0.0), N


def reference_from(obs: dict[str, np.ndarray | None], known: Sequence[str], ngram_max: int,
                   source: str) -> Reference:
    """The Reference of a set of observations (see `observe`)."""
    signals = {name: histogram(v, SIGNALS[name]) for name, v in obs.items() if v is not None}
    rows = len(next(v for v in obs.values() if v is not None))
    return Reference(format=FORMAT if "junk_share" in obs else 1, source=source, rows=rows,
                     ngram_max=ngram_max, known_terms=sorted(known), signals=signals)


def _share(ref: Histogram, values: np.ndarray, category: str) -> tuple[float, float]:
    """(reference share, file share) of `category` among the present values."""
    R, N = counts_like(ref, values)
    at = ref.categories.index(category) if category in ref.categories else None
    r = float(R[at] / R.sum()) if at is not None and R.sum() else 0.0
    v = _present(values).astype(str)
    return r, float((v == category).mean()) if len(v) else 0.0


# --------------------------------------------------------------------------- tests
def chi2_sf(x: float, dof: int) -> float:
    """P(X >= x) for X ~ chi-square with `dof` (>= 1) degrees of freedom, closed form
    (Abramowitz & Stegun 26.4.4 / 26.4.5)."""
    if x <= 0:
        return 1.0
    h = x / 2.0
    if dof % 2 == 0:
        term, total = 1.0, 1.0
        for i in range(1, dof // 2):
            term *= h / i
            total += term
        return min(1.0, math.exp(-h) * total)
    total = math.erfc(math.sqrt(h))
    term = math.sqrt(2.0 * x / math.pi) * math.exp(-h)
    for i in range(1, (dof + 1) // 2):
        total += term
        term *= x / (2 * i + 1)
    return min(1.0, total)


def merge_sparse(R: np.ndarray, N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge every cell whose expected count in the smaller sample is under MIN_EXPECTED into
    one cell (and that cell into the smallest other one if it is still too small)."""
    pooled = (R + N) / (R.sum() + N.sum())
    small = min(R.sum(), N.sum()) * pooled < MIN_EXPECTED
    if small.any():
        R = np.append(R[~small], R[small].sum())
        N = np.append(N[~small], N[small].sum())
        if len(R) > 1 and min(R.sum(), N.sum()) * (R[-1] + N[-1]) / (R.sum() + N.sum()) < MIN_EXPECTED:
            j = int(np.argmin(R[:-1] + N[:-1]))
            R[j] += R[-1]
            N[j] += N[-1]
            R, N = R[:-1], N[:-1]
    return R, N


def two_sample(R: np.ndarray, N: np.ndarray) -> tuple[float, float]:
    """(PSI, chi-square p-value) of reference counts R against file counts N, same cells."""
    R, N = merge_sparse(R, N)
    k = len(R)
    if k < 2:
        return 0.0, 1.0
    table = np.stack([R, N])
    expected = np.outer(table.sum(1), table.sum(0)) / table.sum()
    keep = expected.min(0) > 0
    stat = float((((table - expected) ** 2)[:, keep] / expected[:, keep]).sum())
    p = chi2_sf(stat, int(keep.sum()) - 1)
    q_ref = (R + 0.5) / (R.sum() + 0.5 * k)  # +0.5: an empty cell does not make PSI infinite
    q_new = (N + 0.5) / (N.sum() + 0.5 * k)
    psi = float(((q_new - q_ref) * np.log(q_new / q_ref)).sum())
    return psi, p


def holm(p: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (family-wise error control), same order as `p`."""
    m = len(p)
    order = np.argsort(p)
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def compare(reference: Reference, obs: dict[str, np.ndarray | None]) -> DriftReport:
    """Every signal of `obs` (see `observe`) against the reference, and the overall verdict."""
    results: dict[str, SignalResult] = {}
    tested: list[str] = []
    raw: list[float] = []
    comments = len(next(v for v in obs.values() if v is not None))
    for name in SIGNALS:
        ref = reference.signals.get(name)
        values = obs.get(name)
        if ref is None:
            results[name] = SignalResult(n=0, reference_n=0, note="not in the reference")
            continue
        if values is None:
            results[name] = SignalResult(n=0, reference_n=ref.n, note="not in the file")
            continue
        R, N = counts_like(ref, values)
        n = int(N.sum())
        if n < MIN_COUNT or ref.n < MIN_COUNT:
            results[name] = SignalResult(n=n, reference_n=ref.n,
                                         note=f"fewer than {MIN_COUNT} comments to compare")
            continue
        psi, p = two_sample(R, N)
        results[name] = SignalResult(n=n, reference_n=ref.n, psi=round(psi, 4), p_value=p)
        tested.append(name)
        raw.append(p)
    for name, adj in zip(tested, holm(raw), strict=True):
        r = results[name]
        r.p_adjusted = adj
        r.drifted = adj < ALPHA and (r.psi or 0.0) >= MIN_PSI
        category = ONE_SIDED.get(name)
        values = obs.get(name)
        if category is not None and values is not None:
            ref_share, file_share = _share(reference.signals[name], values, category)
            if file_share <= ref_share:  # fewer blanks than the reference: a cleaned export
                r.drifted = False
                r.note = f"one-sided: only more {category} than the reference counts as drift"
    return DriftReport(drifted=any(r.drifted for r in results.values()), comments=comments,
                       signals=results)


# --------------------------------------------------------------------------- bundles
@dataclass(frozen=True)
class Checker:
    """A bundle's reference, with its known n-grams as a set (built once)."""

    reference: Reference
    known: frozenset[str]

    def check(self, predictor: ArrayPredictor, texts: Sequence[object],
              contexts: Sequence[str | None] | None = None) -> DriftReport:
        """The drift report of these comments (any number >= 1)."""
        if not texts:
            raise ValueError("no comments to compare")
        obs = observe(predictor, texts, contexts, self.known, self.reference.ngram_max,
                      labellable_only=self.reference.format >= FORMAT)
        return compare(self.reference, obs)

    def check_items(self, predictor: ArrayPredictor, items: Sequence[CommentIn]) -> DriftReport:
        """The drift report of these items: their `context` for a bundle with a context
        column, else their `question_type`."""
        return self.check(predictor, [i.comment_text for i in items],
                          predictor.manifest.serving.contexts(items))


@lru_cache(maxsize=4)
def checker(bundle_dir: Path) -> Checker:
    """The drift checker of an instant bundle folder (loaded once per process).

    Raises DriftError when the bundle has no (readable) drift_reference.json."""
    path = Path(bundle_dir) / REFERENCE_FILE
    if not path.is_file():
        raise DriftError("the bundle has no drift reference (built before drift existed)")
    try:
        ref = Reference.model_validate_json(path.read_bytes())
    except ValueError as exc:
        raise DriftError("the bundle's drift reference is not valid") from exc
    return Checker(ref, frozenset(ref.known_terms))


def report_for(predictor: Any, items: Sequence[CommentIn]) -> DriftReport | None:
    """The drift report of a file's or job's comments (a seeded sample of MAX_SAMPLE when
    larger), or None when the predictor is not an instant one with a drift reference: drift
    never stops a file or job."""
    bundle = getattr(predictor, "bundle_dir", None)
    if bundle is None or not items or not hasattr(predictor, "predict_arrays"):
        return None
    try:
        check = checker(Path(bundle))
    except DriftError:
        return None
    if len(items) > MAX_SAMPLE:
        take = np.sort(np.random.default_rng(0).choice(len(items), MAX_SAMPLE, replace=False))
        items = [items[i] for i in take]
    return check.check_items(predictor, items)


def publish(report: DriftReport | None, *, emit: bool) -> dict[str, float] | None:
    """Publish one file's or job's drift metrics (metric_values) to CloudWatch as one EMF
    record (aws-lambda-powertools) when `emit` (on AWS Lambda: `Settings.lambda_function_name`
    is set there, and CloudWatch Logs reads EMF from stdout). Returns the values (also when
    not emitted), None without a report."""
    if report is None:
        return None
    values = metric_values(report)
    if emit:
        from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

        metrics = EphemeralMetrics(namespace=METRIC_NAMESPACE, service=METRIC_SERVICE)
        for name, value in values.items():
            unit = MetricUnit.Count if name == DRIFTED_METRIC else MetricUnit.NoUnit
            metrics.add_metric(name=name, unit=unit, value=value)
        metrics.flush_metrics()
    return values


def metric_values(report: DriftReport) -> dict[str, float]:
    """CloudWatch metric name -> value for one file or job: DRIFTED_METRIC (0/1) and each
    tested signal's PSI (METRIC_NAMES)."""
    out = {DRIFTED_METRIC: 1.0 if report.drifted else 0.0}
    for name, r in report.signals.items():
        if r.psi is not None:
            out[METRIC_NAMES[name]] = r.psi
    return out


__all__ = ["ALPHA", "DRIFTED_METRIC", "FORMAT", "METRIC_NAMES", "MIN_PSI", "REFERENCE_FILE", "SIGNALS",
           "Checker", "DriftError", "DriftReport", "DriftRequest", "Histogram", "Reference", "SignalResult",
           "checker", "chi2_sf", "compare", "contexts_of", "holm", "labellable_view", "metric_values", "observe",
           "publish", "reference_from", "report_for", "two_sample"]
