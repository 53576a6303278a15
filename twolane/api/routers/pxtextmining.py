"""pxtextmining's quick API: POST /predict_multilabel (its hello at GET / is in page.py), request and
response exactly as its clients send and read them (docs/pxtextmining.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends

from twolane.api.deps import ModelDep, SettingsDep, require_api_key, require_nhs_bundle, run_model
from twolane.api.errors import ERROR_RESPONSES
from twolane.api.gate import StrictRoute
from twolane.contract import PxItemIn, PxItemOut, check_items
from twolane.rules import LABELLING_NOT_POSSIBLE

router = APIRouter(tags=["pxtextmining"], dependencies=[Depends(require_api_key)], route_class=StrictRoute,
                   responses=ERROR_RESPONSES)
HELLO = {"test": "Hello"}  # what pxtextmining's API answers at / (served by routers/page.py)

EXAMPLE = [
    {"comment_id": "1", "comment_text": "Nurses were friendly. Parking was awful."},
    {"comment_id": "2", "comment_text": "Food was cold", "question_type": "could_improve"},
    {"comment_id": "3", "comment_text": ""},
]


@router.post("/predict_multilabel", response_model=list[PxItemOut])
async def predict_multilabel(
    items: Annotated[list[PxItemIn], Body(examples=[EXAMPLE], json_schema_extra={"minItems": 1})],
    model: ModelDep,
    settings: SettingsDep,
) -> list[PxItemOut]:
    """A JSON list of {comment_id, comment_text} in (pxtextmining's current schema), or of
    {comment_id, comment_text, question_type} (its earlier one); `[{comment_id, labels}]` out,
    in input order.

    As pxtextmining: extra keys are ignored, numbers are read as strings (1 -> "1"). A missing,
    null or blank text, or a placeholder ("n/a"), gets ["Labelling not possible"]. Any
    question type spelling is read (what_good, could_improve, nonspecific, "Nonspecific", the
    FFT question wording); an unknown one counts as nonspecific. Duplicate ids: 422.
    """
    limits = settings.api
    predictor = model.get()
    require_nhs_bundle(predictor)  # its shapes name the NHS taxonomy (docs/own_data.md)
    check_items(items, max_items=limits.max_items, max_text_chars=limits.max_text_chars)
    comments = [i.comment() for i in items]
    preds = await run_model(len(comments), predictor.predict, comments, target="m")
    return [PxItemOut(comment_id=i.comment_id, labels=p.labels or [LABELLING_NOT_POSSIBLE])
            for i, p in zip(items, preds, strict=True)]
