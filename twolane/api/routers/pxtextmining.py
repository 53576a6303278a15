"""POST /predict_multilabel: the pxtextmining quick API, same request and response shapes."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Request

from twolane.api.deps import get_app_settings, predictor_of, require_api_key, run_model
from twolane.api.limits import check_items
from twolane.contract import PxItemIn, PxItemOut
from twolane.settings import Settings
from twolane.text import LABELLING_NOT_POSSIBLE

router = APIRouter(tags=["pxtextmining"], dependencies=[Depends(require_api_key)])

EXAMPLE = [
    {"comment_id": "1", "comment_text": "Nurses were friendly. Parking was awful.",
     "question_type": "nonspecific"},
    {"comment_id": "2", "comment_text": "Food was cold", "question_type": "could_improve"},
]


@router.post("/predict_multilabel", response_model=list[PxItemOut])
async def predict_multilabel(
    request: Request,
    items: list[PxItemIn] = Body(..., examples=[EXAMPLE]),
    settings: Settings = Depends(get_app_settings),
) -> list[PxItemOut]:
    """A JSON list of {comment_id, comment_text, question_type} in; the same list with `labels` out.

    `question_type` is one of what_good, could_improve, nonspecific. A comment with no label
    gets ['Labelling not possible'], as pxtextmining does.
    """
    ids = [i.comment_id for i in items]
    texts = [i.comment_text for i in items]
    check_items(ids, texts, settings)
    predictor = predictor_of(request)
    preds = await run_model(len(ids), predictor.predict, texts,
                            question_types=[i.question_type for i in items], ids=ids)
    return [
        PxItemOut(comment_id=i.comment_id, comment_text=i.comment_text,
                  labels=p.labels or [LABELLING_NOT_POSSIBLE])
        for i, p in zip(items, preds)
    ]
