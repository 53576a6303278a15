"""The API's door onto the intake (`twolane.intake`), shared by every route that takes jobs
(POST /v1/jobs, the slow API): one `Intake` per request over the app's model and jobs service,
its refusals said in HTTP (409 naming the lane to ask for instead; 503 when the endpoint
refused the invocation)."""

from __future__ import annotations

from collections.abc import Sequence

from twolane.api.deps import JobsHolder, PredictorHolder
from twolane.api.errors import RequestRejected
from twolane.contract import CommentIn, JobTarget
from twolane.intake import Intake, IntakeRefused, Origin, Route, Taken
from twolane.jobs.service import JobRejected
from twolane.settings import Settings

NO_CASCADE = ('"lane": "auto" needs the batch bundle\'s cascade rule, and this service has none: '
              'rebuild the batch bundle (or run `twolane build cascade`), or send "lane": "batch"')


def take(model: PredictorHolder, jobs: JobsHolder, settings: Settings, items: Sequence[CommentIn],
         route: Route, target: JobTarget, origin: Origin) -> Taken:
    """`Intake.take` for an HTTP request (blocking: call it off the event loop). Raises
    RequestRejected: 409 when the lane cannot take these comments here (the batch lane's
    taxonomy, no cascade rule), 503 when the batch lane refused the job (or is not configured,
    `JobsHolder.get`; the model is not available, `PredictorHolder.get`)."""
    try:
        return Intake(settings, model, jobs.get).take(items, route, target, origin)
    except IntakeRefused as exc:
        if exc.why == "batch_waiting":  # the batch lane cannot take jobs yet: 503, as plain jobs
            raise RequestRejected(503, exc.reason) from exc
        raise RequestRejected(409, NO_CASCADE if exc.why == "no_cascade" else exc.reason) from exc
    except JobRejected as exc:  # the endpoint refused the invocation itself
        raise RequestRejected(503, exc.reason) from exc
