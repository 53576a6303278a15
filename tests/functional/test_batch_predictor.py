"""BatchPredictor on the tiny real bundle: order, unlabellable text, targets, no torch at serving."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_build.data import load_dataset
from twolane.predictors.batch import BatchPredictor
from twolane.rules import LABELLING_NOT_POSSIBLE, QUESTION_TYPES, is_unlabellable


@pytest.fixture(scope="module")
def predictor(batch_bundle: Path) -> BatchPredictor:
    return BatchPredictor.from_bundle(batch_bundle, batch_size=4)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    ds = load_dataset().head(120)
    rng = np.random.default_rng(0)
    return [ds.texts[i] for i in rng.permutation(len(ds.texts)) if not is_unlabellable(ds.texts[i])][:40]


def test_loads_once_with_version_and_manifest(predictor: BatchPredictor, batch_bundle: Path) -> None:
    assert predictor.version == batch_bundle.name
    assert predictor.manifest.lane == "batch"
    assert predictor.model_name == "int8"  # no CUDA here
    assert predictor.mode == ("ensemble" if predictor.manifest.ensemble else "transformer")


def test_order_restored_after_length_sorting(predictor: BatchPredictor, texts: list[str]) -> None:
    ids = [f"c{i}" for i in range(len(texts))]
    batch = predictor.predict_texts(texts, ids=ids, include_probabilities=True)
    assert [p.comment_id for p in batch] == ids
    lengths = [len(t) for t in texts]
    assert lengths != sorted(lengths)  # the input really is out of length order
    for i in (0, 7, 19, 39):  # each comment alone gives the same answer as inside the batch
        alone = predictor.predict_texts([texts[i]], ids=[ids[i]], include_probabilities=True)[0]
        assert alone.labels == batch[i].labels
        assert alone.sentiment == batch[i].sentiment
        if alone.probabilities is not None and batch[i].probabilities is not None:
            a = np.array(list(alone.probabilities.values()))
            b = np.array(list(batch[i].probabilities.values()))
            assert np.abs(a - b).max() < 1e-3


def test_unlabellable_text_skips_the_model(predictor: BatchPredictor, texts: list[str]) -> None:
    seen: list[str] = []
    original = predictor.encoder.proba

    def spy(batch):
        seen.extend(batch)
        return original(batch)

    predictor.encoder.proba = spy
    try:
        mixed = ["", texts[0], "n/a", None, "Did not answer", "😀👍", texts[1], float("nan")]
        out = predictor.predict_texts(mixed)
    finally:
        predictor.encoder.proba = original
    assert seen == [texts[0], texts[1]]
    for i in (0, 2, 3, 4, 5, 7):
        assert out[i].labels == [LABELLING_NOT_POSSIBLE] and out[i].sentiment is None
    for i in (1, 6):
        assert out[i].labels and out[i].sentiment is not None
        assert all(lab in predictor.labels for lab in out[i].labels)


def test_targets(predictor: BatchPredictor, texts: list[str]) -> None:
    both = predictor.predict_texts(texts[:6], target="ms")
    labels_only = predictor.predict_texts(texts[:6], target="m")
    sentiment_only = predictor.predict_texts(texts[:6], target="s")
    assert [p.labels for p in labels_only] == [p.labels for p in both]
    assert all(p.sentiment is None for p in labels_only)
    assert [p.sentiment for p in sentiment_only] == [p.sentiment for p in both]
    assert all(p.labels == [] for p in sentiment_only)
    assert all(p.sentiment is not None and 1 <= p.sentiment.score <= 5 for p in both)
    with pytest.raises(ValueError):
        predictor.predict_texts(texts[:1], target="x")
    assert predictor.predict_texts([]) == []


def test_transformer_alone_without_instant(batch_bundle: Path, texts: list[str]) -> None:
    alone = BatchPredictor.from_bundle(batch_bundle, use_instant=False)
    assert alone.mode == "transformer" and alone.instant is None
    assert len(alone.predict_texts(texts[:5])) == 5


def test_serving_imports_no_torch_or_transformers(batch_bundle: Path) -> None:
    code = (
        "import sys, time; t = time.perf_counter()\n"
        "from twolane.predictors.batch import BatchPredictor\n"
        f"p = BatchPredictor.from_bundle({str(batch_bundle)!r})\n"
        "p.predict_texts(['The nurse was kind'])\n"
        "bad = [m for m in ('torch', 'transformers', 'sklearn') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_combine_probability_and_logit() -> None:
    from twolane.predictors.batch import combine

    a = np.array([[0.9, 0.2, 0.5]], np.float32)
    b = np.array([[0.5, 0.2, 0.01]], np.float32)
    np.testing.assert_allclose(combine(0.25, "probability", a, b), 0.25 * a + 0.75 * b, rtol=1e-6)
    lg = combine(0.5, "logit", a, b)
    np.testing.assert_allclose(lg[0, 1], 0.2, rtol=1e-5)  # same probability in, same out
    assert lg[0, 0] == pytest.approx(0.75, abs=1e-4)  # sqrt of the odds 9 * 1 -> 3 -> 0.75
    with pytest.raises(ValueError, match="combine"):
        combine(0.5, "max", a, b)


def test_manifest_ensemble_mix_and_sentiment_weight_are_served(batch_bundle: Path, texts: list[str],
                                                               tmp_path: Path) -> None:
    """A bundle whose ensemble mixes log-odds and half of the instant lane's sentiment serves
    exactly that: the served probabilities and sentiment equal the mix computed by hand."""
    import shutil

    from twolane.bundle import BatchEnsemble, SentimentMix, SentimentStack, read_manifest, write_manifest
    from twolane.predictors.batch import combine
    from twolane.predictors.instant import InstantPredictor

    m = read_manifest(batch_bundle)
    if not isinstance(m.ensemble, BatchEnsemble):
        pytest.skip("the tiny bundle has no ensemble")
    copy = tmp_path / batch_bundle.name
    shutil.copytree(batch_bundle, copy)
    ens = m.ensemble = m.ensemble.model_copy(update={
        "combine": "logit", "sentiment": SentimentMix(method="mix", weight_transformer=0.5)})
    write_manifest(copy, m)
    pred = BatchPredictor.from_bundle(copy)
    alone = BatchPredictor.from_bundle(copy, use_instant=False)
    inst = InstantPredictor.from_bundle(copy / "instant", model=ens.instant_model)
    lab, sen, _ = pred.probabilities(texts[:8])
    lab_t, sen_t = alone.encoder.proba(texts[:8])
    p_i, s_i = inst.predict_arrays(texts[:8])
    np.testing.assert_allclose(lab, combine(ens.weight_transformer, "logit", lab_t, p_i), atol=1e-6)
    known = ~np.isnan(s_i).any(1)
    np.testing.assert_allclose(sen[known], 0.5 * sen_t[known] + 0.5 * s_i[known], atol=1e-6)

    # a stacked sentiment (coef = identity on the instant lane's log-probabilities, what_good
    # adds 5 to class 0): served as softmax(log p_i + 5 [what_good, class 0]) on known rows
    coef = np.zeros((5, 13))
    coef[:, 5:10] = np.eye(5)
    coef[0, 10 + QUESTION_TYPES.index("what_good")] = 5.0
    m.ensemble = ens.model_copy(update={"sentiment": SentimentMix(
        method="stack", stack=SentimentStack(coef=coef.tolist(), intercept=[0.0] * 5))})
    write_manifest(copy, m)
    qts = ["what_good"] * 4 + ["could_improve"] * 4
    sen, _ = BatchPredictor.from_bundle(copy).probabilities(texts[:8], qts)[1:]
    _, s_i = inst.predict_arrays(texts[:8], qts)
    known = ~np.isnan(s_i).any(1)
    z = np.log(np.clip(s_i, 1e-6, 1))
    z[:4, 0] += 5.0
    want = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    np.testing.assert_allclose(sen[known], want[known], atol=1e-5)


def test_int8_answer_does_not_depend_on_the_other_comments(batch_bundle: Path, texts: list[str]) -> None:
    """The int8 model quantises activations per run; served one comment a run, a comment gets
    the same probabilities alone, with any batch mates and in any order (bit for bit)."""
    served = BatchPredictor.from_bundle(batch_bundle, use_instant=False)
    assert served.encoder.batch_size == 1
    together, _ = served.encoder.proba(texts)
    reversed_, _ = served.encoder.proba(texts[::-1])
    alone = np.vstack([served.encoder.proba([t])[0] for t in texts[:8]])
    assert np.array_equal(together, reversed_[::-1])
    assert np.array_equal(together[:8], alone)
    # mini-batches of the same model (what the int8 model did before) do move answers around
    batched = BatchPredictor.from_bundle(batch_bundle, use_instant=False, batch_size=16)
    assert not np.array_equal(batched.encoder.proba(texts)[0], together)
