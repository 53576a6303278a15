"""Error responses: a clear 4xx with a reason for a client's mistake, a JSON 500 only for real faults."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

log = logging.getLogger("twolane.api")


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
    """The model bundle could not be loaded: the service cannot answer (503), not the client's fault."""


async def _rejected(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestRejected)
    body: dict[str, object] = {"detail": exc.detail}
    if exc.comment_ids:
        body["comment_ids"] = exc.comment_ids
    return JSONResponse(body, status_code=exc.status_code)


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": f"model not available: {exc}"}, status_code=503)


async def _server_fault(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal server error"}, status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestRejected, _rejected)
    app.add_exception_handler(ModelUnavailable, _unavailable)
    app.add_exception_handler(Exception, _server_fault)
