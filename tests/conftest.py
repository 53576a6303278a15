"""Shared fixtures: small real models trained on slices of the NHS data, built once per test run.

With pytest-xdist each worker is a process; the bundles are built once under the run's shared
temp root, guarded by a file lock, so two workers never train the same model twice.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from filelock import FileLock

# ----------------------------------------------------------------------------- test tiers
# A test's tier is its folder, and its marker (`make test-unit` runs tests/unit; `make test` all):
# - tests/unit: no model bundle and no process (seconds);
# - tests/functional: real models on small real bundles, in process;
# - tests/e2e: the whole service as a user meets it (real processes, servers, a browser, built
#   assets).
# A test in tests/unit that asks for a bundle fixture is a collection error (it belongs in
# tests/functional).
TIERS = ("unit", "functional", "e2e")
MODEL_FIXTURES = frozenset({"instant_bundle", "batch_bundle", "lambda_module", "lambda_host", "own_bundle",
                            "spec_bundle", "own_batch_bundle", "other_batch_bundle",
                            "sentence_encoder", "unordered_cli_build", "up_prepared"})


def tier_of(item: pytest.Item) -> str:
    """The tier of one collected test: the tests/ folder it is in (see above)."""
    folder = Path(str(item.fspath)).parent.name
    if folder not in TIERS:
        raise pytest.UsageError(f"{item.nodeid}: tests live in tests/unit, tests/functional or tests/e2e")
    if folder == "unit" and MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
        raise pytest.UsageError(f"{item.nodeid} uses a model bundle: move it to tests/functional")
    return folder


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(tier_of(item))


def _shared(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Path]) -> Path:
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker's basetemp is <run>/popen-gwN; the run's folder is shared by all
    # workers and new for every run. Without xdist basetemp is the run's folder itself.
    root = base.parent if base.name.startswith("popen-gw") else base
    out = root / name
    with FileLock(str(root / f"{name}.lock")):
        done = out / ".done"
        if done.is_file():
            return Path(done.read_text())
        bundle = build(out)
        done.write_text(str(bundle))
        return bundle


@pytest.fixture(scope="session")
def instant_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real instant-lane bundle trained on 800 rows of the NHS data."""
    from model_build.instant import build_small_bundle

    return _shared(tmp_path_factory, "instant-small", lambda out: build_small_bundle(out, rows=800))


@pytest.fixture(scope="session")
def sentence_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged MiniLM sentence encoder exported to ONNX as `twolane build encoder` does
    (the folder summaries' points are clustered with)."""
    from model_build.encoder import export

    return _shared(tmp_path_factory, "encoder", export)


@pytest.fixture(scope="session")
def spec_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real instant bundle built from a team's own data spec (tests/spec_helpers.py: drug
    reviews, 7 single labels, three-class sentiment, a `channel` context column)."""
    from spec_helpers import build_spec_bundle

    return _shared(tmp_path_factory, "spec-small", build_spec_bundle)


@pytest.fixture(scope="session")
def batch_bundle(tmp_path_factory: pytest.TempPathFactory, instant_bundle: Path) -> Path:
    """A tiny randomly initialised transformer bundle, exported like the real one."""
    from model_build.batch import build_tiny_bundle

    return _shared(
        tmp_path_factory, "batch-tiny", lambda out: build_tiny_bundle(out, instant_bundle=instant_bundle)
    )


@pytest.fixture(scope="session")
def lambda_host(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """(config, SynthResult): the dev config with batch.host "lambda", the worker sized apart
    from the defaults, synthesised once offline (code-only assets, no model, no network) for
    tests/functional/test_infra_lambda.py and tests/functional/test_iam_enforced.py."""
    from infra.checks import synth_offline
    from infra.config import load_config

    cfg = load_config("dev")
    cfg.batch = cfg.batch.model_copy(update={
        "host": "lambda", "lambda_memory_mb": 3008, "lambda_timeout_s": 600,
        "lambda_reserved_concurrency": 20, "shard_size": 1000})
    return cfg, synth_offline(tmp_path_factory.mktemp("infra-lambda-host"), cfg)


@pytest.fixture
def lambda_module(
    instant_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], ModuleType]]:
    """Import a Lambda handler module fresh (its cold start loads the small instant bundle),
    and forget it and the cached settings/predictor afterwards."""
    from twolane.settings import get_settings
    from twolane.wiring import get_predictor

    monkeypatch.setenv("TWOLANE_INSTANT_BUNDLE", str(instant_bundle))
    loaded: list[str] = []

    def reset() -> None:
        for name in loaded:
            sys.modules.pop(name, None)
        get_settings.cache_clear()
        if hasattr(get_predictor, "cache_clear"):
            get_predictor.cache_clear()

    def load(name: str) -> ModuleType:
        loaded.append(name)
        reset()
        return importlib.import_module(name)

    yield load
    reset()


class FakePredictor:
    """A `twolane.predictors.Predictor` for tests where the model is not the thing under test:
    every labellable comment gets "Staff", sentiment 2; the rule book decides the rest."""

    labels = ["Staff", "Labelling not possible"]

    def __init__(self) -> None:
        from twolane.bundle import DecideRule, Manifest, ModelEntry, Taxonomy

        rule = DecideRule(thresholds=[0.5] * len(self.labels))
        self.manifest = Manifest(
            lane="instant", version="fake-1", created_at="now",
            taxonomy=Taxonomy(labels=self.labels, unlabellable="Labelling not possible",
                              sentiment_classes=["1", "2", "3", "4", "5"]),
            models={"fake": ModelEntry(file="fake.onnx", task="multilabel", kind="fake", rule=rule)},
            default_model="fake")
        self.calls: list[int] = []

    @property
    def version(self) -> str:
        return "fake-1"

    def predict(self, items: Any, *, target: str = "ms",
                include_probabilities: bool = False) -> list[Any]:
        from twolane.contract import Prediction, Sentiment, restrict
        from twolane.rules import LABELLING_NOT_POSSIBLE, is_unlabellable

        self.calls.append(len(items))
        out = []
        for i in items:
            if is_unlabellable(i.comment_text):
                p = Prediction(comment_id=i.comment_id, labels=[LABELLING_NOT_POSSIBLE])
            else:
                p = Prediction(comment_id=i.comment_id, labels=["Staff"],
                               sentiment=Sentiment(score=2, label="positive"))
            out.append(restrict(p, target))
        return out


@pytest.fixture
def fake_predictor() -> FakePredictor:
    return FakePredictor()
