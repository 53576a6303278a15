"""The rule book (twolane.rules): unlabellable text, question types, and how labels are decided."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twolane.rules import (
    LABELLING_NOT_POSSIBLE,
    QUESTION_TYPES,
    apply_rules,
    decide_labels,
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
