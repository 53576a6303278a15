"""Batch-lane jobs: POST /v1/jobs (classify) and POST /v1/summaries (LLM) -> 202 + results URL;
GET /v1/jobs/{id} -> 202 while pending, 200 with the results exactly once, then 410.

A failed job answers 200 once with its JobState (status "failed" and the reason), then 410 like
a collected one: the client learns the outcome exactly once either way. The work is done by
`twolane.jobs.service.JobService`; this module only speaks HTTP.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from twolane import drift
from twolane.api.cascade import cascade_split
from twolane.api.deps import (
    JobsDep,
    ModelDep,
    OwnerDep,
    SettingsDep,
    require_api_key,
    require_batch_enabled,
    require_batch_lane_for,
    require_summaries_enabled,
    run_model,
)
from twolane.api.errors import ERROR_RESPONSES, Problem, RequestRejected, problem
from twolane.api.gate import StrictRoute
from twolane.contract import CommentIn, JobAccepted, JobRequest, JobState, check_items
from twolane.jobs.kinds import SUMMARY, Unreadable, kind_of
from twolane.jobs.record import JobGone, JobKind, JobNotFound, JobRecord
from twolane.jobs.service import JobRejected, Kept
from twolane.settings import Settings
from twolane.summaries.plan import UnknownTheme, llm_name, plan_summaries
from twolane.summaries.schemas import SummaryRequest

router = APIRouter(tags=["jobs"], dependencies=[Depends(require_api_key)], route_class=StrictRoute,
                   responses=ERROR_RESPONSES)
RETRY_AFTER_S = "2"


def _submit(jobs: JobsDep, settings: Settings, items: list[CommentIn], kind: JobKind,
            target: str, body: dict[str, Any], owner: str | None, kept: Kept | None = None) -> JSONResponse:
    limits = settings.api
    check_items(items, max_items=limits.max_job_items, max_text_chars=limits.max_text_chars)
    try:
        if kept is not None:
            record = jobs.get().submit_auto(target, len(items), body, kept, owner=owner)
        else:
            record = jobs.get().submit(kind, target, len(items), body, owner=owner)
    except JobRejected as exc:
        raise RequestRejected(503, exc.reason) from exc
    url = f"/v1/jobs/{record.job_id}"
    accepted = JobAccepted(job_id=record.job_id, status="pending", results_url=url)
    return JSONResponse(accepted.model_dump(), status_code=202, headers={"Location": url})


@router.post("/v1/jobs", status_code=202, response_model=JobAccepted,
             dependencies=[Depends(require_batch_enabled)],
             responses={503: {"model": Problem, "description": "the batch model is not available "
                                                               "yet, or no batch lane is deployed"}})
def submit_job(body: JobRequest, jobs: JobsDep, settings: SettingsDep, owner: OwnerDep,
               model: ModelDep) -> JSONResponse:
    """Queue comments for the transformer (ensembled with the instant lane). `target`: "m"
    themes, "s" sentiment, "ms" both. `lane` "auto": the cascade: the instant lane keeps the
    comments it is sure of (each gets exactly what /v1/predict gives it) and only the others go
    to the transformer; every result then says which `lane` answered. Poll the `results_url`;
    results are handed out once."""
    require_batch_lane_for(model.loaded, settings)  # the instant model, when this service has one
    sent = body.model_dump(exclude={"lane"})  # what the batch host reads (JobRequest, lane "batch")
    kept = None
    if body.lane == "auto":
        check_items(body.items, max_items=settings.api.max_job_items,
                    max_text_chars=settings.api.max_text_chars)
        kept, escalated = cascade_split(model, settings, body.items, body.target)
        sent["items"] = [sent["items"][i] for i in escalated]
    accepted = _submit(jobs, settings, body.items, "classify", body.target, sent, owner, kept)
    if model.loaded is not None:  # the job's drift metrics (twolane.drift), as the drop folder's
        drift.publish(drift.report_for(model.loaded, body.items),
                      emit=settings.lambda_function_name is not None)
    return accepted


@router.post("/v1/summaries", status_code=202, response_model=JobAccepted,
             dependencies=[Depends(require_summaries_enabled), Depends(require_batch_enabled)],
             responses={501: {"model": Problem, "description": "summaries are not enabled in "
                                                               "this deployment"},
                        503: {"model": Problem,
                              "description": "no text-generation model is configured"}})
async def submit_summary(body: SummaryRequest, jobs: JobsDep, model: ModelDep,
                         settings: SettingsDep, owner: OwnerDep) -> JSONResponse:
    """Grounded theme summaries: the instant lane finds each theme's comments (`comments`) and
    the negative ones (`negative`); the LLM writes a `summary` of a representative sample of
    them (identifiers redacted first); `quotes` are spans of one comment of the theme, checked
    word for word (a quote that fails is dropped). Same lifecycle as /v1/jobs: 202 +
    `results_url`; the 200 is a SummaryResults. `themes` (optional) names the themes to report."""
    limits = settings.api
    check_items(body.items, max_items=limits.max_job_items, max_text_chars=limits.max_text_chars)
    service = jobs.get()
    reason = service.invoker.unavailable_reason("summary")
    if reason:  # before classifying 50,000 comments for nothing
        raise RequestRejected(503, reason)
    predictor = model.get()
    try:
        plan, requests = await run_model(len(body.items), plan_summaries, body.items, predictor,
                                         llm_name(settings.generation_model),
                                         themes=body.themes, quotes_per_theme=body.quotes_per_theme)
    except UnknownTheme as exc:
        raise RequestRejected(422, f"themes: {len(exc.themes)} theme(s) the model does not know; "
                                   "GET /v1/models lists the labels") from exc
    try:
        if requests:
            record = service.submit_parts("summary", None, len(body.items), plan.model_dump(),
                                          requests, owner=owner, units=SUMMARY.units(plan))
        else:  # no theme has a comment: nothing for the LLM to write
            record = service.submit_done("summary", None, {"plan": plan.model_dump(),
                                                            "completions": []},
                                         len(body.items), owner=owner)
    except JobRejected as exc:
        raise RequestRejected(503, exc.reason) from exc
    url = f"/v1/jobs/{record.job_id}"
    accepted = JobAccepted(job_id=record.job_id, status="pending", results_url=url)
    return JSONResponse(accepted.model_dump(), status_code=202, headers={"Location": url})


def _state(r: JobRecord) -> JobState:
    return JobState(job_id=r.job_id, status=r.status, items=r.items,
                    progress=r.shard_done(),
                    error=r.error, created_at=r.created_at, updated_at=r.updated_at)


@router.get("/v1/jobs/{job_id}", dependencies=[Depends(require_batch_enabled)],
            responses={200: {"description": "JobResults / SummaryResults (once), or a failed "
                                            "JobState (once)"},
                       202: {"model": JobState, "description": "still pending"},
                       404: {"model": Problem, "description": "no such job (or another key's)"},
                       410: {"model": Problem,
                             "description": "results were handed out already and deleted"}})
def get_job(job_id: str, jobs: JobsDep, owner: OwnerDep) -> JSONResponse:
    """202 with the job's state while it runs; 200 with its results exactly once (they are then
    deleted); 410 after that; 404 for an unknown id, or a job another API key made."""
    try:
        got = jobs.get().collect(job_id, owner=owner)
    except JobNotFound:
        return problem(404, "no such job")
    except JobGone:
        return problem(410, "the results of this job were handed out already and have been deleted")
    rec = got.record
    if got.payload is None:
        status = 202 if rec.status in ("pending", "running") else 200
        headers = {"Retry-After": RETRY_AFTER_S} if status == 202 else None
        return JSONResponse(_state(rec).model_dump(), status_code=status, headers=headers)
    try:
        out = kind_of(rec).answer(rec, got.payload)
    except Unreadable as exc:
        failed = _state(rec).model_copy(update={"status": "failed", "error": exc.reason})
        return JSONResponse(failed.model_dump(), status_code=200)
    return JSONResponse(out.model_dump(mode="json"), status_code=200)
