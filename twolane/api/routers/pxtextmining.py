"""POST /predict_multilabel: the pxtextmining quick API, same request and response shapes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends

from twolane.api.deps import ModelDep, SettingsDep, require_api_key, run_model
from twolane.api.errors import ERROR_RESPONSES
from twolane.api.gate import StrictRoute
from twolane.api.limits import check_items
from twolane.contract import CommentIn, PxItemIn, PxItemOut
from twolane.rules import LABELLING_NOT_POSSIBLE

router = APIRouter(tags=["pxtextmining"], dependencies=[Depends(require_api_key)], route_class=StrictRoute,
                   responses=ERROR_RESPONSES)

EXAMPLE = [
    {"comment_id": "1", "comment_text": "Nurses were friendly. Parking was awful.",
     "question_type": "nonspecific"},
    {"comment_id": "2", "comment_text": "Food was cold", "question_type": "could_improve"},
]


@router.post("/predict_multilabel", response_model=list[PxItemOut])
async def predict_multilabel(
    items: Annotated[list[PxItemIn], Body(examples=[EXAMPLE])],
    model: ModelDep,
    settings: SettingsDep,
) -> list[PxItemOut]:
    """A JSON list of {comment_id, comment_text, question_type} in; the same list with `labels` out.

    `question_type` is one of what_good, could_improve, nonspecific. A comment with no label
    gets ['Labelling not possible'], as pxtextmining does.
    """
    limits = settings.api
    check_items([i.comment_id for i in items], [i.comment_text for i in items],
                limits.max_items, limits.max_text_chars)
    predictor = model.get()
    comments = [CommentIn(comment_id=i.comment_id, comment_text=i.comment_text,
                          question_type=i.question_type) for i in items]
    preds = await run_model(len(comments), predictor.predict, comments, target="m")
    return [
        PxItemOut(comment_id=i.comment_id, comment_text=i.comment_text,
                  labels=p.labels or [LABELLING_NOT_POSSIBLE])
        for i, p in zip(items, preds, strict=True)
    ]
