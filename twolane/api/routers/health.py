"""GET /health: is the model loaded, and which version; and are the parts the process was
given to watch up (`app.state.health_checks`: name -> check, True when up; the local stack
sets its local S3 and the batch / LLM lanes' runners there, none on AWS). Open even when API
keys are set."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from twolane.api.deps import ModelDep
from twolane.api.errors import ModelUnavailable
from twolane.api.gate import StrictRoute

router = APIRouter(tags=["health"], route_class=StrictRoute)


def _down(checks: dict[str, Callable[[], bool]]) -> list[str]:
    """Names of the checks that fail (an error in a check counts as down)."""
    down = []
    for name, check in checks.items():
        try:
            ok = check()
        except Exception:  # noqa: BLE001 (a check that cannot say "up" says "down")
            ok = False
        if not ok:
            down.append(name)
    return down


@router.get("/health")
async def health(model: ModelDep, request: Request) -> JSONResponse:
    """200 {"status": "ok", "model_loaded", "model_version"}; 503 "unavailable" with no model;
    503 "degraded" with `down`: the watched parts that are down (e.g. ["local_s3"])."""
    try:
        predictor = model.get()
    except ModelUnavailable:  # the reason (it may name a path) is in the log, not here
        return JSONResponse({"status": "unavailable", "model_loaded": False,
                             "reason": "no model is loaded"}, status_code=503)
    body: dict[str, object] = {"status": "ok", "model_loaded": True, "model_version": predictor.version}
    checks = getattr(request.app.state, "health_checks", None) or {}
    down = await run_in_threadpool(_down, checks) if checks else []
    if down:
        return JSONResponse({**body, "status": "degraded", "down": down}, status_code=503)
    return JSONResponse(body)


# HEAD for uptime checks: the same answer without a body (not a second operation in the schema)
router.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)
