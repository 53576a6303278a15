"""InstantPredictor on the small real bundle (800 NHS rows): labels, rules, order, chunking."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_build.data import DEFAULT_DATA, load_dataset
from twolane.bundle import BundleError
from twolane.predictors.instant import InstantPredictor
from twolane.rules import LABELLING_NOT_POSSIBLE, is_unlabellable

LNP = [LABELLING_NOT_POSSIBLE]


@pytest.fixture(scope="module")
def predictor(instant_bundle: Path) -> InstantPredictor:
    return InstantPredictor.from_bundle(instant_bundle)


def test_properties(predictor: InstantPredictor, instant_bundle: Path) -> None:
    assert predictor.version == instant_bundle.name
    assert len(predictor.labels) == 32 and predictor.manifest.lane == "instant"
    # a bundles root resolves to its newest instant bundle
    assert InstantPredictor.from_bundle(instant_bundle.parent.parent).version == predictor.version


def test_real_comments_get_plausible_labels(predictor: InstantPredictor) -> None:
    """On real test comments the slice model agrees with the labellers far above chance."""
    test = load_dataset(DEFAULT_DATA).test
    idx = [i for i, t in enumerate(test.texts) if not is_unlabellable(t)][:300]
    texts = [test.texts[i] for i in idx]
    preds = predictor.predict_texts(texts, contexts=[test.question_types[i] for i in idx])
    truth = [{predictor.labels[j] for j in np.flatnonzero(test.Y[i])} for i in idx]
    hits = sum(bool(set(p.labels) & t) for p, t in zip(preds, truth, strict=False))
    assert hits / len(idx) > 0.5  # at least one right label on most comments
    # Comments the labellers marked as about staff manner: the model says so far more often
    # than it does on the other comments.
    staff = "Staff manner & personal attributes"
    said = np.array([staff in p.labels for p in preds])
    marked = np.array([staff in t for t in truth])
    assert marked.sum() > 10
    assert said[marked].mean() > 2 * said[~marked].mean()
    # a comment with no word the (small) model knows is unlabellable: LNP and no sentiment;
    # every other comment gets a sentiment
    unknown = [p.labels == [LABELLING_NOT_POSSIBLE] for p in preds]
    assert sum(unknown) < 0.05 * len(preds)
    assert all(p.sentiment is not None for p, u in zip(preds, unknown, strict=True) if not u)


def test_rude_staff_and_praise(predictor: InstantPredictor) -> None:
    texts = ["The staff were rude and unhelpful and nobody listened to me",
             "Excellent care, the nurses were kind and friendly. Thank you all"]
    rude, praise = predictor.predict_texts(texts)
    assert "Staff manner & personal attributes" in rude.labels
    assert "Staff manner & personal attributes" in praise.labels
    # the slice model: praise is far more "Positive experience & gratitude" than rudeness
    P = predictor.predict_proba(texts)
    pos = predictor.labels.index("Positive experience & gratitude")
    assert P[1, pos] > 2 * P[0, pos]
    assert praise.sentiment is not None and rude.sentiment is not None
    # The slice model's sentiment is weak (500 rows), so compare expected scores, not argmax.
    S = predictor.sentiment_proba(texts)
    expected = S @ np.arange(1, 6)  # 1 = very positive .. 5 = very negative
    assert expected[0] > expected[1]


def test_unlabellable_mix_keeps_order(predictor: InstantPredictor) -> None:
    texts = ["", "Lovely staff, very kind", "n/a", None, float("nan"), "😀👍", "   ",
             "Did not answer", "Waited four hours to be seen"]
    preds = predictor.predict_texts(texts, ids=[f"c{i}" for i in range(len(texts))],
                              include_probabilities=True)
    assert [p.comment_id for p in preds] == [f"c{i}" for i in range(len(texts))]
    for i, p in enumerate(preds):
        if is_unlabellable(texts[i]):
            assert p.labels == LNP and p.sentiment is None
        else:
            assert p.labels and p.sentiment is not None
        assert p.probabilities is not None and set(p.probabilities) == set(predictor.labels)
    only_blank = predictor.predict_texts(["", None])
    assert [p.labels for p in only_blank] == [LNP, LNP]
    assert predictor.predict_texts([]) == []


def test_proba_arrays_and_chunking(instant_bundle: Path) -> None:
    test = load_dataset(DEFAULT_DATA).test.texts[:250]
    one = InstantPredictor.from_bundle(instant_bundle)
    small = InstantPredictor.from_bundle(instant_bundle)
    small.chunk = 7  # many chunks: same answers
    P = one.predict_proba(test)
    assert P.shape == (250, 32) and P.dtype == np.float32
    np.testing.assert_allclose(small.predict_proba(test), P, atol=1e-6)
    unl = np.array([is_unlabellable(t) for t in test])
    lnp = one.labels.index(LABELLING_NOT_POSSIBLE)
    # unlabellable by the text rules, or no n-gram the model knows: LNP = 1 and no sentiment
    unknown = (P[:, lnp] == 1) & ~unl
    assert (P[unl, lnp] == 1).all() and unknown.sum() < 0.05 * len(test)
    unl = unl | unknown
    assert (P[~unl, lnp] == 0).all()
    S = one.sentiment_proba(test)
    assert S.shape == (250, 5) and np.isnan(S[unl]).all()
    np.testing.assert_allclose(S[~unl].sum(1), 1, atol=1e-5)
    # labels from predict == thresholded predict_proba (+ the empty -> LNP rule)
    D = one.decide(P, S)
    assert [p.labels for p in one.predict_texts(test)] == [
        [one.labels[j] for j in np.flatnonzero(row)] for row in D]


def test_the_fallback_gives_no_praise_to_a_comment_it_reads_as_negative(
        predictor: InstantPredictor) -> None:
    """Served labels read the comment's own sentiment: a comment the model reads as negative
    (score 4 or 5) never gets "Positive experience & gratitude" from the top-label fallback."""
    test = load_dataset(DEFAULT_DATA).test
    texts = ["Dirty toilets", "terrible", "Awful experience", "The doctor ignored me",
             *test.texts[:400]]
    preds = predictor.predict_texts(texts)
    P, S = predictor.predict_arrays(texts)
    pos = predictor.labels.index("Positive experience & gratitude")
    negative = np.isin(np.nan_to_num(S, nan=0.0).argmax(1) + 1, (4, 5))
    over = P[:, pos] >= predictor.thresholds[pos]  # cleared its threshold: the rule keeps it
    got = np.array(["Positive experience & gratitude" in p.labels for p in preds])
    assert negative.sum() > 20 and not (got & negative & ~over).any()
    # the rule is what changed them: without the sentiment, the fallback would praise some
    before = predictor.decide(P)[:, pos].astype(bool)
    assert (before & negative & ~over).any()
    assert [p.labels for p in preds] == [
        [predictor.labels[j] for j in np.flatnonzero(row)] for row in predictor.decide(P, S)]

def test_every_model_of_the_bundle_serves(instant_bundle: Path) -> None:
    texts = ["The wait was far too long", "n/a"]
    for model in ("linear", "xgboost", "ensemble"):
        p = InstantPredictor.from_bundle(instant_bundle, model=model)
        out = p.predict_texts(texts)
        assert out[1].labels == LNP and out[0].labels
    with pytest.raises(BundleError):
        InstantPredictor.from_bundle(instant_bundle, model="sentiment")


def test_predictor_imports_no_training_libraries(instant_bundle: Path) -> None:
    code = (
        "import sys; from twolane.predictors.instant import InstantPredictor as P; "
        f"P.from_bundle({str(instant_bundle)!r}).predict_texts(['hello there staff']); "
        "bad = [m for m in ('sklearn', 'xgboost', 'torch', 'pandas', 'skl2onnx') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_missing_bundle_is_clear(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no instant bundle"):
        InstantPredictor.from_bundle(tmp_path)


def test_question_type_is_a_feature(predictor: InstantPredictor) -> None:
    text = ["The nurses"]
    good = predictor.predict_proba(text, ["what_good"])
    improve = predictor.predict_proba(text, ["could_improve"])
    assert not np.allclose(good, improve)
    np.testing.assert_allclose(predictor.predict_proba(text, [None]),
                               predictor.predict_proba(text), atol=1e-7)  # None = nonspecific
    with pytest.raises(ValueError, match="context values"):
        predictor.predict_texts(["a", "b"], contexts=["what_good"])


def test_get_predictor_resolves_from_settings(instant_bundle: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    from twolane.settings import get_settings
    from twolane.wiring import get_predictor

    monkeypatch.setenv("TWOLANE_INSTANT_BUNDLE", str(instant_bundle))
    get_settings.cache_clear()
    get_predictor.cache_clear()
    try:
        p = get_predictor()
        assert p.version == instant_bundle.name and get_predictor() is p  # loaded once
    finally:
        get_settings.cache_clear()
        get_predictor.cache_clear()


def test_fast_labellable_check_agrees_with_is_unlabellable() -> None:
    from twolane.rules import labellable

    texts = load_dataset(DEFAULT_DATA).texts + [
        "n/a" + "!" * 50, "Did not answer ........................", "😀" * 40, "İİİİİİİİİİİİİİİİ",
        "did   not   answer", "N/A N/A", "no comments no comments", "a" * 15, "1234567890123456",
        "_" * 30, "Did not answer.", "   \t\n ", "½⅓¼" * 6, "Ⅻ" * 20,
    ]
    assert [labellable(t) for t in texts] == [not is_unlabellable(t) for t in texts]
