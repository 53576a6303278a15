"""Write an instant bundle's drift reference (twolane.drift): what its held-out comments look like.

Called by model_build.instant_package.write_bundle once the ONNX file is in the bundle folder
and before the manifest is written: the serving predictor itself (twolane.predictors.instant) labels the
build's TEST split, the rows the models never trained on, and every signal of twolane.drift is
recorded as a histogram in `drift_reference.json` (listed, hashed, in the manifest's files).
Every instant bundle gets one, NHS or built from a team's own data spec: the signals read the
bundle's own taxonomy, sentiment classes and context column (twolane.drift.observe).
The test split, not the training split: on the rows they were fitted to, the models are more
confident and know every n-gram (min_df), so a training-split reference would flag honest new
files (bench/drift.py measures both).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twolane import drift
from twolane.bundle import Manifest
from twolane.predictors.instant import InstantPredictor


def known_terms(vectorizer: Any) -> frozenset[str]:
    """The n-grams a fitted TF-IDF vectorizer knows (and its alias words), without the
    question-type (or context) tokens (the same columns as model_build.instant_fit.known_mask)."""
    terms = set(vectorizer.vocabulary_) | set(getattr(vectorizer, "aliases_", {}))
    return frozenset(t for t in terms if not t.startswith("qt_") and " qt_" not in t)


def reference(bundle_dir: Path, manifest: Manifest, texts: Sequence[str],
              question_types: Sequence[str | None], vectorizer: Any, source: str
              ) -> drift.Reference:
    """The drift reference of these comments, labelled by the bundle being built.
    question_types: their NHS question types, or their context values (a context column)."""
    predictor = InstantPredictor(Path(bundle_dir), manifest)
    known = known_terms(vectorizer)
    n_max = int(vectorizer.ngram_range[1])
    obs = drift.observe(predictor, list(texts), list(question_types), known, n_max)
    return drift.reference_from(obs, sorted(known), n_max, source)


def write_reference(bundle_dir: Path, manifest: Manifest, texts: Sequence[str],
                    question_types: Sequence[str | None], vectorizer: Any,
                    source: str = "build test split") -> str:
    """Write `drift_reference.json` into the bundle folder; returns its name (for manifest.files)."""
    ref = reference(bundle_dir, manifest, texts, question_types, vectorizer, source)
    (Path(bundle_dir) / drift.REFERENCE_FILE).write_text(ref.model_dump_json(), encoding="utf-8")
    return drift.REFERENCE_FILE
