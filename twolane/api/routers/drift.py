"""POST /v1/drift: do these comments look like the instant model's training data?

Thin: the work is twolane.drift (signals, tests, the bundle's reference). The web page sends
a file's comments (a random sample up to the item limit) after labelling and shows a warning
when the answer says `drifted`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from twolane.api.deps import ModelDep, SettingsDep, require_api_key, run_model
from twolane.api.errors import ERROR_RESPONSES, Problem, RequestRejected
from twolane.api.gate import StrictRoute
from twolane.contract import check_items
from twolane.drift import DriftReport, DriftRequest, report_for

router = APIRouter(tags=["predict"], dependencies=[Depends(require_api_key)], route_class=StrictRoute,
                   responses=ERROR_RESPONSES)
NO_REFERENCE = "drift checks are not available: the instant model has no drift reference"


@router.post("/v1/drift", response_model=DriftReport,
             responses={501: {"model": Problem, "description": NO_REFERENCE}})
async def check_drift(body: DriftRequest, model: ModelDep, settings: SettingsDep) -> Response:
    """Compare comments with the instant model's training data, signal by signal (share of
    known n-grams, length, question types, predicted labels and sentiment, confidence):
    `{"drifted": bool, "signals": {name: {psi, p_value, p_adjusted, drifted, ...}}}`. Send 200
    or more comments of a file for a fair answer; fewer than 30 test nothing."""
    limits = settings.api
    check_items(body.items, max_items=limits.max_items, max_text_chars=limits.max_text_chars)
    predictor = model.get()

    def answer() -> bytes:
        report = report_for(predictor, body.items)
        if report is None:
            raise RequestRejected(501, NO_REFERENCE)
        return report.model_dump_json().encode()

    return Response(await run_model(len(body.items), answer), media_type="application/json")
