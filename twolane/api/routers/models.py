"""GET /v1/models: what the served bundle is (version, labels, thresholds, test metrics)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from twolane.api.deps import ModelDep, require_api_key
from twolane.api.errors import ERROR_RESPONSES
from twolane.api.gate import StrictRoute
from twolane.bundle import BundleError, Manifest
from twolane.rules import sentiment_names

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
async def models(model: ModelDep) -> dict[str, Any]:
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
                    if m.serving.use_context and m.data_spec is not None else None),
        "thresholds": thresholds_of(m),
        "metrics": m.metrics,
        "data": m.data,
    }
