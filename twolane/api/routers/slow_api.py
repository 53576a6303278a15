"""pxtextmining's slow API as its clients call it (the Azure Function in front of its container):

    POST /api/StartContainerInstance?code=KEY&target=m|s|ms   body: a JSON list of comments
        -> 202, body: the absolute results URL (plain text; this URL with the path swapped,
           query string kept but for `code`, which becomes the job's results token)
    GET  /api/GetResults/{id}?code=TOKEN...
        -> 202 while pending (body: the URL again), 200 once with
           [{comment_id, sentiment, labels}], then 404 "File already collected";
           a failed job -> 500 "Error during processing ..."

Behind it are the batch lane's jobs service and store, as for /v1/jobs. While the batch model
is not there yet (a local stack still building it), the job is accepted and starts when it is;
`&lane=instant` labels the comments on the instant lane at once instead (same URLs, same
once-only results); `&lane=auto` is the cascade, results in the same shape: all three go through the intake
(twolane.intake), which also publishes the comments' drift metrics. docs/pxtextmining.md shows the client code.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from twolane.api.deps import (
    CodeOwnerDep,
    JobsDep,
    ModelDep,
    SettingsDep,
    require_api_key_or_code,
    require_batch_enabled,
    require_nhs_bundle,
)
from twolane.api.errors import ERROR_RESPONSES, RequestRejected
from twolane.api.gate import CODE_PARAM, KEY_HEADER, StrictRoute, results_token
from twolane.api.intake import take
from twolane.contract import check_items, strict_json_loads
from twolane.intake import Origin
from twolane.jobs.kinds import CLASSIFY, kind_of
from twolane.jobs.record import JobGone, JobNotFound
from twolane.pxtextmining import PxShapeError, blank_rows, parse_target, read_items, result_rows

router = APIRouter(tags=["pxtextmining slow API"],
                   dependencies=[Depends(require_api_key_or_code), Depends(require_batch_enabled)],
                   route_class=StrictRoute,
                   responses={k: ERROR_RESPONSES[k] for k in (401, 408, 409, 422, 500, 503)})

START = "StartContainerInstance"
RETRY_AFTER_S = "5"
ALREADY_COLLECTED = "File already collected"  # pxtextmining's words, kept for its clients
NOT_FOUND = "File not found"
FAILED = "Error during processing: the batch lane could not label these comments; send them again"


def absolute(request: Request, path: str, public_url: str | None, query: str | None = None) -> str:
    """`path` plus `query` (default: this request's query string), as an absolute URL whose
    scheme, host and port come from configuration (TWOLANE_PUBLIC_URL), else from the address
    the server is bound to: never from the request's Host header, which a client can forge."""
    query = request.url.query if query is None else query
    tail = path + (f"?{query}" if query else "")
    if public_url:
        return public_url.rstrip("/") + tail
    host, port = (request.scope.get("server") or ("localhost", None))[:2]
    default = {"http": 80, "https": 443}.get(request.url.scheme)
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{request.url.scheme}://{netloc}{tail}"


def results_url(request: Request, job_id: str, public_url: str | None) -> str:
    """This request's URL with StartContainerInstance swapped for GetResults/<id>, query string
    kept (as the Azure Function builds it, so pxtextmining's clients GET it as is) except the
    key: `code` becomes the job's results token (`gate.results_token`), which opens this job's
    results and nothing else; no key given, no `code`. See `absolute` for the host."""
    path = request.url.path
    base = path[: -len(START)] if path.endswith(START) else path.rstrip("/") + "/"
    params = [(k, v) for k, v in parse_qsl(request.url.query, keep_blank_values=True)
              if k != CODE_PARAM]
    key = request.headers.get(KEY_HEADER.decode()) or request.query_params.get(CODE_PARAM)
    if key:
        params.append((CODE_PARAM, results_token(key, job_id)))
    return absolute(request, f"{base}GetResults/{job_id}", public_url, urlencode(params))


@router.post(f"/api/{START}", status_code=202, response_class=PlainTextResponse,
             responses={202: {"description": "the results URL, as plain text"},
                        401: {"description": "no or wrong key (`code` or x-api-key)"},
                        413: {"description": "too many comments"},
                        422: {"description": "bad body or target, with reasons"}})
async def start_container_instance(
    request: Request, jobs: JobsDep, model: ModelDep, settings: SettingsDep, owner: CodeOwnerDep,
    target: Annotated[str | None, Query(description="m labels, s sentiment, ms both (default)")] = None,
    lane: Annotated[Literal["batch", "instant", "auto"], Query(
        description="batch (default): the transformer ensemble; instant: the TF-IDF models, now; "
                    "auto: the cascade (the instant lane keeps what it is sure of, the rest goes "
                    "to the transformer)")] = "batch",
) -> PlainTextResponse:
    """Body: a JSON list of {comment_id, comment_text, question_type} (read whatever the
    Content-Type, as pxtextmining's R example sends none). 202 with the results URL."""
    try:
        # NaN reads as null: a Python client's json.dumps writes NaN for pandas' missing texts
        doc = strict_json_loads(await request.body(), nan_as_null=True)
    except ValueError:
        raise RequestRejected(422, "the body is not JSON: send a JSON list of "
                                   "{comment_id, comment_text, question_type} objects") from None
    try:
        tgt = parse_target(target)
        items = read_items(doc)
    except (ValueError, PxShapeError) as exc:
        raise RequestRejected(422, str(exc)) from None
    limits = settings.api
    check_items(items, max_items=limits.max_job_items, max_text_chars=limits.max_text_chars)
    if model.loaded is not None:  # its shapes name the NHS taxonomy (docs/own_data.md)
        require_nhs_bundle(model.loaded)
    taken = await run_in_threadpool(take, model, jobs, settings, [i.comment() for i in items], lane, tgt,
                                    Origin.slow_api(owner, blank_rows(items)))
    record = taken.record
    assert record is not None  # a slow-API origin always makes a job
    return PlainTextResponse(results_url(request, record.job_id, settings.public_url),
                             status_code=202)


@router.get("/api/GetResults/{job_id}",
            responses={200: {"description": "[{comment_id, sentiment, labels}] (once)"},
                       202: {"description": "still pending; the body is this URL"},
                       404: {"description": f"unknown job, or '{ALREADY_COLLECTED}'"},
                       500: {"description": "the job failed (reported once)"}})
def get_results(job_id: str, request: Request, jobs: JobsDep, owner: CodeOwnerDep,
                settings: SettingsDep) -> Response:
    """202 while pending; 200 with the results exactly once (then deleted); 404 after."""
    service = jobs.get()
    try:
        record = service.store.get(job_id)
        if record is None or not kind_of(record).labels_comments:
            raise JobNotFound(job_id)
        got = service.collect(job_id, owner)
    except JobNotFound:
        return PlainTextResponse(NOT_FOUND, status_code=404)
    except JobGone:
        return PlainTextResponse(ALREADY_COLLECTED, status_code=404)
    rec = got.record
    if got.payload is None:
        if rec.status in ("pending", "running"):
            return PlainTextResponse(absolute(request, request.url.path, settings.public_url),
                                     status_code=202,
                                     headers={"Retry-After": RETRY_AFTER_S})
        return PlainTextResponse(FAILED, status_code=500)
    preds = CLASSIFY.predictions(got.payload)
    rows: list[dict[str, Any]] = result_rows(preds, parse_target(rec.target), rec.blank_rows)
    return JSONResponse(rows, status_code=200)
