"""Predictors: the one interface both lanes' models serve through.

`Predictor.predict(items)` takes contract objects (`CommentIn`) and returns one `Prediction`
per item, in input order, by the rule book (twolane.rules). The API, the drop folder, the
batch container and the recommender see only this interface; tests may pass a small fake.

- `twolane.predictors.instant.InstantPredictor`: TF-IDF models as ONNX (onnxruntime + numpy).
- `twolane.predictors.batch.BatchPredictor`: the transformer (ONNX + tokenizers), ensembled
  with the instant lane.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from twolane.bundle import Manifest
from twolane.contract import CommentIn, JobTarget, Prediction


@runtime_checkable
class Predictor(Protocol):
    """Labels and sentiment for comments, loaded once per process."""

    @property
    def version(self) -> str:
        """The bundle version that answers (shown to clients as `model_version`)."""
        ...

    @property
    def manifest(self) -> Manifest:
        """The bundle's manifest (labels, thresholds, metrics, data provenance)."""
        ...

    @property
    def labels(self) -> list[str]:
        """The label order of `probabilities`, "Labelling not possible" included."""
        ...

    def predict(self, items: Sequence[CommentIn], *, target: JobTarget = "ms",
                include_probabilities: bool = False) -> list[Prediction]:
        """One Prediction per item, in input order.

        target: "m" labels only (sentiment None), "s" sentiment only (labels []), "ms" both.
        """
        ...
