"""A team's own data, all the way (issue 31): sentiment words without an order, the sentiment
head chosen against a plain baseline, the cascade's margins on a single-label taxonomy, and
`twolane up --data`'s preparation (its own bundles root, the batch build's flags).

Real text: rows of the UCI drug reviews (data/drug-reviews/, provenance there).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_own_data import reviews, write

from model_build.dataspec import SpecArgs, load, unordered_note


def test_sentiment_words_without_an_order_are_unordered_classes(tmp_path: Path) -> None:
    ds = load(write(reviews(), tmp_path / "r.csv"),
              SpecArgs(text_column="review", labels_column="condition", sentiment_column="rating"))
    assert ds.sentiment_classes == ["negative", "neutral", "positive"]  # sorted by name
    assert ds.spec is not None and not ds.spec.sentiment_ordered
    assert set(ds.sentiment.tolist()) <= {0, 1, 2}
    note = unordered_note("rating", ds.sentiment_classes)
    assert "\n" not in note and "--sentiment-order" in note
    ordered = load(write(reviews(), tmp_path / "o.csv"),
                   SpecArgs(text_column="review", labels_column="condition", sentiment_column="rating",
                            sentiment_order=("negative", "neutral", "positive")))
    assert ordered.spec is not None and ordered.spec.sentiment_ordered
    nums = reviews().assign(stars=lambda d: d["rating"].map({"negative": "1", "neutral": "3", "positive": "5"}))
    numeric = load(write(nums, tmp_path / "n.csv"),
                   SpecArgs(text_column="review", labels_column="condition", sentiment_column="stars"))
    assert numeric.spec is not None and numeric.spec.sentiment_ordered


@pytest.fixture(scope="module")
def unordered_cli_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`twolane build instant` (a process) on sentiment words with no order: (bundle, stderr)."""
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("unordered")
    path = write(reviews(25), tmp / "r.csv")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    r = subprocess.run([sys.executable, "-m", "twolane_cli", "build", "instant", "--data", str(path),
                        "--out", str(tmp / "b"), "--text-column", "review", "--labels-column", "condition",
                        "--sentiment-column", "rating"], capture_output=True, text=True, env=env, timeout=3600)
    assert r.returncode == 0, r.stderr[-2000:]
    return next((tmp / "b" / "instant").iterdir()), r.stderr


def test_cli_builds_unordered_words_with_a_note(unordered_cli_build: tuple[Path, str]) -> None:
    """Sentiment words and no order: built (never refused), one note line; the served classes
    are the words; the build says which sentiment head won."""
    from twolane.bundle import read_manifest

    bundle, stderr = unordered_cli_build
    assert "unordered classes" in stderr and "sentiment head:" in stderr
    m = read_manifest(bundle, verify=True)
    assert m.sentiment_classes == ["negative", "neutral", "positive"]
    assert m.data_spec is not None and not m.data_spec.sentiment_ordered
    assert m.build["sentiment_polarity_gamma"] == 0.0  # no ends to scale by


