"""Batch-lane jobs: POST /v1/jobs (classify) and POST /v1/summaries (LLM) -> 202 + results URL;
GET /v1/jobs/{id} -> 202 while pending, 200 with the results exactly once, then 410.

A failed job answers 200 once with its JobState (status "failed" and the reason), then 410 like
a collected one: the client learns the outcome exactly once either way.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from twolane.api.deps import get_app_settings, require_api_key
from twolane.api.errors import RequestRejected
from twolane.api.limits import check_items
from twolane.contract import CommentIn, JobAccepted, JobRequest, JobResults, JobState
from twolane.jobs.invoker import Invoker, endpoint_for, invoker_from_settings
from twolane.jobs.schemas import SummaryRequest, SummaryResults
from twolane.jobs.store import (
    JobGone,
    JobKind,
    JobNotFound,
    JobRecord,
    JobStore,
    S3JobStore,
    now_iso,
)
from twolane.settings import Settings

router = APIRouter(tags=["jobs"], dependencies=[Depends(require_api_key)])
RETRY_AFTER_S = "2"


def job_backend(request: Request) -> tuple[JobStore, Invoker]:
    """The app's job store and invoker, made from its settings on first use (tests may set
    `app.state.job_store` / `app.state.job_invoker` beforehand)."""
    state = request.app.state
    if getattr(state, "job_store", None) is None:
        from twolane.aws import client

        state.job_store = S3JobStore(client("s3"), state.settings.bucket)
    if getattr(state, "job_invoker", None) is None:
        state.job_invoker = invoker_from_settings(state.settings)
    return state.job_store, state.job_invoker


def _submit(request: Request, settings: Settings, items: list[CommentIn], kind: JobKind,
            target: str, body: dict[str, Any]) -> JSONResponse:
    check_items([i.comment_id for i in items], [i.comment_text for i in items],
                settings.model_copy(update={"max_items": settings.max_job_items}))
    store, invoker = job_backend(request)
    reason = invoker.unavailable_reason(kind)
    if reason:
        raise RequestRejected(503, reason)
    job_id = uuid.uuid4().hex
    now = now_iso()
    record = JobRecord(job_id=job_id, kind=kind, target=target, items=len(items),
                       input_location=store.input_location(job_id),
                       endpoint=endpoint_for(settings, kind), created_at=now, updated_at=now)
    store.create(record, json.dumps(body).encode("utf-8"))
    try:
        inv = invoker.invoke(input_location=record.input_location, inference_id=job_id, kind=kind)
    except Exception as exc:
        store.mark_failed(job_id, f"could not start the job: {exc}")
        raise RequestRejected(503, f"the batch lane could not take the job now ({exc}); "
                                   "try again later") from exc

    def locations(r: JobRecord) -> JobRecord | None:
        update = {k: v for k, v in (("output_location", inv.output_location),
                                    ("failure_location", inv.failure_location))
                  if v and getattr(r, k) is None}
        return r.model_copy(update=update) if update else None

    store.update(job_id, locations)
    url = f"/v1/jobs/{job_id}"
    accepted = JobAccepted(job_id=job_id, status="pending", results_url=url)
    return JSONResponse(accepted.model_dump(), status_code=202, headers={"Location": url})


@router.post("/v1/jobs", status_code=202, response_model=JobAccepted,
             responses={422: {"description": "bad items, with reasons"},
                        503: {"description": "the batch model is not available yet"}})
def submit_job(body: JobRequest, request: Request,
               settings: Settings = Depends(get_app_settings)) -> JSONResponse:  # noqa: B008
    """Queue comments for the transformer (ensembled with the instant lane). `target`: "m"
    themes, "s" sentiment, "ms" both. Poll the `results_url`; results are handed out once."""
    return _submit(request, settings, body.items, "classify", body.target, body.model_dump())


@router.post("/v1/summaries", status_code=202, response_model=JobAccepted,
             responses={422: {"description": "bad items, with reasons"},
                        503: {"description": "no text-generation model is configured"}})
def submit_summary(body: SummaryRequest, request: Request,
                   settings: Settings = Depends(get_app_settings)) -> JSONResponse:  # noqa: B008
    """Ask the text-generation model one question of many comments (e.g. "Summarise these
    comments about parking in three bullet points"). Same lifecycle as /v1/jobs."""
    payload = {**body.model_dump(), "target": "summary"}
    return _submit(request, settings, body.items, "summary", "summary", payload)


def _state(r: JobRecord) -> JobState:
    return JobState(job_id=r.job_id, status=r.status, items=r.items,
                    progress=1.0 if r.status in ("succeeded", "collected") else 0.0,
                    error=r.error, created_at=r.created_at, updated_at=r.updated_at)


@router.get("/v1/jobs/{job_id}",
            responses={200: {"description": "JobResults / SummaryResults (once), or a failed "
                                            "JobState (once)"},
                       202: {"model": JobState, "description": "still pending"},
                       404: {"description": "no such job"},
                       410: {"description": "results were handed out already and deleted"}})
def get_job(job_id: str, request: Request) -> JSONResponse:
    """202 with the job's state while it runs; 200 with its results exactly once (they are then
    deleted); 410 after that; 404 for an unknown id."""
    store, _ = job_backend(request)
    try:
        got = store.collect(job_id)
    except JobNotFound:
        return JSONResponse({"detail": f"no job {job_id!r}"}, status_code=404)
    except JobGone:
        return JSONResponse({"detail": f"the results of job {job_id} were handed out already "
                                       "and have been deleted"}, status_code=410)
    rec = got.record
    if got.payload is None:
        status = 202 if rec.status in ("pending", "running") else 200
        headers = {"Retry-After": RETRY_AFTER_S} if status == 202 else None
        return JSONResponse(_state(rec).model_dump(), status_code=status, headers=headers)
    p = got.payload
    if rec.kind == "summary":
        out: Any = SummaryResults(job_id=job_id, model_version=p["model_version"],
                                  items=p["items"], items_used=p["items_used"], summary=p["summary"])
    else:
        out = JobResults(job_id=job_id, model_version=p["model_version"], target=p["target"],
                         results=p["results"])
    return JSONResponse(out.model_dump(mode="json"), status_code=200)
