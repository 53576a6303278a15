"""The cascade's instant part, shared by every entry point that takes `"lane": "auto"` jobs
(POST /v1/jobs, the slow API's `&lane=auto`): the API's instant predictor labels every comment,
exactly as /v1/predict does, and the batch bundle's cascade rule (`twolane.wiring.cascade_rule`)
picks the comments to escalate (twolane.predictors.cascade)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from twolane.api.deps import PredictorHolder
from twolane.api.errors import RequestRejected
from twolane.contract import CommentIn, JobTarget
from twolane.jobs.service import Kept
from twolane.predictors.cascade import split_lanes
from twolane.predictors.instant import InstantPredictor
from twolane.settings import Settings
from twolane.wiring import cascade_rule

log = logging.getLogger(__name__)

NO_CASCADE = ('"lane": "auto" needs the batch bundle\'s cascade rule, and this service has none: '
              'rebuild the batch bundle (or run `twolane build cascade`), or send "lane": "batch"')


def cascade_split(model: PredictorHolder, settings: Settings, items: Sequence[CommentIn], target: JobTarget
                  ) -> tuple[Kept, list[int]]:
    """A `"lane": "auto"` job's instant part: the API's instant predictor labels every comment
    (exactly as /v1/predict); the cascade rule picks those to escalate. Returns the kept results
    and the escalated positions; 409 when there is no rule or the model is not an instant one."""
    rule = cascade_rule(settings)
    predictor = model.get()
    if rule is None or not isinstance(predictor, InstantPredictor):
        raise RequestRejected(409, NO_CASCADE)
    if predictor.version != rule.instant_version:
        log.warning("cascade rule learned on instant bundle %s; serving %s", rule.instant_version,
                    predictor.version)
    preds, esc = split_lanes(predictor, rule, items, target)
    escalated = [int(i) for i in np.flatnonzero(esc)]
    kept = [p.model_dump(mode="json") for p, e in zip(preds, esc.tolist(), strict=True) if not e]
    return Kept(results=kept, escalated=escalated, instant_version=predictor.version), escalated
