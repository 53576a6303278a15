"""The rule book (twolane.rules): unlabellable text, question types, and how labels are decided."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twolane.rules import (
    LABELLING_NOT_POSSIBLE,
    POSITIVE_THEMES,
    QUESTION_TYPES,
    apply_rules,
    decide_labels,
    fallback_barred,
    is_unlabellable,
    labellable,
    lnp_index,
    model_input,
    question_type_of,
)

LABELS = ["Staff", "Parking", LABELLING_NOT_POSSIBLE]
LNP = 2


@pytest.mark.parametrize("text", ["", "   ", None, math.nan, "n/a", "N/A", "Did not answer", "😀👍", "...", "NULL",
                                  # spreadsheet junk, lone numbers and letters, "Not applicable"
                                  "#REF!", "#VALUE!", "#N/A", "#DIV/0!", "#NAME?", "0", "1", " 42 ",
                                  "3.5", "12/03/2023", "x", "X.", "NaT", "nat", "Not applicable",
                                  "Not applicable."])
def test_unlabellable(text: object) -> None:
    assert is_unlabellable(text)


@pytest.mark.parametrize("text", ["Nurses were lovely", "ok", "Très bien", "No parking 🚗", "5 stars",
                                  "x ray was quick", "A&E was busy", "£5 to park", "No"])
def test_labellable(text: str) -> None:
    assert not is_unlabellable(text)
    assert labellable(text)


@pytest.mark.parametrize(("value", "expected"), [
    ("what_good", "what_good"), ("Nonspecific", "nonspecific"), (" COULD_IMPROVE ", "could_improve"),
    ("What was good about your visit?", "what_good"), ("How could we improve?", "could_improve"),
    ("What could we do better?", "could_improve"), ("FFT Why?", "nonspecific"), (None, "nonspecific"),
    (math.nan, "nonspecific"), (3, "nonspecific"),
])
def test_question_type_of_reads_any_spelling(value: object, expected: str) -> None:
    assert question_type_of(value) == expected
    assert question_type_of(value) in QUESTION_TYPES


def test_model_input_appends_the_question_type_token() -> None:
    assert model_input("Food was cold", "could_improve") == "Food was cold qt_could_improve"
    assert model_input("Food was cold", "Something else") == "Food was cold qt_nonspecific"


def test_lnp_index() -> None:
    assert lnp_index(LABELS) == LNP
    assert lnp_index(["a", "b"]) is None


def test_decide_labels_thresholds_then_the_lnp_rule() -> None:
    P = np.array([[0.9, 0.1, 0.0],   # Staff
                  [0.2, 0.1, 0.0],   # nothing clears: LNP
                  [0.9, 0.9, 1.0],   # unlabellable: exactly LNP whatever the model says
                  [0.1, 0.1, 0.9]])  # LNP is never the model's choice
    out = decide_labels(P, np.array([0.5, 0.5, 0.5]), LNP, np.array([False, False, True, False]))
    assert out.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]]
    assert out.dtype == np.uint8


def test_decide_labels_min_one_label_picks_the_most_probable_label() -> None:
    P = np.array([[0.2, 0.15, 0.9], [0.0, 0.0, 0.0]])
    out = decide_labels(P, np.array([0.5, 0.2, 0.5]), LNP, np.array([False, True]), min_one_label=True)
    assert out.tolist() == [[1, 0, 0], [0, 0, 1]]  # top label (never LNP); unlabellable stays LNP


def test_apply_rules_leaves_its_input_alone() -> None:
    chosen = np.array([[1, 0, 1]], dtype=np.uint8)
    out = apply_rules(chosen, np.array([False]), LNP)
    assert out.tolist() == [[1, 0, 0]] and chosen.tolist() == [[1, 0, 1]]


def test_decide_labels_on_no_rows() -> None:
    assert decide_labels(np.zeros((0, 3)), np.full(3, 0.5), LNP).shape == (0, 3)


# sentiment probabilities, columns scores 1 (very positive) .. 5 (very negative)
NEGATIVE, VERY_NEGATIVE, POSITIVE = ([0, 0, .1, .8, .1], [0, 0, .1, .3, .6], [.7, .2, .1, 0, 0])
NO_SENTIMENT = [math.nan] * 5


def test_fallback_barred_marks_positive_themes_on_negative_rows_only() -> None:
    labels = ["Staff", POSITIVE_THEMES[0], LABELLING_NOT_POSSIBLE]
    S = np.array([NEGATIVE, VERY_NEGATIVE, POSITIVE, NO_SENTIMENT, [.2, .2, .3, .2, .1]])
    barred = fallback_barred(labels, S)
    assert barred is not None and barred.dtype == bool
    assert barred.tolist() == [[False, True, False], [False, True, False]] + [[False] * 3] * 3
    assert fallback_barred(labels, None) is None
    assert fallback_barred(["Staff", LABELLING_NOT_POSSIBLE], S) is None  # no positive theme
    with pytest.raises(ValueError, match="n x 5"):
        fallback_barred(labels, np.zeros((2, 3)))


def test_the_fallback_gives_no_praise_to_a_negative_comment() -> None:
    """'Dirty toilets': no label clears its threshold, the most probable is the positive theme
    (.31 against .48); a negative row takes the next most probable label instead."""
    labels = ["Environment", POSITIVE_THEMES[0], LABELLING_NOT_POSSIBLE]
    P = np.array([[0.20, 0.31, 0.0]] * 3 + [[0.20, 0.60, 0.0]])
    thr = np.array([0.5, 0.48, 0.5])
    S = np.array([NEGATIVE, POSITIVE, NO_SENTIMENT, NEGATIVE])
    barred = fallback_barred(labels, S)
    out = decide_labels(P, thr, 2, min_one_label=True, barred=barred)
    assert out.tolist() == [[1, 0, 0],   # negative: the next most probable label
                            [0, 1, 0],   # positive: the top label, as before
                            [0, 1, 0],   # no sentiment: nothing barred
                            [0, 1, 0]]   # a positive theme over its threshold is kept
    assert decide_labels(P, thr, 2, min_one_label=True)[0].tolist() == [0, 1, 0]  # without: praise
    # without the fallback, barred changes nothing; every label barred: "Labelling not possible"
    assert decide_labels(P, thr, 2, barred=barred)[0].tolist() == [0, 0, 1]
    every = np.ones((1, 3), bool)
    assert decide_labels(P[:1], thr, 2, min_one_label=True, barred=every).tolist() == [[0, 0, 1]]
    with pytest.raises(ValueError, match="barred"):
        decide_labels(P, thr, 2, min_one_label=True, barred=np.zeros((1, 3), bool))


def test_the_fallback_never_guesses_a_label_too_rare_to_trust() -> None:
    """'Dirty toilets' took 'Electronic entertainment' (9 training positives) as its best guess:
    the fallback skips the low-support columns, a thresholded one is kept, and with every
    label skipped or barred the row is 'Labelling not possible'."""
    P = np.array([[0.20, 0.33, 0.0], [0.20, 0.60, 0.0]])
    thr = np.array([0.5, 0.5, 0.5])
    out = decide_labels(P, thr, 2, min_one_label=True, never_fallback=[1])
    assert out.tolist() == [[1, 0, 0], [0, 1, 0]]
    barred = np.array([[True, False, False], [False, False, False]])
    assert decide_labels(P[:1], thr, 2, min_one_label=True, barred=barred[:1],
                         never_fallback=[1]).tolist() == [[0, 0, 1]]
