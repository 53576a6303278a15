"""Data loading and split, and bundle manifests (the rules: test_rules.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model_build.data import DataError, load_dataset, question_type, split_mask
from twolane.bundle import (
    BundleError,
    DecideRule,
    Manifest,
    ModelEntry,
    Taxonomy,
    latest_bundle,
    read_manifest,
    resolve_bundle,
    write_manifest,
)


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
    write_manifest(b, _manifest(b.name))
    assert read_manifest(b, verify=True).files["m.onnx"]
    assert latest_bundle(tmp_path, "instant") == b
    assert resolve_bundle(tmp_path, "instant") == b
    (b / "m.onnx").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="does not match"):
        read_manifest(b, verify=True)
    with pytest.raises(BundleError, match="no batch bundle"):
        resolve_bundle(tmp_path, "batch")


def _manifest(version: str) -> Manifest:
    rule = DecideRule(thresholds=[0.5, 0.5])
    return Manifest(lane="instant", version=version, created_at="now",
                    taxonomy=Taxonomy(labels=["a", "none"], unlabellable="none"),
                    models={"m": ModelEntry(file="m.onnx", task="multilabel", kind="test", rule=rule)},
                    default_model="m")


def test_manifest_refuses_unknown_and_missing_fields_naming_them(tmp_path: Path) -> None:
    """The build-to-serving contract is typed: a misspelt or missing key fails loading with the
    bundle and the field named, never a silent default."""
    b = tmp_path / "instant" / "20260101T000000Z-abc"
    b.mkdir(parents=True)
    (b / "m.onnx").write_bytes(b"model")
    write_manifest(b, _manifest(b.name))
    raw = json.loads((b / "manifest.json").read_text())
    assert read_manifest(b).rule_of("m").thresholds == [0.5, 0.5]

    raw["models"]["m"]["rule"]["min_one_lable"] = True  # misspelt
    (b / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=r"models\.m\.rule\.min_one_lable") as e:
        read_manifest(b)
    assert str(b) in str(e.value)

    del raw["models"]["m"]["rule"]["min_one_lable"]
    del raw["taxonomy"]
    (b / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="manifest field taxonomy: Field required"):
        read_manifest(b)

    with pytest.raises(ValueError, match="2 thresholds for 3 labels|thresholds"):
        Manifest.model_validate({**_manifest("v").model_dump(), "taxonomy": {"labels": ["a", "b", "c"]}})
    with pytest.raises(ValueError, match="not among the labels"):
        Taxonomy(labels=["a"], unlabellable="Labelling not possible")


def test_old_manifest_is_refused_with_a_rebuild_message_and_skipped(tmp_path: Path) -> None:
    """A bundle written before the typed manifest (no schema_version) is never served by guess:
    read_manifest says to rebuild it, and latest_bundle skips it so the local stack builds anew."""
    old = tmp_path / "instant" / "20250101T000000Z-old"
    old.mkdir(parents=True)
    (old / "manifest.json").write_text(json.dumps({"lane": "instant", "version": old.name, "labels": ["a"],
                                                   "models": {}, "default_model": "m", "config": {}}))
    with pytest.raises(BundleError, match=r"schema 1.*rebuild it with `twolane build instant`"):
        read_manifest(old)
    assert latest_bundle(tmp_path, "instant") is None
    new = tmp_path / "instant" / "20240101T000000Z-new"  # older by name, current by schema
    new.mkdir(parents=True)
    (new / "m.onnx").write_bytes(b"model")
    write_manifest(new, _manifest(new.name))
    assert latest_bundle(tmp_path, "instant") == new
