"""POST /v1/predict: labels, sentiment and (on request) per-label probabilities."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from twolane.api.deps import ModelDep, SettingsDep, require_api_key, run_model
from twolane.api.errors import ERROR_RESPONSES
from twolane.api.gate import StrictRoute
from twolane.api.limits import check_items
from twolane.contract import PredictRequest, PredictResponse

router = APIRouter(tags=["predict"], dependencies=[Depends(require_api_key)], route_class=StrictRoute,
                   responses=ERROR_RESPONSES)


@router.post("/v1/predict", response_model=PredictResponse)
async def predict(body: PredictRequest, model: ModelDep, settings: SettingsDep) -> PredictResponse:
    """Label comments with the instant model: 32 themes (multilabel) and 5-class sentiment.

    Empty or placeholder answers ('n/a', 'Did not answer', emoji only) get the single label
    'Labelling not possible' and no sentiment.
    """
    limits = settings.api
    check_items([i.comment_id for i in body.items], [i.comment_text for i in body.items],
                limits.max_items, limits.max_text_chars)
    predictor = model.get()
    results = await run_model(len(body.items), predictor.predict, body.items,
                              include_probabilities=body.include_probabilities)
    return PredictResponse(model_version=predictor.version, results=results)
