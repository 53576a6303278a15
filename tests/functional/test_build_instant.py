"""The instant build on a real slice of the NHS data: bundle, hashes, parity gate, --data, errors."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from model_build.data import DEFAULT_DATA, DataError, load_dataset
from model_build.instant import SMALL, BuildError, run
from model_build.instant_fit import fit_vectorizer
from model_build.instant_gates import onnx_proba, parity
from twolane.bundle import BundleError, read_manifest


def test_bundle_manifest_verifies(instant_bundle: Path) -> None:
    m = read_manifest(instant_bundle, verify=True)
    assert m.lane == "instant" and len(m.labels) == 32
    # one graph: every model reads one bag of n-grams; and the drift reference (twolane.drift)
    assert set(m.files) == {"instant.onnx", "drift_reference.json", "report.json", "report.html"}  # + build report
    assert {e.file for e in m.models.values()} == {"instant.onnx"}
    assert "sentiment" in m.models["sentiment"].outputs
    for name in ("linear", "xgboost", "sentiment", "ensemble"):
        assert m.parity[name]["identical_rows"] >= 0.999
    assert len(m.rule_of("linear").thresholds) == 32 and len(m.rule_of("ensemble").thresholds) == 32
    assert m.taxonomy.unlabellable == "Labelling not possible" and m.serving.known_output
    assert m.rule_of("ensemble").never_fallback == m.metrics["low_support_labels"]
    assert m.data["fingerprint"] and m.library_versions["skl2onnx"]
    aliases = m.build["word_aliases_count"]
    assert isinstance(aliases, int) and aliases > 1000  # unknown words -> nearest known (aliases)
    assert {"linear", "xgboost", "ensemble", "sentiment"} <= set(m.metrics["test"])


def test_tampered_file_fails_verification(instant_bundle: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(instant_bundle, copy)
    with open(copy / "instant.onnx", "ab") as f:
        f.write(b"x")
    with pytest.raises(BundleError, match="does not match"):
        read_manifest(copy, verify=True)


def test_broken_export_fails_parity_gate() -> None:
    """The XGBoost graph that reads an absent n-gram as 0.0 < threshold (where XGBoost saw
    "missing" and went its default way) disagrees with the model; the gate must stop it. The
    real export passes."""
    from model_build import onnx_export
    from model_build.instant_fit import fit_xgboost

    ds = load_dataset(DEFAULT_DATA).head(800)
    tr, te = ds.train, ds.test
    cfg = replace(SMALL, xgb_rounds=10)
    vec = fit_vectorizer(tr.texts, cfg)
    xgb = fit_xgboost(vec.transform(tr.texts), tr.Y, cfg)
    mem = xgb.predict_proba(vec.transform(te.texts))
    th = np.full(32, 0.5)
    good = onnx_export.xgboost_model(vec, xgb.members, xgb.columns)
    assert parity("x", onnx_proba(good.SerializeToString(), te.texts), mem, th, 0.999)[
        "identical_rows"] >= 0.999

    naive = onnx_export.xgboost_model(vec, xgb.members, xgb.columns, absent_is_missing=False)
    with pytest.raises(BuildError, match="parity gate failed for xgboost"):
        parity("xgboost", onnx_proba(naive.SerializeToString(), te.texts), mem, th, 0.999)


TRICKY = [
    "", "I was seen by a GP", "Café staff were très gentils", "Ο γιατρός ήταν καλός",
    "Great 😀😀 service!!", "A&E wait: 4 hrs", "x y z", "don't know_why", "ÉCOLE École école",
    "naïve co-operation e-mail", "1 2 33 444", "   ", "NHS nhs Nhs",
]


def test_tfidf_export_matches_sklearn_on_tricky_text() -> None:
    """Lowercasing (C.UTF-8 locale), token pattern and bigrams match sklearn exactly; skl2onnx's
    default `[a-zA-Z0-9_]+` tokens do not."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer

    from model_build import onnx_export

    vec = TfidfVectorizer(ngram_range=(1, 2), dtype=np.float32).fit(TRICKY)
    want = vec.transform(TRICKY).toarray()
    got = onnx_proba(onnx_export.tfidf_model(vec).SerializeToString(), TRICKY)
    np.testing.assert_allclose(got, want, atol=1e-6)
    naive = convert_sklearn(vec, initial_types=[("text", StringTensorType([None]))],
                            options={id(vec): {"locale": "C.UTF-8"}})
    assert not np.allclose(onnx_proba(naive.SerializeToString(), TRICKY), want, atol=1e-3)


