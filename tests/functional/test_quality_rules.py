"""The quality rules on small real bundles: unknown or junk text is unlabellable in both lanes,
the top-label fallback, the scoring rule, per-label support in the manifest, and polarity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_build import metrics
from model_build.data import polarity_cases, polarity_right
from twolane.bundle import read_manifest
from twolane.rules import LABELLING_NOT_POSSIBLE, decide_labels

JUNK = ["#REF!", "#VALUE!", "0", "1", "x", "NaT", "Not applicable", "zzqx vbnmw"]  # last: no known word


def test_decide_labels_top_label_fallback() -> None:
    P = np.array([[0.1, 0.3, 0.0], [0.9, 0.2, 0.0], [0.1, 0.3, 0.0]], np.float32)
    th = np.array([0.5, 0.5, 0.5], np.float32)
    D = decide_labels(P, th, lnp=2, unlabellable=np.array([False, False, True]), min_one_label=True)
    assert D.tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 1]]
    D = decide_labels(P, th, lnp=2, min_one_label=False)
    assert D[0].tolist() == [0, 0, 1]


def test_decide_labels_second_label_rule() -> None:
    # row 0: the second label clears its threshold but is under half the first: dropped;
    # row 1: both near each other: kept; row 2: nothing clears, fallback to the top label;
    # the "Labelling not possible" column (2) is never the top label.
    P = np.array([[0.9, 0.4, 0.95, 0.0], [0.6, 0.5, 0.0, 0.0], [0.2, 0.1, 0.0, 0.3]], np.float32)
    th = np.array([0.3, 0.3, 0.5, 0.5], np.float32)
    D = decide_labels(P, th, lnp=2, min_one_label=True, min_ratio=0.5)
    assert D.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1]]
    assert decide_labels(P, th, lnp=2, min_one_label=True)[0].tolist() == [1, 1, 0, 0]


def test_scoring_rule_all_labels_and_labelled_rows_only() -> None:
    Y = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 0]])
    pred = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 0]])
    s = metrics.multilabel_scores(Y, pred)
    assert s["rows"] == 2  # the row with no label in the truth is not scored
    assert s["exact_accuracy"] == 1.0
    assert s["labels_scored"] == 3
    assert s["macro_f1"] == pytest.approx(2 / 3)  # label 1: no true, no predicted -> F1 0


def test_thresholds_of_rare_labels_shrink_toward_the_prior() -> None:
    """A label with 2 positives keeps little of its tuned threshold, one with 200 keeps most."""
    rng = np.random.default_rng(0)
    n = 1000
    Y = np.zeros((n, 3), np.uint8)
    Y[:2, 0] = 1
    Y[:200, 1] = 1
    P = np.where(Y == 1, 0.15, 0.05) + rng.random((n, 3)) * 0.01  # positives just above .15
    plain = metrics.tune_thresholds(Y, P)
    shrunk = metrics.tune_thresholds(Y, P, prior_weight=10, prior=0.5)
    assert plain[0] == pytest.approx(0.07, abs=0.02) and plain[1] == pytest.approx(0.07, abs=0.02)
    assert shrunk[0] == pytest.approx((2 * plain[0] + 10 * 0.5) / 12)
    assert shrunk[1] == pytest.approx((200 * plain[1] + 10 * 0.5) / 210)
    assert shrunk[2] == plain[2] == 0.5  # no positives: the default


def test_instant_junk_and_unknown_text_get_lnp_and_no_sentiment(instant_bundle: Path) -> None:
    from twolane.predictors.instant import InstantPredictor

    for model in ("linear", "ensemble"):
        p = InstantPredictor.from_bundle(instant_bundle, model=model)
        for qt in ("what_good", "could_improve", "nonspecific"):
            out = p.predict_texts(JUNK + ["The nurse was kind"], [qt] * (len(JUNK) + 1))
            for pr in out[:-1]:
                assert pr.labels == [LABELLING_NOT_POSSIBLE] and pr.sentiment is None
            assert out[-1].labels != [LABELLING_NOT_POSSIBLE] and out[-1].sentiment is not None


def test_batch_junk_and_unknown_text_get_lnp_and_no_sentiment(batch_bundle: Path) -> None:
    from twolane.predictors.batch import BatchPredictor

    p = BatchPredictor.from_bundle(batch_bundle)
    out = p.predict_texts(JUNK + ["The nurse was kind"], ["could_improve"] * (len(JUNK) + 1))
    for pr in out[:-1]:
        assert pr.labels == [LABELLING_NOT_POSSIBLE] and pr.sentiment is None
    assert out[-1].sentiment is not None


def test_manifest_tells_what_to_trust(instant_bundle: Path) -> None:
    m = read_manifest(instant_bundle)
    per = m.metrics["per_label"]
    assert set(per) == set(m.labels)
    for lab, row in per.items():
        assert {"train_support", "f1", "test_support", "low_support"} <= set(row)
        assert row["low_support"] == (row["train_support"] < m.metrics["min_support"]
                                      and lab != LABELLING_NOT_POSSIBLE)
    assert m.metrics["low_support_labels"] == [lab for lab in m.labels if per[lab]["low_support"]]


def test_served_fallback_skips_low_support_labels(instant_bundle: Path, tmp_path: Path) -> None:
    """With every threshold out of reach, each labellable comment takes the fallback; labels the
    manifest lists as low support are never that guess, in the instant lane as served."""
    import shutil

    from twolane.bundle import write_manifest
    from twolane.predictors.instant import InstantPredictor

    copy = tmp_path / instant_bundle.name
    shutil.copytree(instant_bundle, copy)
    m = read_manifest(copy)
    keep = "Staff manner & personal attributes"
    rule = m.rule_of("ensemble").model_copy(update={
        "thresholds": [1.01] * len(m.labels), "never_fallback": [lab for lab in m.labels if lab != keep]})
    m.ensemble = m.ensemble.model_copy(update={"rule": rule}) if m.ensemble else None
    write_manifest(copy, m)
    texts = ["The nurse was lovely", "Parking was impossible", "Dirty toilets", "The food was cold"]
    out = InstantPredictor.from_bundle(copy).predict_texts(texts, ["nonspecific"] * len(texts))
    assert [o.labels for o in out] == [[keep]] * len(texts)


def test_polarity_set_small_bundle(instant_bundle: Path) -> None:
    """The hand-written polarity set on the small (800-row) bundle: the lexicon features carry
    polarity even with little data. The full bundle's figure (>= 95 %) is in bench/RESULTS.md."""
    from twolane.predictors.instant import InstantPredictor

    p = InstantPredictor.from_bundle(instant_bundle)
    cases = polarity_cases()
    out = p.predict_texts([c[0] for c in cases], [c[1] for c in cases])
    right = [polarity_right(c[2], o.sentiment.score if o.sentiment else None)
             for c, o in zip(cases, out, strict=True)]
    assert np.mean(right) >= 0.75, f"polarity {np.mean(right):.2f}"