def test_the_choice_keeps_the_better_head_by_cross_validation() -> None:
    """model_build.choose on real reviews: the plain baseline's out-of-fold accuracy is what the
    chosen head is compared with, and a tie keeps the tuned head."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from model_build import choose
    from model_build.folds import sentiment_out_of_fold

    df = reviews(30)
    y = df["rating"].map({"negative": 0, "neutral": 1, "positive": 2}).to_numpy()
    X = TfidfVectorizer(binary=True, min_df=2).fit_transform(df["review"])
    rows = np.ones(len(y), bool)
    oof_plain = sentiment_out_of_fold(lambda A, b: choose.fit_plain(A, b, 3), X, y, rows, 3, 3)
    uniform = np.full((len(y), 3), 1 / 3)
    c = choose.choose(y, {choose.TUNED: uniform, choose.PLAIN: oof_plain}, 3)
    assert c.cv_accuracy[choose.PLAIN] == round(choose.accuracy(y, oof_plain), 4)
    assert c.chosen == (choose.PLAIN if c.cv_accuracy["plain"] > c.cv_accuracy["tuned"] else choose.TUNED)
    assert c.margin == round(c.cv_accuracy[c.chosen] - min(c.cv_accuracy.values()), 4)
    tie = choose.choose(y, {choose.TUNED: oof_plain, choose.PLAIN: oof_plain}, 3)
    assert tie.chosen == choose.TUNED and tie.margin == 0.0
    head = choose.fit_plain(X, y, 3)
    assert head.coef.shape == (3, X.shape[1]) and np.allclose(head.predict_proba(X[:5]).sum(1), 1.0)


def test_single_label_margin_is_the_gap_between_the_top_two() -> None:
    from twolane.predictors.cascade import NEVER, margins

    P = np.array([[0.70, 0.20, 0.10], [0.40, 0.38, 0.22], [0.5, 0.5, 0.0]])
    S = np.array([[0.8, 0.1, 0.1], [0.45, 0.44, 0.11], [np.nan, np.nan, np.nan]])
    theme, sent = margins(P, S, np.array([0.9, 0.9, 0.9]), None, multilabel=False)
    assert np.allclose(theme[:2], [0.50, 0.02]) and np.allclose(sent[:2], [0.7, 0.01])
    assert theme[2] == NEVER and sent[2] == NEVER  # no sentiment: answered by rule, never escalated
    # multi-label (the NHS rule): distance to the thresholds in log-odds, unchanged
    theme_ml, _ = margins(P, S, np.array([0.9, 0.9, 0.9]), None)
    assert theme_ml[0] == pytest.approx(abs(np.log(0.7 / 0.3) - np.log(0.9 / 0.1)))


SPEC = SpecArgs(text_column="review", labels_column="condition", sentiment_column="rating",
                sentiment_order=("negative", "neutral", "positive"))


@pytest.fixture(scope="module")
def up_prepared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`twolane up --data`'s preparation run twice on one file (a small real instant build):
    what it left in the environment and returned each time."""
    from twolane.settings import get_settings
    from twolane_cli import own_data

    tmp = tmp_path_factory.mktemp("up-data")
    path = write(reviews(25), tmp / "team reviews.csv")
    import model_build.instant as instant

    small = replace(instant.SMALL, xgb_rounds=5, word_aliases=False)
    real_run = instant.run
    with pytest.MonkeyPatch.context() as mp:
        for name in ("TWOLANE_BUNDLES", "TWOLANE_BATCH_TAXONOMY", *own_data.PINNED):
            mp.setenv(name, "x")  # recorded, so undone whatever prepare() sets
            mp.delenv(name)
        mp.setenv("TWOLANE_BUNDLES", str(tmp / "bundles"))
        mp.setenv("TWOLANE_INSTANT_BUNDLE", str(tmp / "elsewhere"))  # --data wins
        mp.setattr(instant, "run", lambda **kw: real_run(**kw, cfg=small))  # a small real build
        get_settings.cache_clear()
        try:
            first = own_data.prepare(path, SPEC)
            env = {k: os.environ.get(k) for k in ("TWOLANE_BUNDLES", "TWOLANE_BATCH_TAXONOMY",
                                                  "TWOLANE_INSTANT_BUNDLE")}
            mp.setenv("TWOLANE_BUNDLES", str(tmp / "bundles"))  # a second start: a new process, same env
            get_settings.cache_clear()
            second = own_data.prepare(path, SPEC)
            yield {"path": path, "tmp": tmp, "first": first, "second": second, "env": env}
        finally:
            get_settings.cache_clear()


def test_up_with_data_prepares_its_own_root(up_prepared: dict[str, Any]) -> None:
    """`twolane up --data`'s preparation: the file's own bundles root (the NHS root untouched),
    its instant bundle built there once, the batch lane declared in its taxonomy, and the
    background batch build given the same file and spec."""
    from twolane.bundle import read_manifest, resolve_bundle

    env, path = up_prepared["env"], up_prepared["path"]
    root = Path(env["TWOLANE_BUNDLES"])
    assert root.parent == up_prepared["tmp"] / "bundles" / "data" and root.name.startswith("team-reviews-")
    assert env["TWOLANE_INSTANT_BUNDLE"] is None
    bundle = resolve_bundle(root, "instant")
    tax = read_manifest(bundle).taxonomy
    assert json.loads(env["TWOLANE_BATCH_TAXONOMY"]) == json.loads(tax.model_dump_json())
    args = up_prepared["first"]
    assert args == ["--data", str(path.resolve()), "--text-column", "review", "--labels-column", "condition",
                    "--sentiment-column", "rating", "--sentiment-order", "negative,neutral,positive"]
    # the batch build reads the same spec from those flags (the CLI's own parsing)
    flags = dict(zip(args[2::2], args[3::2], strict=True))
    assert SpecArgs.from_flags({k.removeprefix("--").replace("-", "_"): v for k, v in flags.items()}) == SPEC
    assert up_prepared["second"] == args  # a second start reuses the bundle
    assert len(list((root / "instant").iterdir())) == 1


def test_up_data_refuses_a_bad_file_in_one_line(tmp_path: Path) -> None:
    """`twolane up --data` with a column that is not there: one line, exit 2, nothing started."""
    import subprocess
    import sys

    path = write(reviews(10), tmp_path / "r.csv")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "TWOLANE_BUNDLES": str(tmp_path / "bundles")}
    r = subprocess.run([sys.executable, "-m", "twolane_cli", "up", "--data", str(path), "--port", "0",
                        "--text-column", "comment"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "no text column 'comment'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bundles").exists()
