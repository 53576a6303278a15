"""The shared building blocks: text rules, data loading and split, bundle manifests."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from model_build.data import DataError, load_dataset, question_type, split_mask
from twolane.bundle import (
    BundleError,
    Manifest,
    ModelEntry,
    latest_bundle,
    read_manifest,
    resolve_bundle,
    write_manifest,
)
from twolane.rules import is_unlabellable


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


def test_nhs_data_maps_to_32_labels_and_three_question_types() -> None:
    ds = load_dataset()
    assert len(ds.ids) == 7908
    assert len(ds.labels) == 32 and len(set(ds.labels)) == 32
    assert "Labelling not possible" in ds.labels
    # merged v7 labels count positives of either v6 column, as the map file says
    j = ds.labels.index("Staffing levels & responsiveness")
    assert ds.Y[:, j].sum() == 276
    assert ds.Y[:, ds.labels.index("Parking")].sum() == 1
    assert set(ds.question_types) == {"what_good", "could_improve", "nonspecific"}
    assert (ds.sentiment == -1).sum() == 1729  # blank sentiment is unlabelled, not a class
    assert set(np.unique(ds.sentiment)) == {-1, 0, 1, 2, 3, 4}
    assert ds.is_test.sum() == round(7908 * 0.2)


def test_split_is_deterministic() -> None:
    assert np.array_equal(split_mask(1000), split_mask(1000))
    assert not np.array_equal(split_mask(1000), split_mask(1000, seed=1))


def test_question_type_normalisation() -> None:
    assert question_type("What was good?") == "what_good"
    assert question_type("How could we improve?") == "could_improve"
    assert question_type("What could we do better?") == "could_improve"
    assert question_type("FFT Why?") == "nonspecific"
    assert question_type(None) == "nonspecific"


def test_bad_csv_gets_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="lacks column"):
        load_dataset(bad)
    with pytest.raises(DataError, match="no data file"):
        load_dataset(tmp_path / "missing.csv")


def test_manifest_hashes_verify_and_detect_tampering(tmp_path: Path) -> None:
    b = tmp_path / "instant" / "20260101T000000Z-abc"
    b.mkdir(parents=True)
    (b / "m.onnx").write_bytes(b"model")
    m = Manifest(lane="instant", version=b.name, created_at="now", labels=["a"],
                 models={"m": ModelEntry(file="m.onnx", task="multilabel", kind="test", labels=["a"])},
                 default_model="m")
    write_manifest(b, m)
    assert read_manifest(b, verify=True).files["m.onnx"]
    assert latest_bundle(tmp_path, "instant") == b
    assert resolve_bundle(tmp_path, "instant") == b
    (b / "m.onnx").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="does not match"):
        read_manifest(b, verify=True)
    with pytest.raises(BundleError, match="no batch bundle"):
        resolve_bundle(tmp_path, "batch")