def test_word_aliases_export_matches_sklearn() -> None:
    """Words out of the vocabulary count as their nearest known word (real packaged encoder):
    the exported front emits the same bag and TF-IDF rows as the build's AliasedTfidf."""
    from onnx import TensorProto, helper

    from model_build import onnx_export
    from model_build.aliases import AliasedTfidf, fit_aliases

    train = ["the ward was dirty", "dirty toilet here", "clean ward and toilet",
             "staff shouting at me", "lovely staff", "the food was cold", "cold food again"]
    vec = AliasedTfidf(ngram_range=(1, 2), binary=True, dtype=np.float32).fit(train)
    vec.set_aliases(fit_aliases(vec.vocabulary_, train, 0.6, valence={"filthy": -1.0, "dirty": 1.0},
                                keep_out=("toilets",)))
    word = {j: w for w, j in vec.vocabulary_.items()}
    assert {w: word[vec.aliases_[w]] for w in ("shouted", "chilly")} == {
        "shouted": "shouting", "chilly": "cold"}
    # guards: an alias may not flip a known valence, and a kept-out word is never aliased
    assert "filthy" not in vec.aliases_ and "toilets" not in vec.aliases_
    vec.set_aliases(fit_aliases(vec.vocabulary_, train, 0.6))
    assert {w: word[vec.aliases_[w]] for w in ("filthy", "toilets")} == {
        "filthy": "dirty", "toilets": "toilet"}
    texts = ["Filthy toilets!", "dirty filthy ward", "they shouted", "", "zzqx vbnmw", *TRICKY]
    want = vec.transform(texts).toarray()
    assert want[0, vec.vocabulary_["dirty"]] > 0 and want[0, vec.vocabulary_["toilet"]] > 0
    assert want[0, vec.vocabulary_["dirty toilet"]] == 0  # bigrams are not aliased
    got = onnx_proba(onnx_export.tfidf_model(vec).SerializeToString(), texts)
    np.testing.assert_allclose(got, want, atol=1e-6)
    front, bow = onnx_export.bow_front(vec)
    del front.graph.output[:]
    front.graph.output.append(helper.make_tensor_value_info(bow, TensorProto.FLOAT, [None, None]))
    np.testing.assert_array_equal(onnx_proba(front.SerializeToString(), texts), want > 0)


def _slice_csv(path: Path, rows: int) -> Path:
    with open(DEFAULT_DATA, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        body = [r for _, r in zip(range(rows), reader, strict=False)]
    out = path / "other.csv"
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(body)
    return out


def test_build_from_another_csv(tmp_path: Path) -> None:
    csv_path = _slice_csv(tmp_path, 500)
    bundle = run(data=csv_path, out=tmp_path / "bundles", cfg=replace(SMALL, xgb_rounds=5))
    m = read_manifest(bundle, verify=True)
    assert bundle.parent == tmp_path / "bundles" / "instant"
    assert m.data["source"] == "other.csv" and m.data["rows"] == 500
    assert m.data["fingerprint"] != load_dataset(DEFAULT_DATA).fingerprint


def test_bad_csv_gives_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(DataError, match="no text column 'text'"):  # read by the data spec's defaults
        run(data=bad, out=tmp_path / "bundles")
    with pytest.raises(DataError, match="no data file"):
        run(data=tmp_path / "missing.csv", out=tmp_path / "bundles")
    assert not (tmp_path / "bundles").exists()


def test_lexicon_negates_common_lexicon_words() -> None:
    """A common negator + a lexicon word in >= UNSEEN_MIN_DF comments becomes a term, with
    VADER's negation factor (unigram + pair net -0.74 x the valence), seen as a pair or not;
    a rarer word gets only the pairs the text holds; a word the text lacks gets none."""
    from model_build.lexicon import NEGATION, NEGATORS, UNSEEN_MIN_DF, UNSEEN_NEGATORS, terms

    assert UNSEEN_MIN_DF == 2
    lex = {"respect": 2.0, "rude": -2.0, "awful": -2.5, "ok": 0.5}
    texts = ["staff showed respect", "respect for my wishes", "the nurse was never rude"]
    t = terms(texts, lex)
    assert {"respect", "rude", "awful"} <= set(t) and "ok" not in t  # |valence| < 1 dropped
    for negator in NEGATORS:
        assert (f"{negator} respect" in t) == (negator in UNSEEN_NEGATORS)
        assert f"{negator} awful" not in t
    for negator in UNSEEN_NEGATORS:
        assert t[f"{negator} respect"] + t["respect"] == pytest.approx(NEGATION * 2.0)
    assert [k for k in t if k.endswith(" rude")] == ["never rude"]  # df 1: the pair it holds
    assert t["never rude"] > 0
    # the rule of bundles built before it: only the negated pairs the text holds
    old = terms([*texts, "staff showed no respect"], lex, negate_unseen=False)
    assert old["no respect"] == t["no respect"]
    assert "not respect" not in old and "no rude" not in old and "never rude" in old


def test_polarity_scale_favours_polar_ngrams() -> None:
    """Columns 0 (praise only) and 1 (complaint only) outweigh column 2 (both sides alike);
    a column in no row gets a finite, non-negative value; the mean over seen columns is 1."""
    from scipy.sparse import csr_matrix

    from model_build.instant_fit import polarity_scale

    X = csr_matrix(np.array([[1, 0, 1, 0], [1, 0, 1, 0], [0, 1, 1, 0], [0, 1, 1, 0]], float))
    f = polarity_scale(X, np.array([0, 1, 3, 4]), gamma=0.5)
    assert f.shape == (4,) and np.all(np.isfinite(f)) and np.all(f >= 0)
    assert f[0] > f[2] and f[1] > f[2]
    assert f[:3].mean() == pytest.approx(1.0)
