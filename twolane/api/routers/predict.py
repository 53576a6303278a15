"""POST /v1/predict: labels, sentiment and (on request) per-label probabilities."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from twolane.api.deps import ModelDep, SettingsDep, require_api_key, run_model
from twolane.api.errors import ERROR_RESPONSES
from twolane.api.gate import StrictRoute
from twolane.contract import PredictRequest, PredictResponse, check_items

router = APIRouter(tags=["predict"], dependencies=[Depends(require_api_key)], route_class=StrictRoute,
                   responses=ERROR_RESPONSES)


@router.post("/v1/predict", response_model=PredictResponse)
async def predict(body: PredictRequest, model: ModelDep, settings: SettingsDep) -> Response:
    """Label comments with the instant model: 32 themes (multilabel) and 5-class sentiment.

    Empty or placeholder answers ('n/a', 'Did not answer', emoji only) get the single label
    'Labelling not possible' and no sentiment.
    """
    limits = settings.api
    check_items(body.items, max_items=limits.max_items, max_text_chars=limits.max_text_chars)
    predictor = model.get()

    def answer() -> bytes:  # predict and serialise together: off the event loop when large
        results = predictor.predict(body.items, include_probabilities=body.include_probabilities)
        return PredictResponse(model_version=predictor.version, results=results).model_dump_json().encode()

    # A Response skips FastAPI's re-validation of 2,000 results on the event loop (response_model
    # still documents the shape), so /health stays quick during a burst of large requests.
    return Response(await run_model(len(body.items), answer), media_type="application/json")
