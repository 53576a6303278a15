"""Error responses: a clear 4xx with a reason for a client's mistake, a JSON 500 only for real faults.

Every error body has one shape (`Problem`): `detail` (a short reason, or for a body that does
not validate, a list of {loc, msg, type} naming the item and field), `request_id` (the same id
is in the log line that holds the details) and, where comments are at fault, `comment_ids`.
No error body or log line holds comment text, an API key, a path or an exception's message:
validation errors drop pydantic's `input` and `ctx`, faults are logged by type and traceback
frames only.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from twolane.contract import ItemsRejected
from twolane.rules import clean_text

log = logging.getLogger("twolane.api")

MAX_ERRORS = 20  # a 422 lists at most this many field errors
MAX_LOC_CHARS = 64  # a key the client sent, as it appears in `loc`


class FieldError(BaseModel):
    loc: list[str | int]  # e.g. ["body", "items", 3, "comment_id"]
    msg: str
    type: str


class Problem(BaseModel):
    """The body of every 4xx/5xx answer."""

    detail: str | list[FieldError]
    request_id: str
    comment_ids: list[str] | None = None


def _responses() -> dict[int | str, dict[str, object]]:
    said = {
        401: "no or a wrong `x-api-key` (when the service has API keys)",
        408: "the request (headers, or a POST's body once admitted) did not arrive in time",
        409: "this service cannot serve the request as asked: `detail` says what to send instead "
             "(a model of another taxonomy, or no cascade rule for `\"lane\": \"auto\"`)",
        413: "too many items in one request",
        422: "the body is not valid: `detail` lists each item and field at fault, or says "
             "what is wrong (too long, repeated ids) with `comment_ids`",
        500: "a fault in the service (the `request_id` finds it in the logs)",
        503: "the model (or the batch lane) is not available now",
    }
    return {code: {"model": Problem, "description": text} for code, text in said.items()}


ERROR_RESPONSES = _responses()  # for routers: `responses=ERROR_RESPONSES` documents the shapes


class RequestRejected(Exception):
    """A well-formed request the API will not serve (too many items, text too long, duplicates).

    `comment_ids` names the comments at fault, when there are any.
    """

    def __init__(self, status_code: int, detail: str, comment_ids: list[str] | None = None):
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.comment_ids = comment_ids or []


class ModelUnavailable(Exception):
    """The model bundle could not be loaded: the service cannot answer (503), not the client's fault.
    The message is for the log only (it may name a path)."""


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def problem(status: int, detail: str | list[FieldError], comment_ids: list[str] | None = None,
            request_id: str | None = None, headers: Mapping[str, str] | None = None) -> JSONResponse:
    body = Problem(detail=detail, request_id=request_id or new_request_id(), comment_ids=comment_ids)
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=status,
                        headers=dict(headers) if headers else None)


def _loc_part(part: object) -> str | int:
    if isinstance(part, int) and not isinstance(part, bool):
        return part
    s = clean_text(str(part))  # a key the client sent may hold anything
    return s if len(s) <= MAX_LOC_CHARS else s[:MAX_LOC_CHARS] + "…"


def field_errors(errors: list[object]) -> list[FieldError]:
    """Pydantic/FastAPI errors cut to loc, msg and type: never the input or its context."""
    out = []
    for e in errors[:MAX_ERRORS]:
        d = e if isinstance(e, dict) else {}
        out.append(FieldError(loc=[_loc_part(p) for p in d.get("loc", ())],
                              msg=clean_text(str(d.get("msg", "invalid"))),
                              type=str(d.get("type", "value_error"))))
    return out


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem(422, field_errors(list(exc.errors())))


async def _rejected(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestRejected)
    return problem(exc.status_code, exc.detail, exc.comment_ids or None)


async def _items(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ItemsRejected)  # contract.check_items: 413 or 422, ids named
    return problem(exc.status, exc.reason, exc.ids or None)


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, str(exc.detail), headers=exc.headers)


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    rid = new_request_id()
    log.error("model not available (request %s): %s", rid, exc)
    return problem(503, "the model is not available now; try again later", request_id=rid)


def log_fault(where: str, exc: BaseException) -> str:
    """Log a fault by type and traceback frames (never its message, which may hold input);
    returns the request id the log line carries."""
    rid = new_request_id()
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("fault %s in %s (request %s)\n%s", type(exc).__name__, where, rid, frames)
    return rid


async def _server_fault(request: Request, exc: Exception) -> JSONResponse:
    rid = log_fault(f"{request.method} {request.url.path}", exc)
    return problem(500, "internal server error", request_id=rid)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(RequestRejected, _rejected)
    app.add_exception_handler(ItemsRejected, _items)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(ModelUnavailable, _unavailable)
    app.add_exception_handler(Exception, _server_fault)
