"""Batch-lane jobs: POST /v1/jobs (classify) and POST /v1/summaries (LLM) -> 202 + results URL;
GET /v1/jobs/{id} -> 202 while pending, 200 with the results exactly once, then 410.

A failed job answers 200 once with its JobState (status "failed" and the reason), then 410 like
a collected one: the client learns the outcome exactly once either way. The work is done by
`twolane.jobs.service.JobService`; this module only speaks HTTP.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from twolane.api.deps import (
    JobsDep,
    ModelDep,
    OwnerDep,
    SettingsDep,
    require_api_key,
    require_batch_enabled,
    require_summaries_enabled,
    run_model,
)
from twolane.api.errors import ERROR_RESPONSES, Problem, RequestRejected, problem
from twolane.api.gate import StrictRoute
from twolane.api.intake import take
from twolane.contract import JobAccepted, JobRequest, JobState, check_items
from twolane.intake import Origin
from twolane.jobs.kinds import SUMMARY, Unreadable, kind_of
from twolane.jobs.record import JobGone, JobNotFound, JobRecord
from twolane.jobs.service import JobRejected
from twolane.summaries.plan import LLM_OFF, UnknownTheme, judge_with, llm_name, plan_summaries
from twolane.summaries.schemas import SummaryRequest
from twolane.wiring import sentence_encoder

router = APIRouter(tags=["jobs"], dependencies=[Depends(require_api_key)], route_class=StrictRoute,
                   responses=ERROR_RESPONSES)
RETRY_AFTER_S = "2"


def _accepted(record: JobRecord) -> JSONResponse:
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
    check_items(body.items, max_items=settings.api.max_job_items, max_text_chars=settings.api.max_text_chars)
    taken = take(model, jobs, settings, body.items, body.lane, body.target, Origin.api(owner))
    assert taken.record is not None  # an API origin always makes a job
    return _accepted(taken.record)


@router.post("/v1/summaries", status_code=202, response_model=JobAccepted,
             dependencies=[Depends(require_summaries_enabled), Depends(require_batch_enabled)],
             responses={501: {"model": Problem, "description": "summaries are not enabled in "
                                                               "this deployment"},
                        503: {"model": Problem,
                              "description": "no text-generation model is configured"}})
async def submit_summary(body: SummaryRequest, jobs: JobsDep, model: ModelDep,
                         settings: SettingsDep, owner: OwnerDep) -> JSONResponse:
    """Theme summaries a report can print: the instant lane finds each theme's comments
    (`comments`) and the negative ones (`negative`); its `points` (groups of comments that say
    the same thing, each with a count and its most central comment as the quote, identifiers
    redacted) are found without any LLM; the LLM writes a `summary` from the points and counts,
    printed only when it passes the checks, else `withheld` says why. Same lifecycle as
    /v1/jobs: 202 + `results_url`; the 200 is a SummaryResults. `themes` (optional) names the
    themes to report."""
    limits = settings.api
    check_items(body.items, max_items=limits.max_job_items, max_text_chars=limits.max_text_chars)
    service = jobs.get()
    llm = llm_name(settings.generation_model)
    reason = None if llm == LLM_OFF else service.invoker.unavailable_reason("summary")
    if reason:  # before classifying 50,000 comments for nothing
        raise RequestRejected(503, reason)
    predictor = model.get()
    try:
        plan, requests = await run_model(len(body.items), plan_summaries, body.items, predictor,
                                         llm, themes=body.themes,
                                         points_per_theme=body.points_per_theme,
                                         encoder=sentence_encoder(settings))
    except UnknownTheme as exc:
        raise RequestRejected(422, f"themes: {len(exc.themes)} theme(s) the model does not know; "
                                   "GET /v1/models lists the labels") from exc
    try:
        if requests:
            record = service.submit_parts("summary", None, len(body.items), plan.model_dump(),
                                          requests, owner=owner, units=SUMMARY.units(plan))
        else:  # the LLM switched off, or no theme has a comment: nothing for the LLM to write
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
def get_job(job_id: str, jobs: JobsDep, owner: OwnerDep, model: ModelDep) -> JSONResponse:
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
    tone = judge_with(model.loaded) if model.loaded is not None else None  # summaries' checks
    try:
        out = kind_of(rec).answer(rec, got.payload, tone=tone)
    except Unreadable as exc:
        failed = _state(rec).model_copy(update={"status": "failed", "error": exc.reason})
        return JSONResponse(failed.model_dump(), status_code=200)
    return JSONResponse(out.model_dump(mode="json"), status_code=200)
