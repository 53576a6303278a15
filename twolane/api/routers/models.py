"""GET /v1/models: what the served bundle is (version, labels, thresholds, test metrics)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from twolane.api.deps import ModelDep, SettingsDep, require_api_key
from twolane.api.errors import ERROR_RESPONSES
from twolane.api.gate import StrictRoute
from twolane.bundle import BundleError, Manifest
from twolane.rules import QUESTION_TYPES, sentiment_names
from twolane.wiring import batch_taxonomy

router = APIRouter(tags=["models"], dependencies=[Depends(require_api_key)], route_class=StrictRoute,
                   responses=ERROR_RESPONSES)


def thresholds_of(manifest: Manifest) -> dict[str, float]:
    """Per-label decision thresholds of the model that serves /v1/predict (label -> threshold);
    {} when that model decides by no thresholds."""
    try:
        rule = manifest.rule_of(manifest.default_model)
    except BundleError:
        return {}
    return dict(zip(manifest.labels, rule.thresholds, strict=True))


@router.get("/v1/models")
async def models(model: ModelDep, settings: SettingsDep) -> dict[str, Any]:
    """The served instant bundle: version, taxonomy (labels, sentiment classes and names,
    single- or multi-label, the unlabellable label), what each item may carry (`question_types`
    for NHS bundles, `context` for a bundle with its own context column), the training file's
    `columns`, `batch_lane_refuses` (a reason, or null), thresholds and test metrics."""
    m = model.get().manifest
    return {
        "lane": m.lane,
        "version": m.version,
        "created_at": m.created_at,
        "default_model": m.default_model,
        "models": {name: {"kind": e.kind, "task": e.task} for name, e in m.models.items()},
        "labels": list(m.labels),
        "sentiment_classes": list(m.sentiment_classes),
        "sentiment_names": sentiment_names(m.sentiment_classes, m.taxonomy.sentiment_names),
        "multilabel": m.taxonomy.multilabel,
        "unlabellable": m.taxonomy.unlabellable,
        # a bundle with its own context column: what clients send as each item's `context`
        "context": ({"column": m.data_spec.context_column, "values": m.data_spec.context_values}
                    if m.serving.context == "column" and m.data_spec is not None else None),
        # an NHS bundle reads each item's question_type (any spelling, twolane.rules)
        "question_types": list(QUESTION_TYPES) if m.is_nhs else None,
        # the training file's id and text columns (the web page's first column guesses)
        "columns": ({"id": m.data_spec.id_column, "text": m.data_spec.text_column}
                    if m.data_spec is not None else None),
        # why POST /v1/jobs (batch lane, cascade) refuses this model's comments; None: it does not
        "batch_lane_refuses": m.batch_lane_refuses(batch_taxonomy(settings)),
        "thresholds": thresholds_of(m),
        "metrics": m.metrics,
        "data": m.data,
    }
