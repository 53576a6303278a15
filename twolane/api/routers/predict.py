"""POST /v1/predict: labels, sentiment and (on request) per-label probabilities."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from twolane.api.deps import get_app_settings, predictor_of, require_api_key, run_model
from twolane.api.limits import check_items
from twolane.contract import PredictRequest, PredictResponse
from twolane.settings import Settings

router = APIRouter(tags=["predict"], dependencies=[Depends(require_api_key)])


@router.post("/v1/predict", response_model=PredictResponse)
async def predict(
    body: PredictRequest,
    request: Request,
    settings: Settings = Depends(get_app_settings),
) -> PredictResponse:
    """Label comments with the instant model: 32 themes (multilabel) and 5-class sentiment.

    Empty or placeholder answers ('n/a', 'Did not answer', emoji only) get the single label
    'Labelling not possible' and no sentiment.
    """
    ids = [i.comment_id for i in body.items]
    texts = [i.comment_text for i in body.items]
    check_items(ids, texts, settings)
    predictor = predictor_of(request)
    qtypes = [i.question_type for i in body.items]
    results = await run_model(
        len(ids),
        predictor.predict,
        texts,
        question_types=qtypes if any(q is not None for q in qtypes) else None,
        include_probabilities=body.include_probabilities,
        ids=ids,
    )
    return PredictResponse(model_version=predictor.version, results=results)
